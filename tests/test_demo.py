"""Demo data: loads once, is deterministic, and hands out accounts with the promised balances."""

from __future__ import annotations

import csv
import re
from collections.abc import AsyncIterator
from datetime import date, datetime
from pathlib import Path

import pytest

from smsgate.tools.demo import (
    BARNAUL,
    PROFILES,
    DemoAccount,
    format_demo_accounts,
    load_demo,
)
from store.db import Store
from store.importer import import_csv

TODAY = date(2025, 3, 5)

BALANCES = """
    SELECT provider_id, sum(amount) FROM (
        SELECT provider_id, amount FROM charges WHERE account = :account
        UNION ALL
        SELECT provider_id, -amount FROM payments WHERE account = :account
    ) GROUP BY provider_id
"""


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    # Durability is not under test; skipping fsync keeps the suite fast.
    opened = await Store.open(tmp_path / "s.db", synchronous="OFF")
    yield opened
    await opened.close()


async def rows(store: Store, sql: str, *args: object) -> list[tuple[object, ...]]:
    return [tuple(row) for row in await store.db.execute_fetchall(sql, args)]


async def balances(store: Store, account: str) -> dict[int, int]:
    found = await store.db.execute_fetchall(BALANCES, {"account": account})
    return {int(row[0]): int(row[1]) for row in found}


async def fingerprint(store: Store) -> list[tuple[object, ...]]:
    """Row counts and sums of every demo table: cheap, and any write changes them."""
    return await rows(
        store,
        "SELECT (SELECT count(*) FROM providers), (SELECT count(*) FROM accounts),"
        " (SELECT count(*) || '/' || sum(amount) FROM charges),"
        " (SELECT count(*) || '/' || sum(amount) || '/' || max(id) FROM payments),"
        " (SELECT group_concat(key || '=' || value) FROM meta)",
    )


async def dump(store: Store) -> dict[str, list[tuple[object, ...]]]:
    return {
        table: await rows(store, f"SELECT * FROM {table} ORDER BY 1, 2, 3, 4")
        for table in ("providers", "accounts", "charges", "payments")
    }


async def test_loads_a_realistic_demo(store: Store) -> None:
    accounts = await load_demo(store, today=TODAY)

    assert len(accounts) == 3
    [(providers,)] = await rows(store, "SELECT count(*) FROM providers")
    [(count,)] = await rows(store, "SELECT count(*) FROM accounts")
    assert isinstance(providers, int) and providers >= 50
    assert count == 300
    for name, inn, kind in await rows(store, "SELECT name, inn, service_kind FROM providers"):
        assert isinstance(name, str) and re.search("[А-Яа-я]", name)
        assert isinstance(inn, str) and re.fullmatch(r"[0-9]{10}", inn)
        assert kind
    for number, code, address, holder in await rows(store, "SELECT * FROM accounts"):
        assert isinstance(number, str) and re.fullmatch(r"[1-9][0-9]{9}", number)
        assert isinstance(code, str) and re.fullmatch(r"[0-9]{6}", code)
        assert isinstance(address, str) and address.startswith("г. Барнаул, ")
        assert isinstance(holder, str) and re.fullmatch(r"[А-ЯЁ][а-яё]+ [А-Я]\. [А-Я]\.", holder)
    assert await rows(store, "SELECT DISTINCT period FROM charges ORDER BY 1") == [
        ("2024-11",),
        ("2024-12",),
        ("2025-01",),
        ("2025-02",),
    ]
    [(fewest, most)] = await rows(
        store,
        "SELECT min(n), max(n) FROM (SELECT count(DISTINCT provider_id) AS n FROM charges GROUP BY account)",
    )
    assert isinstance(fewest, int) and isinstance(most, int)
    assert fewest >= 3 and most <= 7
    [(first_paid, last_paid)] = await rows(store, "SELECT min(paid_at), max(paid_at) FROM payments")
    assert str(first_paid) >= "2024-12-01" and str(last_paid) <= TODAY.isoformat()


