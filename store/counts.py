"""Counts the operator listener reports beside the queue's own."""

from __future__ import annotations

import aiosqlite


async def inbox_pending(db: aiosqlite.Connection) -> int:
    """Texts stored but not yet answered."""
    async with db.execute("SELECT count(*) FROM inbox WHERE state = 'new'") as cursor:
        row = await cursor.fetchone()
    return int(row[0]) if row else 0
