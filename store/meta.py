"""Named values kept beside the data: the web's cookie key, the demo's accounts, the health probe."""

from __future__ import annotations

import aiosqlite


async def get(db: aiosqlite.Connection, key: str) -> str | None:
    rows = list(await db.execute_fetchall("SELECT value FROM meta WHERE key = ?", (key,)))
    return str(rows[0][0]) if rows else None


async def put(db: aiosqlite.Connection, key: str, value: str) -> None:
    await db.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, value),
    )


async def put_once(db: aiosqlite.Connection, key: str, value: str) -> str:
    """Store value under key unless the key holds one already; return what the key holds."""
    await db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)", (key, value))
    held = await get(db, key)
    assert held is not None
    return held
