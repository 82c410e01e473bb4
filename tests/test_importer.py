"""CSV import: each kind, idempotent re-import, and bad files refused whole with line and column."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from store import importer
from store.db import Store, StoreError
from store.importer import ImportFailed, ImportResult, import_csv

PROVIDERS = (
    "provider_id,name,inn,service_kind\n"
    '1,"ООО ""Барнаульская сетевая компания""",2221000001,heating\n'
    "2,Водоканал Барнаула,2224000002,water\n"
    "3,Ростелеком,,internet\n"
)

ACCOUNTS = """account,receipt_code,address,holder
1000000001,123456,"г. Барнаул, пр. Ленина, д. 54, кв. 17",Иванова М. П.
1000000002,654321,"г. Барнаул, ул. Попова, д. 3, кв. 1",Петров А. С.
"""


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    # Durability is not under test; skipping fsync keeps the suite fast.
    opened = await Store.open(tmp_path / "s.db", synchronous="OFF")
    yield opened
    await opened.close()


@pytest.fixture
async def seeded(store: Store, tmp_path: Path) -> Store:
    """A store with the providers and accounts above."""
    await import_csv(store, "providers", write(tmp_path, "providers.csv", PROVIDERS))
    await import_csv(store, "accounts", write(tmp_path, "accounts.csv", ACCOUNTS))
    return store


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return path


async def rows(store: Store, sql: str) -> list[tuple[object, ...]]:
    return [tuple(row) for row in await store.db.execute_fetchall(sql)]


async def snapshot(store: Store) -> dict[str, list[tuple[object, ...]]]:
    return {
        table: await rows(store, f"SELECT * FROM {table} ORDER BY 1, 2, 3")
        for table in ("providers", "accounts", "charges", "payments")
    }


async def refused(store: Store, tmp_path: Path, kind: str, text: str | bytes) -> ImportFailed:
    """Import text, expecting it refused and the store untouched; returns the error."""
    before = await snapshot(store)
    with pytest.raises(ImportFailed) as caught:
        await import_csv(store, kind, write(tmp_path, f"{kind}-bad.csv", text))
    assert await snapshot(store) == before
    return caught.value


async def test_providers(store: Store, tmp_path: Path) -> None:
    result = await import_csv(store, "providers", write(tmp_path, "p.csv", PROVIDERS))

    assert result == ImportResult(read=3, inserted=3, updated=0, skipped=0)
    assert await rows(store, "SELECT * FROM providers ORDER BY id") == [
        (1, 'ООО "Барнаульская сетевая компания"', "2221000001", "heating"),
        (2, "Водоканал Барнаула", "2224000002", "water"),
        (3, "Ростелеком", "", "internet"),
    ]


async def test_accounts_keep_quoted_commas_and_normalise_numbers(store: Store, tmp_path: Path) -> None:
    text = ACCOUNTS + '№ 12-34 56,111111,"г. Барнаул, пр. Строителей, д. 1",Сидоров И. И.\n'

    result = await import_csv(store, "accounts", write(tmp_path, "a.csv", text))

    assert result.read == result.inserted == 3
    assert await rows(store, "SELECT number, address FROM accounts ORDER BY number") == [
        ("1000000001", "г. Барнаул, пр. Ленина, д. 54, кв. 17"),
        ("1000000002", "г. Барнаул, ул. Попова, д. 3, кв. 1"),
        ("123456", "г. Барнаул, пр. Строителей, д. 1"),
    ]


async def test_charges_in_kopecks_with_normalised_account_reference(seeded: Store, tmp_path: Path) -> None:
    text = (
        "account,provider_id,service,period,amount\n"
        "1000000001,1,Отопление,2025-01,1234.56\n"
        "1000-000-001,2,Холодное водоснабжение,2025-01,7\n"
        "№1000000002,2,Перерасчёт,2025-02,-10.5\n"
    )

    result = await import_csv(seeded, "charges", write(tmp_path, "c.csv", text))

    assert result == ImportResult(read=3, inserted=3, updated=0, skipped=0)
    assert await rows(seeded, "SELECT * FROM charges ORDER BY account, amount") == [
        ("1000000001", 2, "Холодное водоснабжение", "2025-01", 700),
        ("1000000001", 1, "Отопление", "2025-01", 123456),
        ("1000000002", 2, "Перерасчёт", "2025-02", -1050),
    ]


