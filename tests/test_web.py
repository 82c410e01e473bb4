"""The website through aiohttp's test client: every flow, and the bad input a public site gets.

An SMS the site sends is a row in the outbox; reading it there is reading the resident's phone.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse, ClientSession, web
from aiohttp.test_utils import TestClient
from markupsafe import escape

from smsgate import security, texts
from smsgate.config import Config, replace
from smsgate.services import Outcome, Services
from smsgate.tools.demo import DemoAccount
from smsgate.web import create_app, start_web, wording
from smsgate.web.middlewares import MAX_FIELD_CHARS
from smsgate.web.sessions import COOKIE_NAME
from store import ratelimits, residents
from store.db import Store

from .conftest import free_port
from .harness import Harness

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Awaitable[Client]]

PHONE = "+79031234567"
PASSWORD = "Podsolnuh-2024"
NEW_PASSWORD = "Sirenevyi-tuman-7"
TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def services(config: Config, store: Store) -> Services:
    return Services(store, config)


@pytest.fixture
async def client(aiohttp_client: MakeClient, config: Config, services: Services) -> Client:
    return await aiohttp_client(create_app(config, services))


@pytest.fixture
def app_client(aiohttp_client: MakeClient, store: Store) -> Callable[[Config], Awaitable[Client]]:
    """A client of an app built on the shared store with a config of the test's own."""

    async def make(config: Config) -> Client:
        return await aiohttp_client(create_app(config, Services(store, config)))

    return make


# ---- helpers ----------------------------------------------------------------------------------


async def token_of(client: Client, path: str) -> str:
    response = await client.get(path)
    assert response.status == 200, (path, response.status)
    found = TOKEN.search(await response.text())
    assert found, f"no CSRF token on {path}"
    return found.group(1)


async def submit(client: Client, path: str, data: dict[str, str], page: str | None = None) -> ClientResponse:
    """Send a form the way a browser does: open its page first, then post with that page's token."""
    token = await token_of(client, page or path)
    return await client.post(path, data={"csrf_token": token, **data}, allow_redirects=False)


async def outbox(store: Store, phone: str) -> list[str]:
    rows = await store.db.execute_fetchall(
        "SELECT text FROM outbox WHERE phone = ? ORDER BY id", (phone,)
    )
    return [str(row[0]) for row in rows]


async def last_secret(store: Store, phone: str) -> str:
    """The password or code in the newest SMS to the phone that carries one."""
    for text in reversed(await outbox(store, phone)):
        secret = texts.find_secret(text)
        if secret:
            return secret
    raise AssertionError(f"no SMS with a password or code to {phone}")


async def counts(store: Store) -> dict[str, int]:
    """Rows of every table a web flow may write, to prove a refusal wrote nothing."""
    found = {}
    for table in ("residents", "resident_accounts", "codes", "outbox", "accounts", "meta"):
        rows = await store.db.execute_fetchall(f"SELECT count(*) FROM {table}")
        found[table] = int(next(iter(rows))[0])
    return found


async def resident_row(store: Store, phone: str = PHONE) -> residents.Resident:
    found = await residents.by_phone(store.db, phone)
    assert found is not None
    return found


async def make_resident(services: Services, account: DemoAccount, phone: str = PHONE,
                        password: str = PASSWORD) -> residents.Resident:
    """A resident who registered by SMS and already chose a password of their own."""
    result = await services.register(phone, account.number, account.receipt_code)
    assert result.resident_id is not None
    async with services.store.tx() as db:
        await residents.set_password(
            db, result.resident_id, await security.hash_password(password), must_change=False
        )
    return await resident_row(services.store, phone)


async def log_in(client: Client, login: str, password: str = PASSWORD) -> ClientResponse:
    return await submit(client, "/login", {"login": login, "password": password})


def register_form(account: DemoAccount, phone: str = PHONE) -> dict[str, str]:
    return {"receipt_type": "center", "account": account.number,
            "receipt_code": account.receipt_code, "phone": phone}


async def confirm(client: Client, secret: str) -> ClientResponse:
    """Step 2 of registration: type what the SMS brought."""
    return await submit(client, "/register/password", {"password": secret})


def set_cookie(client: Client, value: str) -> None:
    """Replace the session cookie the client holds, as someone editing their cookies would."""
    client.session.cookie_jar.clear()
    client.session.cookie_jar.update_cookies({COOKIE_NAME: value}, response_url=client.make_url("/"))


def plain(body: str) -> str:
    """A page without its CSRF token, so two pages can be compared."""
    return TOKEN.sub("", body)


@dataclass
class Form:
    path: str
    fields: dict[str, str]
    page: str | None = None  # where the form is shown, when not at `path`


# ---- pages and sessions -----------------------------------------------------------------------


async def test_anonymous_pages_carry_a_token_in_a_safe_cookie(client: Client) -> None:
    for path in ("/login", "/register", "/reset"):
        response = await client.get(path)
        body = await response.text()
        assert response.status == 200
        assert TOKEN.search(body)
        assert "<script" not in body
        assert response.headers["X-Frame-Options"] == "DENY"
        assert "default-src 'none'" in response.headers["Content-Security-Policy"]
        assert response.headers["Cache-Control"] == "no-store"
    client.session.cookie_jar.clear()
    header = (await client.get("/login")).headers["Set-Cookie"]
    assert "HttpOnly" in header and "SameSite=Lax" in header and "Secure" not in header
    for path in ("/", "/account", "/password"):
        response = await client.get(path, allow_redirects=False)
        assert (response.status, response.headers["Location"]) == (303, "/login")
    css = await client.get("/static/style.css")
    assert css.status == 200 and "Cache-Control" not in css.headers


async def test_secure_cookies_when_configured(
    app_client: Callable[[Config], Awaitable[Client]], config: Config
) -> None:
    client = await app_client(replace(config, web={"secure_cookies": True}))
    response = await client.get("/login")
    morsel = response.cookies[COOKIE_NAME]
    assert morsel["secure"] and morsel["httponly"] and morsel["samesite"] == "Lax"


