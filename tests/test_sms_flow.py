"""Residents' conversations over real TCP: simulator -> gateway -> store -> replies back.

Scripts read like the service's transcript: `phone > text` and the replies that come back.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Awaitable, Callable

import pytest

from handlers.balance import format_debts
from smsgate import security, smpp, texts
from store import residents
from tests.harness import Harness

RESIDENT = "+79031234567"
OTHER = "+79161112233"


async def register(gate: Harness, phone: str = RESIDENT) -> str:
    account = gate.demo[0]
    [reply] = await gate.sms(phone, f"РЕГ {account.number} {account.receipt_code}")
    assert reply.startswith(f"Счёт {account.number} подключён. Пароль: ")
    return reply.split("Пароль: ")[1].split(",")[0]


async def test_help_in_russian_and_english(gate: Harness) -> None:
    assert await gate.sms(RESIDENT, "Помощь") == [texts.HELP]
    assert await gate.sms(RESIDENT, "HELP") == [texts.HELP]
    assert await gate.sms(RESIDENT, "?") == [texts.HELP]
    assert await gate.sms(RESIDENT, "что-то непонятное") == [texts.HELP]


async def test_unregistered_phone_is_told_how_to_register(gate: Harness) -> None:
    assert await gate.sms(RESIDENT, "Баланс") == [texts.NOT_REGISTERED]
    assert await gate.sms(RESIDENT, "PASSWORD") == [texts.NOT_REGISTERED]
    assert await gate.sms(RESIDENT, "Стоп") == [texts.NOT_REGISTERED]


async def test_register_then_balance_then_password(gate: Harness) -> None:
    password = await register(gate)
    resident = await residents.by_phone(gate.store.db, RESIDENT)
    assert resident is not None and resident.must_change_password
    assert await security.verify_password(password, resident.password_hash)
    assert security.is_card_number(resident.card_number)

    [balance] = await gate.sms(RESIDENT, "Баланс")
    assert gate.simulator.sent_to(RESIDENT)[-1].parts > 1  # a long reply, concatenated
    assert gate.gateway is not None
    expected = await gate.gateway.services.debts_of_phone(RESIDENT)
    assert expected is not None
    assert balance == format_debts(expected)
    assert balance.startswith("Долг на ") and "Итого к оплате:" in balance
    async with gate.store.db.execute(
        "SELECT p.name, sum(x.amount) FROM (SELECT provider_id, amount FROM charges WHERE account = ?"
        " UNION ALL SELECT provider_id, -amount FROM payments WHERE account = ?) x"
        " JOIN providers p ON p.id = x.provider_id GROUP BY p.name",
        (gate.demo[0].number, gate.demo[0].number),
    ) as cursor:
        owed = {name: int(total) for name, total in await cursor.fetchall()}
    assert any(total > 0 for total in owed.values())
    for name, total in owed.items():
        assert (f"{name}: {texts.money(total)}" in balance) == (total > 0), name

    assert await gate.sms(RESIDENT, "dolg") == [balance]
    [reply] = await gate.sms(RESIDENT, "Пaроль")  # a Latin "a" typed into the Cyrillic word
    new_password = reply.removeprefix("Ваш новый пароль: ").split(".")[0]
    assert new_password != password and len(new_password) >= 10
    resident = await residents.by_phone(gate.store.db, RESIDENT)
    assert resident is not None
    assert await security.verify_password(new_password, resident.password_hash)
    assert not await security.verify_password(password, resident.password_hash)


async def test_overpayment_is_shown_as_advance(gate: Harness) -> None:
    account = gate.demo[1]
    await gate.sms(OTHER, f"REG {account.number} {account.receipt_code}")
    [balance] = await gate.sms(OTHER, "BALANCE")
    assert "аванс" in balance


async def test_account_number_written_with_spaces_dashes_and_number_sign(gate: Harness) -> None:
    account = gate.demo[2]
    spaced = f"№ {account.number[:3]}-{account.number[3:6]} {account.number[6:]}"
    [reply] = await gate.sms(RESIDENT, f"рег {spaced} {account.receipt_code}")
    assert reply.startswith(f"Счёт {account.number} подключён.")
    assert await gate.sms(RESIDENT, f"рег {account.number} {account.receipt_code}") == [
        texts.REGISTER_ALREADY.format(account=account.number)
    ]


async def test_second_account_links_without_new_password(gate: Harness) -> None:
    await register(gate)
    second = gate.demo[1]
    assert await gate.sms(RESIDENT, f"РЕГ {second.number} {second.receipt_code}") == [
        texts.REGISTER_LINKED.format(account=second.number)
    ]
    [balance] = await gate.sms(RESIDENT, "Баланс")
    assert gate.demo[0].number in balance and second.number in balance


async def test_wrong_receipt_code_six_times_locks_the_phone(gate: Harness) -> None:
    account = gate.demo[0]
    for _ in range(5):
        assert await gate.sms(RESIDENT, f"РЕГ {account.number} 000000") == [texts.REGISTER_BAD]
    # The sixth try is refused even with the right code: locked for an hour.
    assert await gate.sms(RESIDENT, f"РЕГ {account.number} {account.receipt_code}") == [
        texts.REGISTER_LOCKED
    ]
    assert await residents.by_phone(gate.store.db, RESIDENT) is None


async def test_unknown_account_gets_the_same_answer_as_a_wrong_code(gate: Harness) -> None:
    assert await gate.sms(RESIDENT, "РЕГ 9999999999 123456") == [texts.REGISTER_BAD]
    assert await gate.sms(RESIDENT, "РЕГ abc 123456") == [texts.REGISTER_BAD]
    assert await gate.sms(RESIDENT, "РЕГ") == [texts.HELP_REGISTER]
    assert await gate.sms(RESIDENT, "РЕГ 123") == [texts.HELP_REGISTER]


async def test_password_limit_refuses_once_then_stays_silent(gate: Harness) -> None:
    await register(gate)
    for _ in range(3):
        [reply] = await gate.sms(RESIDENT, "Пароль")
        assert reply.startswith("Ваш новый пароль: ")
    assert await gate.sms(RESIDENT, "Пароль") == [texts.PASSWORD_LIMIT]
    assert await gate.sms(RESIDENT, "Пароль", replies=0) == []
    # Other commands still answer.
    assert await gate.sms(RESIDENT, "Помощь") == [texts.HELP]


async def test_stop_and_start_reminders(gate: Harness) -> None:
    await register(gate)
    assert await gate.sms(RESIDENT, "СТОП") == [texts.STOPPED]
    resident = await residents.by_phone(gate.store.db, RESIDENT)
    assert resident is not None and not resident.reminders
    assert await gate.sms(RESIDENT, "start") == [texts.STARTED]
    resident = await residents.by_phone(gate.store.db, RESIDENT)
    assert resident is not None and resident.reminders


async def test_bad_input_gets_clear_replies_and_the_link_stays_up(gate: Harness) -> None:
    binds = gate.simulator.binds
    assert await gate.sms(RESIDENT, "") == [texts.HELP]
    assert await gate.sms(RESIDENT, "я" * 1000) == [texts.HELP]  # a 15-part text, reassembled
    assert await gate.sms(RESIDENT, "🙂🙂🙂 Баланс") == [texts.HELP]
    assert await gate.sms(RESIDENT, "Баланс 🙂") == [texts.NOT_REGISTERED]
    start = len(gate.simulator.sent_to(RESIDENT))
    await gate.simulator.send_mo(RESIDENT, payload=b"\x00\xff\x13\x37", data_coding=0x04)
    await gate.simulator.send_mo(RESIDENT, payload=b"HELP", data_coding=0x0F)
    replies = await gate.simulator.wait_sent(RESIDENT, start + 2)
    assert [m.text for m in replies[start:]] == [texts.UNREADABLE, texts.HELP]
    async with gate.store.db.execute(
        "SELECT raw, data_coding FROM inbox WHERE raw IS NOT NULL"
    ) as cursor:
        assert [tuple(row) for row in await cursor.fetchall()] == [(b"\x00\xff\x13\x37", -1)]
    assert gate.simulator.binds == binds


async def test_malformed_deliver_sm_is_kept_and_the_session_survives(gate: Harness) -> None:
    # A deliver_sm whose short_message runs past its end: acknowledged, kept raw, nothing crashes.
    body = b"\x00\x01\x0179031234567\x00\x03\x007377\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x50ab"
    raw = struct.pack("!IIII", 16 + len(body), smpp.DELIVER_SM, 0, 0) + body
    statuses = await gate.simulator.send_mo(RESIDENT, payload=b"x", data_coding=0)  # warm-up
    assert statuses == [0]
    session = next(iter(gate.simulator._receivers))
    _sequence, future = session.request(raw)
    assert await future == 0
    async with gate.store.db.execute("SELECT raw FROM inbox WHERE phone = ''") as cursor:
        assert [row[0][16:] for row in await cursor.fetchall()] == [body]
    assert await gate.sms(RESIDENT, "Помощь") == [texts.HELP]


async def test_restart_keeps_the_store(gate: Harness) -> None:
    password = await register(gate)
    await gate.restart()
    [balance] = await gate.sms(RESIDENT, "Баланс")
    assert gate.demo[0].number in balance
    resident = await residents.by_phone(gate.store.db, RESIDENT)
    assert resident is not None and await security.verify_password(password, resident.password_hash)


async def test_replies_come_from_the_service_number_in_ucs2(gate: Harness) -> None:
    await gate.sms(RESIDENT, "Помощь")
    sent = gate.simulator.sent_to(RESIDENT)[-1]
    assert sent.source == "7377"
    assert sent.data_coding == 8
    for _ in range(100):  # the gateway records the receipt a moment after the simulator sent it
        async with gate.store.db.execute("SELECT state, parts FROM outbox") as cursor:
            rows = [tuple(row) for row in await cursor.fetchall()]
        if rows == [("delivered", 1)]:
            break
        await asyncio.sleep(0.05)
    assert rows == [("delivered", 1)]
    async with gate.store.db.execute("SELECT count(*) FROM receipts WHERE outbox_id IS NULL") as cursor:
        assert (await cursor.fetchone())[0] == 0



async def test_balance_and_help_are_answered_in_the_transaction_that_stores_them(gate: Harness) -> None:
    await register(gate)
    [balance] = await gate.sms(RESIDENT, "Баланс")
    assert balance.startswith("Долг на ")
    assert await gate.sms(RESIDENT, "Помощь") == [texts.HELP]
    [password] = await gate.sms(RESIDENT, "Пароль")
    assert password.startswith("Ваш новый пароль: ")
    async with gate.store.db.execute(
        "SELECT i.text, i.state, i.handler, i.received_at, o.created_at FROM inbox i"
        " JOIN outbox o ON o.request_key = 'in:' || i.id || ':0' WHERE i.phone = ? ORDER BY i.id",
        (RESIDENT,),
    ) as cursor:
        rows = {text: (state, handler, received, created)
                for text, state, handler, received, created in await cursor.fetchall()}
    # Written by the same transaction as its text: the reply row bears the text's own timestamp.
    assert rows["Баланс"] == ("done", "balance", rows["Баланс"][2], rows["Баланс"][2])
    assert rows["Помощь"] == ("done", "help", rows["Помощь"][2], rows["Помощь"][2])
    # ПАРОЛЬ hashes a password: routed by the processor after its text was committed.
    state, handler, received, created = rows["Пароль"]
    assert (state, handler) == ("done", "password") and created > received


async def test_a_quick_answer_waits_for_the_earlier_text_of_its_phone(gate: Harness) -> None:
    await register(gate)
    start = len(gate.simulator.sent_to(RESIDENT))
    # ПАРОЛЬ takes a hash of tens of milliseconds; БАЛАНС and ПОМОЩЬ could be answered at once,
    # but their replies must not overtake the password's.
    for text in ("Пароль", "Баланс", "Помощь"):
        assert await gate.simulator.send_mo(RESIDENT, text) == [0]
    sent = await gate.simulator.wait_sent(RESIDENT, start + 3)
    replies = [message.text for message in sent[start:]]
    assert replies[0].startswith("Ваш новый пароль: ")
    assert replies[1].startswith("Долг на ") and replies[2] == texts.HELP
    assert gate.gateway is not None and gate.gateway.parts.flow.held == {}


async def test_the_same_text_again_right_after_its_reply_is_answered_again(
    make_gate: Callable[..., Awaitable[Harness]],
) -> None:
    # A text's acknowledgement is recorded in the next transaction; a text the same as it must
    # not be taken for the SMSC delivering it again. Receipts come late here, so that no commit
    # of theirs records the acknowledgement first.
    gate = await make_gate(simulator_options={"receipt_delay": 2.0})
    await register(gate)
    [first] = await gate.sms(RESIDENT, "Баланс")
    for _ in range(5):
        assert await gate.sms(RESIDENT, "Баланс", timeout=3) == [first]


async def test_a_failing_quick_answer_leaves_the_text_to_the_processor(
    gate: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert gate.gateway is not None

    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("quick path broken")

    monkeypatch.setattr(gate.gateway.router, "route_now", broken)
    assert await gate.sms(RESIDENT, "Помощь") == [texts.HELP]  # stored, then routed by the processor
    async with gate.store.db.execute(
        "SELECT i.received_at < o.created_at FROM inbox i"
        " JOIN outbox o ON o.request_key = 'in:' || i.id || ':0' WHERE i.phone = ?", (RESIDENT,),
    ) as cursor:
        assert [tuple(row) for row in await cursor.fetchall()] == [(1,)]