async def test_accounts_have_the_promised_balances(store: Store) -> None:
    debtor, advance, paid_up = await load_demo(store, today=TODAY)

    owed = await balances(store, debtor.number)
    assert sum(1 for amount in owed.values() if amount > 0) >= 2
    assert all(amount >= 0 for amount in owed.values())
    overpaid = sorted((await balances(store, advance.number)).values())
    assert overpaid[0] < 0 and set(overpaid[1:]) == {0}
    settled = await balances(store, paid_up.number)
    assert len(settled) >= 3 and set(settled.values()) == {0}
    # Across all accounts: some owe, some are even, some have paid ahead.
    [(owing, even, ahead)] = await rows(
        store,
        "SELECT sum(balance > 0), sum(balance = 0), sum(balance < 0) FROM ("
        "  SELECT sum(amount) AS balance FROM ("
        "    SELECT account, amount FROM charges"
        "    UNION ALL SELECT account, -amount FROM payments"
        "  ) GROUP BY account)",
    )
    assert isinstance(owing, int) and isinstance(even, int) and isinstance(ahead, int)
    assert owing >= 50 and even >= 50 and ahead >= 20


async def test_second_call_changes_nothing(store: Store) -> None:
    first = await load_demo(store)
    before = await fingerprint(store)

    again = await load_demo(store, seed=99, today=date(2026, 1, 1))

    assert again == first
    assert await fingerprint(store) == before
    # Without a date given, the billed months end with last month in Barnaul.
    today = datetime.now(BARNAUL).date()
    previous = f"{today.year - 1}-12" if today.month == 1 else f"{today.year}-{today.month - 1:02d}"
    assert await rows(store, "SELECT max(period) FROM charges") == [(previous,)]


async def test_store_with_real_data_is_left_alone(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "accounts.csv"
    path.write_text("account,receipt_code,address,holder\n42,111111,,\n", encoding="utf-8")
    await import_csv(store, "accounts", path)

    assert await load_demo(store, today=TODAY) == []
    assert await rows(store, "SELECT count(*) FROM providers") == [(0,)]


async def test_same_seed_same_data(tmp_path: Path) -> None:
    dumps = []
    for name in ("a.db", "b.db"):
        store = await Store.open(tmp_path / name, synchronous="OFF")
        try:
            await load_demo(store, seed=7, today=TODAY)
            dumps.append(await dump(store))
        finally:
            await store.close()

    assert dumps[0] == dumps[1]


async def test_demo_data_passes_the_importer(store: Store, tmp_path: Path) -> None:
    await load_demo(store, today=TODAY)
    exports = {
        "providers": "SELECT id AS provider_id, name, inn, service_kind FROM providers",
        "accounts": "SELECT number AS account, receipt_code, address, holder FROM accounts",
        "charges": "SELECT account, provider_id, service, period,"
        " printf('%.2f', amount / 100.0) AS amount FROM charges",
        "payments": "SELECT account, provider_id, printf('%.2f', amount / 100.0) AS amount,"
        " paid_at, channel FROM payments",
    }
    copy = await Store.open(tmp_path / "copy.db", synchronous="OFF")
    try:
        for kind, sql in exports.items():
            async with store.db.execute(sql) as cursor:
                header = [column[0] for column in cursor.description]
                data = list(await cursor.fetchall())
            path = tmp_path / f"{kind}.csv"
            with path.open("w", encoding="utf-8", newline="") as file:
                writer = csv.writer(file)
                writer.writerow(header)
                writer.writerows(tuple(row) for row in data)
            result = await import_csv(copy, kind, path)
            assert result.inserted == len(data)
        for table in ("charges", "payments"):
            query = f"SELECT sum(amount) FROM {table}"
            assert await rows(copy, query) == await rows(store, query)
    finally:
        await copy.close()


def test_format_demo_accounts() -> None:
    accounts = [
        DemoAccount("1234567890", "123456", "г. Барнаул, пр. Ленина, д. 1, кв. 2", "Иванова М. П."),
        DemoAccount("2345678901", "654321", "г. Барнаул, ул. Попова, д. 3, кв. 4", "Петров А. С."),
    ]

    text = format_demo_accounts(accounts)

    lines = text.splitlines()
    assert len(lines) == 3
    assert "1234567890" in lines[1] and "123456" in lines[1] and PROFILES[0] in lines[1]
    assert "Петров А. С." in lines[2] and PROFILES[1] in lines[2]
    assert "no demo accounts" in format_demo_accounts([])