async def test_a_forged_or_foreign_cookie_is_no_session(
    client: Client, services: Services, demo: list[DemoAccount]
) -> None:
    await make_resident(services, demo[0])
    assert (await log_in(client, PHONE)).status == 303
    value = client.session.cookie_jar.filter_cookies(client.make_url("/"))[COOKIE_NAME].value
    payload, _, signature = value.partition(".")
    forged = payload[:-2] + ("AA" if payload[-2:] != "AA" else "BB") + "." + signature
    for bad in (forged, "garbage", value + "x", "." * 5000):
        set_cookie(client, bad)
        response = await client.get("/account", allow_redirects=False)
        assert (response.status, response.headers["Location"]) == (303, "/login")


async def test_the_cookie_key_is_made_once_and_kept_in_the_store(
    app_client: Callable[[Config], Awaitable[Client]], config: Config, store: Store,
    services: Services, demo: list[DemoAccount],
) -> None:
    await make_resident(services, demo[0])
    first = await app_client(config)
    assert (await log_in(first, PHONE)).status == 303
    cookie = first.session.cookie_jar.filter_cookies(first.make_url("/"))[COOKIE_NAME].value
    rows = await store.db.execute_fetchall("SELECT value FROM meta WHERE key = 'web_session_secret'")
    assert len(list(rows)) == 1
    # A restarted site (a new app on the same store) still knows the session...
    second = await app_client(config)
    set_cookie(second, cookie)
    assert (await second.get("/account", allow_redirects=False)).status == 200
    # ...and a configured secret replaces the stored one.
    third = await app_client(replace(config, web={"secret": "configured-secret-for-this-host"}))
    set_cookie(third, cookie)
    assert (await third.get("/account", allow_redirects=False)).status == 303


# ---- registration -----------------------------------------------------------------------------


async def test_register_sends_the_password_by_sms_and_forces_a_change(
    client: Client, store: Store, demo: list[DemoAccount]
) -> None:
    account = demo[0]
    response = await submit(client, "/register", {
        "receipt_type": "center", "account": f"№ {account.number[:4]}-{account.number[4:]}",
        "receipt_code": account.receipt_code, "phone": "8 (903) 123-45-67",
    })
    assert (response.status, response.headers["Location"]) == (303, "/register/password")
    sent = await outbox(store, PHONE)
    assert len(sent) == 1
    password = await last_secret(store, PHONE)
    assert sent == [texts.WEB_REGISTER_PASSWORD.format(password=password)]
    assert password not in await (await client.get("/register/password")).text()
    page = await (await client.get("/register/password")).text()
    assert "+7 903 ***-**-67" in page
    # The phone is not proven yet: nobody is registered, only a hashed one-time code waits.
    assert await residents.by_phone(store.db, PHONE) is None
    assert (await counts(store))["resident_accounts"] == 0
    [(code_hash, payload)] = await store.db.execute_fetchall(
        "SELECT code_hash, payload FROM codes WHERE phone = ? AND purpose = 'web-register'", (PHONE,)
    )
    assert password not in code_hash and payload == account.number

    wrong = await submit(client, "/register/password", {"password": "not-the-one"})
    assert wrong.status == 400 and wording.REGISTER_CODE_BAD in await wrong.text()
    assert await residents.by_phone(store.db, PHONE) is None
    right = await submit(client, "/register/password", {"password": password})
    assert (right.status, right.headers["Location"]) == (303, "/account")
    assert (await counts(store))["codes"] == 0  # single use

    # Nothing but the change form until the password from the SMS is replaced.
    held = await client.get("/account", allow_redirects=False)
    assert (held.status, held.headers["Location"]) == (303, "/password")
    form = await (await client.get("/password")).text()
    for name in ("password", "new_password", "new_password_confirm", "csrf_token"):
        assert f'name="{name}"' in form
    link = await submit(client, "/account/link", {"account": demo[1].number,
                                                  "receipt_code": demo[1].receipt_code}, "/password")
    assert (link.status, link.headers["Location"]) == (303, "/password")

    mismatch = await submit(client, "/password", {
        "password": password, "new_password": NEW_PASSWORD, "new_password_confirm": NEW_PASSWORD + "x",
    })
    assert mismatch.status == 400 and wording.PASSWORD_MISMATCH in await mismatch.text()
    for weak, rule in (("short1", "short"), ("89031234567", "login"), ("12345678", "simple"),
                       (password, "same")):
        response = await submit(client, "/password", {
            "password": password, "new_password": weak, "new_password_confirm": weak,
        })
        assert response.status == 400 and wording.WEAK[rule] in await response.text(), weak
    wrong_current = await submit(client, "/password", {
        "password": "not-the-one", "new_password": NEW_PASSWORD, "new_password_confirm": NEW_PASSWORD,
    })
    assert wrong_current.status == 400
    assert (await resident_row(store)).must_change_password

    done = await submit(client, "/password", {
        "password": password, "new_password": NEW_PASSWORD, "new_password_confirm": NEW_PASSWORD,
    })
    assert (done.status, done.headers["Location"]) == (303, "/account")
    resident = await resident_row(store)
    assert not resident.must_change_password
    page = await (await client.get("/account")).text()
    assert wording.FLASH["password_changed"] in page
    assert resident.card_number in page and account.number in page
    # Changing the password from the SMS sends no notice: only the phone's owner knew it.
    assert len(await outbox(store, PHONE)) == 1
    assert await residents.accounts_of(store.db, resident.id) == [account.number]


