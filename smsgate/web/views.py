"""The pages: each view reads its form, calls one Services method, and renders or redirects."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import aiohttp_jinja2
from aiohttp import web

from smsgate import logs, phone
from smsgate.services import Outcome, Services, local_today
from smsgate.web import keys, peers, wording
from smsgate.web.errors import Redirect
from smsgate.web.sessions import Session, fingerprint
from store import debts
from store.residents import Resident

log = logs.get("web")

RECEIPT_TYPES = ("center", "provider")
_CODE = re.compile(r"\d{6}")


def _services(request: web.Request) -> Services:
    return request.app[keys.SERVICES]


def _session(request: web.Request) -> Session:
    return request[keys.SESSION]


def _ip(request: web.Request) -> str:
    return peers.client_address(request, request.app[keys.CONFIG].web.trusted_proxies)


async def _field(request: web.Request, name: str) -> str:
    value = (await request.post()).get(name, "")
    return value if isinstance(value, str) else ""


def render(
    request: web.Request, template: str, context: dict[str, Any], status: int = 200
) -> web.Response:
    """A page with what every page needs: the CSRF token and a one-time notice, if any."""
    session = _session(request)
    flash = session.pop("flash") or ""
    page = {"csrf_token": session.csrf_token(), "flash": wording.FLASH.get(flash, ""), **context}
    return aiohttp_jinja2.render_template(template, request, page, status=status)


async def current_resident(request: web.Request) -> Resident | None:
    """The logged-in resident; a session whose password has changed since is ended."""
    session = _session(request)
    if session.resident_id is None:
        return None
    resident = await _services(request).resident(session.resident_id)
    if resident is None or resident.password_hash is None or (
        fingerprint(resident.password_hash) != session.fingerprint
    ):
        session.clear()
        session.put("flash", "expired")
        return None
    return resident


async def require_resident(request: web.Request, changing_password: bool = False) -> Resident:
    """The logged-in resident, or off to the login page; a password from SMS must be changed first."""
    resident = await current_resident(request)
    if resident is None:
        raise Redirect("/login")
    if resident.must_change_password and not changing_password:
        raise Redirect("/password")
    return resident


def _log_in(request: web.Request, resident: Resident) -> None:
    assert resident.password_hash is not None
    _session(request).log_in(resident.id, resident.password_hash)


def _phone(raw: str) -> str | None:
    """E.164 of a Russian mobile number written any common way; None for anything else."""
    try:
        who = phone.normalise(raw)
    except phone.BadPhone:
        return None
    return who if phone.is_russian_mobile(who) else None


# ---- pages ------------------------------------------------------------------------------------


async def index(request: web.Request) -> web.StreamResponse:
    raise Redirect("/account" if _session(request).resident_id is not None else "/login")


async def login_page(request: web.Request) -> web.StreamResponse:
    if await current_resident(request) is not None:
        raise Redirect("/account")
    return render(request, "login.html", {"login": ""})


async def login(request: web.Request) -> web.StreamResponse:
    login_text = (await _field(request, "login")).strip()
    password = await _field(request, "password")

    def again(message: str, status: int) -> web.Response:
        return render(request, "login.html", {"login": login_text, "error": message}, status)

    if not login_text or not password:
        return again(wording.LOGIN_EMPTY, 400)
    result = await _services(request).login(login_text, password, _ip(request))
    if result.outcome is Outcome.LOCKED:
        return again(wording.LOCKED, 429)
    if result.outcome is not Outcome.OK or result.resident is None:
        return again(wording.LOGIN_BAD, 400)
    _log_in(request, result.resident)
    raise Redirect("/account")


async def register_page(request: web.Request) -> web.StreamResponse:
    if await current_resident(request) is not None:
        raise Redirect("/account")
    values = {"receipt_type": "center", "account": "", "receipt_code": "", "phone": ""}
    return render(request, "register.html", values)


async def register(request: web.Request) -> web.StreamResponse:
    values = {name: (await _field(request, name)).strip()
              for name in ("receipt_type", "account", "receipt_code", "phone")}

    def again(message: str, status: int) -> web.Response:
        return render(request, "register.html", {**values, "error": message}, status)

    if values["receipt_type"] not in RECEIPT_TYPES:
        return again(wording.RECEIPT_TYPE, 400)
    if not values["account"] or not values["receipt_code"] or not values["phone"]:
        return again(wording.REGISTER_EMPTY, 400)
    who = _phone(values["phone"])
    if who is None:
        return again(wording.PHONE_BAD, 400)
    result = await _services(request).register_web(
        who, values["account"], values["receipt_code"], _ip(request)
    )
    refusals = {
        Outcome.BAD: (wording.REGISTER_BAD, 400),
        Outcome.NOT_MOBILE: (wording.PHONE_BAD, 400),
        Outcome.LOCKED: (wording.LOCKED, 429),
        Outcome.LIMITED: (wording.SMS_LIMIT, 429),
        Outcome.UNAVAILABLE: (wording.SMS_UNAVAILABLE, 503),
    }
    if result.outcome in refusals:
        return again(*refusals[result.outcome])
    log.info("web_register_started", extra={"msisdn": who, "receipt_type": values["receipt_type"]})
    _session(request).put("pending_phone", who)
    raise Redirect("/register/password")


def _register_password_context(request: web.Request, who: str) -> dict[str, Any]:
    return {"phone": who, "minutes": _services(request).limits.code_ttl_minutes}


async def register_password_page(request: web.Request) -> web.StreamResponse:
    who = _session(request).get("pending_phone")
    if who is None:
        raise Redirect("/register")
    return render(request, "register_password.html", _register_password_context(request, who))


async def register_password(request: web.Request) -> web.StreamResponse:
    """The password from the SMS proves the phone typed is the resident's: only now is it registered."""
    session = _session(request)
    who = session.get("pending_phone")
    if who is None:
        raise Redirect("/register")
    password = await _field(request, "password")

    def again(message: str, status: int) -> web.Response:
        context = {**_register_password_context(request, who), "error": message}
        return render(request, "register_password.html", context, status)

    if not password:
        return again(wording.PASSWORD_EMPTY, 400)
    result = await _services(request).confirm_register_web(who, password, _ip(request))
    if result.outcome is Outcome.LOCKED:
        return again(wording.LOCKED, 429)
    if result.outcome not in (Outcome.OK, Outcome.ALREADY):
        return again(wording.REGISTER_CODE_BAD, 400)
    if result.resident is not None:
        _log_in(request, result.resident)  # a password from SMS: the change form comes first
        raise Redirect("/account")
    # A resident with a password of their own keeps it, and logs in with it (docs/web.md).
    session.pop("pending_phone")
    session.put("flash", "registered_linked" if result.outcome is Outcome.OK else "registered_already")
    raise Redirect("/login")


