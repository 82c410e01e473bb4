"""USSD sessions: the menu of handlers/ussd_menu.py driven over SMPP and by HTTP aggregators.

Sessions live in memory. A USSD dialogue lasts a minute or two and the network ends it on its
side anyway, so a session lost with a restart costs the resident a redial, nothing more. Each
expires `[ussd] session_timeout` seconds after its last input, or when the resident aborts.

Over SMPP (`SmppUssd`) a deliver_sm's ussd_service_op says whether the resident dialled the code
(a new session) or answered a screen, and the session is the one its its_session_info names
(octet 1, the session number), or the phone's own when the platform sends none. The reply echoes
its_session_info, with the end-of-session bit (octet 2, bit 0) set on the final screen. Operation
codes come from the configuration: platforms differ.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace

from handlers.ussd_menu import (
    EXPIRED,
    SCREEN_LIMIT,
    Menu,
    MenuContext,
    MenuState,
    Screen,
    screen_length,
)
from smsgate import logs, smpp, texts
from smsgate.config import Config, UssdConfig
from smsgate.services import Services
from store import inbox, outbox
from store.db import now

log = logs.get("ussd")

# Open sessions kept at most; past it the one idle longest is forgotten.
MAX_SESSIONS = 10_000


@dataclass(eq=False)
class Session:
    key: str
    phone: str
    transport: str  # "smpp" or "http", for the logs
    state: MenuState
    last: Screen  # the screen shown last, for a request sent again
    seen: float  # clock time of the last input
    inputs: list[str] = field(default_factory=list)
    # Names the SMS a session sends (request keys): transports' session ids may repeat.
    token: str = field(default_factory=lambda: secrets.token_hex(8))
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class UssdEngine:
    """Open menu sessions by key; one input at a time through the menu."""

    def __init__(
        self,
        services: Services,
        config: Config,
        *,
        menu: Menu | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.services = services
        self.timeout = config.ussd.session_timeout
        self.service_number = config.smsc.source_addr
        self.menu = menu or Menu()
        self._clock = clock
        self._sessions: dict[str, Session] = {}
        self._next_sweep = 0.0

    def __len__(self) -> int:
        return len(self._sessions)

    def session(self, key: str) -> Session | None:
        """The open session under key; None when there is none or it has expired."""
        self._sweep()
        session = self._sessions.get(key)
        if session is not None and self._clock() - session.seen > self.timeout:
            self._forget(session, "ussd_expired")
            return None
        return session

    async def begin(self, key: str, phone: str, transport: str) -> Screen:
        """The resident dialled the code: a new session, replacing any under the same key."""
        self._sweep()
        self._sessions.pop(key, None)
        state = MenuState()
        screen = await self._run(self.menu.start(state, self._context(phone)), phone, transport)
        if not screen.end:
            self._admit(Session(key, phone, transport, state, screen, self._clock()))
        return screen

    async def answer(self, key: str, phone: str, text: str, transport: str) -> Screen:
        """The resident answered a screen of the session under key."""
        session = self.session(key)
        if session is None or session.phone != phone:
            log.info("ussd_no_session", extra={"msisdn": phone, "transport": transport})
            return Screen(EXPIRED, end=True)
        return await self.resume(session, text)

    async def resume(self, session: Session, text: str) -> Screen:
        """One more input of a session."""
        async with session.lock:
            return await self._step(session, text)

    async def catch_up(self, session: Session, inputs: Sequence[str]) -> list[tuple[int, Screen]]:
        """Apply what the session has not seen of `inputs`, every input so far ("1*9*0").

        Returns each applied input's number and screen, up to one that ends the session; none for
        a request sent again (session.last is then the screen to show). Inputs that do not extend
        those seen are taken as the newest one alone, as some aggregators send.
        """
        async with session.lock:
            seen = len(session.inputs)
            fresh = inputs[seen:] if list(inputs[:seen]) == session.inputs else inputs[-1:]
            steps: list[tuple[int, Screen]] = []
            for text in fresh:
                steps.append((len(session.inputs), await self._step(session, text)))
                if steps[-1][1].end:
                    break
            return steps

    async def _step(self, session: Session, text: str) -> Screen:
        ctx = self._context(session.phone)
        screen = await self._run(
            self.menu.answer(session.state, text, ctx), session.phone, session.transport
        )
        session.inputs.append(text)
        session.last = screen
        session.seen = self._clock()
        if screen.end and self._sessions.get(session.key) is session:
            del self._sessions[session.key]
        return screen

    def abort(self, key: str) -> bool:
        """The resident (or the network) ended the session; whether there was one."""
        session = self._sessions.get(key)
        if session is None:
            return False
        self._forget(session, "ussd_aborted")
        return True

    def _context(self, phone: str) -> MenuContext:
        return MenuContext(phone, self.services, self.service_number)

    async def _run(self, step: Awaitable[Screen], phone: str, transport: str) -> Screen:
        started = time.perf_counter()
        try:
            screen = await step
        except Exception:
            # One resident's failure must not stop the others; the session ends politely.
            log.exception("ussd_error", extra={"msisdn": phone, "transport": transport})
            return Screen(texts.TEMPORARY_ERROR, end=True)
        if screen_length(screen.text) > SCREEN_LIMIT:
            # A bug the screen test should have caught: cut rather than leave the session hanging.
            log.error("ussd_screen_too_long", extra={"chars": screen_length(screen.text)})
            screen = replace(screen, text=screen.text[: SCREEN_LIMIT - 1] + "…")
        log.info("ussd_screen", extra={
            "msisdn": phone, "transport": transport, "end": screen.end, "sms": len(screen.sms),
            "ms": round((time.perf_counter() - started) * 1000, 1),
        })
        return screen

    def _admit(self, session: Session) -> None:
        if len(self._sessions) >= MAX_SESSIONS:
            idle = min(self._sessions.values(), key=lambda open_session: open_session.seen)
            self._forget(idle, "ussd_evicted")
        self._sessions[session.key] = session

    def _forget(self, session: Session, event: str) -> None:
        if self._sessions.get(session.key) is session:
            del self._sessions[session.key]
        log.info(event, extra={"msisdn": session.phone, "transport": session.transport,
                               "inputs": len(session.inputs)})

    def _sweep(self) -> None:
        """Forget expired sessions now and then, so those nobody comes back to do not pile up."""
        clock = self._clock()
        if clock < self._next_sweep:
            return
        self._next_sweep = clock + min(self.timeout, 30.0)
        for session in [s for s in self._sessions.values() if clock - s.seen > self.timeout]:
            self._forget(session, "ussd_expired")


# ---- USSD over SMPP ---------------------------------------------------------------------------


def inbox_extra(message: smpp.ShortMessage) -> str:
    """What the inbox keeps of a deliver_sm's USSD TLVs (JSON); '' for an ordinary SMS."""
    if message.ussd_service_op is None:
        return ""
    details: dict[str, int | str] = {
        "ussd_op": message.ussd_service_op, "session": (message.its_session_info or b"").hex(),
    }
    reference = message.tlvs.get(smpp.TAG_USER_MESSAGE_REFERENCE, b"")
    if len(reference) == 2:
        details["reference"] = int.from_bytes(reference, "big")
    return json.dumps(details)