async def test_register_from_a_provider_receipt_and_again_for_a_known_phone(
    client: Client, store: Store, services: Services, demo: list[DemoAccount]
) -> None:
    resident = await make_resident(services, demo[0])
    response = await submit(client, "/register", {
        "receipt_type": "provider", "account": demo[1].number, "receipt_code": demo[1].receipt_code,
        "phone": "+7 903 123 45 67",
    })
    assert (response.status, response.headers["Location"]) == (303, "/register/password")
    # A known phone keeps its password: it gets a code that only proves the phone.
    code = await last_secret(store, PHONE)
    assert await outbox(store, PHONE) == [texts.WEB_REGISTER_CODE.format(code=code)]
    assert await residents.accounts_of(store.db, resident.id) == [demo[0].number]
    # The resident's own password is not the proof asked for here.
    own = await submit(client, "/register/password", {"password": PASSWORD})
    assert own.status == 400 and wording.REGISTER_CODE_BAD in await own.text()
    proven = await submit(client, "/register/password", {"password": code})
    assert (proven.status, proven.headers["Location"]) == (303, "/login")
    assert wording.FLASH["registered_linked"] in await (await client.get("/login")).text()
    assert await residents.accounts_of(store.db, resident.id) == [demo[0].number, demo[1].number]
    # Linked, but not logged in: the code is not a password, and theirs is unchanged.
    assert await resident_row(store) == resident
    not_yet = await client.get("/account", allow_redirects=False)
    assert (not_yet.status, not_yet.headers["Location"]) == (303, "/login")
    assert (await log_in(client, PHONE, code)).status == 400
    assert (await log_in(client, PHONE)).status == 303
    page = await (await client.get("/account")).text()
    assert demo[0].number in page and demo[1].number in page
    # The same account once more, from a fresh browser: proven again, nothing new to link.
    await submit(client, "/logout", {}, "/account")
    await submit(client, "/register", {"receipt_type": "center", "account": demo[1].number,
                                       "receipt_code": demo[1].receipt_code, "phone": PHONE})
    again = await confirm(client, await last_secret(store, PHONE))
    assert (again.status, again.headers["Location"]) == (303, "/login")
    assert wording.FLASH["registered_already"] in await (await client.get("/login")).text()
    assert await resident_row(store) == resident


async def test_registration_refusals_store_nothing(
    client: Client, store: Store, demo: list[DemoAccount]
) -> None:
    good = {"receipt_type": "center", "account": demo[0].number,
            "receipt_code": demo[0].receipt_code, "phone": PHONE}
    before = await counts(store)
    cases: list[tuple[dict[str, str], int, str]] = [
        ({**good, "receipt_code": "000000"}, 400, wording.REGISTER_BAD),
        ({**good, "account": "1234567890"}, 400, wording.REGISTER_BAD),
        ({**good, "receipt_type": "neighbour"}, 400, wording.RECEIPT_TYPE),
        ({**good, "account": ""}, 400, wording.REGISTER_EMPTY),
        ({**good, "phone": "12"}, 400, wording.PHONE_BAD),
        ({**good, "phone": "+7 495 123-45-67"}, 400, wording.PHONE_BAD),  # a Moscow landline
    ]
    for data, status, message in cases:
        response = await submit(client, "/register", data)
        body = await response.text()
        assert response.status == status, data
        assert message in body, data
    assert await counts(store) == before
    # Wrong codes for one account lock it on the web, whatever phone is typed (it is not proven):
    # the first case above was one, four more make five.
    locked = [await submit(client, "/register", {**good, "phone": f"+7903000000{n}",
                                                 "receipt_code": "111111"}) for n in range(6)]
    assert [r.status for r in locked] == [400] * 4 + [429] * 2
    assert wording.LOCKED in await locked[-1].text()
    right_but_locked = await submit(client, "/register", good)
    assert right_but_locked.status == 429
    assert (await counts(store))["residents"] == 0


async def test_register_respects_the_daily_sms_cap(
    app_client: Callable[[Config], Awaitable[Client]], config: Config, store: Store,
    demo: list[DemoAccount],
) -> None:
    client = await app_client(replace(config, web={"daily_sms_cap": 0}))
    before = await counts(store)
    response = await submit(client, "/register", {
        "receipt_type": "center", "account": demo[0].number, "receipt_code": demo[0].receipt_code,
        "phone": PHONE,
    })
    assert response.status == 503 and wording.SMS_UNAVAILABLE in await response.text()
    assert await counts(store) == before
    reset = await submit(client, "/reset", {"phone": PHONE})
    assert reset.status == 503


async def test_a_resident_without_a_password_gets_the_one_from_the_sms(
    client: Client, store: Store, demo: list[DemoAccount]
) -> None:
    async with store.tx() as db:
        await residents.create(db, PHONE, "1234567897")
    await submit(client, "/register", register_form(demo[0]))
    password = await last_secret(store, PHONE)
    assert await outbox(store, PHONE) == [texts.WEB_REGISTER_PASSWORD.format(password=password)]
    done = await confirm(client, password)
    assert (done.status, done.headers["Location"]) == (303, "/account")
    resident = await resident_row(store)
    assert resident.must_change_password and resident.card_number == "1234567897"
    assert await residents.accounts_of(store.db, resident.id) == [demo[0].number]


async def test_a_mistyped_phone_gets_a_password_that_opens_nothing(
    aiohttp_client: MakeClient, config: Config, store: Store, services: Services,
    demo: list[DemoAccount],
) -> None:
    mistyped = "+79031234576"  # the last two digits swapped
    app = create_app(config, services)
    resident_browser = await aiohttp_client(app)
    before = await counts(store)
    response = await submit(resident_browser, "/register", register_form(demo[0], "8 903 123-45-76"))
    assert (response.status, response.headers["Location"]) == (303, "/register/password")
    [sms] = await outbox(store, mistyped)
    password = texts.find_secret(sms)
    assert password and demo[0].number not in sms  # the stranger does not even learn the account
    # Nothing about anyone was stored: only the code and its SMS.
    assert {**await counts(store), "codes": before["codes"], "outbox": before["outbox"]} == before
    # The owner of the mistyped number holds a password that opens nothing...
    stranger = await aiohttp_client(app)
    assert (await log_in(stranger, mistyped, password)).status == 400
    # ...and cannot type it in without the receipt: step 2 belongs to the browser that did step 1.
    held = await stranger.post("/register/password", data={
        "csrf_token": await token_of(stranger, "/login"), "password": password,
    }, allow_redirects=False)
    assert (held.status, held.headers["Location"]) == (303, "/register")
    assert await residents.by_phone(store.db, mistyped) is None

    # The resident, still waiting for an SMS, starts again with the right number.
    response = await submit(resident_browser, "/register", register_form(demo[0]))
    assert response.status == 303
    assert "+7 903 ***-**-67" in await (await resident_browser.get("/register/password")).text()
    wrong_phone_password = await confirm(resident_browser, password)
    assert wrong_phone_password.status == 400
    done = await confirm(resident_browser, await last_secret(store, PHONE))
    assert (done.status, done.headers["Location"]) == (303, "/account")
    assert await residents.by_phone(store.db, mistyped) is None
    assert await residents.accounts_of(store.db, (await resident_row(store)).id) == [demo[0].number]


