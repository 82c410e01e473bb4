"""Inbox, outbox and receipts in batches: redeliveries, duplicate request keys, receipts for many parts."""

from __future__ import annotations

import sqlite3

import pytest

from smsgate import smpp
from store import inbox, keys, outbox, receipts
from store.db import Store, now

PHONE = "+79031234567"


@pytest.fixture
def store(empty_store: Store) -> Store:
    return empty_store  # not conftest's demo store


def text(body: str, phone: str = PHONE) -> inbox.NewInbound:
    return inbox.NewInbound(phone, body, 8, None, "sms", now())


async def store_texts(
    store: Store, items: list[inbox.NewInbound], repeated: list[int] | None = None
) -> list[int | None]:
    return await store.write(inbox.store_inbound_sync, items, now() - 3600, repeated)


async def test_a_batch_gets_ids_in_order_and_a_repeat_within_it_is_a_redelivery(store: Store) -> None:
    ids = await store_texts(store, [text("Баланс"), text("Помощь"), text("Баланс"),
                                    text("Баланс", "+79031234568")])
    assert ids[0] is not None and ids[1] == ids[0] + 1 and ids[2] is None and ids[3] == ids[0] + 2


async def test_only_the_first_repeat_of_an_unacknowledged_text_is_its_redelivery(store: Store) -> None:
    [first] = await store_texts(store, [text("Баланс")])  # stored, never acknowledged (a crash)
    repeated: list[int] = []
    assert await store_texts(store, [text("Баланс")], repeated) == [None]
    assert repeated == [first]
    await store.write(inbox.mark_acked_sync, repeated)  # answered with the redelivery
    # The resident asks again later: a new request, answered.
    [again] = await store_texts(store, [text("Баланс")])
    assert again is not None and again != first


async def test_a_repeat_marks_the_stored_text_acknowledged_when_nobody_collects_it(store: Store) -> None:
    async with store.tx() as db:
        [first] = await inbox.store_inbound(db, [text("Баланс")], now() - 3600)
        assert await inbox.store_inbound(db, [text("Баланс")], now() - 3600) == [None]
    rows = await store.db.execute_fetchall("SELECT acked FROM inbox WHERE id = ?", (first,))
    assert [row[0] for row in rows] == [1]


async def test_enqueue_skips_request_keys_already_queued_and_keeps_order(store: Store) -> None:
    def row(key: str) -> outbox.NewOutgoing:
        return outbox.NewOutgoing(key, PHONE, key, 1)

    first = await store.write(outbox.enqueue_rows_sync, [row("k1"), row("k2")], now())
    again = await store.write(outbox.enqueue_rows_sync, [row("k3"), row("k1"), row("k4"),
                                                           row("k3")], now())
    assert [item.request_key for _id, item in first] == ["k1", "k2"]
    assert [item.request_key for _id, item in again] == ["k3", "k4"]
    assert [outbox_id for outbox_id, _item in again] == [first[1][0] + 1, first[1][0] + 2]


async def test_receipts_in_one_batch_settle_a_message_once_every_part_is_final(store: Store) -> None:
    [(outbox_id, _item)] = await store.write(
        outbox.enqueue_rows_sync, [outbox.NewOutgoing("m", PHONE, "long", 2)], now()
    )
    parts = [outbox.PartResult(outbox_id, number, smsc_id,
                                 tuple(sorted({f"s:{smsc_id.lower()}"})), now())
             for number, smsc_id in ((1, "A1"), (2, "A2"))]
    await store.write(outbox.record_submitted_sync, parts, [(outbox_id, now())])
    receipt_ids = await store.write(receipts.store_receipts_sync, [
        receipts.NewReceipt(smsc_id, "DELIVRD", "000", "") for smsc_id in ("A1", "A2", "ZZ")
    ], now())
    matched = await store.write(receipts.match_receipts_sync, [
        receipts.ReceiptMatch(receipt_id, (key,), "DELIVRD", "000", now())
        for receipt_id, key in zip(receipt_ids, ("s:a1", "s:a2", "s:zz"), strict=True)
    ])
    assert matched == [outbox_id, outbox_id, None]
    rows = await store.db.execute_fetchall("SELECT state FROM outbox WHERE id = ?", (outbox_id,))
    assert [row[0] for row in rows] == ["delivered"]


