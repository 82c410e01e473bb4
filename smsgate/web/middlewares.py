"""The edge of the website: errors become friendly pages, sessions load and save, forms are checked."""

from __future__ import annotations

import time

import aiohttp_jinja2
from aiohttp import web
from aiohttp.typedefs import Handler

from smsgate import logs
from smsgate.web import keys, wording
from smsgate.web.errors import STATUS_TEXTS, Redirect, Refusal
from smsgate.web.sessions import COOKIE_NAME
from store.db import NotFound

log = logs.get("web")

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Machine endpoints: no browser, so no session or CSRF token; each checks its requests itself.
MACHINE_ENDPOINTS = frozenset({("POST", "/ussd")})
# Every field of every form is short (the longest is a password); anything longer is refused
# before a view sees it, so nothing is stored half-way.
MAX_FIELD_CHARS = 200
MAX_FIELDS = 12
# Bodies larger than this are refused by aiohttp itself (413) before they are read.
MAX_BODY_BYTES = 16 * 1024


def error_page(request: web.Request, status: int, message: str) -> web.Response:
    return aiohttp_jinja2.render_template(
        "error.html", request, {"status": status, "message": message, "back": _back(request)},
        status=status,
    )


# Pages with a form of their own, where "back" from a refused form should lead.
FORM_PAGES = frozenset({"/login", "/register", "/register/password", "/password", "/reset",
                        "/reset/code"})


def _back(request: web.Request) -> str:
    return request.path if request.path in FORM_PAGES else "/"


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The one place where refusals and failures become pages; a traceback never reaches one."""
    started = time.monotonic()
    response: web.StreamResponse
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = error_page(request, exc.status, STATUS_TEXTS.get(exc.status, wording.BAD_FORM))
    except Refusal as exc:
        response = error_page(request, exc.status, exc.message)
    except NotFound:
        response = error_page(request, 404, wording.NOT_FOUND)
    except Exception:
        log.exception("web_failed", extra={"method": request.method, "path": request.path[:200]})
        response = error_page(request, 500, wording.SERVER_ERROR)
    log.info("web_request", extra={
        "method": request.method, "path": request.path[:200], "status": response.status,
        "ms": round((time.monotonic() - started) * 1000, 1),
    })
    return response


@web.middleware
async def sessions(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Load the session from its cookie, and send it back when a view changed it."""
    codec = request.app[keys.SESSIONS]
    session = codec.loads(request.cookies.get(COOKIE_NAME))
    request[keys.SESSION] = session
    response: web.StreamResponse
    try:
        response = await handler(request)
    except Redirect as exc:
        response = web.Response(status=303, headers={"Location": exc.location})
    if session.changed:
        if session.data:
            response.set_cookie(
                COOKIE_NAME, codec.dumps(session), path="/", httponly=True, samesite="Lax",
                secure=codec.secure,
            )
        else:
            response.del_cookie(COOKIE_NAME, path="/")
    return response


@web.middleware
async def forms(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every form sent must carry the session's CSRF token and only short text fields."""
    if request.method in SAFE_METHODS or (request.method, request.path) in MACHINE_ENDPOINTS:
        return await handler(request)
    form = await request.post()  # aiohttp keeps it: views read the same parsed form
    if len(form) > MAX_FIELDS or any(not isinstance(value, str) for value in form.values()):
        raise Refusal(400, wording.BAD_FORM)
    token = form.get("csrf_token")
    if not isinstance(token, str) or not request[keys.SESSION].csrf_matches(token):
        log.info("web_csrf_refused", extra={"path": request.path[:200]})
        raise Refusal(403, wording.CSRF)
    if any(len(str(value)) > MAX_FIELD_CHARS for value in form.values()):
        raise Refusal(400, wording.TOO_LONG.format(limit=MAX_FIELD_CHARS))
    return await handler(request)


SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    # No script at all: every flow works with plain forms.
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
}


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if not request.path.startswith("/static/"):
        # Pages show debts and phone numbers: not for shared caches or the back button of a kiosk.
        response.headers.setdefault("Cache-Control", "no-store")
