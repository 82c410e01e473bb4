"""Store.write (group commit on the event loop, COMMIT there or in a thread), Store.read, in_thread."""

from __future__ import annotations

import asyncio
import sqlite3
import threading

import pytest

from smsgate import security
from smsgate.config import Config
from smsgate.services import Services
from store import outbox, residents
from store.db import Store, in_thread, now


@pytest.fixture
def store(empty_store: Store) -> Store:
    return empty_store  # not conftest's demo store


def insert(db: sqlite3.Connection, key: str) -> int:
    return outbox.enqueue_sync(db, [outbox.NewOutgoing(key, "+79031234567", "t", 1)], now())[0]


def fail(db: sqlite3.Connection, key: str) -> int:
    insert(db, key)
    raise ValueError("refused")


async def keys(store: Store) -> list[str]:
    rows = await store.db.execute_fetchall("SELECT request_key FROM outbox ORDER BY id")
    return [row[0] for row in rows]


async def test_concurrent_writes_share_a_transaction_and_fail_alone(store: Store) -> None:
    results = await asyncio.gather(
        store.write(insert, "a"), store.write(fail, "b"), store.write(insert, "c"),
        return_exceptions=True,
    )
    assert isinstance(results[1], ValueError)
    assert results[0] != results[2] and all(isinstance(result, int) for result in results[::2])
    # "b" was rolled back to its savepoint; the others were committed.
    assert await keys(store) == ["a", "c"]


async def test_a_lone_write_that_raises_leaves_nothing(store: Store) -> None:
    with pytest.raises(ValueError):
        await store.write(fail, "x")
    assert await keys(store) == []
    await store.write(insert, "y")  # and the connection is usable afterwards
    assert await keys(store) == ["y"]


async def test_a_cancelled_writer_does_not_cut_the_group(store: Store) -> None:
    first = asyncio.create_task(store.write(insert, "a"))
    second = asyncio.create_task(store.write(insert, "b"))
    await asyncio.sleep(0)
    first.cancel()
    assert await second
    await store.write(insert, "c")
    assert (await keys(store))[-2:] == ["b", "c"]


async def test_writes_and_transactions_take_turns(store: Store) -> None:
    async def in_tx() -> None:
        async with store.tx() as db:
            await outbox.enqueue(db, [outbox.NewOutgoing("tx", "+79031234567", "t", 1)], now())
            await asyncio.sleep(0.01)

    await asyncio.gather(in_tx(), store.write(insert, "w1"), store.write(insert, "w2"))
    assert sorted(await keys(store)) == ["tx", "w1", "w2"]


async def test_read_sees_what_was_committed(store: Store) -> None:
    def count(db: sqlite3.Connection) -> int:
        return int(db.execute("SELECT count(*) FROM outbox").fetchone()[0])

    assert await store.read(count) == 0
    await store.write(insert, "a")
    assert await store.read(count) == 1


async def test_in_thread_runs_in_aiosqlites_thread(store: Store) -> None:
    # aiosqlite has no public call for this; a new version that drops _execute breaks it here.
    def thread_name(db: sqlite3.Connection) -> str:
        db.execute("SELECT 1")
        return threading.current_thread().name

    assert await in_thread(store.db, thread_name) != "MainThread"


async def test_commit_moves_to_a_thread_while_commits_are_slow(store: Store) -> None:
    """COMMIT runs on the loop while it is quick; a slow disk sends it to a thread, and back."""
    await store.write(insert, "first")  # opens the writer connection
    writer = store._writer
    assert writer is not None
    threads: list[str] = []
    writer.set_trace_callback(
        lambda sql: threads.append(threading.current_thread().name) if sql == "COMMIT" else None
    )

    await store.write(insert, "quick")
    assert threads == ["MainThread"]

    store._note_commit(0.05)  # a 50 ms fsync, as on network storage
    await store.write(insert, "after a slow one")
    assert threads[-1].startswith("sqlite-commit")

    for n in range(40):  # quick commits, measured in the thread, bring it back
        await store.write(insert, f"quick {n}")
    assert threads[-1] == "MainThread"
    assert len(await keys(store)) == 43


async def test_password_and_reminders_by_sms_write_in_the_group_commit(
    store: Store, config: Config
) -> None:
    """ПАРОЛЬ, СТОП and СТАРТ write through `Store.write`, not a transaction of their own: `tx()`
    holds the store's lock across its trips to aiosqlite's thread and its own fsync, and every
    text arriving meanwhile waited (15% of the time at 5% ПАРОЛЬ and 500 texts/s)."""
    phone = "+79031234567"
    async with store.tx() as db:
        await residents.create(db, phone, security.new_card_number())
    await store.write(insert, "opens the writer")
    through_aiosqlite: list[str] = []
    through_writer: list[str] = []
    await in_thread(store.db, lambda db: db.set_trace_callback(through_aiosqlite.append))
    assert store._writer is not None
    store._writer.set_trace_callback(through_writer.append)
    services = Services(store, config)

    issued = await services.new_password(phone)
    assert await services.set_reminders(phone, False)

    assert issued.password
    assert not [sql for sql in through_aiosqlite if sql.startswith(("BEGIN", "COMMIT", "INSERT", "UPDATE"))]
    assert [sql.split()[0] for sql in through_writer if sql.startswith(("INSERT", "UPDATE"))] == [
        "UPDATE", "INSERT", "UPDATE"
    ]
    resident = await residents.by_phone(store.db, phone)
    assert resident is not None and resident.must_change_password and not resident.reminders
    assert await security.verify_password(issued.password, resident.password_hash)


async def test_a_store_needs_a_file_of_its_own() -> None:
    # Its write and read connections open the path again: ":memory:" would be three databases.
    for path in (":memory:", "file:x.db?mode=memory"):
        with pytest.raises(ValueError, match="file of its own"):
            await Store.open(path)
