"""Opening the database and applying numbered migrations (recorded in PRAGMA user_version)."""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from importlib import resources
from pathlib import Path
from typing import Concatenate, ParamSpec, TypeVar

import aiosqlite

_T = TypeVar("_T")

class StoreError(Exception):
    """Base of the store's domain errors."""


class NotFound(StoreError):
    """The thing asked for does not exist."""


def now() -> float:
    """Wall-clock time as the store records it (Unix seconds)."""
    return time.time()


def _migrations() -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for entry in resources.files("store").joinpath("migrations").iterdir():
        match = re.match(r"(\d+)_.*\.sql$", entry.name)
        if match:
            found.append((int(match.group(1)), entry.read_text(encoding="utf-8")))
    return sorted(found)


async def migrate(db: aiosqlite.Connection) -> int:
    """Apply the migrations newer than the database; returns the resulting version."""
    async with db.execute("PRAGMA user_version") as cursor:
        row = await cursor.fetchone()
    version = int(row[0]) if row else 0
    for number, sql in _migrations():
        if number <= version:
            continue
        # executescript commits first; the version bump is inside the same script so a
        # half-applied migration is never recorded as done.
        await db.executescript(f"BEGIN;\n{sql}\nPRAGMA user_version = {number};\nCOMMIT;")
        version = number
    return version


async def connect(path: str | Path, synchronous: str = "FULL") -> aiosqlite.Connection:
    """Open (creating if needed) the store at path, in WAL mode, migrated to the latest version."""
    target = Path(path)
    if str(target) != ":memory:":
        target.parent.mkdir(parents=True, exist_ok=True)
    db = await aiosqlite.connect(str(target), isolation_level=None)
    db.row_factory = aiosqlite.Row
    await db.execute("PRAGMA journal_mode = WAL")
    await db.execute(f"PRAGMA synchronous = {synchronous}")
    await db.execute("PRAGMA foreign_keys = ON")
    await db.execute("PRAGMA busy_timeout = 5000")
    await migrate(db)
    return db


_P = ParamSpec("_P")


async def in_thread(
    db: aiosqlite.Connection,
    work: Callable[Concatenate[sqlite3.Connection, _P], _T],
    *args: _P.args,
    **kwargs: _P.kwargs,
) -> _T:
    """Run work(connection, ...) in aiosqlite's own thread: many statements, one trip.

    Each awaited statement costs a round trip to that thread and, on a busy event loop, a turn
    of the loop; the gateway's hot paths run their statements in one trip instead. aiosqlite has
    no public call for this: `_execute` is what its own methods use (tests/test_store.py pins it).
    """
    return await db._execute(work, db._conn, *args, **kwargs)  # type: ignore[no-untyped-call,no-any-return]