async def test_wrong_passwords_from_the_sms_use_it_up(
    client: Client, store: Store, demo: list[DemoAccount], config: Config
) -> None:
    before = await counts(store)
    await submit(client, "/register", register_form(demo[0]))
    password = await last_secret(store, PHONE)
    for attempt in range(config.limits.code_attempts):
        response = await confirm(client, f"wrong-{attempt}")
        assert response.status == 400 and wording.REGISTER_CODE_BAD in await response.text()
    late = await confirm(client, password)
    assert late.status == 400 and wording.REGISTER_CODE_BAD in await late.text()
    after = await counts(store)
    assert after["codes"] == 0
    assert (after["residents"], after["resident_accounts"]) == (before["residents"],
                                                                before["resident_accounts"])
    empty = await confirm(client, "")
    assert empty.status == 400 and wording.PASSWORD_EMPTY in await empty.text()
    # A new SMS brings a new password, and that one works (typed with stray spaces, even).
    await submit(client, "/register", register_form(demo[0]))
    done = await confirm(client, f"  {await last_secret(store, PHONE)} ")
    assert (done.status, done.headers["Location"]) == (303, "/account")


async def test_register_passwords_expire_are_replaced_on_resend_and_are_limited(
    app_client: Callable[[Config], Awaitable[Client]], config: Config, store: Store,
    demo: list[DemoAccount],
) -> None:
    expiring = await app_client(replace(config, limits={"code_ttl_minutes": 0}))
    await submit(expiring, "/register", register_form(demo[0]))
    expired = await confirm(expiring, await last_secret(store, PHONE))
    assert expired.status == 400 and wording.REGISTER_CODE_BAD in await expired.text()
    assert await residents.by_phone(store.db, PHONE) is None

    client = await app_client(config)
    await submit(client, "/register", register_form(demo[0]))
    first = await last_secret(store, PHONE)
    await submit(client, "/register", register_form(demo[0]))
    second = await last_secret(store, PHONE)
    # SMS to one phone are limited (here three an hour): a stranger cannot flood it.
    assert config.limits.password_per_hour == 3
    limited = await submit(client, "/register", register_form(demo[0]))
    assert limited.status == 429 and wording.SMS_LIMIT in await limited.text()
    assert len(await outbox(store, PHONE)) == 3
    old = await confirm(client, first)
    assert old.status == 400  # a resend replaced it
    new = await confirm(client, second)
    assert (new.status, new.headers["Location"]) == (303, "/account")


async def test_web_guesses_with_a_phone_never_lock_its_sms_registration(
    services: Services, store: Store, demo: list[DemoAccount], config: Config
) -> None:
    failures = config.limits.register_failures
    # A stranger types a resident's number with wrong codes, from many addresses, for many accounts.
    outcomes = [
        (await services.register_web(PHONE, demo[n % len(demo)].number, "000000", f"198.51.100.{n}")).outcome
        for n in range(failures + 1)
    ]
    assert outcomes == [Outcome.BAD] * failures + [Outcome.LOCKED]
    # The site closes for that number a while (its own limit, even for the right code)...
    right = await services.register_web(PHONE, demo[0].number, demo[0].receipt_code, "203.0.113.9")
    assert right.outcome is Outcome.LOCKED
    # ...but the SMS side, where the network proves the phone, was never told.
    assert await ratelimits.count(store.db, f"register-failed:{PHONE}", 0) == 0
    registered = await services.register(PHONE, demo[0].number, demo[0].receipt_code)
    assert registered.outcome is Outcome.OK and registered.password
    assert registered.resident_id is not None
    # Wrong codes while linking on the site are web guesses too, not the phone's SMS lock.
    linked = await services.link_account(registered.resident_id, demo[1].number, "000000", "203.0.113.9")
    assert linked.outcome is Outcome.LOCKED
    assert await ratelimits.count(store.db, f"register-failed:{PHONE}", 0) == 0
    again = await services.register(PHONE, demo[1].number, demo[1].receipt_code)
    assert again.outcome is Outcome.OK and again.password is None


async def test_strangers_on_the_site_cannot_lock_a_phone_out_of_sms_reg(
    tmp_path: Path, aiohttp_client: MakeClient
) -> None:
    """The same, end to end: the site's lock, then РЕГ through the SMSC simulator."""
    gate = await Harness(tmp_path).start()
    try:
        assert gate.gateway is not None
        client = await aiohttp_client(create_app(gate.config, gate.gateway.services))
        account = gate.demo[0]
        limit = gate.config.limits.register_failures
        statuses = [(await submit(client, "/register", {**register_form(account),
                                                        "receipt_code": "000000"})).status
                    for _ in range(limit + 1)]
        assert statuses == [400] * limit + [429]
        [reply] = await gate.sms(PHONE, f"РЕГ {account.number} {account.receipt_code}")
        assert reply.startswith(f"Счёт {account.number} подключён. Пароль: ")
    finally:
        await gate.close()


# ---- logging in -------------------------------------------------------------------------------


@pytest.mark.parametrize("login", ["+79031234567", "8 903 123-45-67", "+7 (903) 123 45 67",
                                   "9031234567", "79031234567", "card"])
async def test_log_in_by_phone_in_any_format_or_by_card(
    client: Client, services: Services, demo: list[DemoAccount], login: str
) -> None:
    resident = await make_resident(services, demo[0])
    response = await log_in(client, resident.card_number if login == "card" else login)
    assert (response.status, response.headers["Location"]) == (303, "/account")
    page = await (await client.get("/account")).text()
    assert resident.card_number in page


async def test_log_out_ends_the_session(
    client: Client, services: Services, demo: list[DemoAccount]
) -> None:
    await make_resident(services, demo[0])
    assert (await log_in(client, PHONE)).status == 303
    already = await client.get("/login", allow_redirects=False)
    assert (already.status, already.headers["Location"]) == (303, "/account")
    out = await submit(client, "/logout", {}, "/account")
    assert (out.status, out.headers["Location"]) == (303, "/login")
    assert wording.FLASH["logged_out"] in await (await client.get("/login")).text()
    after = await client.get("/account", allow_redirects=False)
    assert (after.status, after.headers["Location"]) == (303, "/login")


