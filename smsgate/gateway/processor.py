"""The processor: stored texts routed to their handlers, one phone's texts after another.

Nothing waits for a whole batch: a slow command (ПАРОЛЬ hashes a password) holds up its own phone
only, and the commit loop writes whatever is routed, with the inbox states, in group commits.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from smsgate import logs, smpp
from smsgate.gateway.counters import Counters
from smsgate.gateway.flow import PROCESS_BATCH, FlowControl
from smsgate.gateway.in_turn import InTurn
from smsgate.gateway.sender import Sender
from smsgate.router import Routed, Router
from smsgate.ussd import SmppUssd
from store import inbox, outbox
from store.db import Store, now

log = logs.get("gateway")
ROUTE_LIMIT = 1000  # texts being routed at once (most wait for their phone's earlier text)


@dataclass(slots=True)
class RoutedText:
    """A stored text routed: the handler's verdict and the outbox rows to write with it."""

    item: inbox.Inbound
    handler: str
    ok: bool
    outgoing: list[outbox.NewOutgoing]


def reply_rows(inbox_id: int, phone: str, routed: Routed) -> list[outbox.NewOutgoing]:
    """A routed text's replies as outbox rows, each under a request key of its own."""
    return [
        outbox.NewOutgoing(f"in:{inbox_id}:{number}", phone, reply.text,
                           smpp.count_parts(reply.text), "secret" if reply.secret else "reply")
        for number, reply in enumerate(routed.replies)
    ]


class Processor:
    def __init__(
        self, store: Store, router: Router, ussd: SmppUssd, flow: FlowControl, sender: Sender,
        counters: Counters,
    ) -> None:
        # The parts it talks to.
        self._store = store
        self._router = router
        self._ussd = ussd
        self._flow = flow
        self._sender = sender
        self._counters = counters
        # Texts to route: just stored ones travel as rows, others (restarts, retries) as ids.
        self._texts: asyncio.Queue[int | inbox.Inbound] = asyncio.Queue()
        self._routing = 0  # texts taken from the queue and not yet committed
        self._in_turn = InTurn(ROUTE_LIMIT)
        # Routed, waiting for the commit loop.
        self._routed: list[RoutedText] = []
        self._routed_ready = asyncio.Event()

    def offer(self, text: int | inbox.Inbound) -> None:
        self._texts.put_nowait(text)

    async def resume(self) -> None:
        """At start: every text stored and not yet handled, its phone held until it is."""
        for item in await inbox.pending_inbound(self._store.db, limit=1_000_000):
            self.offer(item.id)
            self._flow.hold(item.phone)

    async def wait_for_room(self) -> None:
        """Backpressure on the sink: wait while PROCESS_BATCH texts or more wait to be routed."""
        while self._texts.qsize() + self._routing >= PROCESS_BATCH:
            await self._flow.room_made()

    def stop(self) -> None:
        self._in_turn.cancel()

    async def run(self) -> None:
        """The processor loop: one phone's texts one after another, different phones at once."""
        while True:
            await self._flow.wait_for_unsent_room()
            entries = [await self._texts.get()]
            while len(entries) < PROCESS_BATCH and not self._texts.empty():
                entries.append(self._texts.get_nowait())
            items = [entry for entry in entries if isinstance(entry, inbox.Inbound)]
            ids = [entry for entry in entries if isinstance(entry, int)]
            try:
                if ids:
                    items += await inbox.get_inbound(self._store.db, ids)
            except Exception:
                log.exception("process_failed", extra={"count": len(ids)})
                await asyncio.sleep(1.0)
                for entry in entries:
                    self.offer(entry)
                continue
            items.sort(key=lambda item: item.id)  # each phone's texts in the order they came
            self._routing += len(items)
            for item in items:
                await self._in_turn.start(item.phone, functools.partial(self._route_one, item))

    async def _route_one(self, item: inbox.Inbound) -> None:
        try:
            if item.channel == "ussd":
                # A menu screen, and any SMS the menu sends, are outbox rows like replies.
                rows = await self._ussd.respond(item)  # before naming _routed: commits swap it
                self._routed.append(RoutedText(item, "ussd", True, rows))
                self._routed_ready.set()
                return
            routed = await self._router.route(
                item.phone, item.text, item.channel, readable=item.data_coding >= 0
            )
        except Exception:
            # Left in state 'new': retried after a pause and again at the next start.
            log.exception("process_failed", extra={"count": 1})
            self._routing -= 1
            asyncio.get_running_loop().call_later(1.0, self.offer, item.id)
            return
        # A phone not starting with + is not a number we can answer (unparseable or foreign).
        outgoing = reply_rows(item.id, item.phone, routed) if item.phone.startswith("+") else []
        self._routed.append(RoutedText(item, routed.handler, routed.ok, outgoing))
        self._routed_ready.set()

    async def commit_loop(self) -> None:
        """Replies and inbox states of everything routed since the last commit, in one transaction."""
        while True:
            await self._routed_ready.wait()
            self._routed_ready.clear()
            routed, self._routed = self._routed, []
            if not routed:
                continue
            try:
                await self._commit(routed)
            except Exception:
                # Left in state 'new': routed again after a pause (request keys stop doubles).
                log.exception("process_failed", extra={"count": len(routed)})
                await asyncio.sleep(1.0)
                for text in routed:
                    self.offer(text.item.id)
            finally:
                self._routing -= len(routed)
                self._flow.make_room()

    async def _commit(self, routed: Sequence[RoutedText]) -> None:
        outgoing: list[outbox.NewOutgoing] = []
        done: list[tuple[int, str, str]] = []
        for text in routed:
            if not text.ok:
                self._counters.handler_errors += 1
            done.append((text.item.id, "done" if text.ok else "failed", text.handler))
            outgoing += text.outgoing
        at = now()

        def write(db: sqlite3.Connection) -> list[tuple[int, outbox.NewOutgoing]]:
            queued = outbox.enqueue_rows_sync(db, outgoing, at)
            inbox.finish_inbound_sync(db, done)
            return queued

        queued = await self._sender.results.write_with(write)
        for text in routed:
            self._flow.release(text.item.phone)
        self._sender.send_new(queued, at)
