"""USSD sessions end to end: over SMPP through the simulator (real TCP), and over HTTP (POST /ussd).

Scripts read like a handset's screen: each step is what the resident typed, and the screen that
came back. The gateway, the store and the simulator are real; only the clock of expiry is short.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from handlers import ussd_menu
from handlers.ussd_menu import HINT, Screen
from smsgate import security, smpp, texts
from smsgate.config import Config, replace
from smsgate.services import Services
from smsgate.tools import simclient
from smsgate.tools.simulator import UssdReply
from smsgate.ussd import SmppUssd, UssdEngine, inbox_extra
from smsgate.web import create_app
from smsgate.web import ussd as web_ussd
from store import inbox, residents
from store.db import Store, now
from tests.harness import Harness

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Awaitable[Client]]

RESIDENT = "+79031234567"
NEIGHBOUR = "+79161112233"
STRANGER = "+79260000000"
DIAL = "*7377#"
SECRET = "aggregator-key-1"
MAIN_SCREEN = "Расчётный центр\n1 Долг\n2 Новый пароль\n3 Напоминания вкл/выкл\n4 Помощь"
MENU_OP, FINAL_OP = 2, 17  # USSR request, PSSR response


@pytest.fixture
def gate_sections() -> dict[str, dict[str, Any]]:
    """Config sections of `gate` (tests/conftest.py) here; a test parametrizes it with its own."""
    return {"ussd": {"http_secret": SECRET}}


@pytest.fixture
def logged() -> Iterator[list[logging.LogRecord]]:
    """Every smsgate log record, whatever the logging set-up of other tests left behind."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep(level=logging.DEBUG)
    root = logging.getLogger("smsgate")
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield records
    root.removeHandler(handler)
    root.setLevel(level)


async def register(gate: Harness, phone: str = RESIDENT, account: int = 0) -> None:
    demo = gate.demo[account]
    [reply] = await gate.sms(phone, f"РЕГ {demo.number} {demo.receipt_code}")
    assert reply.startswith(f"Счёт {demo.number} подключён.")


async def dial(gate: Harness, phone: str = RESIDENT, **options: Any) -> UssdReply:
    reply = await gate.simulator.ussd(phone, DIAL, **options)
    assert reply is not None
    return reply


async def press(gate: Harness, key: str, phone: str = RESIDENT, **options: Any) -> UssdReply:
    reply = await gate.simulator.ussd(phone, key, **options)
    assert reply is not None
    return reply


def is_menu(reply: UssdReply, session: int) -> bool:
    """A screen that waits: USSR request, the session echoed, the end bit clear."""
    info = reply.session_info
    return reply.op == MENU_OP and info is not None and info[0] == session and not info[1] & 0x01


def is_final(reply: UssdReply, session: int) -> bool:
    """A screen that closes: PSSR response, the session echoed with the end bit set."""
    info = reply.session_info
    return reply.op == FINAL_OP and info is not None and info[0] == session and info[1] & 0x01 == 1


def ordinary_sms(gate: Harness, phone: str) -> list[str]:
    return [s.text for s in gate.simulator.sent_to(phone) if smpp.TAG_USSD_SERVICE_OP not in s.tlvs]


async def debt_report(gate: Harness, phone: str = RESIDENT) -> str:
    assert gate.gateway is not None
    found = await gate.gateway.services.debts_of_phone(phone)
    assert found is not None
    return "\n".join(ussd_menu.format_debts(found).replace('"', "").replace("АО ", "")
                     .replace("ООО ", "").split("\n"))


def page_content(text: str) -> str:
    return text.removesuffix("\n0 Назад").removesuffix("\n9 Далее")


# ---- over SMPP ----------------------------------------------------------------------------------


