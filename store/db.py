"""Opening the database and applying numbered migrations (recorded in PRAGMA user_version)."""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
import time
from collections.abc import AsyncIterator
from importlib import resources
from pathlib import Path

import aiosqlite


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

    async def close(self) -> None:
        await self.db.close()