async def test_parts_stored_under_one_key_or_under_every_reading_are_both_matched(store: Store) -> None:
    """A part stored under every reading of its id, and one stored under one key: a receipt finds
    either, in whichever radix the SMSC writes it."""
    queued = await store.write(outbox.enqueue_rows_sync, [
        outbox.NewOutgoing("readings", PHONE, "short", 1), outbox.NewOutgoing("one-key", PHONE, "short", 1),
    ], now())
    (readings_id, _), (one_key_id, _) = queued
    one_key = keys.message_id_key("1F4A")
    assert one_key is not None
    await store.write(outbox.record_submitted_sync, [
        outbox.PartResult(readings_id, 1, "0A1F", tuple(sorted(keys.normalise_message_id("0A1F"))), now()),
        outbox.PartResult(one_key_id, 1, "1F4A", (one_key,), now()),
    ], [(readings_id, now()), (one_key_id, now())])
    rows = await store.db.execute_fetchall(
        "SELECT count(*) FROM part_keys WHERE outbox_id = ?", (one_key_id,)
    )
    assert rows[0][0] == 1
    matched = await store.write(receipts.match_receipts_sync, [
        receipts.ReceiptMatch(0, frozenset(keys.receipt_keys(smsc_id)), "DELIVRD", "000", now())
        for smsc_id in ("2591", "8010", "8011")  # 0x0A1F and 0x1F4A in decimal, and a stranger
    ], link=False)
    assert matched == [readings_id, one_key_id, None]


async def test_receipts_matched_before_they_are_stored_keep_their_message(store: Store) -> None:
    """The gateway's order: match (link=False), then store each receipt with its message."""
    [(outbox_id, _item)] = await store.write(
        outbox.enqueue_rows_sync, [outbox.NewOutgoing("m", PHONE, "short", 1)], now()
    )
    await store.write(outbox.record_submitted_sync,
                      [outbox.PartResult(outbox_id, 1, "B7", ("s:b7",), now())], [(outbox_id, now())])
    new = [receipts.NewReceipt(smsc_id, "DELIVRD", "000", "") for smsc_id in ("B7", "nothing")]

    def write(db: sqlite3.Connection) -> tuple[list[int | None], list[int]]:
        matched = receipts.match_receipts_sync(db, [
            receipts.ReceiptMatch(0, (key,), "DELIVRD", "000", now()) for key in ("s:b7", "s:nothing")
        ], link=False)
        return matched, receipts.store_receipts_sync(db, new, now(), matched)

    matched, receipt_ids = await store.write(write)
    assert matched == [outbox_id, None]
    rows = await store.db.execute_fetchall(
        "SELECT id, outbox_id FROM receipts ORDER BY id")
    assert [tuple(row) for row in rows] == [(receipt_ids[0], outbox_id), (receipt_ids[1], None)]
    state = await store.db.execute_fetchall("SELECT state FROM outbox WHERE id = ?", (outbox_id,))
    assert [row[0] for row in state] == ["delivered"]


async def test_in_lists_longer_than_one_statement_are_read_whole(store: Store) -> None:
    rows = [outbox.NewOutgoing(f"k{n}", PHONE, "t", 1) for n in range(1200)]
    queued = await store.write(outbox.enqueue_rows_sync, rows, now())
    found = await outbox.get_outgoing(store.db, [outbox_id for outbox_id, _item in queued])
    assert len(found) == 1200


def test_a_message_sent_whole_is_stored_under_the_number_its_submit_has() -> None:
    assert outbox.WHOLE == smpp.WHOLE
