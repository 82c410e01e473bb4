"""Charges and payments: debt per provider and service is charges minus payments."""

from __future__ import annotations

from dataclasses import dataclass

import aiosqlite


@dataclass(frozen=True)
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


async def by_provider(
    db: aiosqlite.Connection, account: str, period: str, today: str
) -> list[ProviderDebt]:
    """Debt per provider as of today: charges up to period (YYYY-MM), payments up to today."""
    sql = """
        SELECT p.id, p.name, SUM(x.amount) AS debt FROM (
            SELECT provider_id, amount FROM charges WHERE account = ? AND period <= ?
            UNION ALL
            SELECT provider_id, -amount FROM payments WHERE account = ? AND paid_at <= ?
        ) AS x JOIN providers AS p ON p.id = x.provider_id
        GROUP BY p.id, p.name HAVING SUM(x.amount) != 0 ORDER BY p.name
    """
    async with db.execute(sql, (account, period, account, today)) as cur:
        return [ProviderDebt(row[0], row[1], int(row[2])) for row in await cur.fetchall()]


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