async def password_page(request: web.Request) -> web.StreamResponse:
    resident = await require_resident(request, changing_password=True)
    return render(request, "password.html", {"resident": resident})


async def change_password(request: web.Request) -> web.StreamResponse:
    resident = await require_resident(request, changing_password=True)
    current = await _field(request, "password")
    new_password = await _field(request, "new_password")

    def again(message: str, status: int) -> web.Response:
        return render(request, "password.html", {"resident": resident, "error": message}, status)

    if not current or not new_password:
        return again(wording.PASSWORD_EMPTY, 400)
    if new_password != await _field(request, "new_password_confirm"):
        return again(wording.PASSWORD_MISMATCH, 400)
    result = await _services(request).change_password(
        resident.id, current, new_password, _ip(request)
    )
    if result.outcome is Outcome.WEAK:
        return again(wording.WEAK[result.weakness], 400)
    if result.outcome is Outcome.LOCKED:
        return again(wording.LOCKED, 429)
    if result.outcome is not Outcome.OK or result.resident is None:
        return again(wording.PASSWORD_WRONG, 400)
    _log_in(request, result.resident)  # the new password's fingerprint keeps this session alive
    _session(request).put("flash", "password_changed")
    raise Redirect("/account")


async def reset_page(request: web.Request) -> web.StreamResponse:
    return render(request, "reset.html", {"phone": ""})


async def reset(request: web.Request) -> web.StreamResponse:
    raw = (await _field(request, "phone")).strip()

    def again(message: str, status: int) -> web.Response:
        return render(request, "reset.html", {"phone": raw, "error": message}, status)

    who = _phone(raw)
    if who is None:
        return again(wording.PHONE_BAD, 400)
    outcome = await _services(request).request_reset(who, _ip(request))
    if outcome is Outcome.LIMITED:
        return again(wording.SMS_LIMIT, 429)
    if outcome is Outcome.UNAVAILABLE:
        return again(wording.SMS_UNAVAILABLE, 503)
    if outcome is not Outcome.OK:
        return again(wording.PHONE_BAD, 400)
    _session(request).put("reset_phone", who)
    raise Redirect("/reset/code")


async def reset_code_page(request: web.Request) -> web.StreamResponse:
    who = _session(request).get("reset_phone")
    if who is None:
        raise Redirect("/reset")
    minutes = _services(request).limits.code_ttl_minutes
    return render(request, "reset_code.html", {"phone": who, "minutes": minutes})


