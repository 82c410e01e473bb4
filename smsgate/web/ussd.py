"""POST /ussd: the USSD menu for aggregators that speak HTTP instead of SMPP.

The aggregator posts a form: sessionId, serviceCode, phoneNumber and text (the resident's inputs
so far joined by "*", empty right after dialling). The answer is text/plain: "CON <screen>" to
wait for the next input, "END <screen>" to close. Whoever can post here can ask for any phone's
debts and a new password for it, so the endpoint refuses everything until `[ussd] http_secret`
is set, and then every request whose ?key= is not that secret.
"""

from __future__ import annotations

import hmac

from aiohttp import web

from handlers.ussd_menu import Screen
from smsgate import logs, phone
from smsgate.ussd import UssdEngine
from smsgate.web import keys

log = logs.get("web")

PATH = "/ussd"
FIELDS = ("sessionId", "serviceCode", "phoneNumber", "text")
MAX_FIELD_CHARS = 64  # sessionId, serviceCode, phoneNumber
MAX_TEXT_CHARS = 500  # every input of a session, joined

DISABLED = "USSD по HTTP не настроен."
FORBIDDEN = "Доступ запрещён."
INCOMPLETE = "Неполный запрос: нужны sessionId, serviceCode, phoneNumber и text."
TOO_LONG = "Слишком длинный запрос."
NOT_MOBILE = "Сервис доступен только с мобильных номеров России."
OTHER_PHONE = "Этот сеанс открыт с другого номера."


class _Refused(Exception):
    def __init__(self, status: int, message: str, reason: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason


def setup(app: web.Application) -> None:
    """Serve POST /ussd on the site's application, with sessions of its own."""
    app[keys.USSD] = UssdEngine(app[keys.SERVICES], app[keys.CONFIG])
    app.router.add_post(PATH, ussd)


def _answer(screen: Screen, status: int = 200) -> web.Response:
    return web.Response(text=f"{'END' if screen.end else 'CON'} {screen.text}", status=status,
                        content_type="text/plain", charset="utf-8")


async def ussd(request: web.Request) -> web.Response:
    try:
        return await _ussd(request)
    except _Refused as refused:
        log.info("ussd_http_refused", extra={"reason": refused.reason, "status": refused.status})
        return _answer(Screen(refused.message, end=True), refused.status)


async def _ussd(request: web.Request) -> web.Response:
    secret = request.app[keys.CONFIG].ussd.http_secret
    if not secret:
        raise _Refused(404, DISABLED, "disabled")
    if not hmac.compare_digest(request.query.get("key", "").encode(), secret.encode()):
        raise _Refused(403, FORBIDDEN, "bad_key")
    try:
        form = await request.post()
    except web.HTTPRequestEntityTooLarge:
        raise _Refused(413, TOO_LONG, "too_large") from None
    values = [form.get(name) for name in FIELDS]
    session_id, service_code, number, text = (value if isinstance(value, str) else None
                                              for value in values)
    if not session_id or not service_code or not number or text is None:
        raise _Refused(400, INCOMPLETE, "missing_field")
    if len(text) > MAX_TEXT_CHARS or max(map(len, (session_id, service_code, number))) > MAX_FIELD_CHARS:
        raise _Refused(400, TOO_LONG, "too_long")
    try:
        who = phone.normalise(number)
    except phone.BadPhone:
        raise _Refused(200, NOT_MOBILE, "not_ru_phone") from None
    if not phone.is_russian_mobile(who):
        raise _Refused(200, NOT_MOBILE, "not_mobile")
    engine = request.app[keys.USSD]
    key = f"http:{session_id}"
    session = engine.session(key)
    if session is None:
        if text:  # inputs for a session we do not have: it expired (or never was)
            return _answer(await engine.answer(key, who, text.split("*")[-1], "http"))
        return _answer(await engine.begin(key, who, "http"))
    if session.phone != who:
        raise _Refused(400, OTHER_PHONE, "other_phone")
    steps = await engine.catch_up(session, text.split("*") if text else [])
    for step, screen in steps:
        for index, reply in enumerate(screen.sms):
            await engine.services.queue_answer(
                who, reply.text, "secret" if reply.secret else "reply",
                f"ussd:{session.token}:{step}:{index}",
            )
    return _answer(steps[-1][1] if steps else session.last)
