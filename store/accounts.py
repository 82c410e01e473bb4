"""Personal accounts (лицевые счета) and providers."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import aiosqlite


@dataclass(frozen=True)
class Account:
    number: str
    receipt_code: str
    address: str
    holder: str


async def get(db: aiosqlite.Connection, number: str) -> Account | None:
    async with db.execute(
        "SELECT number, receipt_code, address, holder FROM accounts WHERE number = ?", (number,)
    ) as cur:
        row = await cur.fetchone()
    return Account(row[0], row[1], row[2], row[3]) if row else None


async def count(db: aiosqlite.Connection) -> int:
    async with db.execute("SELECT count(*) FROM accounts") as cur:
        row = await cur.fetchone()
    return int(row[0]) if row else 0


async def any_loaded(db: aiosqlite.Connection) -> bool:
    """Whether the store holds any account or provider at all."""
    rows = list(await db.execute_fetchall(
        "SELECT EXISTS (SELECT 1 FROM accounts) OR EXISTS (SELECT 1 FROM providers)"
    ))
    return bool(rows[0][0])


async def add_providers(db: aiosqlite.Connection, rows: Iterable[tuple[int, str, str, str]]) -> None:
    """Insert (id, name, inn, service_kind) rows."""
    await db.executemany(
        "INSERT INTO providers (id, name, inn, service_kind) VALUES (?, ?, ?, ?)", rows
    )


async def add(db: aiosqlite.Connection, rows: Iterable[tuple[str, str, str, str]]) -> None:
    """Insert (number, receipt_code, address, holder) rows."""
    await db.executemany(
        "INSERT INTO accounts (number, receipt_code, address, holder) VALUES (?, ?, ?, ?)", rows
    )