async def reset_confirm(request: web.Request) -> web.StreamResponse:
    who = _session(request).get("reset_phone")
    if who is None:
        raise Redirect("/reset")
    code = (await _field(request, "code")).strip()
    new_password = await _field(request, "new_password")
    minutes = _services(request).limits.code_ttl_minutes

    def again(message: str, status: int) -> web.Response:
        context = {"phone": who, "minutes": minutes, "error": message}
        return render(request, "reset_code.html", context, status)

    if not _CODE.fullmatch(code):
        return again(wording.CODE_BAD, 400)
    if not new_password:
        return again(wording.PASSWORD_EMPTY, 400)
    if new_password != await _field(request, "new_password_confirm"):
        return again(wording.PASSWORD_MISMATCH, 400)
    result = await _services(request).confirm_reset(who, code, new_password, _ip(request))
    if result.outcome is Outcome.WEAK:
        return again(wording.WEAK[result.weakness], 400)
    if result.outcome is Outcome.LOCKED:
        return again(wording.LOCKED, 429)
    if result.outcome is not Outcome.OK:
        return again(wording.CODE_BAD, 400)
    session = _session(request)
    session.clear()  # whoever was logged in on this browser, the next login is by the new password
    session.put("flash", "password_reset")
    raise Redirect("/login")


# ---- the personal account ---------------------------------------------------------------------


@dataclass
class ProviderView:
    name: str
    debt: int = 0
    services: list[debts.ServiceCharge] = field(default_factory=list)


@dataclass
class AccountView:
    number: str
    address: str
    total: int
    period: str
    providers: list[ProviderView]
    payments: tuple[debts.Payment, ...]


async def _account_views(services: Services, resident_id: int) -> list[AccountView]:
    """Debts per provider with the services each billed last month, as the account page lists them."""
    views: list[AccountView] = []
    for detail in await services.account_details(resident_id):
        providers: dict[str, ProviderView] = {}
        for line in detail.balance.lines:
            providers.setdefault(line.provider, ProviderView(line.provider)).debt += line.amount
        for charge in detail.charges:
            providers.setdefault(charge.provider, ProviderView(charge.provider)).services.append(charge)
        views.append(AccountView(
            detail.balance.account, detail.balance.address, detail.balance.total, detail.period,
            [providers[name] for name in sorted(providers)], detail.payments,
        ))
    return views


async def account_page(
    request: web.Request, resident: Resident | None = None, status: int = 200, **extra: Any
) -> web.Response:
    if resident is None:
        resident = await require_resident(request)
    services = _services(request)
    accounts = await _account_views(services, resident.id)
    context = {
        "resident": resident,
        "accounts": accounts,
        "grand_total": sum(account.total for account in accounts),
        "today": local_today(),
        "history": await services.sms_history(resident.id),
        "link": {"account": "", "receipt_code": ""},
        **extra,
    }
    return render(request, "account.html", context, status)


async def account(request: web.Request) -> web.StreamResponse:
    return await account_page(request)


async def link_account(request: web.Request) -> web.StreamResponse:
    resident = await require_resident(request)
    values = {name: (await _field(request, name)).strip() for name in ("account", "receipt_code")}
    if not values["account"] or not values["receipt_code"]:
        return await account_page(request, resident, 400, link=values, link_error=wording.LINK_EMPTY)
    result = await _services(request).link_account(
        resident.id, values["account"], values["receipt_code"], _ip(request)
    )
    if result.outcome is Outcome.LOCKED:
        return await account_page(request, resident, 429, link=values, link_error=wording.LOCKED)
    if result.outcome not in (Outcome.OK, Outcome.ALREADY):
        return await account_page(
            request, resident, 400, link=values, link_error=wording.REGISTER_BAD
        )
    _session(request).put("flash", "linked" if result.outcome is Outcome.OK else "already")
    raise Redirect("/account")


async def reminders(request: web.Request) -> web.StreamResponse:
    resident = await require_resident(request)
    choice = await _field(request, "reminders")
    if choice not in ("on", "off"):
        return await account_page(request, resident, 400)
    await _services(request).set_reminders(resident.phone, choice == "on")
    _session(request).put("flash", f"reminders_{choice}")
    raise Redirect("/account")


async def logout(request: web.Request) -> web.StreamResponse:
    session = _session(request)
    session.clear()
    session.put("flash", "logged_out")
    raise Redirect("/login")


ROUTES = [
    web.get("/", index),
    web.get("/login", login_page),
    web.post("/login", login),
    web.get("/register", register_page),
    web.post("/register", register),
    web.get("/register/password", register_password_page),
    web.post("/register/password", register_password),
    web.get("/password", password_page),
    web.post("/password", change_password),
    web.get("/reset", reset_page),
    web.post("/reset", reset),
    web.get("/reset/code", reset_code_page),
    web.post("/reset/code", reset_confirm),
    web.get("/account", account),
    web.post("/account/link", link_account),
    web.post("/account/reminders", reminders),
    web.post("/logout", logout),
]