async def test_twenty_wrong_passwords_lock_the_account_and_look_like_unknown_logins(
    client: Client, store: Store, services: Services, demo: list[DemoAccount], config: Config
) -> None:
    resident = await make_resident(services, demo[0])
    limit = config.limits.login_failures_per_account
    known: list[tuple[int, str]] = []
    unknown: list[tuple[int, str]] = []
    for attempt in range(20):
        response = await log_in(client, PHONE, f"wrong-{attempt}")
        known.append((response.status, plain(await response.text())))
        response = await log_in(client, "+79039999999", f"wrong-{attempt}")
        unknown.append((response.status, plain(await response.text())))
    assert [status for status, _ in known] == [400] * limit + [429] * (20 - limit)
    assert wording.LOGIN_BAD in known[0][1] and wording.LOCKED in known[-1][1]
    # The same pages, word for word, apart from the login typed.
    assert [(s, b.replace("+79039999999", PHONE)) for s, b in unknown] == known
    # While locked even the right password is refused; nothing about the resident changed.
    assert (await log_in(client, PHONE)).status == 429
    assert (await log_in(client, resident.card_number)).status == 429
    assert await resident_row(store) == resident


async def test_failures_from_one_ip_are_limited_across_logins(
    app_client: Callable[[Config], Awaitable[Client]], config: Config, services: Services,
    demo: list[DemoAccount],
) -> None:
    await make_resident(services, demo[0])
    client = await app_client(replace(config, limits={"login_failures_per_ip": 3}))
    statuses = [(await log_in(client, f"+7903555000{n}", "wrong-password")).status for n in range(4)]
    assert statuses == [400, 400, 400, 429]
    assert (await log_in(client, PHONE)).status == 429


async def test_empty_login_form_is_refused(client: Client) -> None:
    response = await submit(client, "/login", {"login": "", "password": ""})
    assert response.status == 400 and wording.LOGIN_EMPTY in await response.text()


async def test_a_form_sent_during_an_import_waits_for_it(
    client: Client, services: Services, demo: list[DemoAccount], config: Config
) -> None:
    # `smsgate import` holds the store's write lock for its whole file (7-9 s for 1,000,000 rows).
    await make_resident(services, demo[0])
    assert (await log_in(client, PHONE)).status == 303
    importer = sqlite3.connect(config.resolve(config.store.path), isolation_level=None)
    try:
        importer.execute("BEGIN IMMEDIATE")
        asyncio.get_running_loop().call_later(6.0, importer.execute, "ROLLBACK")
        changed = await submit(client, "/password", {
            "password": PASSWORD, "new_password": NEW_PASSWORD, "new_password_confirm": NEW_PASSWORD,
        })
        assert (changed.status, changed.headers["Location"]) == (303, "/account")
        assert not importer.in_transaction
    finally:
        importer.close()


async def test_a_password_change_ends_the_other_sessions(
    aiohttp_client: MakeClient, config: Config, services: Services, demo: list[DemoAccount],
    store: Store,
) -> None:
    await make_resident(services, demo[0])
    app = create_app(config, services)
    first, second = await aiohttp_client(app), await aiohttp_client(app)
    assert (await log_in(first, PHONE)).status == 303
    assert (await log_in(second, PHONE)).status == 303
    changed = await submit(first, "/password", {
        "password": PASSWORD, "new_password": NEW_PASSWORD, "new_password_confirm": NEW_PASSWORD,
    })
    assert (changed.status, changed.headers["Location"]) == (303, "/account")
    assert (await first.get("/account", allow_redirects=False)).status == 200
    kicked = await second.get("/account", allow_redirects=False)
    assert (kicked.status, kicked.headers["Location"]) == (303, "/login")
    assert wording.FLASH["expired"] in await (await second.get("/login")).text()
    # A change the resident did not start from an SMS password is announced by SMS.
    assert (await outbox(store, PHONE))[-1] == texts.WEB_PASSWORD_CHANGED


# ---- password reset ---------------------------------------------------------------------------


async def test_reset_by_code_sets_a_new_password(
    client: Client, store: Store, services: Services, demo: list[DemoAccount]
) -> None:
    await make_resident(services, demo[0])
    asked = await submit(client, "/reset", {"phone": "8-903-123-45-67"})
    assert (asked.status, asked.headers["Location"]) == (303, "/reset/code")
    code = await last_secret(store, PHONE)
    assert re.fullmatch(r"\d{6}", code)
    stored = await store.db.execute_fetchall("SELECT code_hash FROM codes")
    assert code not in str(next(iter(stored))[0])  # kept hashed
    page = await (await client.get("/reset/code")).text()
    for name in ("code", "new_password", "new_password_confirm"):
        assert f'name="{name}"' in page

    weak = await submit(client, "/reset/code", {"code": code, "new_password": "short",
                                                "new_password_confirm": "short"})
    assert weak.status == 400 and wording.WEAK["short"] in await weak.text()
    done = await submit(client, "/reset/code", {"code": code, "new_password": NEW_PASSWORD,
                                                "new_password_confirm": NEW_PASSWORD})
    assert (done.status, done.headers["Location"]) == (303, "/login")
    assert wording.FLASH["password_reset"] in await (await client.get("/login")).text()
    assert (await outbox(store, PHONE))[-1] == texts.WEB_PASSWORD_CHANGED
    assert (await log_in(client, PHONE)).status == 400
    assert (await log_in(client, PHONE, NEW_PASSWORD)).status == 303
    # Single use: the same code does not work twice.
    await submit(client, "/logout", {}, "/account")
    assert (await submit(client, "/reset", {"phone": PHONE})).status == 303
    again = await submit(client, "/reset/code", {"code": code, "new_password": PASSWORD,
                                                 "new_password_confirm": PASSWORD})
    assert again.status == 400


