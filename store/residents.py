"""Residents: phone, card number, password hash, reminder flag, linked accounts."""

from __future__ import annotations

import datetime as dt
import sqlite3
from dataclasses import dataclass

import aiosqlite

from store.db import NotFound, in_thread


@dataclass(frozen=True)
class Resident:
    id: int
    phone: str
    card_number: str
    password_hash: str | None
    must_change_password: bool
    verified_at: str | None
    reminders: bool


_COLUMNS = "id, phone, card_number, password_hash, must_change_password, verified_at, reminders"


def _row(row: aiosqlite.Row) -> Resident:
    return Resident(
        id=row["id"], phone=row["phone"], card_number=row["card_number"],
        password_hash=row["password_hash"], must_change_password=bool(row["must_change_password"]),
        verified_at=row["verified_at"], reminders=bool(row["reminders"]),
    )


def _utcnow() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


async def by_phone(db: aiosqlite.Connection, phone: str) -> Resident | None:
    # execute_fetchall: one trip to aiosqlite's thread, not three (execute, fetchone, close).
    rows = list(await db.execute_fetchall(f"SELECT {_COLUMNS} FROM residents WHERE phone = ?", (phone,)))
    return _row(rows[0]) if rows else None


async def by_card(db: aiosqlite.Connection, card_number: str) -> Resident | None:
    async with db.execute(
        f"SELECT {_COLUMNS} FROM residents WHERE card_number = ?", (card_number,)
    ) as cur:
        row = await cur.fetchone()
    return _row(row) if row else None


async def get(db: aiosqlite.Connection, resident_id: int) -> Resident:
    async with db.execute(f"SELECT {_COLUMNS} FROM residents WHERE id = ?", (resident_id,)) as cur:
        row = await cur.fetchone()
    if row is None:
        raise NotFound(f"resident {resident_id}")
    return _row(row)


async def card_taken(db: aiosqlite.Connection, card_number: str) -> bool:
    async with db.execute("SELECT 1 FROM residents WHERE card_number = ?", (card_number,)) as cur:
        return await cur.fetchone() is not None


async def create(db: aiosqlite.Connection, phone: str, card_number: str) -> Resident:
    await db.execute(
        "INSERT INTO residents (phone, card_number, verified_at, created_at) VALUES (?, ?, ?, ?)",
        (phone, card_number, _utcnow(), _utcnow()),
    )
    resident = await by_phone(db, phone)
    assert resident is not None
    return resident


async def set_password(
    db: aiosqlite.Connection, resident_id: int, password_hash: str, must_change: bool
) -> None:
    await in_thread(db, set_password_sync, resident_id, password_hash, must_change)


def set_password_sync(
    db: sqlite3.Connection, resident_id: int, password_hash: str, must_change: bool
) -> None:
    """`set_password` for work that runs inside `Store.write`'s group commit."""
    db.execute(
        "UPDATE residents SET password_hash = ?, must_change_password = ? WHERE id = ?",
        (password_hash, int(must_change), resident_id),
    )


def set_reminders_sync(db: sqlite3.Connection, phone: str, enabled: bool) -> bool:
    """Returns whether a resident with that phone exists (runs inside `Store.write`)."""
    cursor = db.execute("UPDATE residents SET reminders = ? WHERE phone = ?", (int(enabled), phone))
    return cursor.rowcount > 0


async def link_account(db: aiosqlite.Connection, resident_id: int, account: str) -> bool:
    """Link an account; returns False when it was linked already."""
    cursor = await db.execute(
        "INSERT OR IGNORE INTO resident_accounts (resident_id, account, linked_at) VALUES (?, ?, ?)",
        (resident_id, account, _utcnow()),
    )
    return cursor.rowcount > 0


async def accounts_of(db: aiosqlite.Connection, resident_id: int) -> list[str]:
    async with db.execute(
        "SELECT account FROM resident_accounts WHERE resident_id = ? ORDER BY linked_at, account",
        (resident_id,),
    ) as cur:
        return [row[0] for row in await cur.fetchall()]
