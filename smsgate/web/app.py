"""Building the website's application, and serving it next to a running gateway."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web

from smsgate import logs, texts
from smsgate.config import Config
from smsgate.services import TIMEZONE, Services
from smsgate.web import keys, middlewares, ussd
from smsgate.web.sessions import SessionCodec
from smsgate.web.views import ROUTES
from store import meta
from store.db import Store

log = logs.get("web")

PACKAGE_DIR = Path(__file__).resolve().parent.parent
STATIC_DIR = PACKAGE_DIR / "static"
# The name of the meta row holding the generated cookie key (the name, not the key).
SESSION_KEY_ROW = "web_session_secret"

StopWeb = Callable[[], Awaitable[None]]

_MONTHS = ("январь", "февраль", "март", "апрель", "май", "июнь", "июль", "август", "сентябрь",
           "октябрь", "ноябрь", "декабрь")


def _month(period: str) -> str:
    """'2025-10' -> 'октябрь 2025'."""
    year, _, month = period.partition("-")
    return f"{_MONTHS[int(month) - 1]} {year}" if month.isdigit() and 1 <= int(month) <= 12 else period


def _date(iso: str) -> str:
    """'2025-10-07' -> '07.10.2025'."""
    try:
        return dt.date.fromisoformat(iso).strftime("%d.%m.%Y")
    except ValueError:
        return iso


def _moment(unix: float) -> str:
    return dt.datetime.fromtimestamp(unix, TIMEZONE).strftime("%d.%m.%Y %H:%M")


def _phone(e164: str) -> str:
    """'+79031234567' -> '+7 903 123-45-67', as people write it."""
    if len(e164) == 12 and e164.startswith("+7"):
        n = e164[2:]
        return f"+7 {n[:3]} {n[3:6]}-{n[6:8]}-{n[8:]}"
    return e164


def _masked_phone(e164: str) -> str:
    """Only the last digits, as on a page someone else may glance at."""
    shown = _phone(e164)
    return shown[:6] + " ***-**-" + shown[-2:] if len(shown) > 8 else shown


FILTERS: dict[str, Callable[..., str]] = {
    "money": texts.money, "month": _month, "date": _date, "moment": _moment,
    "phone": _phone, "masked_phone": _masked_phone,
}


async def _stored_secret(store: Store) -> str:
    """The cookie key kept in the store: made once, the same for every later start."""
    async with store.tx() as db:
        return await meta.put_once(db, SESSION_KEY_ROW, secrets.token_urlsafe(32))


async def _session_key(app: web.Application) -> AsyncIterator[None]:
    """Keys the session codec before the first request: from the config, else from the store."""
    secret = app[keys.CONFIG].web.secret or await _stored_secret(app[keys.SERVICES].store)
    app[keys.SESSIONS].set_secret(secret)
    yield


def create_app(config: Config, services: Services) -> web.Application:
    app = web.Application(
        middlewares=[middlewares.errors, middlewares.sessions, middlewares.forms],
        client_max_size=middlewares.MAX_BODY_BYTES,
    )
    app[keys.CONFIG] = config
    app[keys.SERVICES] = services
    app[keys.SESSIONS] = SessionCodec(secure=config.web.secure_cookies)
    environment = aiohttp_jinja2.setup(
        app,
        loader=jinja2.PackageLoader("smsgate", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        default_helpers=False,
        filters=FILTERS,
    )
    environment.globals.update(service_name=texts.SERVICE, service_number=config.smsc.source_addr)
    app.cleanup_ctx.append(_session_key)
    app.on_response_prepare.append(middlewares.security_headers)
    app.add_routes(ROUTES)
    ussd.setup(app)
    app.router.add_static("/static", STATIC_DIR, append_version=False)
    return app


async def start_web(config: Config, gateway: object) -> StopWeb:
    """Serve the site on [web] host:port next to a running gateway; returns what stops it."""
    # `smsgate run` hands over its gateway untyped; anything with Services at .services will do.
    services = getattr(gateway, "services", None)
    if not isinstance(services, Services):
        raise TypeError("start_web needs a gateway with .services")
    runner = web.AppRunner(create_app(config, services), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, config.web.host, config.web.port)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    log.info("web_started", extra={"host": config.web.host, "port": config.web.port})
    return runner.cleanup