async def test_reset_says_the_same_whether_or_not_the_phone_is_registered(
    aiohttp_client: MakeClient, config: Config, store: Store, services: Services,
    demo: list[DemoAccount],
) -> None:
    await make_resident(services, demo[0])
    app = create_app(config, services)
    pages = []
    for who in (PHONE, "+79161234567"):
        client = await aiohttp_client(app)
        asked = await submit(client, "/reset", {"phone": who})
        assert (asked.status, asked.headers["Location"]) == (303, "/reset/code")
        pages.append(plain(await (await client.get("/reset/code")).text()))
    assert pages[0] == pages[1].replace("+7 916 ***-**-67", "+7 903 ***-**-67")
    assert await outbox(store, "+79161234567") == []
    # Limits are counted for unknown phones too, so they cannot tell either.
    for who in (PHONE, "+79161234567"):
        client = await aiohttp_client(app)
        statuses = [(await submit(client, "/reset", {"phone": who})).status for _ in range(3)]
        assert statuses == [303, 303, 429]


async def test_ten_wrong_codes_use_the_code_up(
    client: Client, store: Store, services: Services, demo: list[DemoAccount]
) -> None:
    resident = await make_resident(services, demo[0])
    await submit(client, "/reset", {"phone": PHONE})
    code = await last_secret(store, PHONE)
    wrong = [f"{(int(code) + n) % 1_000_000:06d}" for n in range(1, 11)]
    for guess in wrong:
        response = await submit(client, "/reset/code", {"code": guess, "new_password": NEW_PASSWORD,
                                                        "new_password_confirm": NEW_PASSWORD})
        assert response.status == 400 and wording.CODE_BAD in await response.text()
    late = await submit(client, "/reset/code", {"code": code, "new_password": NEW_PASSWORD,
                                                "new_password_confirm": NEW_PASSWORD})
    assert late.status == 400
    assert await resident_row(store) == resident
    assert (await counts(store))["codes"] == 0
    not_digits = await submit(client, "/reset/code", {"code": "12ab56", "new_password": NEW_PASSWORD,
                                                      "new_password_confirm": NEW_PASSWORD})
    assert not_digits.status == 400


async def test_a_new_code_replaces_the_old_and_codes_expire(
    app_client: Callable[[Config], Awaitable[Client]], config: Config, store: Store,
    services: Services, demo: list[DemoAccount],
) -> None:
    await make_resident(services, demo[0])
    client = await app_client(config)
    await submit(client, "/reset", {"phone": PHONE})
    first = await last_secret(store, PHONE)
    await submit(client, "/reset", {"phone": PHONE})
    second = await last_secret(store, PHONE)
    old = await submit(client, "/reset/code", {"code": first, "new_password": NEW_PASSWORD,
                                               "new_password_confirm": NEW_PASSWORD})
    assert old.status == 400 or first == second  # one in a million, the same digits come again
    new = await submit(client, "/reset/code", {"code": second, "new_password": NEW_PASSWORD,
                                               "new_password_confirm": NEW_PASSWORD})
    assert new.status == 303

    expiring = await app_client(replace(config, limits={"code_ttl_minutes": 0}))
    await submit(expiring, "/reset", {"phone": PHONE})
    code = await last_secret(store, PHONE)
    expired = await submit(expiring, "/reset/code", {"code": code, "new_password": PASSWORD,
                                                     "new_password_confirm": PASSWORD})
    assert expired.status == 400
    assert (await log_in(expiring, PHONE, NEW_PASSWORD)).status == 303


async def test_reset_pages_need_a_phone_first(client: Client) -> None:
    response = await client.get("/reset/code", allow_redirects=False)
    assert (response.status, response.headers["Location"]) == (303, "/reset")
    response = await client.get("/register/password", allow_redirects=False)
    assert (response.status, response.headers["Location"]) == (303, "/register")


async def test_sms_requests_from_one_ip_are_limited(
    app_client: Callable[[Config], Awaitable[Client]], config: Config, store: Store
) -> None:
    client = await app_client(replace(config, limits={"sms_per_ip_per_hour": 2}))
    statuses = [(await submit(client, "/reset", {"phone": f"+7916123456{n}"})).status for n in range(3)]
    assert statuses == [303, 303, 429]


async def reset_from(client: Client, phone: str, forwarded: str) -> int:
    token = await token_of(client, "/reset")
    response = await client.post("/reset", data={"csrf_token": token, "phone": phone},
                                 headers={"X-Forwarded-For": forwarded}, allow_redirects=False)
    return response.status


async def test_behind_a_trusted_proxy_limits_count_the_address_it_forwards(
    app_client: Callable[[Config], Awaitable[Client]], config: Config
) -> None:
    client = await app_client(replace(
        config, limits={"sms_per_ip_per_hour": 2}, web={"trusted_proxies": "127.0.0.1, ::1"}
    ))
    first = [await reset_from(client, f"+7916123450{n}", "203.0.113.5") for n in range(2)]
    # What a client writes to the left of what the proxy appended counts for nothing.
    spoofed = await reset_from(client, "+79161234503", "198.51.100.9, 203.0.113.5")
    other = await reset_from(client, "+79161234504", "203.0.113.6")
    assert (first, spoofed, other) == ([303, 303], 429, 303)


async def test_without_trusted_proxies_the_forwarded_header_is_ignored(
    app_client: Callable[[Config], Awaitable[Client]], config: Config
) -> None:
    client = await app_client(replace(config, limits={"sms_per_ip_per_hour": 2}))
    statuses = [await reset_from(client, f"+7916123451{n}", f"203.0.113.{n}") for n in range(3)]
    assert statuses == [303, 303, 429]


# ---- the personal account ---------------------------------------------------------------------


async def test_account_shows_debts_per_provider_and_service_payments_and_history(
    client: Client, store: Store, services: Services, demo: list[DemoAccount]
) -> None:
    resident = await make_resident(services, demo[0])
    await services.register(PHONE, demo[1].number, demo[1].receipt_code)  # a second account
    assert (await log_in(client, PHONE)).status == 303
    page = await (await client.get("/account")).text()

    owed = await services.debts_of_resident(resident.id)
    assert [item.account for item in owed] == [demo[0].number, demo[1].number]
    for item in owed:
        assert f"Лицевой счёт {item.account}" in page
        for line in item.lines:
            assert str(web_escape(line.provider)) in page
            shown = texts.money(line.amount) if line.amount > 0 else f"аванс {texts.money(-line.amount)}"
            assert shown in page
    total = sum(item.total for item in owed)
    assert total > 0 and f"Итого к оплате: <b>{texts.money(total)}" in page
    details = await services.account_details(resident.id)
    assert details[0].charges and details[0].payments
    for charge in details[0].charges:
        assert str(web_escape(charge.service)) in page
    paid_at = details[0].payments[0].paid_at
    assert "Последние платежи" in page and f"{paid_at[8:10]}.{paid_at[5:7]}.{paid_at[:4]}" in page
    assert "Начислено за " in page
    # The SMS history shows the resident's texts with passwords masked.
    assert "Ваши SMS" in page


