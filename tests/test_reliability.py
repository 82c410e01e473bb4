"""Nothing lost, nothing twice: throttling, dropped links, receipts in every format, odd inbound."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from handlers.balance import format_debts
from smsgate import smpp, texts
from smsgate.gateway import results
from store import outbox
from tests.harness import Harness

PHONES = [f"+7903{n:07d}" for n in range(1, 21)]


async def eventually(check: Callable[[], Awaitable[bool]], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def outbox_states(gate: Harness) -> dict[str, int]:
    async with gate.store.db.execute("SELECT state, count(*) FROM outbox GROUP BY state") as cursor:
        return {state: count for state, count in await cursor.fetchall()}


@pytest.fixture
async def flaky(tmp_path: Path) -> AsyncIterator[Harness]:
    """An SMSC that drops the link after every 100 submits and throttles every 10th."""
    harness = Harness(tmp_path, simulator_options={"drop_after": 100, "throttle_every": 10})
    await harness.start()
    try:
        yield harness
    finally:
        await harness.close()


async def test_drops_and_throttling_lose_nothing_and_keep_order(flaky: Harness) -> None:
    # Each phone sends numbered texts; every reply is the help text, so order is checked through
    # the inbox ids the replies were queued for.
    for round_number in range(15):
        await asyncio.gather(*(
            flaky.simulator.send_mo(phone, f"вопрос {round_number}", timeout=30) for phone in PHONES
        ))
    total = 15 * len(PHONES)
    await flaky.simulator.wait_sent(None, total, timeout=60)
    assert flaky.simulator.drops >= 2 and flaky.simulator.throttled >= 20
    await eventually(lambda: _all_submitted(flaky, total), 30)
    assert len(flaky.simulator.sent) == total  # once each: no part sent twice after a drop
    async with flaky.store.db.execute("SELECT smsc_id, outbox_id FROM outbox_parts") as cursor:
        outbox_of = {smsc_id: outbox_id for smsc_id, outbox_id in await cursor.fetchall()}
    async with flaky.store.db.execute(
        "SELECT o.id, i.id FROM outbox o JOIN inbox i ON o.request_key = 'in:' || i.id || ':0'"
    ) as cursor:
        inbox_of = dict(await cursor.fetchall())
    # Per phone, replies reached the SMSC in the order the residents' texts came in.
    by_phone: dict[str, list[int]] = {}
    for sent in flaky.simulator.sent:
        by_phone.setdefault(sent.phone, []).append(inbox_of[outbox_of[sent.message_ids[0]]])
    assert set(by_phone) == set(PHONES)
    for order in by_phone.values():
        assert len(order) == 15 and order == sorted(order)


async def _all_submitted(gate: Harness, total: int) -> bool:
    states = await outbox_states(gate)
    return states.get("queued", 0) == 0 and sum(states.values()) == total


@pytest.mark.parametrize(
    ("receipt_format", "message_id_format"),
    [("text", "hex"), ("text", "decimal"), ("decimal", "hex"), ("tlv", "hex"), ("text12", "decimal")],
)
async def test_receipts_in_every_format_are_matched(
    tmp_path: Path, receipt_format: str, message_id_format: str
) -> None:
    gate = Harness(tmp_path, simulator_options={
        "receipt_format": receipt_format, "message_id_format": message_id_format,
    })
    await gate.start()
    try:
        await gate.sms(PHONES[0], "Помощь")
        await gate.sms(PHONES[0], "я" * 200)  # help again
        await gate.sms(PHONES[1], "рег")  # one part
        await eventually(lambda: _states_are(gate, {"delivered": 3}))
        async with gate.store.db.execute(
            "SELECT count(*) FROM receipts WHERE outbox_id IS NULL"
        ) as cursor:
            assert (await cursor.fetchone())[0] == 0
    finally:
        await gate.close()


async def _states_are(gate: Harness, expected: dict[str, int]) -> bool:
    return await outbox_states(gate) == expected


async def test_a_receipt_right_behind_its_submit_resp_is_matched_when_stored(tmp_path: Path) -> None:
    """The simulator sends each part's receipt the moment it answers the part, so the gateway
    often reads both in one read: the receipt's transaction must already hold that part (else
    it waits as an orphan and is matched a second time, a query and an UPDATE more)."""
    gate = Harness(tmp_path)
    await gate.start()
    try:
        account = gate.demo[0]
        await gate.sms(PHONES[0], f"рег {account.number} {account.receipt_code}")
        for _ in range(4):
            await gate.sms(PHONES[0], "баланс")  # several parts each
        parts = sum(sent.parts for sent in gate.simulator.sent_to(PHONES[0]))
        assert parts >= 9
        await eventually(lambda: _states_are(gate, {"delivered": 5}))
        assert gate.gateway is not None
        assert gate.gateway.counters.receipts == parts
        assert gate.gateway.counters.receipts_waited == 0
    finally:
        await gate.close()


async def test_multi_part_reply_is_delivered_when_every_part_is(tmp_path: Path) -> None:
    gate = Harness(tmp_path, simulator_options={"receipt_format": "tlv"})
    await gate.start()
    try:
        account = gate.demo[0]
        await gate.sms(PHONES[0], f"рег {account.number} {account.receipt_code}")
        await gate.sms(PHONES[0], "баланс")
        assert gate.simulator.sent_to(PHONES[0])[-1].parts > 1
        await eventually(lambda: _states_are(gate, {"delivered": 2}))
        async with gate.store.db.execute(
            "SELECT count(*) FROM outbox_parts WHERE state = 'delivered'"
        ) as cursor:
            assert (await cursor.fetchone())[0] == 1 + gate.simulator.sent_to(PHONES[0])[-1].parts
    finally:
        await gate.close()


async def test_a_long_reply_goes_whole_in_message_payload_where_configured(tmp_path: Path) -> None:
    gate = Harness(tmp_path, smsc={"long_text": "payload"})
    await gate.start()
    try:
        account = gate.demo[0]
        await gate.sms(PHONES[0], f"рег {account.number} {account.receipt_code}")
        [balance] = await gate.sms(PHONES[0], "баланс")
        short, whole = gate.simulator.sent_to(PHONES[0])
        assert smpp.TAG_MESSAGE_PAYLOAD not in short.tlvs and short.parts == 1  # one SMS: as ever
        # One submit_sm for the whole reply, the SMSC splits it: one id, one receipt.
        assert whole.tlvs[smpp.TAG_MESSAGE_PAYLOAD] == balance.encode("utf-16-be")
        assert len(whole.message_ids) == 1 and whole.parts == smpp.count_parts(balance) > 1
        assert gate.simulator.submits == 2
        assert gate.gateway is not None and gate.gateway.long_text == "payload"
        assert balance.startswith("Долг на ") and account.number in balance
        await eventually(lambda: _states_are(gate, {"delivered": 2}))
        async with gate.store.db.execute(
            "SELECT o.parts, p.part_no, p.state FROM outbox AS o JOIN outbox_parts AS p"
            " ON p.outbox_id = o.id WHERE o.text = ?", (balance,)
        ) as cursor:
            assert [tuple(row) for row in await cursor.fetchall()] == [
                (whole.parts, outbox.WHOLE, "delivered")
            ]
    finally:
        await gate.close()


async def test_an_smsc_that_refuses_message_payload_gets_parts_from_then_on(tmp_path: Path) -> None:
    gate = Harness(tmp_path, smsc={"long_text": "payload"},
                   simulator_options={"message_payload": False})
    await gate.start()
    try:
        account = gate.demo[0]
        await gate.sms(PHONES[0], f"рег {account.number} {account.receipt_code}")
        first = await gate.sms(PHONES[0], "баланс")
        assert await gate.sms(PHONES[0], "долг") == first  # answered, not failed
        for sent in gate.simulator.sent_to(PHONES[0])[1:]:
            assert smpp.TAG_MESSAGE_PAYLOAD not in sent.tlvs
            assert sent.parts == len(sent.message_ids) == smpp.count_parts(first[0]) > 1
        assert gate.simulator.payload_refused == 1  # tried once, then parts every time
        assert gate.gateway is not None and gate.gateway.long_text.startswith("udh (the SMSC refused")
        await eventually(lambda: _states_are(gate, {"delivered": 3}))
    finally:
        await gate.close()


async def test_a_reply_accepted_whole_before_a_crash_is_not_sent_again(tmp_path: Path) -> None:
    gate = Harness(tmp_path, smsc={"long_text": "payload"})
    await gate.start()
    try:
        await gate.stop_gateway()
        # As a crash leaves it: the SMSC's answer recorded, the message not yet marked submitted.
        text = "Долг на 02.12.2026: " + "долг " * 20
        [(outbox_id, _row)] = await gate.store.write(
            outbox.enqueue_rows_sync,
            [outbox.NewOutgoing("whole", PHONES[1], text, smpp.count_parts(text))], time.time(),
        )
        await gate.store.write(outbox.record_submitted_sync, [
            outbox.PartResult(outbox_id, outbox.WHOLE, "A1", ("s:a1",), time.time())
        ], [])
        await gate.start_gateway()
        await eventually(lambda: _states_are(gate, {"submitted": 1}))
        await asyncio.sleep(0.3)
        assert gate.simulator.sent_to(PHONES[1]) == [] and gate.simulator.submits == 0
    finally:
        await gate.close()


async def test_garbage_receipts_are_kept_and_never_fatal(tmp_path: Path) -> None:
    gate = Harness(tmp_path, simulator_options={"receipt_format": "garbage"})
    await gate.start()
    try:
        binds = gate.simulator.binds
        await gate.sms(PHONES[0], "Помощь")
        await gate.sms(PHONES[0], "Помощь")

        async def kept() -> bool:
            async with gate.store.db.execute(
                "SELECT count(*) FROM receipts WHERE outbox_id IS NULL"
            ) as cursor:
                return int((await cursor.fetchone())[0]) == 2

        await eventually(kept)
        assert await gate.sms(PHONES[0], "Помощь") == [texts.HELP]
        assert gate.simulator.binds == binds
        await eventually(lambda: _states_are(gate, {"submitted": 3}))
    finally:
        await gate.close()


async def test_inbound_udh_with_16_bit_reference_is_reassembled(tmp_path: Path) -> None:
    gate = await Harness(tmp_path).start()
    try:
        account = gate.demo[0]
        text = f"РЕГ {account.number} {account.receipt_code}" + " " * 70  # two UCS-2 parts
        assert len(smpp.split_text(text, reference=0x1234)) == 2
        start = len(gate.simulator.sent_to(PHONES[0]))
        statuses = await gate.simulator.send_mo(PHONES[0], text, udh_reference=0x1234)
        assert statuses == [0, 0]
        [reply] = await gate.simulator.wait_sent(PHONES[0], start + 1)
        assert reply.text.startswith(f"Счёт {account.number} подключён.")
    finally:
        await gate.close()


async def test_unknown_data_coding_is_read_not_lost(tmp_path: Path) -> None:
    gate = await Harness(tmp_path).start()
    try:
        statuses = await gate.simulator.send_mo(PHONES[0], payload=b"BALANCE", data_coding=0xF3)
        assert statuses == [0]
        [reply] = await gate.simulator.wait_sent(PHONES[0], 1)
        assert reply.text == texts.NOT_REGISTERED  # understood as BALANCE from an unknown phone
    finally:
        await gate.close()


async def test_a_reply_the_smsc_accepted_no_longer_holds_texts_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Backpressure counts replies queued and not yet settled by the SMSC (`unsent_replies`): past
    # the window, texts wait. A reply the SMSC has accepted is out of the sender's way at once,
    # not only once its SMSC id is committed (results wait to ride along with other commits).
    monkeypatch.setattr(results, "RESULTS_DELAY", 5.0)
    gate = await Harness(tmp_path, simulator_options={"receipts": False}).start()
    try:
        assert await gate.sms(PHONES[0], "Помощь") == [texts.HELP]
        assert gate.gateway is not None
        await eventually(lambda: _true(not gate.gateway.parts.flow.unsent_replies), 2.0)  # type: ignore[union-attr]
        assert await outbox_states(gate) == {"queued": 1}  # its result is not written yet
    finally:
        await gate.close()


async def _true(value: bool) -> bool:
    return value


async def test_the_same_text_again_in_the_next_group_commit_is_answered_again(tmp_path: Path) -> None:
    # A resident sends ПОМОЩЬ twice; the second comes while the first is still being stored, so
    # the two are in two batches in the store at once, committed one right after the other. The
    # first is answered (deliver_sm_resp) before the second is looked at: the second is the
    # resident's next text, not the SMSC delivering the first again.
    gate = await Harness(tmp_path).start()
    other = sqlite3.connect(gate.config.resolve(gate.config.store.path), isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # the first batch waits for the write lock
        first = asyncio.create_task(gate.simulator.send_mo(PHONES[0], "Помощь"))
        await asyncio.sleep(0.3)
        second = asyncio.create_task(gate.simulator.send_mo(PHONES[0], "Помощь"))
        await asyncio.sleep(0.3)
        assert not first.done() and not second.done()
        other.execute("ROLLBACK")
        assert await asyncio.wait_for(first, 10.0) == [0]
        assert await asyncio.wait_for(second, 10.0) == [0]
        replies = await gate.simulator.wait_sent(PHONES[0], 2)
        assert [reply.text for reply in replies] == [texts.HELP, texts.HELP]
        assert gate.gateway is not None
        assert gate.gateway.counters.received == 2 and gate.gateway.counters.redelivered == 0
    finally:
        other.close()
        await gate.close()


async def test_texts_wait_out_an_import_holding_the_write_lock(tmp_path: Path) -> None:
    # `smsgate import` writes a whole file in one transaction: 1,000,000 charge rows hold the
    # store's write lock for 7-9 s here. Texts meanwhile are stored once it is done, not refused.
    gate = await Harness(tmp_path).start()
    importer = sqlite3.connect(gate.config.resolve(gate.config.store.path), isolation_level=None)
    try:
        importer.execute("BEGIN IMMEDIATE")
        answered = asyncio.create_task(gate.sms(PHONES[0], "Помощь", timeout=30.0))
        await asyncio.sleep(6.0)
        assert not answered.done()
        importer.execute("ROLLBACK")
        assert await asyncio.wait_for(answered, 20.0) == [texts.HELP]
        assert gate.gateway is not None and gate.gateway.counters.received == 1
    finally:
        importer.close()
        await gate.close()


async def test_big_batches_read_their_balance_in_the_reader_process(tmp_path: Path) -> None:
    # Every batch counts as big here, so each БАЛАНС goes through the child process.
    gate = Harness(tmp_path, store={"reader_min_batch": 1})
    await gate.start()
    try:
        assert gate.gateway is not None and gate.gateway.reader is not None
        reader = gate.gateway.reader
        assert await gate.sms(PHONES[0], "баланс") == [texts.NOT_REGISTERED]  # the same answer
        assert reader.answered == 1
        account = gate.demo[0]
        await gate.sms(PHONES[0], f"рег {account.number} {account.receipt_code}")
        [balance] = await gate.sms(PHONES[0], "Баланс")
        assert reader.answered == 2
        expected = await gate.gateway.services.debts_of_phone(PHONES[0])
        assert expected is not None and balance == format_debts(expected)
        await eventually(lambda: _states_are(gate, {"delivered": 3}))
    finally:
        await gate.close()


async def test_a_reader_process_that_dies_costs_no_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = Harness(tmp_path, store={"reader_min_batch": 1})
    await gate.start()
    try:
        assert gate.gateway is not None and gate.gateway.reader is not None
        reader = gate.gateway.reader
        account = gate.demo[0]
        await gate.sms(PHONES[0], f"рег {account.number} {account.receipt_code}")
        [first] = await gate.sms(PHONES[0], "баланс")
        assert reader.answered == 1 and reader.pid is not None
        killed = reader.pid
        os.kill(killed, signal.SIGKILL)

        async def noticed() -> bool:  # while idle: no batch was waiting for it
            return reader.failures == 1 and reader.pid is None

        await eventually(noticed)
        # Answered on the loop while the child is down (RESTART_SECONDS), then by a new child.
        assert await gate.sms(PHONES[0], "долг") == [first]
        assert reader.answered == 1
        monkeypatch.setattr(reader, "_down_until", 0.0)  # the pause is over
        assert await gate.sms(PHONES[0], "баланс") == [first]
        assert reader.answered == 2 and reader.pid not in (None, killed)
    finally:
        await gate.close()


async def test_a_batch_waiting_for_the_reader_keeps_its_place_in_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = Harness(tmp_path, store={"reader_min_batch": 1})
    await gate.start()
    try:
        assert gate.gateway is not None and gate.gateway.reader is not None
        reader = gate.gateway.reader
        account = gate.demo[0]
        await gate.sms(PHONES[0], f"рег {account.number} {account.receipt_code}")
        answer = reader.replies

        async def slow(phones: list[str]) -> list[list[str]] | None:
            await asyncio.sleep(0.3)  # a busy child: the next batch comes meanwhile
            return await answer(phones)

        monkeypatch.setattr(reader, "replies", slow)
        first = asyncio.create_task(gate.simulator.send_mo(PHONES[0], "баланс"))
        await asyncio.sleep(0.1)
        second = asyncio.create_task(gate.simulator.send_mo(PHONES[0], "пароль"))
        assert await first == [0] and await second == [0]
        sent = await gate.simulator.wait_sent(PHONES[0], 3)
        # Answered in the order they were sent: БАЛАНС (through the reader), then ПАРОЛЬ.
        assert sent[1].text.startswith("Долг на ") and sent[2].text.startswith("Ваш новый пароль")
        assert reader.answered == 1
        async with gate.store.db.execute(
            "SELECT text FROM inbox WHERE phone = ? ORDER BY id", (PHONES[0],)
        ) as cursor:
            assert [row[0] for row in await cursor.fetchall()][1:] == ["баланс", "пароль"]
    finally:
        await gate.close()