async def test_debt_session_with_pagination(gate: Harness) -> None:
    await register(gate)
    main = await dial(gate, session=7)
    assert main.text == MAIN_SCREEN and is_menu(main, 7)
    pages = [await press(gate, "1", session=7)]
    while pages[-1].text.endswith("\n9 Далее\n0 Назад"):
        pages.append(await press(gate, "9", session=7))
    assert len(pages) > 2 and all(is_menu(page, 7) for page in pages)
    assert pages[-1].text.endswith("\n0 Назад")
    assert "\n".join(page_content(page.text) for page in pages) == await debt_report(gate)
    # Back page by page, then to the menu; "0" from the top is not a choice.
    for page in reversed(pages[:-1]):
        assert (await press(gate, "0", session=7)).text == page.text
    assert (await press(gate, "0", session=7)).text == MAIN_SCREEN
    assert (await press(gate, "0", session=7)).text.startswith(HINT)
    # Every screen went as one short_message (UCS-2, no UDH), asking for no receipt.
    screens = [s for s in gate.simulator.sent_to(RESIDENT) if smpp.TAG_USSD_SERVICE_OP in s.tlvs]
    assert len(screens) == 2 * len(pages) + 2
    assert all(s.parts == 1 and s.data_coding == 8 for s in screens)
    assert max(len(s.text) for s in screens) > smpp.UCS2_SINGLE_LIMIT  # more than one SMS holds
    async with gate.store.db.execute("SELECT DISTINCT kind FROM outbox WHERE extra != ''") as cursor:
        assert [tuple(row) for row in await cursor.fetchall()] == [("ussd",)]
    await asyncio.sleep(0.3)
    assert gate.simulator.receipts_sent <= 1  # the РЕГ reply's only


async def test_new_password_arrives_by_sms_and_never_on_the_screen(gate: Harness) -> None:
    await register(gate)
    await dial(gate, session=3)
    question = await press(gate, "2", session=3)
    assert question.text.startswith("Новый пароль\nПридёт в SMS") and is_menu(question, 3)
    start = len(gate.simulator.sent_to(RESIDENT))
    done = await press(gate, "1", session=3)
    assert done.text == ussd_menu.PASSWORD_DONE and is_final(done, 3)
    sent = await gate.simulator.wait_sent(RESIDENT, start + 2)  # the screen, then the SMS
    [sms] = [s.text for s in sent[start:] if smpp.TAG_USSD_SERVICE_OP not in s.tlvs]
    password = texts.find_secret(sms)
    assert password and sms == texts.PASSWORD_SENT.format(password=password)
    resident = await residents.by_phone(gate.store.db, RESIDENT)
    assert resident is not None and await security.verify_password(password, resident.password_hash)
    screens = [s.text for s in gate.simulator.sent_to(RESIDENT) if smpp.TAG_USSD_SERVICE_OP in s.tlvs]
    assert not any(password in screen for screen in screens)
    async with gate.store.db.execute("SELECT kind FROM outbox WHERE text = ?", (sms,)) as cursor:
        assert tuple(await cursor.fetchone() or ()) == ("secret",)


async def test_password_limits_are_shared_with_the_sms_command(gate: Harness) -> None:
    await register(gate)
    for _ in range(2):
        [reply] = await gate.sms(RESIDENT, "ПАРОЛЬ")
        assert reply.startswith("Ваш новый пароль: ")
    await dial(gate, session=1)
    await press(gate, "2", session=1)
    assert (await press(gate, "1", session=1)).text == ussd_menu.PASSWORD_DONE  # the third
    await dial(gate, session=2)
    await press(gate, "2", session=2)
    refused = await press(gate, "1", session=2)
    assert refused.text == texts.PASSWORD_LIMIT and is_final(refused, 2)