async def test_history_masks_passwords_and_codes(
    client: Client, store: Store, services: Services, demo: list[DemoAccount]
) -> None:
    await make_resident(services, demo[0])
    await submit(client, "/reset", {"phone": PHONE})
    code = await last_secret(store, PHONE)
    await services.queue_sms(PHONE, texts.PASSWORD_SENT.format(password="AbCdEf4679"), "secret")
    assert (await log_in(client, PHONE)).status == 303
    page = await (await client.get("/account")).text()
    assert "Код для смены пароля: ••••••" in page
    assert code not in page and "AbCdEf4679" not in page


async def test_reminders_switch_is_the_stop_start_flag(
    client: Client, store: Store, services: Services, demo: list[DemoAccount]
) -> None:
    await make_resident(services, demo[0])
    assert (await log_in(client, PHONE)).status == 303
    off = await submit(client, "/account/reminders", {"reminders": "off"}, "/account")
    assert (off.status, off.headers["Location"]) == (303, "/account")
    assert not (await resident_row(store)).reminders
    page = await (await client.get("/account")).text()
    assert wording.FLASH["reminders_off"] in page and 'value="on"' in page
    await services.set_reminders(PHONE, True)  # what СТАРТ by SMS does
    assert 'value="off"' in await (await client.get("/account")).text()
    bad = await submit(client, "/account/reminders", {"reminders": "maybe"}, "/account")
    assert bad.status == 400
    assert (await resident_row(store)).reminders


async def test_link_another_account(
    client: Client, store: Store, services: Services, demo: list[DemoAccount]
) -> None:
    resident = await make_resident(services, demo[0])
    assert (await log_in(client, PHONE)).status == 303
    wrong = await submit(client, "/account/link", {"account": demo[1].number, "receipt_code": "999999"},
                         "/account")
    assert wrong.status == 400 and wording.REGISTER_BAD in await wrong.text()
    empty = await submit(client, "/account/link", {"account": "", "receipt_code": ""}, "/account")
    assert empty.status == 400
    assert await residents.accounts_of(store.db, resident.id) == [demo[0].number]
    linked = await submit(client, "/account/link", {"account": demo[1].number,
                                                    "receipt_code": demo[1].receipt_code}, "/account")
    assert (linked.status, linked.headers["Location"]) == (303, "/account")
    assert wording.FLASH["linked"] in await (await client.get("/account")).text()
    again = await submit(client, "/account/link", {"account": demo[1].number,
                                                   "receipt_code": demo[1].receipt_code}, "/account")
    assert again.status == 303
    assert wording.FLASH["already"] in await (await client.get("/account")).text()
    assert await residents.accounts_of(store.db, resident.id) == [demo[0].number, demo[1].number]


async def test_a_resident_without_accounts_sees_an_invitation(
    client: Client, store: Store, services: Services, demo: list[DemoAccount]
) -> None:
    resident = await make_resident(services, demo[0])
    async with store.tx() as db:
        await db.execute("DELETE FROM resident_accounts WHERE resident_id = ?", (resident.id,))
    assert (await log_in(client, PHONE)).status == 303
    page = await (await client.get("/account")).text()
    assert "не подключено ни одного счёта" in page


# ---- bad input --------------------------------------------------------------------------------


def every_form(demo: list[DemoAccount]) -> list[Form]:
    return [
        Form("/login", {"login": PHONE, "password": PASSWORD}),
        Form("/register", {"receipt_type": "center", "account": demo[2].number,
                           "receipt_code": demo[2].receipt_code, "phone": "+79161112233"}),
        Form("/reset", {"phone": PHONE}),
        Form("/password", {"password": PASSWORD, "new_password": NEW_PASSWORD,
                           "new_password_confirm": NEW_PASSWORD}),
        Form("/account/link", {"account": demo[1].number, "receipt_code": demo[1].receipt_code},
             page="/account"),
        Form("/account/reminders", {"reminders": "off"}, page="/account"),
        Form("/logout", {}, page="/account"),
    ]


async def logged_in_client(aiohttp_client: MakeClient, app: web.Application) -> Client:
    client = await aiohttp_client(app)
    assert (await log_in(client, PHONE)).status == 303
    return client


@dataclass
class SignedIn:
    """demo[0]'s resident, logged in on a client of this app."""

    app: web.Application
    client: Client


@pytest.fixture
async def signed_in(
    aiohttp_client: MakeClient, config: Config, services: Services, demo: list[DemoAccount]
) -> SignedIn:
    await make_resident(services, demo[0])
    app = create_app(config, services)
    return SignedIn(app, await logged_in_client(aiohttp_client, app))


@contextlib.asynccontextmanager
async def nothing_written(store: Store) -> AsyncIterator[None]:
    """The block adds or removes no row anywhere and leaves the resident's row as it was."""
    before, resident = await counts(store), await resident_row(store)
    yield
    assert await counts(store) == before
    assert await resident_row(store) == resident


async def test_forms_without_a_csrf_token_are_refused(
    aiohttp_client: MakeClient, store: Store, demo: list[DemoAccount], signed_in: SignedIn,
) -> None:
    client = signed_in.client
    two_step = [Form("/reset/code", {"code": "123456"}), Form("/register/password", {"password": PASSWORD})]
    async with nothing_written(store):
        for form in [*every_form(demo), *two_step]:
            for token in (None, "", "forged-token"):
                data = dict(form.fields) if token is None else {**form.fields, "csrf_token": token}
                response = await client.post(form.path, data=data, allow_redirects=False)
                body = await response.text()
                assert response.status == 403, (form.path, token)
                assert wording.CSRF in body and "Traceback" not in body
        # A token from another browser's session does not work either.
        stranger = await aiohttp_client(signed_in.app)
        foreign = await token_of(stranger, "/login")
        response = await client.post("/logout", data={"csrf_token": foreign}, allow_redirects=False)
        assert response.status == 403
    assert (await client.get("/account", allow_redirects=False)).status == 200


