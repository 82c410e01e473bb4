"""Sliding-window counters for rate limits and lockouts."""

from __future__ import annotations

import sqlite3

import aiosqlite

from store.db import in_thread


async def count(db: aiosqlite.Connection, key: str, since: float) -> int:
    rows = list(await db.execute_fetchall(
        "SELECT count(*) FROM rate_events WHERE key = ? AND at > ?", (key, since)
    ))
    return int(rows[0][0]) if rows else 0


async def record(db: aiosqlite.Connection, key: str, at: float) -> None:
    await in_thread(db, record_sync, key, at)


def record_sync(db: sqlite3.Connection, key: str, at: float) -> None:
    """`record` for work that runs inside `Store.write`'s group commit."""
    db.execute("INSERT INTO rate_events (key, at) VALUES (?, ?)", (key, at))


async def clear(db: aiosqlite.Connection, key: str) -> None:
    await db.execute("DELETE FROM rate_events WHERE key = ?", (key,))


async def prune(db: aiosqlite.Connection, before: float) -> int:
    """Drop the events recorded before `before`; return how many."""
    cursor = await db.execute("DELETE FROM rate_events WHERE at < ?", (before,))
    return cursor.rowcount