async def test_reminders_toggle(gate: Harness) -> None:
    await register(gate)
    await dial(gate, session=9)
    question = await press(gate, "3", session=9)
    assert question.text == "Напоминания о долге\nСейчас включены.\n1 Отключить\n0 Назад"
    done = await press(gate, "1", session=9)
    assert done.text == ussd_menu.REMINDERS_DONE[False] and is_final(done, 9)
    resident = await residents.by_phone(gate.store.db, RESIDENT)
    assert resident is not None and not resident.reminders
    await dial(gate, session=10)
    assert (await press(gate, "3", session=10)).text.endswith("Сейчас отключены.\n1 Включить\n0 Назад")
    assert (await press(gate, "1", session=10)).text == ussd_menu.REMINDERS_DONE[True]
    resident = await residents.by_phone(gate.store.db, RESIDENT)
    assert resident is not None and resident.reminders


async def test_invalid_input_repeats_the_screen_with_a_hint(gate: Harness) -> None:
    await register(gate)
    await dial(gate, session=4)
    hinted = MAIN_SCREEN.replace("Расчётный центр", HINT)
    for key in ("7", "", "12", "Долг"):
        reply = await press(gate, key, session=4)
        assert reply.text == hinted and is_menu(reply, 4)
    first = await press(gate, "1", session=4)
    assert (await press(gate, "5", session=4)).text == page_content(first.text) + "\nВведите 9 или 0"
    assert (await press(gate, "0", session=4)).text == MAIN_SCREEN
    question = await press(gate, "2", session=4)
    assert (await press(gate, "3", session=4)).text == question.text.replace("Новый пароль", HINT, 1)


async def test_the_same_answer_twice_is_two_answers(gate: Harness) -> None:
    """USSD inputs repeat ("1", "0", "1"): none of them may pass for an SMSC redelivery."""
    await register(gate)
    for session in (5, None):  # with its_session_info, and keyed on the phone alone
        assert (await dial(gate, session=session)).text == MAIN_SCREEN
        first = await press(gate, "1", session=session)
        for _ in range(3):
            assert (await press(gate, "0", session=session)).text == MAIN_SCREEN
            assert (await press(gate, "1", session=session)).text == first.text
        second = await press(gate, "9", session=session)
        assert second.text != first.text
    async with gate.store.db.execute(
        "SELECT count(*), count(DISTINCT text_hash) FROM inbox WHERE channel = 'ussd'"
    ) as cursor:
        assert tuple(await cursor.fetchone() or ()) == (2 * 9, 2 * 9)
    # A session without its_session_info is answered without one.
    last = gate.simulator.sent_to(RESIDENT)[-1]
    assert smpp.TAG_ITS_SESSION_INFO not in last.tlvs and last.tlvs[smpp.TAG_USSD_SERVICE_OP] == b"\x02"


@pytest.mark.parametrize("gate_sections", [{"ussd": {"session_timeout": 0.5}}])
async def test_timeout_in_the_middle_of_a_session(gate: Harness) -> None:
    await register(gate)
    await dial(gate, session=11)
    assert (await press(gate, "1", session=11)).text.startswith("Долг на ")
    await asyncio.sleep(0.8)
    late = await press(gate, "9", session=11)
    assert late.text == ussd_menu.EXPIRED and is_final(late, 11)
    # Dialling again starts afresh.
    assert (await dial(gate, session=12)).text == MAIN_SCREEN


@pytest.mark.parametrize("gate_sections", [{"ussd": {"op_abort": 0x81}}])
async def test_resident_aborts(gate: Harness, logged: list[logging.LogRecord]) -> None:
    await register(gate)
    await dial(gate, session=13)
    await press(gate, "1", session=13)
    sent = len(gate.simulator.sent)
    assert await gate.simulator.ussd(RESIDENT, "", session=13, op=0x81, reply=False) is None
    await asyncio.sleep(0.3)
    assert len(gate.simulator.sent) == sent  # an abort is not answered
    assert "ussd_aborted" in [record.getMessage() for record in logged]
    late = await press(gate, "9", session=13, op=18)
    assert late.text == ussd_menu.EXPIRED and is_final(late, 13)