class Store:
    """The connection plus a lock: every write happens inside `tx()`, one transaction at a time.

    One aiosqlite connection is shared by many coroutines; without the lock, statements of one
    coroutine would land inside another's open transaction.
    """

    def __init__(self, db: aiosqlite.Connection, path: str) -> None:
        self.db = db
        self.path = path
        self._lock = asyncio.Lock()
        self._maybe_open = False
        self._writes: list[tuple[Callable[[sqlite3.Connection], object], asyncio.Future[object]]] = []
        self._reader: sqlite3.Connection | None = None
        self._reader_tried = False

    @classmethod
    async def open(cls, path: str | Path, synchronous: str = "FULL") -> Store:
        return cls(await connect(path, synchronous), str(path))

    @contextlib.asynccontextmanager
    async def tx(self) -> AsyncIterator[aiosqlite.Connection]:
        """A write transaction (BEGIN IMMEDIATE); rolled back if the block raises."""
        async with self._lock:
            if self._maybe_open:
                # A holder was cancelled between BEGIN and COMMIT/ROLLBACK: its statements still ran
                # in aiosqlite's thread, so a transaction may be open. Close it before starting ours.
                with contextlib.suppress(sqlite3.OperationalError):
                    await self.db.execute("ROLLBACK")
            self._maybe_open = True
            await self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                await self.db.execute("ROLLBACK")
                self._maybe_open = False
                raise
            await self.db.execute("COMMIT")
            self._maybe_open = False

    async def write(
        self,
        work: Callable[Concatenate[sqlite3.Connection, _P], _T],
        *args: _P.args,
        **kwargs: _P.kwargs,
    ) -> _T:
        """Run work(connection, ...) in a write transaction, in the database thread; its result.

        Group commit: writes that come while a transaction is under way wait for it, then all go
        in the next transaction together, each in a savepoint of its own (one that raises is
        rolled back alone and its caller gets the exception). So the gateway's writers (inbound
        texts, replies, submit results) share one trip to the thread and one fsync instead of
        queueing for the lock one by one. Every caller returns after COMMIT.

        A caller cancelled meanwhile cannot know whether its work was committed.
        """
        def bound(connection: sqlite3.Connection) -> object:
            return work(connection, *args, **kwargs)

        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self._writes.append((bound, future))
        async with self._lock:
            if not future.done():
                group, self._writes = self._writes, []
                if self._maybe_open:
                    with contextlib.suppress(sqlite3.OperationalError):
                        await self.db.execute("ROLLBACK")
                    self._maybe_open = False
                # Shielded: the group finishes (and its callers hear of it) even if this caller,
                # which happened to run it, is cancelled.
                await asyncio.shield(asyncio.ensure_future(self._commit_group(group)))
        return await future  # type: ignore[return-value]

    async def _commit_group(self, group: list[tuple[Callable[[sqlite3.Connection], object],
                                                    asyncio.Future[object]]]) -> None:
        def transaction(connection: sqlite3.Connection) -> list[tuple[bool, object]]:
            outcomes: list[tuple[bool, object]] = []
            connection.execute("BEGIN IMMEDIATE")
            try:
                for work, _future in group:
                    if len(group) == 1:
                        outcomes.append((True, work(connection)))
                        continue
                    connection.execute("SAVEPOINT work")
                    try:
                        outcomes.append((True, work(connection)))
                    except Exception as exc:
                        connection.execute("ROLLBACK TO work")
                        outcomes.append((False, exc))
                    connection.execute("RELEASE work")
                connection.execute("COMMIT")
            except BaseException:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                raise
            return outcomes

        try:
            outcomes = await in_thread(self.db, transaction)
        except BaseException as exc:
            for _work, future in group:
                if future.done():
                    continue
                if isinstance(exc, asyncio.CancelledError):
                    future.cancel()
                else:
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (_work, future), (ok, value) in zip(group, outcomes, strict=True):
            if future.done():
                continue
            if ok:
                future.set_result(value)
            else:
                assert isinstance(value, BaseException)
                future.set_exception(value)

    async def read(
        self,
        work: Callable[Concatenate[sqlite3.Connection, _P], _T],
        *args: _P.args,
        **kwargs: _P.kwargs,
    ) -> _T:
        """Run work(connection, ...) on committed data, right here, on a read-only connection.

        For small indexed reads on hot paths (БАЛАНС): a query of tens of microseconds costs less
        run on the event loop than the trip to aiosqlite's thread and back, and in WAL mode a
        reader neither waits for the writer nor holds it up. Nothing slow belongs here. A store
        without a file of its own (":memory:") reads through aiosqlite instead.
        """
        reader = self._read_connection()
        if reader is None:
            return await in_thread(self.db, work, *args, **kwargs)
        return work(reader, *args, **kwargs)

    def _read_connection(self) -> sqlite3.Connection | None:
        if self._reader is None and not self._reader_tried:
            self._reader_tried = True
            if self.path and self.path != ":memory:" and not self.path.startswith("file:"):
                uri = Path(self.path).resolve().as_uri() + "?mode=ro"
                with contextlib.suppress(sqlite3.Error):
                    reader = sqlite3.connect(uri, uri=True, isolation_level=None)
                    reader.row_factory = sqlite3.Row
                    reader.execute("PRAGMA busy_timeout = 1000")
                    self._reader = reader
        return self._reader

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        await self.db.close()