async def test_payments(seeded: Store, tmp_path: Path) -> None:
    text = (
        "account,provider_id,amount,paid_at,channel\n"
        "1000000001,1,1234.56,2025-02-10,Сбербанк Онлайн\n"
        "1000000002,3,500,2025-02-11,касса\n"
    )

    result = await import_csv(seeded, "payments", write(tmp_path, "p.csv", text))

    assert result == ImportResult(read=2, inserted=2, updated=0, skipped=0)
    assert await rows(
        seeded, "SELECT account, provider_id, amount, paid_at, channel FROM payments ORDER BY id"
    ) == [
        ("1000000001", 1, 123456, "2025-02-10", "Сбербанк Онлайн"),
        ("1000000002", 3, 50000, "2025-02-11", "касса"),
    ]


async def test_payments_alike_are_two_when_the_export_gives_their_ids(
    seeded: Store, tmp_path: Path
) -> None:
    # A resident paying for two months at once: same account, provider, day, amount, channel.
    text = (
        "payment_id,account,provider_id,amount,paid_at,channel\n"
        "SB-1001,1000000001,1,500,2025-02-10,Сбербанк Онлайн\n"
        "SB-1002,1000000001,1,500,2025-02-10,Сбербанк Онлайн\n"
        "SB-1001,1000000001,1,500,2025-02-10,Сбербанк Онлайн\n"
        ",1000000002,3,100,2025-02-11,касса\n"
        ",1000000002,3,100,2025-02-11,касса\n"
    )

    first = await import_csv(seeded, "payments", write(tmp_path, "p.csv", text))
    again = await import_csv(seeded, "payments", write(tmp_path, "p.csv", text))

    # SB-1001 twice in the file is one payment; rows without an id are one if alike.
    assert first == ImportResult(read=5, inserted=3, updated=0, skipped=2)
    assert again == ImportResult(read=5, inserted=0, updated=0, skipped=5)
    assert await rows(seeded, "SELECT account, amount, reference FROM payments ORDER BY id") == [
        ("1000000001", 50000, "SB-1001"),
        ("1000000001", 50000, "SB-1002"),
        ("1000000002", 10000, ""),
    ]


async def test_a_payment_id_is_checked_like_any_text(seeded: Store, tmp_path: Path) -> None:
    text = "account,provider_id,amount,paid_at,channel,payment_id\n1000000001,1,5,2025-02-10,,a\x01b\n"

    error = await refused(seeded, tmp_path, "payments", text)

    assert error.line == 2 and error.column == "payment_id"


async def test_the_header_names_the_optional_payment_id(seeded: Store, tmp_path: Path) -> None:
    error = await refused(seeded, tmp_path, "payments", "account,provider_id,amount,paid_at\n")

    assert "missing columns: channel" in str(error)
    assert "expected account,provider_id,amount,paid_at,channel[,payment_id]" in str(error)


async def test_columns_in_any_order(seeded: Store, tmp_path: Path) -> None:
    text = "amount, Period ,service,provider_id,account\n99.90,2025-03,Интернет,3,1000000002\n"

    await import_csv(seeded, "charges", write(tmp_path, "c.csv", text))

    assert await rows(seeded, "SELECT * FROM charges") == [("1000000002", 3, "Интернет", "2025-03", 9990)]


async def test_reimport_updates_and_never_duplicates(seeded: Store, tmp_path: Path) -> None:
    charges = "account,provider_id,service,period,amount\n1000000001,1,Отопление,2025-01,100\n"
    payments = "account,provider_id,amount,paid_at,channel\n1000000001,1,100,2025-02-10,касса\n"
    await import_csv(seeded, "charges", write(tmp_path, "c.csv", charges))
    await import_csv(seeded, "payments", write(tmp_path, "p.csv", payments))

    again = await import_csv(
        seeded, "charges", write(tmp_path, "c.csv", charges.replace(",100\n", ",250.00\n"))
    )
    paid_again = await import_csv(seeded, "payments", write(tmp_path, "p.csv", payments))
    renamed = await import_csv(
        seeded, "providers", write(tmp_path, "p2.csv", PROVIDERS.replace("Ростелеком", "РТК"))
    )
    accounts_again = await import_csv(seeded, "accounts", write(tmp_path, "a.csv", ACCOUNTS))

    assert again == ImportResult(read=1, inserted=0, updated=1, skipped=0)
    assert paid_again == ImportResult(read=1, inserted=0, updated=0, skipped=1)
    assert renamed == ImportResult(read=3, inserted=0, updated=3, skipped=0)
    assert accounts_again.updated == 2
    assert await rows(seeded, "SELECT amount FROM charges") == [(25000,)]
    assert await rows(seeded, "SELECT count(*) FROM payments") == [(1,)]
    assert await rows(seeded, "SELECT name FROM providers WHERE id = 3") == [("РТК",)]
    assert await rows(seeded, "SELECT count(*) FROM accounts") == [(2,)]


