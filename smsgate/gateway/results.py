"""Submit results: what the SMSC answered, recorded in group commits, riding along with other writes.

Results are on nobody's way (a text counts as answered once its reply is submitted): gathered a
little longer they cost fewer commits, or ride along with the next inbound or reply commit for
free. Every write of the gateway takes the results pending at that moment inside its own
transaction, as late as can be (`ResultsWrite`): a receipt's transaction matches it against the
parts recorded so far, and results taken before their write ran, by a write that then came after
the receipt's in the same group, would leave the receipt without its part.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from store import inbox, keys, outbox
from store.db import Store, now

if TYPE_CHECKING:
    from smsgate.gateway.flow import FlowControl
    from smsgate.gateway.receipts import Receipts
    from smsgate.gateway.sender import OutboxQueue

_T = TypeVar("_T")
RESULTS_DELAY = 0.02  # seconds submit results wait to be written with others


@dataclass(slots=True)
class Pending:
    """Results not yet written, and texts acknowledged to the SMSC since the last commit."""

    parts: list[outbox.PartResult] = field(default_factory=list)  # parts the SMSC accepted
    finished: list[tuple[int, float]] = field(default_factory=list)  # (outbox id, at): all accepted
    failures: list[tuple[int, str, float]] = field(default_factory=list)  # (outbox id, error, at)
    acked: list[int] = field(default_factory=list)  # inbox ids

    def empty(self) -> bool:
        return not (self.parts or self.finished or self.failures or self.acked)

    def take(self) -> Pending:
        """Everything pending, leaving this empty."""
        taken = Pending(self.parts, self.finished, self.failures, self.acked)
        self.parts, self.finished, self.failures, self.acked = [], [], [], []
        return taken

    def take_acks(self) -> Pending:
        """The acknowledged texts only, leaving the rest."""
        acked, self.acked = self.acked, []
        return Pending(acked=acked)

    def restore(self, taken: Pending) -> None:
        """Put back what a write that failed took, ahead of what came since."""
        self.parts = taken.parts + self.parts
        self.finished = taken.finished + self.finished
        self.failures = taken.failures + self.failures
        self.acked = taken.acked + self.acked

    def write(self, db: sqlite3.Connection) -> None:
        """The statements, inside a write transaction."""
        if self.parts or self.finished:
            outbox.record_submitted_sync(db, self.parts, self.finished)
        if self.failures:
            outbox.record_failed_sync(db, self.failures)
        if self.acked:
            inbox.mark_acked_sync(db, self.acked)

    def settled(self) -> Iterator[int]:
        """Outbox ids no longer queued once this is written."""
        for outbox_id, _at in self.finished:
            yield outbox_id
        for outbox_id, _error, _at in self.failures:
            yield outbox_id


class ResultsWrite:
    """The pending results one transaction writes: taken inside it, put back if it fails."""

    __slots__ = ("_acks_only", "_results", "_taken")

    def __init__(self, results: SubmitResults, acks_only: bool) -> None:
        self._results = results
        self._acks_only = acks_only
        self._taken: Pending | None = None

    def write(self, db: sqlite3.Connection) -> None:
        """Inside the transaction, first thing in it."""
        self._taken = self._results.take(acks_only=self._acks_only)
        self._taken.write(db)

    def put_back(self) -> None:
        """The transaction failed: the next commit takes these."""
        if self._taken is not None:
            self._results.restore(self._taken)

    def written(self) -> None:
        """The transaction committed."""
        if self._taken is not None:
            self._results.written(self._taken)


class SubmitResults:
    """Results noted by the sender (and acknowledgements by the sink) until a commit writes them."""

    def __init__(self, store: Store, queue: OutboxQueue, flow: FlowControl, receipts: Receipts) -> None:
        self._store = store
        self._queue = queue
        self._flow = flow
        self._receipts = receipts
        self._pending = Pending()
        self._ready = asyncio.Event()  # something to write

    # ---- noted ---------------------------------------------------------------------------------

    def part_accepted(self, outbox_id: int, number: int, smsc_id: str) -> None:
        """Noted as soon as the part's own answer is read: its receipt may be right behind it."""
        key = keys.message_id_key(smsc_id)
        self._pending.parts.append(outbox.PartResult(
            outbox_id, number, smsc_id, (key,) if key is not None else (), now()
        ))

    def finished(self, outbox_id: int) -> None:
        self._pending.finished.append((outbox_id, now()))
        self._ready.set()

    def failed(self, outbox_id: int, error: str) -> None:
        self._pending.failures.append((outbox_id, error, now()))
        self._ready.set()

    def acknowledged(self, inbox_ids: list[int]) -> None:
        self._pending.acked.extend(inbox_ids)
        self._ready.set()

    # ---- written -------------------------------------------------------------------------------

    def writer(self, *, acks_only: bool = False) -> ResultsWrite:
        """What one transaction writes of the pending results (all, or the acknowledgements)."""
        return ResultsWrite(self, acks_only)

    def take(self, *, acks_only: bool) -> Pending:
        return self._pending.take_acks() if acks_only else self._pending.take()

    def restore(self, taken: Pending) -> None:
        self._pending.restore(taken)
        self._ready.set()

    def written(self, taken: Pending) -> None:
        # Only now may a scan see these rows as no longer queued.
        for outbox_id in taken.settled():
            self._queue.release(outbox_id)
            self._flow.reply_settled(outbox_id)

    async def write_with(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        """store.write(work), the pending results written first in the same transaction."""
        results = self.writer()

        def write(db: sqlite3.Connection) -> _T:
            results.write(db)
            return work(db)

        try:
            value = await self._store.write(write)
        except BaseException:
            results.put_back()
            raise
        results.written()
        return value

    async def flush(self) -> None:
        if not self._pending.empty():
            await self.write_with(lambda _db: None)

    async def run(self) -> None:
        """The results loop: a group commit of what the SMSC answered, then receipts that waited."""
        while True:
            with contextlib.suppress(TimeoutError):  # asyncio.timeout: see OutboxQueue.scan_loop
                async with asyncio.timeout(1.0 if self._receipts.waiting else None):
                    await self._ready.wait()
            await asyncio.sleep(RESULTS_DELAY)
            self._ready.clear()
            await self.flush()
            await self._receipts.retry_orphans()