async def test_two_residents_in_parallel_sessions(gate: Harness) -> None:
    await register(gate, RESIDENT, account=0)
    await register(gate, NEIGHBOUR, account=1)

    async def session(phone: str, number: int) -> list[str]:
        screens = [(await dial(gate, phone, session=number)).text]
        for key in ("1", "9", "7", "0", "0", "3"):
            screens.append((await press(gate, key, phone, session=number)).text)
        return screens

    # The same session number on both phones: sessions are the phone's and the number's.
    mine, theirs = await asyncio.gather(session(RESIDENT, 21), session(NEIGHBOUR, 21))
    assert f"Счёт {gate.demo[0].number}:" in mine[1] and f"Счёт {gate.demo[1].number}:" in theirs[1]
    assert mine[0] == theirs[0] == MAIN_SCREEN
    assert mine[3].endswith("Введите 9 или 0") or mine[3].endswith("Введите 0")
    assert mine[5] == theirs[5] == MAIN_SCREEN
    assert mine[6].startswith("Напоминания о долге") and theirs[6].startswith("Напоминания о долге")


@pytest.mark.parametrize("gate_sections", [{"ussd": {
    # A platform that answers with 0x12 and aborts with 0x81; the reply codes are the test's own
    # choice, to show that replies follow the configuration too.
    "op_ussr_confirm": 0x12, "op_abort": 0x81, "op_pssr_indication": 0x20,
    "op_ussr_request": 0x21, "op_pssr_response": 0x22,
}}])
async def test_vendor_operation_codes(gate: Harness) -> None:
    await register(gate)
    main = await dial(gate, session=30, op=0x20)
    assert main.text == MAIN_SCREEN and main.op == 0x21 and main.session_info == b"\x1e\x00"
    page = await press(gate, "1", session=30, op=0x12)
    assert page.op == 0x21 and page.text.startswith("Долг на ")
    # A standard opening means nothing on this platform: it is not answered.
    sent = len(gate.simulator.sent)
    assert await gate.simulator.ussd(RESIDENT, DIAL, session=31, op=1, reply=False) is None
    await gate.simulator.ussd(RESIDENT, "", session=30, op=0x81, reply=False)
    await asyncio.sleep(0.3)
    assert len(gate.simulator.sent) == sent
    late = await press(gate, "9", session=30, op=0x12)
    assert late.text == ussd_menu.EXPIRED and late.op == 0x22 and late.session_info == bytes([30, 0x01])
    await dial(gate, session=32, op=0x20)
    await press(gate, "3", session=32, op=0x12)
    done = await press(gate, "1", session=32, op=0x12)
    assert done.text == ussd_menu.REMINDERS_DONE[False] and done.op == 0x22 and done.end


async def test_unregistered_phone_gets_one_screen(gate: Harness) -> None:
    reply = await dial(gate, STRANGER, session=40)
    assert reply.text == "Номер не зарегистрирован. SMS на 7377: РЕГ счёт код_с_квитанции"
    assert is_final(reply, 40)


async def test_ussd_is_not_in_the_sms_history(gate: Harness) -> None:
    await register(gate)
    await dial(gate, session=41)
    await press(gate, "4", session=41)
    history = await inbox.history(gate.store.db, RESIDENT)
    assert history and not any(text in (DIAL, "4") or "Расчётный центр" in text for _, text, _, _ in history)