async def test_bom_is_accepted(store: Store, tmp_path: Path) -> None:
    result = await import_csv(
        store, "providers", write(tmp_path, "p.csv", b"\xef\xbb\xbf" + PROVIDERS.encode())
    )

    assert result.inserted == 3


async def test_blank_lines_are_skipped_and_still_counted_as_lines(seeded: Store, tmp_path: Path) -> None:
    text = (
        "account,provider_id,service,period,amount\r\n"
        "\r\n"
        "1000000001,1,Отопление,2025-01,1\r\n"
        "\r\n"
        "1000000001,1,Отопление,2025-13,1\r\n"
    )

    error = await refused(seeded, tmp_path, "charges", text)

    assert (error.line, error.column) == (5, "period")


async def test_bad_row_after_written_batches_leaves_store_unchanged(
    seeded: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small batches, so the good rows before the bad one have been written when it is found.
    monkeypatch.setattr(importer, "BATCH_ROWS", 2)
    await import_csv(
        seeded,
        "charges",
        write(
            tmp_path,
            "old.csv",
            "account,provider_id,service,period,amount\n1000000001,1,Отопление,2025-01,5\n",
        ),
    )
    good = [f"1000000001,1,Отопление,2025-{month:02d},{month}00.00" for month in range(1, 8)]
    lines = [*good[:4], "1000000002,2,Водоотведение,2025-01,12,50", *good[4:]]
    text = "account,provider_id,service,period,amount\n" + "\n".join(lines) + "\n"

    error = await refused(seeded, tmp_path, "charges", text)

    assert (error.line, error.column) == (6, None)
    assert "line 6" in str(error) and "6 fields, expected 5" in str(error)
    assert await rows(seeded, "SELECT amount FROM charges") == [(500,)]


async def test_error_names_line_and_column(seeded: Store, tmp_path: Path) -> None:
    text = (
        "account,provider_id,service,period,amount\n"
        "1000000001,1,Отопление,2025-01,1.00\n"
        '1000000001,1,"Отопление,\nгорячая вода",2025-02,2.00\n'
        "1000000001,1,Отопление,2025-03,1.2.3\n"
    )

    error = await refused(seeded, tmp_path, "charges", text)

    assert isinstance(error, StoreError)
    assert (error.line, error.column) == (5, "amount")
    assert str(error).startswith("line 5, column amount: not an amount")
    assert "'1.2.3'" in str(error)


@pytest.mark.parametrize(
    ("header", "named"),
    [
        ("account,provider_id,service,period", "missing columns: amount"),
        ("account,provider_id,service,period,amount,comment", "unknown columns: 'comment'"),
        ("account,provider,service,period,amount", "missing columns: provider_id"),
        ("account,account,provider_id,service,period,amount", "repeated columns: account"),
    ],
)
async def test_header_must_have_exactly_the_columns(
    seeded: Store, tmp_path: Path, header: str, named: str
) -> None:
    error = await refused(seeded, tmp_path, "charges", header + "\n")

    assert error.line == 1
    assert named in str(error)
    assert "expected account,provider_id,service,period,amount" in str(error)


async def test_empty_file(store: Store, tmp_path: Path) -> None:
    error = await refused(store, tmp_path, "providers", "")

    assert "empty" in str(error) and "provider_id,name,inn,service_kind" in str(error)


async def test_missing_file(store: Store, tmp_path: Path) -> None:
    with pytest.raises(ImportFailed) as caught:
        await import_csv(store, "providers", tmp_path / "nowhere.csv")

    assert caught.value.line is None and "cannot read" in str(caught.value)


async def test_unknown_kind(store: Store, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown import kind"):
        await import_csv(store, "tariffs", write(tmp_path, "t.csv", PROVIDERS))


@pytest.mark.parametrize(
    ("row", "column", "message"),
    [
        ("9999999999,1,Отопление,2025-01,1", "account", "unknown account 9999999999"),
        ("1000000001,42,Отопление,2025-01,1", "provider_id", "unknown provider 42"),
        ("1000000001,x1,Отопление,2025-01,1", "provider_id", "not a provider id"),
        ("ЛС-1,1,Отопление,2025-01,1", "account", "not an account number"),
        ("123456789012345678901,1,Отопление,2025-01,1", "account", "not an account number"),
        ("1000000001,1,,2025-01,1", "service", "is empty"),
        ("1000000001,1,Отопление,2025-13,1", "period", "not a period"),
        ("1000000001,1,Отопление,2025-1,1", "period", "not a period"),
        ("1000000001,1,Отопление,01.2025,1", "period", "not a period"),
        ("1000000001,1,Отопление,2025-01,", "amount", "not an amount"),
        ('1000000001,1,Отопление,2025-01,"12,50"', "amount", "not an amount"),
        ("1000000001,1,Отопление,2025-01,1e3", "amount", "not an amount"),
        ("1000000001,1,Отопление,2025-01,1.234", "amount", "not an amount"),
        ("1000000001,1,Отопление,2025-01,٣", "amount", "not an amount"),
    ],
)
async def test_bad_charge_fields(seeded: Store, tmp_path: Path, row: str, column: str, message: str) -> None:
    text = f"account,provider_id,service,period,amount\n1000000001,1,Отопление,2025-01,1\n{row}\n"

    error = await refused(seeded, tmp_path, "charges", text)

    assert (error.line, error.column) == (3, column)
    assert message in error.message


@pytest.mark.parametrize(
    ("row", "column", "message"),
    [
        ("1000000001,1,0,2025-02-10,касса", "amount", "must be positive"),
        ("1000000001,1,-5.00,2025-02-10,касса", "amount", "must be positive"),
        ("1000000001,1,5,2025-02-30,касса", "paid_at", "not a date"),
        ("1000000001,1,5,10.02.2025,касса", "paid_at", "not a date"),
        ("1000000001,1,5,20250210,касса", "paid_at", "not a date"),
        ("1000000003,1,5,2025-02-10,касса", "account", "unknown account"),
    ],
)
async def test_bad_payment_fields(seeded: Store, tmp_path: Path, row: str, column: str, message: str) -> None:
    text = f"account,provider_id,amount,paid_at,channel\n{row}\n"

    error = await refused(seeded, tmp_path, "payments", text)

    assert (error.line, error.column) == (2, column)
    assert message in error.message


async def test_bad_provider_and_account_fields(store: Store, tmp_path: Path) -> None:
    no_code = ACCOUNTS + "1000000003,,адрес,Сидоров И. И.\n"
    bad_inn = PROVIDERS + "4,АО Тест,12345,gas\n"

    assert (await refused(store, tmp_path, "accounts", no_code)).column == "receipt_code"
    assert (await refused(store, tmp_path, "providers", bad_inn)).column == "inn"


async def test_not_utf8(seeded: Store, tmp_path: Path) -> None:
    header = b"account,provider_id,service,period,amount\n"
    # A Windows export saved in cp1251, the usual way a file here is not UTF-8.
    text = header + "1000000001,1,Отопление,2025-01,1\n".encode("cp1251")

    error = await refused(seeded, tmp_path, "charges", text)

    assert (error.line, error.column) == (2, "service")
    assert "not UTF-8" in error.message


async def test_huge_field(store: Store, tmp_path: Path) -> None:
    text = PROVIDERS + f"4,{'Я' * 10_000},2221000004,gas\n"

    error = await refused(store, tmp_path, "providers", text)

    assert (error.line, error.column) == (5, "name")
    assert "longer than 300 characters" in error.message


async def test_field_beyond_the_csv_limit(store: Store, tmp_path: Path) -> None:
    text = PROVIDERS + f'4,"{"x" * 200_000}",2221000004,gas\n'

    error = await refused(store, tmp_path, "providers", text)

    assert error.line == 5 and "malformed CSV" in error.message


async def test_overlong_line(store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importer, "MAX_LINE_BYTES", 100)
    text = PROVIDERS + f"4,{'x' * 200},2221000004,gas\n"

    error = await refused(store, tmp_path, "providers", text)

    assert error.line == 5 and "longer than 100 bytes" in error.message


async def test_binary_junk(store: Store, tmp_path: Path) -> None:
    junk = bytes(range(256)) * 4
    text = PROVIDERS.encode() + b"4," + junk.replace(b"\n", b"").replace(b",", b"") + b",,gas\n"

    error = await refused(store, tmp_path, "providers", text)

    assert error.line == 5


async def test_control_characters(store: Store, tmp_path: Path) -> None:
    text = PROVIDERS + '4,"АО\x00Тест",2221000004,gas\n'

    error = await refused(store, tmp_path, "providers", text)

    assert (error.line, error.column) == (5, "name")
    assert "control characters" in error.message


async def test_unclosed_quote(store: Store, tmp_path: Path) -> None:
    text = PROVIDERS + '4,"АО Тест,2221000004,gas\n5,АО Другой,,gas\n'

    error = await refused(store, tmp_path, "providers", text)

    assert error.line == 5 and "malformed CSV" in error.message


async def test_wrapped_names_become_one_line(store: Store, tmp_path: Path) -> None:
    text = 'provider_id,name,inn,service_kind\n7,"АО\n  Барнаульская   горэлектросеть",,\n'

    await import_csv(store, "providers", write(tmp_path, "p.csv", text))

    assert await rows(store, "SELECT name FROM providers") == [("АО Барнаульская горэлектросеть",)]


async def test_progress_goes_to_stderr(
    store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await import_csv(store, "providers", write(tmp_path, "p.csv", PROVIDERS), progress=True)

    captured = capsys.readouterr()
    assert "import providers" in captured.err and captured.out == ""


async def test_many_rows_in_several_batches(
    seeded: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(importer, "BATCH_ROWS", 100)
    lines = [
        f"100000000{1 + n % 2},{1 + n % 3},Услуга {n % 7},{2000 + n // 12}-{1 + n % 12:02d},{n}.01"
        for n in range(1000)
    ]
    text = "account,provider_id,service,period,amount\n" + "\n".join(lines)

    result = await import_csv(seeded, "charges", write(tmp_path, "c.csv", text))

    assert result == ImportResult(read=1000, inserted=1000, updated=0, skipped=0)
    assert await rows(seeded, "SELECT count(*), sum(amount) FROM charges") == [
        (1000, sum(n * 100 + 1 for n in range(1000)))
    ]


async def test_a_store_from_before_payment_ids_keeps_its_payments(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    first = (Path(importer.__file__).parent / "migrations" / "0001_init.sql").read_text("utf-8")
    with sqlite3.connect(path) as old:
        old.executescript(f"BEGIN;\n{first}\nPRAGMA user_version = 1;\nCOMMIT;")
        old.execute("INSERT INTO providers (id, name) VALUES (1, 'Водоканал')")
        old.execute("INSERT INTO accounts (number, receipt_code) VALUES ('1000000001', '1')")
        old.execute("INSERT INTO payments (account, provider_id, amount, paid_at, channel)"
                    " VALUES ('1000000001', 1, 50000, '2025-02-10', 'касса')")
    old.close()

    store = await Store.open(path, synchronous="OFF")
    try:
        assert await rows(store, "PRAGMA user_version") == [(2,)]
        assert await rows(store, "SELECT id, amount, reference FROM payments") == [(1, 50000, "")]
        again = await import_csv(store, "payments", write(
            tmp_path, "p.csv",
            "account,provider_id,amount,paid_at,channel\n1000000001,1,500,2025-02-10,касса\n"))
        assert again == ImportResult(read=1, inserted=0, updated=0, skipped=1)
        plan = await rows(store, "EXPLAIN QUERY PLAN SELECT amount FROM payments"
                                 " WHERE account = '1000000001' AND paid_at <= '2025-03-01'")
        assert "payments_by_account" in str(plan)
    finally:
        await store.close()


def test_the_result_reads_as_a_sentence() -> None:
    assert ImportResult(1000, 990, 10, 0).describe() == "1,000 rows read: 990 added, 10 updated"
    assert ImportResult(3, 1, 0, 2).describe() == "3 rows read: 1 added, 2 already recorded"
    assert ImportResult(0, 0, 0, 0).describe() == "0 rows read: 0 added"
