"""Charges and payments: debt per provider and service is charges minus payments."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass

import aiosqlite

from store.db import in_thread


# Value classes built for every PDU or text are slotted, not frozen: a frozen dataclass sets each
# field through object.__setattr__, several times the cost of a plain one. None is ever changed.
@dataclass(slots=True)
class ProviderDebt:
    provider_id: int
    provider: str
    amount: int  # kopecks; negative means an advance (overpayment)


@dataclass(frozen=True)
class ServiceCharge:
    provider: str
    service: str
    amount: int  # kopecks charged up to the period


@dataclass(frozen=True)
class Payment:
    provider: str
    amount: int
    paid_at: str
    channel: str


@dataclass(slots=True)
class AccountBalance:
    account: str
    address: str
    lines: tuple[ProviderDebt, ...]


async def of_resident(
    db: aiosqlite.Connection, resident_id: int, period: str, today: str
) -> list[AccountBalance]:
    """Debt per provider as of today for every account linked to a resident, in link order.

    Charges count up to period (YYYY-MM), payments up to today (YYYY-MM-DD).
    """
    return await in_thread(db, _of_resident, resident_id, period, today)


def of_phone_sync(db: sqlite3.Connection, phone: str, period: str, today: str) -> list[AccountBalance] | None:
    """`of_resident` for the resident with this phone, None if there is none (БАЛАНС)."""
    # One statement: the resident is found inside it (and a row says it exists at all).
    rows = db.execute(_BALANCES_OF_PHONE_SQL, (phone, period, phone, today, phone, phone)).fetchall()
    return _balances(rows) if rows else None


def _of_resident(
    db: sqlite3.Connection, resident_id: int, period: str, today: str
) -> list[AccountBalance]:
    rows = db.execute(
        _BALANCES_SQL.format(who="?"), (resident_id, period, resident_id, today, resident_id)
    ).fetchall()
    return _balances(rows)


# All of a resident's accounts in one query: charges, payments (negative) and one row per linked
# account. Each arm is a search by primary key or payments_by_account, so its cost does not grow
# with the store (a CTE or a grouped subquery here made SQLite scan instead); the sums are done
# in _balances.
_BALANCES_SQL = """
    SELECT ra.account, c.provider_id, p.name, c.amount, ra.linked_at, NULL
    FROM resident_accounts AS ra JOIN charges AS c ON c.account = ra.account
    JOIN providers AS p ON p.id = c.provider_id WHERE ra.resident_id = {who} AND c.period <= ?
    UNION ALL
    SELECT ra.account, y.provider_id, p.name, -y.amount, ra.linked_at, NULL
    FROM resident_accounts AS ra JOIN payments AS y ON y.account = ra.account
    JOIN providers AS p ON p.id = y.provider_id WHERE ra.resident_id = {who} AND y.paid_at <= ?
    UNION ALL
    SELECT ra.account, NULL, NULL, 0, ra.linked_at, coalesce(a.address, '')
    FROM resident_accounts AS ra LEFT JOIN accounts AS a ON a.number = ra.account
    WHERE ra.resident_id = {who}
"""


# Built once: БАЛАНС runs it for every text.
_BALANCES_OF_PHONE_SQL = (
    _BALANCES_SQL.format(who="(SELECT id FROM residents WHERE phone = ?)")
    + " UNION ALL SELECT NULL, NULL, NULL, 0, NULL, NULL FROM residents WHERE phone = ?"
)


def _balances(rows: list[tuple[str | None, int | None, str, int, str, str | None]]) -> list[AccountBalance]:
    linked: list[tuple[str, str, str]] = []  # (linked_at, account, address)
    sums: dict[str, dict[tuple[int, str], int]] = {}
    for account, provider_id, name, amount, linked_at, address in rows:
        if account is None:
            continue  # the row that says the resident exists
        if provider_id is None:
            linked.append((linked_at, account, address or ""))
        else:
            per_provider = sums.setdefault(account, {})
            per_provider[provider_id, name] = per_provider.get((provider_id, name), 0) + int(amount)
    balances: list[AccountBalance] = []
    for _linked_at, account, address in sorted(linked):
        lines = sorted(
            (ProviderDebt(provider_id, name, debt)
             for (provider_id, name), debt in sums.get(account, {}).items() if debt != 0),
            key=lambda line: (line.provider, line.provider_id),
        )
        balances.append(AccountBalance(account, address, tuple(lines)))
    return balances


async def charges_by_service(
    db: aiosqlite.Connection, account: str, period: str
) -> list[ServiceCharge]:
    """What was charged per provider and service (for the web's detailed view)."""
    sql = """
        SELECT p.name, c.service, SUM(c.amount) FROM charges AS c JOIN providers AS p
        ON p.id = c.provider_id WHERE c.account = ? AND c.period <= ?
        GROUP BY p.name, c.service ORDER BY p.name, c.service
    """
    async with db.execute(sql, (account, period)) as cur:
        return [ServiceCharge(row[0], row[1], int(row[2])) for row in await cur.fetchall()]


async def recent_payments(
    db: aiosqlite.Connection, account: str, today: str, limit: int = 10
) -> list[Payment]:
    sql = """
        SELECT p.name, y.amount, y.paid_at, y.channel FROM payments AS y
        JOIN providers AS p ON p.id = y.provider_id
        WHERE y.account = ? AND y.paid_at <= ? ORDER BY y.paid_at DESC, y.id DESC LIMIT ?
    """
    async with db.execute(sql, (account, today, limit)) as cur:
        return [Payment(row[0], int(row[1]), row[2], row[3]) for row in await cur.fetchall()]


async def add_charges(db: aiosqlite.Connection, rows: Iterable[tuple[str, int, str, str, int]]) -> None:
    """Insert (account, provider_id, service, period, amount) rows."""
    await db.executemany(
        "INSERT INTO charges (account, provider_id, service, period, amount) VALUES (?, ?, ?, ?, ?)",
        rows,
    )


async def add_payments(db: aiosqlite.Connection, rows: Iterable[tuple[str, int, int, str, str]]) -> None:
    """Insert (account, provider_id, amount, paid_at, channel) rows."""
    await db.executemany(
        "INSERT INTO payments (account, provider_id, amount, paid_at, channel) VALUES (?, ?, ?, ?, ?)",
        rows,
    )