async def test_smpp_glue_echoes_the_message_reference_and_drops_stale_inputs(gate: Harness) -> None:
    assert gate.gateway is not None
    await register(gate)
    glue = gate.gateway.ussd
    message = smpp.decode_sm(smpp.build_deliver_sm(
        1, ("79031234567", 1, 1), ("7377", 3, 0), 0, b"*7377#",
        tlvs=smpp.tlv(smpp.TAG_USSD_SERVICE_OP, b"\x01")
        + smpp.tlv(smpp.TAG_USER_MESSAGE_REFERENCE, b"\x01\x02"),
    ))
    extra = inbox_extra(message)
    item = inbox.Inbound(90, RESIDENT, "*7377#", 0, None, "ussd", now(), extra)
    [row] = await glue.respond(item)
    assert row.kind == "ussd" and row.text == MAIN_SCREEN and row.request_key == "in:90:0"
    tlvs = bytes.fromhex(json.loads(row.extra)["tlvs"])
    assert tlvs == (smpp.tlv(smpp.TAG_USSD_SERVICE_OP, b"\x02")
                    + smpp.tlv(smpp.TAG_USER_MESSAGE_REFERENCE, b"\x01\x02"))
    assert SmppUssd.session_key(RESIDENT, b"", 258) == "smpp:+79031234567:r258"
    assert SmppUssd.session_key(RESIDENT, b"\x05\x02", 258) == "smpp:+79031234567:s5"
    assert SmppUssd.session_key(RESIDENT, b"", None) == "smpp:+79031234567"
    stale = inbox.Inbound(91, RESIDENT, "1", 0, None, "ussd", now() - 1000, extra)
    assert await glue.respond(stale) == []
    unreadable = inbox.Inbound(92, RESIDENT, "1", 0, None, "ussd", now(), "{")
    assert await glue.respond(unreadable) == []


async def test_engine_fails_politely_and_forgets_idle_sessions(gate: Harness, config: Config) -> None:
    assert gate.gateway is not None
    clock = [0.0]
    engine = UssdEngine(gate.gateway.services, replace(config, ussd={"session_timeout": 10.0}),
                        clock=lambda: clock[0])
    await register(gate)
    assert (await engine.begin("k", RESIDENT, "test")).text == MAIN_SCREEN
    clock[0] = 50.0
    assert (await engine.begin("other", RESIDENT, "test")).text == MAIN_SCREEN
    assert len(engine) == 1  # the idle one was swept
    broken = UssdEngine(object(), config)  # type: ignore[arg-type]
    assert await broken.begin("x", RESIDENT, "test") == Screen(texts.TEMPORARY_ERROR, end=True)
    assert len(broken) == 0


# ---- smsgate ussd: the simulator's control API ----------------------------------------------------


async def test_terminal_session_through_the_control_api(gate: Harness) -> None:
    await register(gate)
    port = await gate.simulator.start_control()
    url = f"http://127.0.0.1:{port}"
    typed = iter(["1", "9", "0", "0", "3", "1"])
    shown: list[str] = []

    async def ask(prompt: str) -> str | None:
        return next(typed, None)

    await simclient.ussd_session(url, RESIDENT, DIAL, gate.config.ussd, ask, shown.append)
    assert shown[0] == MAIN_SCREEN and shown[1].startswith("Долг на ") and shown[3] == shown[1]
    assert shown[4] == MAIN_SCREEN and shown[-1] == ussd_menu.REMINDERS_DONE[False]


@pytest.mark.parametrize("gate_sections", [{"ussd": {"op_abort": 0x81}}])
async def test_terminal_session_aborted_at_end_of_input(gate: Harness) -> None:
    await register(gate)
    port = await gate.simulator.start_control()
    shown: list[str] = []

    async def ask(prompt: str) -> str | None:
        return None

    await simclient.ussd_session(f"http://127.0.0.1:{port}", RESIDENT, DIAL, gate.config.ussd, ask,
                                 shown.append)
    assert shown == [MAIN_SCREEN, "(сеанс прерван)"]
    await asyncio.sleep(0.2)
    assert gate.gateway is not None and len(gate.gateway.ussd.engine) == 0


async def test_control_api_refuses_bad_ussd_requests(gate: Harness) -> None:
    url = f"http://127.0.0.1:{await gate.simulator.start_control()}"
    with pytest.raises(simclient.SimulatorError, match="octet"):
        await simclient.ussd(url, RESIDENT, "1", session=300, op=18)
    with pytest.raises(simclient.SimulatorError, match="international"):
        await simclient.ussd(url, "nobody", "1", session=1, op=18)
    with pytest.raises(simclient.SimulatorError, match="no USSD screen"):
        await simclient.ussd(url, RESIDENT, "1", session=1, op=0x55, wait=0.5)  # ignored: no screen


