"""Client of the SMSC simulator's control API: how `smsgate sms` plays a resident."""

from __future__ import annotations

import json
from typing import Any

import aiohttp

# The simulator answers within 2 * wait + its 30 s cap on a reply burst; allow a little more.
_SLACK = 40.0


class SimulatorError(Exception):
    """The simulator answered, but not with replies (bad request, ESME too slow, ...)."""


class SimulatorUnavailable(SimulatorError):
    """Nobody listens at the control URL, or no gateway is bound to the simulator."""


async def send_sms(control_url: str, phone: str, text: str, wait: float = 5.0) -> list[str]:
    """Text the service from phone through the simulator; the texts of the replies, in order."""
    url = control_url.rstrip("/") + "/mo"
    timeout = aiohttp.ClientTimeout(total=2 * wait + _SLACK)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.post(url, json={"phone": phone, "text": text, "wait": wait}) as response,
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
    replies = body.get("replies") if isinstance(body, dict) else None
    if not isinstance(replies, list):
        raise SimulatorError("the simulator's answer has no replies list")
    return [str(reply.get("text", "")) for reply in replies if isinstance(reply, dict)]


async def sent_to(control_url: str, phone: str) -> list[str]:
    """What the simulator delivered to a phone (all messages, oldest first): the phone's inbox."""
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
    return [str(item.get("text", "")) for item in body if isinstance(item, dict)]


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


def _error(body: Any, fallback: str) -> str:
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return str(body["error"])
    return fallback