class SmppUssd:
    """USSD over the SMPP link: an inbox item in, the screen (and any SMS) as outbox rows out."""

    def __init__(self, config: UssdConfig, engine: UssdEngine) -> None:
        self.config = config
        self.engine = engine

    @staticmethod
    def session_key(phone: str, session_info: bytes, reference: int | None) -> str:
        if len(session_info) == 2:
            return f"smpp:{phone}:s{session_info[0]}"
        if reference is not None:
            return f"smpp:{phone}:r{reference}"
        return f"smpp:{phone}"

    async def respond(self, item: inbox.Inbound) -> list[outbox.NewOutgoing]:
        """The screen an input of a dialogue gets, and any SMS the menu sends, as outbox rows."""
        try:
            details = json.loads(item.extra)
            op = int(details["ussd_op"])
            session_info = bytes.fromhex(details.get("session", ""))
            reference = details.get("reference")
        except (ValueError, KeyError, TypeError):
            log.warning("ussd_unreadable", extra={"msisdn": item.phone, "inbox_id": item.id})
            return []
        key = self.session_key(item.phone, session_info, reference)
        if not item.phone.startswith("+"):
            log.info("ussd_unanswerable", extra={"inbox_id": item.id})  # not an address we can answer
            return []
        if now() - item.received_at > self.config.session_timeout:
            # Stored before a restart: the network ended that dialogue long ago.
            log.info("ussd_stale", extra={"msisdn": item.phone, "inbox_id": item.id})
            return []
        if op == self.config.op_pssr_indication:
            screen = await self.engine.begin(key, item.phone, "smpp")
        elif op == self.config.op_ussr_confirm:
            screen = await self.engine.answer(key, item.phone, item.text, "smpp")
        else:
            if op == self.config.op_abort:
                self.engine.abort(key)
            else:
                log.info("ussd_op_ignored", extra={"msisdn": item.phone, "op": op})
            return []
        tlvs = self._reply_tlvs(screen.end, session_info, reference)
        rows = [outbox.NewOutgoing(f"in:{item.id}:0", item.phone, screen.text, 1, "ussd",
                                     json.dumps({"tlvs": tlvs.hex()}))]
        for number, reply in enumerate(screen.sms, start=1):
            rows.append(outbox.NewOutgoing(
                f"in:{item.id}:{number}", item.phone, reply.text, smpp.count_parts(reply.text),
                "secret" if reply.secret else "reply",
            ))
        return rows

    def _reply_tlvs(self, end: bool, session_info: bytes, reference: int | None) -> bytes:
        op = self.config.op_pssr_response if end else self.config.op_ussr_request
        tlvs = smpp.tlv(smpp.TAG_USSD_SERVICE_OP, bytes([op]))
        if len(session_info) == 2:
            echoed = bytes([session_info[0], (session_info[1] & 0xFE) | int(end)])
            tlvs += smpp.tlv(smpp.TAG_ITS_SESSION_INFO, echoed)
        if reference is not None:
            tlvs += smpp.tlv(smpp.TAG_USER_MESSAGE_REFERENCE, int(reference).to_bytes(2, "big"))
        return tlvs