# ---- over HTTP ----------------------------------------------------------------------------------


@pytest.fixture
async def http(gate: Harness, aiohttp_client: MakeClient) -> Client:
    """The website of the gateway under test: SMS it queues reach the simulator."""
    assert gate.gateway is not None
    return await aiohttp_client(create_app(gate.config, gate.gateway.services))


async def post(
    client: Client, text: str, session: str = "AT-1", phone: str = RESIDENT, key: str = SECRET,
    **fields: str,
) -> tuple[int, str]:
    form = {"sessionId": session, "serviceCode": DIAL, "phoneNumber": phone, "text": text, **fields}
    response = await client.post(f"/ussd?key={key}", data=form)
    assert response.content_type == "text/plain"
    return response.status, await response.text()


async def test_http_debt_session_with_pagination(gate: Harness, http: Client) -> None:
    await register(gate)
    assert await post(http, "") == (200, "CON " + MAIN_SCREEN)
    pages: list[str] = []
    inputs = ["1"]
    while True:
        status, answer = await post(http, "*".join(inputs))
        assert status == 200 and answer.startswith("CON ")
        pages.append(answer.removeprefix("CON "))
        if not pages[-1].endswith("\n9 Далее\n0 Назад"):
            break
        inputs.append("9")
    assert len(pages) > 2
    assert "\n".join(page_content(page) for page in pages) == await debt_report(gate)
    inputs.append("0")
    assert await post(http, "*".join(inputs)) == (200, "CON " + pages[-2])
    # The same request again (an aggregator's retry) shows the same screen and moves nothing.
    assert await post(http, "*".join(inputs)) == (200, "CON " + pages[-2])
    # An aggregator that sends only the newest input is understood too.
    assert await post(http, "9") == (200, "CON " + pages[-1])


async def test_http_new_password_by_sms(gate: Harness, http: Client) -> None:
    await register(gate)
    await post(http, "")
    status, question = await post(http, "2")
    assert status == 200 and question.startswith("CON Новый пароль\n")
    start = len(gate.simulator.sent_to(RESIDENT))
    assert await post(http, "2*1") == (200, "END " + ussd_menu.PASSWORD_DONE)
    [sms] = [s.text for s in (await gate.simulator.wait_sent(RESIDENT, start + 1))[start:]]
    password = texts.find_secret(sms)
    resident = await residents.by_phone(gate.store.db, RESIDENT)
    assert password and resident is not None
    assert await security.verify_password(password, resident.password_hash)
    assert password not in question and password not in ussd_menu.PASSWORD_DONE
    # The session is over: a retry of the last request cannot issue a second password.
    assert await post(http, "2*1") == (200, "END " + ussd_menu.EXPIRED)


async def test_http_reminders_invalid_input_and_parallel_sessions(gate: Harness, http: Client) -> None:
    await register(gate, RESIDENT, account=0)
    await register(gate, NEIGHBOUR, account=1)
    hinted = MAIN_SCREEN.replace("Расчётный центр", HINT)
    first = await asyncio.gather(post(http, "", "A"), post(http, "", "B", NEIGHBOUR))
    assert first == [(200, "CON " + MAIN_SCREEN)] * 2
    answers = await asyncio.gather(post(http, "7", "A"), post(http, "1", "B", NEIGHBOUR))
    assert answers[0] == (200, "CON " + hinted)
    assert f"Счёт {gate.demo[1].number}:" in answers[1][1]
    assert (await post(http, "7*3", "A"))[1].startswith("CON Напоминания о долге\nСейчас включены.")
    assert await post(http, "7*3*1", "A") == (200, "END " + ussd_menu.REMINDERS_DONE[False])
    resident = await residents.by_phone(gate.store.db, RESIDENT)
    assert resident is not None and not resident.reminders
    assert (await post(http, "1*0", "B", NEIGHBOUR)) == (200, "CON " + MAIN_SCREEN)


