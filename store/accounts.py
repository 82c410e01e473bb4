"""Personal accounts (лицевые счета) and providers."""

from __future__ import annotations

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