async def test_a_ten_thousand_character_field_is_refused_whole(
    store: Store, demo: list[DemoAccount], signed_in: SignedIn,
) -> None:
    client = signed_in.client
    async with nothing_written(store):
        for form in every_form(demo):
            if form.path == "/logout":
                continue
            for name in form.fields:
                for filler in ("9" * 10_000, "Я" * 10_000):
                    token = await token_of(client, form.page or form.path)
                    data = {**form.fields, name: filler, "csrf_token": token}
                    response = await client.post(form.path, data=data, allow_redirects=False)
                    body = await response.text()
                    # ASCII fits the body limit and meets the field limit; Cyrillic is too big a
                    # body.
                    expected = (400, wording.TOO_LONG.format(limit=MAX_FIELD_CHARS)) \
                        if filler[0] == "9" else (413, wording.TOO_LARGE)
                    assert (response.status, expected[1] in body) == (expected[0], True), \
                        (form.path, name)
                    assert "Traceback" not in body and filler[:100] not in body
    assert (await client.get("/account", allow_redirects=False)).status == 200


@pytest.mark.parametrize("foreign", ["+44 20 7946 0958", "+1 202 555 0143", "+380 44 123 4567",
                                     "+49 1512 3456789", "+7 7172 123456", "+7 495 123-45-67"])
async def test_a_phone_from_another_country_is_refused(
    client: Client, store: Store, demo: list[DemoAccount], foreign: str
) -> None:
    before = await counts(store)
    register = await submit(client, "/register", {
        "receipt_type": "center", "account": demo[0].number, "receipt_code": demo[0].receipt_code,
        "phone": foreign,
    })
    assert register.status == 400 and wording.PHONE_BAD in await register.text()
    reset = await submit(client, "/reset", {"phone": foreign})
    assert reset.status == 400 and wording.PHONE_BAD in await reset.text()
    login = await log_in(client, foreign)
    assert login.status == 400 and wording.LOGIN_BAD in await login.text()
    assert await counts(store) == before


SQL = "1'; DROP TABLE residents; --"
HTML = '<script>alert("x")</script><img src=x onerror=alert(1)>'


async def test_sql_and_html_in_every_field_are_harmless(
    aiohttp_client: MakeClient, store: Store, demo: list[DemoAccount], signed_in: SignedIn,
) -> None:
    client = signed_in.client
    anonymous = await aiohttp_client(signed_in.app)
    forms = [form for form in every_form(demo) if form.path not in ("/logout", "/login")]
    checks = [(client if form.page or form.path == "/password" else anonymous, form) for form in forms]
    checks.append((anonymous, Form("/login", {"login": PHONE, "password": PASSWORD})))
    resident = await resident_row(store)
    async with nothing_written(store):
        for who, form in checks:
            for name in form.fields:
                for payload in (SQL, HTML, SQL + HTML):
                    token = await token_of(who, form.page or form.path)
                    response = await who.post(form.path, data={**form.fields, name: payload,
                                                               "csrf_token": token},
                                              allow_redirects=False)
                    body = await response.text()
                    assert 400 <= response.status < 500, (form.path, name, payload, response.status)
                    assert "<script>alert" not in body and "<img src=x" not in body
                    assert "Traceback" not in body and "sqlite" not in body.lower()
    # Also in the two-step forms, and the login typed comes back escaped.
    response = await submit(anonymous, "/login", {"login": HTML, "password": SQL})
    body = await response.text()
    assert response.status == 400 and "&lt;script&gt;" in body and "<script>" not in body
    await submit(anonymous, "/reset", {"phone": PHONE})
    for field_name in ("code", "new_password", "new_password_confirm"):
        fields = {"code": "123456", "new_password": NEW_PASSWORD, "new_password_confirm": NEW_PASSWORD}
        response = await submit(anonymous, "/reset/code", {**fields, field_name: HTML + SQL})
        assert response.status == 400
    assert await resident_row(store) == resident
    tables = await store.db.execute_fetchall("SELECT name FROM sqlite_master WHERE type = 'table'")
    assert "residents" in {row[0] for row in tables}


# ---- friendly errors --------------------------------------------------------------------------


async def test_unknown_pages_wrong_methods_and_failures_are_friendly(
    client: Client, services: Services, demo: list[DemoAccount], monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = await client.get("/no/such/page")
    assert missing.status == 404 and wording.NOT_FOUND in await missing.text()
    wrong_method = await client.get("/logout")
    assert wrong_method.status == 405 and wording.NOT_ALLOWED in await wrong_method.text()
    not_form = await client.post("/login", data=b"\xff\xfe" * 10,
                                 headers={"Content-Type": "application/octet-stream"})
    assert not_form.status == 403

    await make_resident(services, demo[0])
    assert (await log_in(client, PHONE)).status == 303

    async def broken(resident_id: int) -> list[Any]:
        raise RuntimeError("database is locked: SELECT * FROM residents")

    monkeypatch.setattr(services, "account_details", broken)
    failed = await client.get("/account")
    body = await failed.text()
    assert failed.status == 500 and wording.SERVER_ERROR in body
    assert "Traceback" not in body and "RuntimeError" not in body and "SELECT" not in body


async def test_start_web_serves_on_the_configured_port(config: Config, services: Services) -> None:
    @dataclass
    class FakeGateway:
        services: Services

    port = free_port()
    configured = replace(config, web={"port": port})
    stop = await start_web(configured, FakeGateway(services))
    try:
        async with ClientSession() as session, session.get(
            f"http://127.0.0.1:{port}/login"
        ) as response:
            assert response.status == 200
            assert "Вход в личный кабинет" in await response.text()
    finally:
        await stop()
    with pytest.raises(TypeError):
        await start_web(configured, object())


def web_escape(text: str) -> str:
    """Text as jinja's autoescape writes it into a page."""
    return str(escape(text))
