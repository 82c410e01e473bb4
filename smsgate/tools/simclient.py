"""Client of the SMSC simulator's control API: how `smsgate sms` and `smsgate ussd` play a resident."""

from __future__ import annotations

import json
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from smsgate.config import UssdConfig

# The simulator answers within 2 * wait + its 30 s cap on a reply burst; allow a little more.
_SLACK = 40.0


class SimulatorError(Exception):
    """The simulator answered, but not with replies (bad request, ESME too slow, ...)."""


class SimulatorUnavailable(SimulatorError):
    """Nobody listens at the control URL, or no gateway is bound to the simulator."""


async def send_sms(control_url: str, phone: str, text: str, wait: float = 5.0) -> list[str]:
    """Text the service from phone through the simulator; the texts of the replies, in order."""
    body = await _call(control_url, "/mo", {"phone": phone, "text": text, "wait": wait}, wait)
    replies = body.get("replies") if isinstance(body, dict) else None
    if not isinstance(replies, list):
        raise SimulatorError("the simulator's answer has no replies list")
    return [str(reply.get("text", "")) for reply in replies if isinstance(reply, dict)]


async def sent_to(control_url: str, phone: str) -> list[str]:
    """What the simulator delivered to a phone as SMS (oldest first): the phone's inbox.

    USSD screens (submit_sm with ussd_service_op) are not SMS and are left out.
    """
    url = control_url.rstrip("/") + "/sent"
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
            session.get(url, params={"phone": phone}) as response,
        ):
            status = response.status
            raw = await response.read()
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise SimulatorUnavailable(f"nobody answers at {control_url} ({exc})") from None
    body = _json(raw)
    if status != 200 or not isinstance(body, list):
        raise SimulatorError(f"the simulator answered HTTP {status}")
    return [
        str(item.get("text", "")) for item in body
        if isinstance(item, dict) and "0x0501" not in (item.get("tlvs") or {})
    ]


@dataclass(frozen=True)
class UssdScreen:
    text: str
    end: bool  # the gateway closed the session with this screen


async def ussd(
    control_url: str, phone: str, text: str, *, session: int, op: int, reply: bool = True,
    wait: float = 10.0,
) -> UssdScreen | None:
    """One USSD step through the simulator (dial, answer or abort); the gateway's next screen."""
    request = {"phone": phone, "text": text, "session": session, "op": op, "reply": reply,
               "wait": wait}
    body = await _call(control_url, "/ussd", request, wait)
    answer = body.get("reply") if isinstance(body, dict) else None
    if answer is None and not reply:
        return None
    if not isinstance(answer, dict):
        raise SimulatorError("the simulator's answer has no USSD screen")
    return UssdScreen(str(answer.get("text", "")), bool(answer.get("end")))


async def ussd_session(
    control_url: str,
    phone: str,
    dial: str,
    ops: UssdConfig,
    ask: Callable[[str], Awaitable[str | None]],
    show: Callable[[str], None],
    wait: float = 10.0,
) -> None:
    """A whole USSD session in a terminal: dial, show each screen, ask for the next input.

    ask returns None when the resident gives up (end of input): the session is aborted with the
    configured operation, if the platform has one.
    """
    session = secrets.randbelow(256)  # as a network numbers its dialogues
    screen = await ussd(control_url, phone, dial, session=session, op=ops.op_pssr_indication, wait=wait)
    while screen is not None:
        show(screen.text)
        if screen.end:
            return
        answer = await ask("> ")
        if answer is None:
            if ops.op_abort >= 0:
                await ussd(control_url, phone, "", session=session, op=ops.op_abort, reply=False,
                           wait=wait)
            show("(сеанс прерван)")
            return
        screen = await ussd(control_url, phone, answer, session=session, op=ops.op_ussr_confirm,
                            wait=wait)


async def _call(control_url: str, path: str, request: dict[str, Any], wait: float) -> Any:
    """POST a JSON request to the control API; its JSON answer, or the error it names."""
    timeout = aiohttp.ClientTimeout(total=2 * wait + _SLACK)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.post(control_url.rstrip("/") + path, json=request) as response,
        ):
            status = response.status
            raw = await response.read()
    except aiohttp.ClientConnectorError as exc:
        raise SimulatorUnavailable(f"nobody listens at {control_url} ({exc.strerror})") from None
    except aiohttp.ClientError as exc:
        raise SimulatorUnavailable(f"lost the connection to {control_url} ({exc})") from None
    except TimeoutError:
        raise SimulatorError(f"no answer from {control_url} within {timeout.total:g} s") from None
    body = _json(raw)
    if status == 503:
        raise SimulatorUnavailable(_error(body, "no gateway is bound to the simulator"))
    if status != 200:
        raise SimulatorError(_error(body, f"the simulator answered HTTP {status}"))
    return body


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


def _error(body: Any, fallback: str) -> str:
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return str(body["error"])
    return fallback