@pytest.mark.parametrize("gate_sections", [{"ussd": {"http_secret": SECRET, "session_timeout": 0.3}}])
async def test_http_timeout_in_the_middle(gate: Harness, http: Client) -> None:
    await register(gate)
    assert (await post(http, ""))[1] == "CON " + MAIN_SCREEN
    await asyncio.sleep(0.5)
    assert await post(http, "1") == (200, "END " + ussd_menu.EXPIRED)


@pytest.fixture
async def light(aiohttp_client: MakeClient, config: Config, store: Store) -> Client:
    """The website alone on a copy of the demo store: enough for what is refused."""
    configured = replace(config, ussd={"http_secret": SECRET})
    return await aiohttp_client(create_app(configured, Services(store, configured)))


FORM = {"sessionId": "S", "serviceCode": DIAL, "phoneNumber": RESIDENT, "text": ""}


@pytest.mark.parametrize(("changes", "status", "answer", "reason"), [
    ({"sessionId": None}, 400, web_ussd.INCOMPLETE, "missing_field"),
    ({"phoneNumber": None, "text": None}, 400, web_ussd.INCOMPLETE, "missing_field"),
    ({"serviceCode": ""}, 400, web_ussd.INCOMPLETE, "missing_field"),
    ({"text": "1" * 501}, 400, web_ussd.TOO_LONG, "too_long"),
    ({"sessionId": "x" * 65}, 400, web_ussd.TOO_LONG, "too_long"),
    ({"text": "1*" * 9000}, 413, web_ussd.TOO_LONG, "too_large"),
    ({"phoneNumber": "+380501234567"}, 200, web_ussd.NOT_MOBILE, "not_ru_phone"),
    ({"phoneNumber": "+77012345678"}, 200, web_ussd.NOT_MOBILE, "not_ru_phone"),  # Kazakhstan
    ({"phoneNumber": "+73852123456"}, 200, web_ussd.NOT_MOBILE, "not_mobile"),  # a landline
    ({"key": "wrong"}, 403, web_ussd.FORBIDDEN, "bad_key"),
    ({"key": ""}, 403, web_ussd.FORBIDDEN, "bad_key"),
])
async def test_http_bad_requests_get_a_clear_end(
    light: Client, logged: list[logging.LogRecord], changes: dict[str, str | None], status: int,
    answer: str, reason: str,
) -> None:
    fields = {**FORM, "key": SECRET, **changes}
    key = fields.pop("key")
    response = await light.post(f"/ussd?key={key}",
                                data={name: value for name, value in fields.items() if value is not None})
    assert response.content_type == "text/plain"
    assert (response.status, await response.text()) == (status, f"END {answer}")
    refusals = [record for record in logged if record.getMessage() == "ussd_http_refused"]
    assert [getattr(record, "reason", None) for record in refusals] == [reason]


async def test_http_session_of_another_phone(gate: Harness, http: Client) -> None:
    await register(gate)
    assert (await post(http, "", "shared"))[0] == 200
    assert await post(http, "1", "shared", NEIGHBOUR) == (400, "END " + web_ussd.OTHER_PHONE)
    # Not a form the website checks: no CSRF token, yet other forms still need theirs.
    response = await http.post("/login", data={"login": RESIDENT, "password": "x" * 10})
    assert response.status == 403


@pytest.mark.parametrize("gate_sections", [{}])
async def test_http_refused_until_a_secret_is_configured(http: Client) -> None:
    assert await post(http, "") == (404, "END " + web_ussd.DISABLED)
    assert await post(http, "", key="") == (404, "END " + web_ussd.DISABLED)


async def test_http_unregistered_phone(http: Client) -> None:
    assert await post(http, "", phone="8 (926) 000-00-00") == (
        200, "END Номер не зарегистрирован. SMS на 7377: РЕГ счёт код_с_квитанции")
