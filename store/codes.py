"""One-time codes: stored hashed, expiring, single use, attempt-limited; a resend replaces."""

from __future__ import annotations

from dataclasses import dataclass

import aiosqlite


@dataclass(frozen=True)
class Code:
    phone: str
    purpose: str
    code_hash: str
    payload: str
    expires_at: float
    attempts: int


async def put(
    db: aiosqlite.Connection, phone: str, purpose: str, code_hash: str, payload: str,
    expires_at: float, now: float,
) -> None:
    await db.execute(
        "INSERT OR REPLACE INTO codes (phone, purpose, code_hash, payload, expires_at, attempts,"
        " created_at) VALUES (?, ?, ?, ?, ?, 0, ?)",
        (phone, purpose, code_hash, payload, expires_at, now),
    )


async def get(db: aiosqlite.Connection, phone: str, purpose: str) -> Code | None:
    async with db.execute(
        "SELECT phone, purpose, code_hash, payload, expires_at, attempts FROM codes"
        " WHERE phone = ? AND purpose = ?", (phone, purpose),
    ) as cur:
        row = await cur.fetchone()
    return Code(row[0], row[1], row[2], row[3], row[4], row[5]) if row else None


async def add_attempt(db: aiosqlite.Connection, phone: str, purpose: str) -> None:
    await db.execute(
        "UPDATE codes SET attempts = attempts + 1 WHERE phone = ? AND purpose = ?", (phone, purpose)
    )


async def delete(db: aiosqlite.Connection, phone: str, purpose: str) -> None:
    await db.execute("DELETE FROM codes WHERE phone = ? AND purpose = ?", (phone, purpose))


async def delete_expired(db: aiosqlite.Connection, at: float) -> int:
    """Drop every code expired by `at`; return how many."""
    cursor = await db.execute("DELETE FROM codes WHERE expires_at < ?", (at,))
    return cursor.rowcount
