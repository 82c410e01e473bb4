"""Opening the database and applying numbered migrations (recorded in PRAGMA user_version)."""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

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
    await db.execute(f"PRAGMA busy_timeout = {int(BUSY_SECONDS * 1000)}")  # an import, say
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


def next_id(db: sqlite3.Connection, table: str) -> int:
    """The id SQLite would give the next row (inside a write transaction nobody else takes it).

    Ids are given here so that one prepared statement inserts a whole batch: a multi-row INSERT
    ... RETURNING is new SQL for every batch size, compiled each time, and returns rows in no
    promised order.
    """
    return int(db.execute(f"SELECT coalesce(max(id), 0) + 1 FROM {table}").fetchone()[0])


# Values in an IN list per statement: far below SQLite's limit of 32,766 parameters.
_MAX_ROWS = 500
# IN lists are padded to one of these lengths (repeating a value), so that a handful of
# statements serve every batch size and stay in sqlite3's cache of prepared statements.
_IN_SIZES = (8, 64, _MAX_ROWS)


def in_lists(values: Sequence[_T]) -> Iterator[tuple[str, tuple[_T, ...]]]:
    """("?,?,...", values) for `IN (...)`, in chunks padded to one of _IN_SIZES."""
    for start in range(0, len(values), _MAX_ROWS):
        chunk = values[start : start + _MAX_ROWS]
        size = next(size for size in _IN_SIZES if size >= len(chunk))
        padded = (*chunk, *[chunk[-1]] * (size - len(chunk)))
        yield ",".join("?" * size), padded


async def rows_with_ids(db: aiosqlite.Connection, sql: str, ids: Sequence[int]) -> list[Any]:
    """Rows of sql (its IN list written `{marks}`) for every id, a statement per chunk of ids."""
    found: list[Any] = []
    for marks, chunk in in_lists(ids):
        found += await db.execute_fetchall(sql.format(marks=marks), chunk)
    return found


# How long a write waits for another process to finish writing (busy_timeout of aiosqlite's
# connection, which the website and registration write through, and Store._begin). An import
# writes its whole file in one transaction (1,000,000 charge rows: 7-9 s on the project's
# machine): the gateway's writes wait it out (the SMSC holds what it has meanwhile) rather than
# refuse texts with ESME_RX_T_APPN, which the SMSC would only deliver again later.
BUSY_SECONDS = 60.0
CHECKPOINT_SECONDS = 0.25
# COMMIT (an fsync of the WAL) runs on the event loop while commits take less than this on
# average, else in a thread. On a local disk it takes well under a millisecond, less than the
# hand-off to a thread and back: a busy loop answers the thread's "done" late, and the thread
# waits for the GIL to start (at 500 texts/s here, 1.6 ms a transaction at the median with the
# thread, 0.7 ms without). A slow disk (network storage, a busy host) must not stop the loop.
LOOP_COMMIT_SECONDS = 0.002
READ_CACHE_KIB = 32 * 1024

_Group = list[tuple[Callable[[sqlite3.Connection], object], "asyncio.Future[object]"]]


def _run_group(connection: sqlite3.Connection, group: _Group) -> list[tuple[bool, object]]:
    """Each work of a group inside the open transaction, in a savepoint of its own."""
    if len(group) == 1:
        return [(True, group[0][0](connection))]
    outcomes: list[tuple[bool, object]] = []
    for work, _future in group:
        connection.execute("SAVEPOINT work")
        try:
            outcomes.append((True, work(connection)))
        except Exception as exc:
            connection.execute("ROLLBACK TO work")
            outcomes.append((False, exc))
        connection.execute("RELEASE work")
    return outcomes


def _commit(connection: sqlite3.Connection) -> float:
    """COMMIT; the seconds it took."""
    started = time.perf_counter()
    connection.execute("COMMIT")
    return time.perf_counter() - started


