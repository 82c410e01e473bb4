"""БАЛАНС answers read in a process of its own, so that big batches use the second core.

At saturation the event loop is busy all the time and the БАЛАНС query with its formatting is
the largest single share of a text (docs/performance.md). A batch of texts from the SMSC
that is big enough (`[store] reader_min_batch`) has its БАЛАНС replies read here, by a child
process on a read-only connection of its own, while the loop goes on; the transaction that
stores the texts then queues those replies instead of reading them itself. Debts change only
with imports and registrations, which are committed before a text can see them either way.

Nothing depends on this process: when it is not running, answers late or dies, the batch is
answered on the loop instead (logged once as `balance_reader_failed`) and the process is
started again for a later batch.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import multiprocessing
import signal
import sqlite3
import time
from multiprocessing.connection import Connection
from pathlib import Path

from smsgate import logs

log = logs.get("readers")

# A batch the child has not answered in this long is answered on the loop, and the child is
# replaced: at most a few hundred queries, each well under a millisecond.
ANSWER_SECONDS = 2.0
RESTART_SECONDS = 5.0  # after a failure, batches are answered on the loop this long


def _serve(path: str, connection: Connection) -> None:
    """The child: reply texts for each list of phones, until the pipe closes."""
    from handlers.balance import BalanceHandler
    from smsgate.services import Services

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C is the gateway's: it closes the pipe
    db = sqlite3.connect(Path(path).resolve().as_uri() + "?mode=ro", uri=True, isolation_level=None)
    db.execute("PRAGMA cache_size = -32000")  # as the gateway's read connection
    while True:
        try:
            phones: list[str] = json.loads(connection.recv_bytes())
        except (EOFError, OSError):
            return
        replies = [
            [reply.text for reply in BalanceHandler.replies(Services.debts_of_phone_now(db, phone))]
            for phone in phones
        ]
        connection.send_bytes(json.dumps(replies, ensure_ascii=False).encode())


class BalanceReader:
    """The parent's side: `replies(phones)` in order, or None when the child cannot answer."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.answered = 0  # texts answered through the child
        self.failures = 0
        self._connection: Connection | None = None
        self._process: multiprocessing.process.BaseProcess | None = None
        # One future a batch sent, oldest first: the child answers them in the order they came.
        self._waiting: collections.deque[asyncio.Future[list[list[str]]]] = collections.deque()
        self._down_until = 0.0

    def start(self) -> None:
        context = multiprocessing.get_context("spawn")  # a fresh interpreter: no loop, no threads
        parent, child = context.Pipe()
        process = context.Process(target=_serve, args=(self.path, child), name="smsgate-reader",
                                  daemon=True)
        process.start()
        child.close()
        self._connection, self._process = parent, process
        asyncio.get_running_loop().add_reader(parent.fileno(), self._readable)

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def _readable(self) -> None:
        assert self._connection is not None
        try:
            data: list[list[str]] = json.loads(self._connection.recv_bytes())
        except Exception as exc:  # EOF: the child is gone
            self._failed(exc)
            return
        if self._waiting:
            future = self._waiting.popleft()
            if not future.done():
                future.set_result(data)

    def _failed(self, exc: BaseException) -> None:
        """Stop the child, answer every batch it holds on the loop, and pause before a new one."""
        self.failures += 1
        self._down_until = time.monotonic() + RESTART_SECONDS
        log.warning("balance_reader_failed", extra={"error": repr(exc)[:200],
                                                    "batches_waiting": len(self._waiting)})
        self._stop_child()

    async def replies(self, phones: list[str]) -> list[list[str]] | None:
        """The БАЛАНС reply texts for each phone, or None: then the caller reads them itself."""
        if self._connection is None:
            if time.monotonic() < self._down_until:
                return None
            self.start()
        assert self._connection is not None
        future: asyncio.Future[list[list[str]]] = asyncio.get_running_loop().create_future()
        self._waiting.append(future)  # batches of a pipelined sink may be in the child at once
        try:
            self._connection.send_bytes(json.dumps(phones).encode())
            found = await asyncio.wait_for(asyncio.shield(future), ANSWER_SECONDS)
            if len(found) != len(phones):
                raise ValueError(f"{len(found)} answers for {len(phones)} phones")
        except ConnectionError:
            return None  # the child went away with this batch in it: logged by _failed
        except Exception as exc:
            if not future.done() or not isinstance(future.exception(), ConnectionError):
                self._failed(exc)
            return None
        self.answered += len(phones)
        return found

    def _stop_child(self) -> None:
        connection, process = self._connection, self._process
        self._connection = self._process = None
        waiting, self._waiting = self._waiting, collections.deque()
        for future in waiting:
            if not future.done():
                future.set_exception(ConnectionError("the reader process stopped"))
        if connection is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(connection.fileno())
            connection.close()  # the child reads EOF and exits
        if process is not None and process.is_alive():
            process.join(0.05)
            if process.is_alive():
                process.kill()
        if process is not None:
            process.join(1.0)

    async def close(self) -> None:
        self._stop_child()