class _ReadConnection:
    """A read-only connection to the store's file, opened at the first read; None if it cannot be."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._connection: sqlite3.Connection | None = None
        self._tried = False

    def connection(self) -> sqlite3.Connection | None:
        if self._connection is None and not self._tried:
            self._tried = True
            uri = Path(self._path).resolve().as_uri() + "?mode=ro"
            with contextlib.suppress(sqlite3.Error):
                reader = sqlite3.connect(uri, uri=True, isolation_level=None)
                reader.row_factory = sqlite3.Row
                reader.execute("PRAGMA busy_timeout = 1000")
                # Reference data (residents, accounts, charges) read for every БАЛАНС: a page
                # cache of its own keeps a big store's hot pages here, not behind a read().
                reader.execute(f"PRAGMA cache_size = -{READ_CACHE_KIB}")
                self._connection = reader
        return self._connection

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def _check_file(path: str) -> None:
    # The write and read connections open the path again: ":memory:" would be a new database.
    if not path or path == ":memory:" or path.startswith("file:"):
        raise ValueError(f"a store needs a file of its own, not {path!r}")


class Store:
    """A store file: aiosqlite's connection, and connections of its own that write and read on the loop.

    Writes go through `write` (group commit on the store's write connection) or `tx()` (a
    transaction on aiosqlite's connection); the lock keeps them one at a time, so that statements
    of one coroutine never land inside another's open transaction.
    """

    def __init__(self, db: aiosqlite.Connection, path: str, synchronous: str = "FULL") -> None:
        _check_file(path)
        # The file, and aiosqlite's connection (the website, registration, `tx()`).
        self.db = db
        self.path = path
        self.synchronous = synchronous
        # One transaction at a time: `tx()` and the group commits of `write`.
        self._lock = asyncio.Lock()
        self._maybe_open = False  # a `tx()` holder was cancelled half way (see tx)
        # Group commit: works waiting for the next group, the task writing groups, and the
        # store's own write connection with its COMMIT thread and checkpoints.
        self._writes: _Group = []
        self._writing: asyncio.Future[None] | None = None
        self._writer: sqlite3.Connection | None = None
        self._committer: ThreadPoolExecutor | None = None
        self._commit_seconds = 0.0  # moving average of COMMIT's duration (LOOP_COMMIT_SECONDS)
        self._checkpointing: asyncio.Future[None] | None = None
        # The read-only connection of `read`.
        self._reader = _ReadConnection(path)

    @classmethod
    async def open(cls, path: str | Path, synchronous: str = "FULL") -> Store:
        _check_file(str(path))
        return cls(await connect(path, synchronous), str(path), synchronous)

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
        """Run work(connection, ...) in a write transaction; its result, once committed.

        Group commit: writes that come while a transaction is under way wait for it, then all go
        in the next transaction together, each in a savepoint of its own (one that raises is
        rolled back alone and its caller gets the exception). So the gateway's writers (inbound
        texts, replies, submit results) share one transaction and one fsync.

        The statements run right here, on a connection of the store's own: work is a few hundred
        microseconds of indexed writes, cheaper than a trip to aiosqlite's thread for every group,
        and a second thread busy with Python would fight the event loop for the GIL. COMMIT (the
        fsync) runs here too while it is quick, in a thread once it is not (LOOP_COMMIT_SECONDS).
        Nothing slow belongs in work.

        A caller cancelled meanwhile cannot know whether its work was committed.
        """
        def bound(connection: sqlite3.Connection) -> object:
            return work(connection, *args, **kwargs)

        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self._writes.append((bound, future))
        if self._writing is None or self._writing.done():
            # A task of its own, so that no caller's cancellation can cut a group in half.
            self._writing = asyncio.ensure_future(self._write_groups())
        return await future  # type: ignore[return-value]

    async def _write_groups(self) -> None:
        follows = False
        while self._writes:
            if follows:
                # The last group's writers go on first (each is woken by its future): the session
                # answers a stored batch, and the gateway notes it as answered, before the next
                # group decides which stored texts a new one repeats.
                await asyncio.sleep(0)
            follows = True
            async with self._lock:
                group, self._writes = self._writes, []
                if self._maybe_open:
                    with contextlib.suppress(sqlite3.OperationalError):
                        await self.db.execute("ROLLBACK")
                    self._maybe_open = False
                await self._commit_group(group)

    async def _commit_group(self, group: _Group) -> None:
        try:
            outcomes = await self._transaction_here(self._write_connection(), group)
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

    async def _transaction_here(
        self, writer: sqlite3.Connection, group: _Group
    ) -> list[tuple[bool, object]]:
        await self._begin(writer)
        try:
            outcomes = _run_group(writer, group)
            if self._commit_seconds < LOOP_COMMIT_SECONDS:
                self._note_commit(_commit(writer))
            else:
                assert self._committer is not None
                commit = asyncio.get_running_loop().run_in_executor(self._committer, _commit, writer)
                try:
                    self._note_commit(await asyncio.shield(commit))
                except asyncio.CancelledError:
                    await asyncio.wait([commit])  # never touch the connection while COMMIT runs
                    raise
        except BaseException:
            if writer.in_transaction:
                writer.execute("ROLLBACK")
            raise
        return outcomes

    def _note_commit(self, seconds: float) -> None:
        # A moving average: one slow fsync sends the next few commits to the thread, a slow disk
        # all of them, and the loop takes COMMIT back once they are quick again.
        self._commit_seconds += (seconds - self._commit_seconds) * 0.2

    @staticmethod
    async def _begin(writer: sqlite3.Connection) -> None:
        """BEGIN IMMEDIATE, waiting without blocking the loop while another process writes."""
        deadline = time.monotonic() + BUSY_SECONDS
        while True:
            try:
                writer.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
            await asyncio.sleep(0.005)

    def _write_connection(self) -> sqlite3.Connection:
        if self._writer is None:
            writer = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            writer.row_factory = sqlite3.Row
            writer.execute(f"PRAGMA synchronous = {self.synchronous}")
            writer.execute("PRAGMA foreign_keys = ON")
            writer.execute("PRAGMA busy_timeout = 0")  # _begin waits, the loop does not
            # The gateway answers БАЛАНС inside the transaction that stores the text, reading
            # reference data through this connection: its cache, unlike the reader's, is not
            # emptied by every commit (they are its own), so it keeps a big store's hot pages.
            writer.execute(f"PRAGMA cache_size = -{READ_CACHE_KIB}")
            # SQLite's automatic checkpoint runs inside the COMMIT that crosses 1000 pages of
            # WAL, holding up every write meanwhile (tens of milliseconds of copying and
            # fsync). _checkpoints does that copying in a thread of its own without the
            # write lock, so the automatic one finds little left; it stays, because only a
            # checkpoint that no write can overtake lets the WAL start over from its beginning.
            self._checkpointing = asyncio.ensure_future(self._checkpoints())
            self._writer = writer
            # COMMIT runs here, one at a time, while commits are slow; the store's lock keeps
            # the loop off the connection meanwhile.
            self._committer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-commit")
        return self._writer

    async def _checkpoints(self) -> None:
        connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-checkpoint")
        loop = asyncio.get_running_loop()
        try:
            while True:
                await asyncio.sleep(CHECKPOINT_SECONDS)
                checkpoint = loop.run_in_executor(
                    executor, connection.execute, "PRAGMA wal_checkpoint(PASSIVE)"
                )
                try:
                    await asyncio.shield(checkpoint)
                except asyncio.CancelledError:
                    await asyncio.wait([checkpoint])  # the connection is closed only after it
                    raise
                except sqlite3.Error:
                    pass  # busy or failed: the next one copies what this one did not
        finally:
            executor.shutdown()
            connection.close()

    async def read(
        self,
        work: Callable[Concatenate[sqlite3.Connection, _P], _T],
        *args: _P.args,
        **kwargs: _P.kwargs,
    ) -> _T:
        """Run work(connection, ...) on committed data, right here, on a read-only connection.

        For small indexed reads on hot paths (БАЛАНС): a query of tens of microseconds costs less
        run on the event loop than the trip to aiosqlite's thread and back, and in WAL mode a
        reader neither waits for the writer nor holds it up. Nothing slow belongs here. When the
        read-only connection cannot be opened, the work runs in aiosqlite's thread instead.
        """
        reader = self._reader.connection()
        if reader is None:
            return await in_thread(self.db, work, *args, **kwargs)
        return work(reader, *args, **kwargs)

    async def close(self) -> None:
        if self._writing is not None:
            with contextlib.suppress(Exception):
                await self._writing
        if self._checkpointing is not None:
            self._checkpointing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checkpointing
        async with self._lock:  # no group is half way through
            if self._writer is not None:
                self._writer.close()
                self._writer = None
            if self._committer is not None:
                self._committer.shutdown()
                self._committer = None
        self._reader.close()
        await self.db.close()
