"""SMSC simulator: a real SMPP 3.4 server over TCP standing in for the mobile operator.

It runs in `make run`, in every integration test and in load benchmarks. It accepts binds,
answers submit_sm, reassembles concatenated messages (UDH IE 0x00 / 0x08, SAR TLVs, in any
order), records each complete message as `Sent`, sends delivery receipts in several vendor
formats, and sends MO messages as deliver_sm. Like a real SMSC it keeps an MO until the ESME
answers it: a deliver_sm lost with its connection is sent again on the next bind.

A small aiohttp control API (`POST /mo`, `POST /ussd`, `GET /sent`, `GET /status`) lets a person
or another process play a resident; `smsgate.tools.simclient` is its client. `ussd()` plays one step of
a USSD dialogue: a deliver_sm with ussd_service_op and its_session_info, then the ESME's screen.
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import json
import logging
import re
import time
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self, TypeVar

from aiohttp import web
from aiohttp.typedefs import Handler

from smsgate import smpp
from smsgate.config import Config, ConfigError

_log = logging.getLogger("smsgate.tools.simulator")
_T = TypeVar("_T")

SYSTEM_ID = "smsgate-sim"
RECEIPT_FORMATS = ("text", "text12", "tlv", "decimal", "garbage")
MESSAGE_ID_FORMATS = ("hex", "decimal")

ESME_RINVSYSID = 0x0F

_BIND_MODES = {
    smpp.BIND_RECEIVER: "receiver",
    smpp.BIND_TRANSMITTER: "transmitter",
    smpp.BIND_TRANSCEIVER: "transceiver",
}
_RECEIVING = ("receiver", "transceiver")
_TRANSMITTING = ("transmitter", "transceiver")

# Above this much unsent output the read loop waits for the ESME to read, so a client that
# submits without reading its responses cannot make the simulator buffer without bound.
_HIGH_WATER = 256 * 1024
_READ_CHUNK = 65536
# Seconds a connection we closed waits for the ESME to close its side before it is cut.
_LINGER = 2.0
# Incomplete concatenated messages kept at most; beyond it the oldest is forgotten, as an SMSC
# forgets parts whose siblings never came.
_MAX_PARTIAL = 10_000
# Characters with the same code in GSM 03.38 and ASCII ('@', '$', '_' and a few others differ).
_GSM_AS_ASCII = re.compile(r"[A-Za-z0-9 !\"#%&'()*+,\-./:;<=>?]*")
# A receipt's text: field carries at most this many characters of the message, as SMSCs do.
_RECEIPT_SNIPPET = 20

# POST /mo: a burst of replies is over when nothing new came for REPLY_QUIET seconds; REPLY_CAP
# bounds a burst that never ends (a gateway stuck in a loop).
REPLY_QUIET = 0.8
REPLY_CAP = 30.0

# ussd_service_op values of SMPP 3.4 the simulator sends and reads by default.
USSD_PSSR_INDICATION = 1
USSD_USSR_REQUEST = 2
USSD_USSR_CONFIRM = 18


@dataclass(frozen=True)
class Sent:
    """A complete message an ESME submitted (all its parts), as the simulator recorded it."""

    phone: str  # E.164 when the destination was international (TON 1), else as on the wire
    text: str  # '' when the data_coding is not text
    parts: int  # SMS parts the handset gets (the SMSC splits a text sent whole in message_payload)
    message_ids: tuple[str, ...]  # as given in each submit_sm_resp, in part order
    source: str
    data_coding: int
    tlvs: Mapping[int, bytes] = field(hash=False)  # of the first part
    at: datetime


@dataclass(frozen=True)
class Acknowledged:
    """One MO deliver_sm the ESME answered; `text` is the whole MO, `part` of `parts` this one."""

    phone: str
    text: str
    part: int
    parts: int
    sequence: int
    status: int
    at: datetime


@dataclass(frozen=True)
class UssdReply:
    """The ESME's screen after one USSD step, with the TLVs that marked it."""

    text: str
    op: int | None  # ussd_service_op
    session_info: bytes | None  # its_session_info as sent

    @property
    def end(self) -> bool:
        """Whether the screen closes the dialogue: the end bit if there is session info, else the op."""
        if self.session_info is not None and len(self.session_info) == 2:
            return bool(self.session_info[1] & 0x01)
        return self.op != USSD_USSR_REQUEST


class NotBound(TimeoutError):
    """No ESME able to receive was bound in time."""


class _LinkLost(ConnectionError):
    """The connection closed before the ESME answered a request."""


@dataclass(eq=False)
class _Delivery:
    """A deliver_sm the simulator owes an ESME until one answers it."""

    template: bytes  # the PDU with sequence 0; each attempt gets a fresh sequence number
    phone: str
    text: str
    part: int
    parts: int
    receipt: bool = False
    preferred: _Session | None = None
    attempts: int = 0


class _Session:
    """One ESME connection: its bind state and the requests it has not answered yet."""

    def __init__(self, writer: asyncio.StreamWriter, window: int, peer: str) -> None:
        self.writer = writer
        self.transport = writer.transport
        self.peer = peer
        self.mode: str | None = None
        self.closed = False
        self.lingering = False  # closed by us; waiting for the ESME to close its side
        self.submits = 0
        self.window = asyncio.Semaphore(window)
        self.outstanding: dict[int, asyncio.Future[int]] = {}
        self._sequence = 0

    @property
    def receiving(self) -> bool:
        return not self.closed and self.mode in _RECEIVING

    def send(self, data: bytes) -> None:
        if not self.closed:
            self.writer.write(data)

    def request(self, template: bytes) -> tuple[int, asyncio.Future[int]]:
        """Send a request PDU with the next sequence number; the future gets the response status."""
        self._sequence = self._sequence % 0x7FFFFFFF + 1
        sequence = self._sequence
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        if self.closed:
            future.set_exception(_LinkLost())
            return sequence, future
        self.outstanding[sequence] = future
        self.writer.write(template[:12] + sequence.to_bytes(4, "big") + template[16:])
        return sequence, future


class Simulator:
    """An SMPP 3.4 SMSC on loopback (or any address) with hooks for tests and a control API."""

    def __init__(
        self,
        *,
        system_id: str,
        password: str,
        receipts: bool = True,
        receipt_format: str = "text",
        message_id_format: str = "hex",
        throttle_every: int = 0,
        drop_after: int = 0,
        mo_window: int = 100,
        service_number: str = "7377",
        service_ton: int = 3,
        service_npi: int = 0,
        receipt_delay: float = 0.0,
        message_payload: bool = True,
    ) -> None:
        if receipt_format not in RECEIPT_FORMATS:
            raise ValueError(f"receipt_format must be one of {', '.join(RECEIPT_FORMATS)}")
        if message_id_format not in MESSAGE_ID_FORMATS:
            raise ValueError(f"message_id_format must be one of {', '.join(MESSAGE_ID_FORMATS)}")
        if throttle_every < 0 or drop_after < 0:
            raise ValueError("throttle_every and drop_after must not be negative")
        if mo_window < 1:
            raise ValueError("mo_window must be at least 1")
        if receipt_delay < 0:
            raise ValueError("receipt_delay must not be negative")
        self.system_id = system_id
        self._password = password
        self.receipts = receipts
        self.receipt_format = receipt_format
        self.message_id_format = message_id_format
        self.throttle_every = throttle_every
        self.drop_after = drop_after
        self.mo_window = mo_window
        self.service_number = service_number
        self.service_ton = service_ton
        self.service_npi = service_npi
        self.receipt_delay = receipt_delay
        # False: refuse a submit_sm carrying message_payload, as SMSCs that do not take it do.
        self.message_payload = message_payload

        self.sent: list[Sent] = []
        self.acknowledged: list[Acknowledged] = []
        # Open USSD dialogues, (number, session number) -> the sequence number of the last step.
        self._ussd_dialogues: dict[tuple[str, int | None], int] = {}
        self.submits = 0  # submit_sm accepted (answered ESME_ROK)
        self.throttled = 0
        self.binds = 0
        self.drops = 0  # connections closed by drop_after
        self.receipts_sent = 0  # receipts the ESME answered
        self.payload_refused = 0  # submit_sm refused for carrying message_payload

        self._received = 0  # every well-formed submit_sm, for throttle_every
        # Millisecond start keeps ids unique across restarts, since the gateway persists them.
        self._message_ids = itertools.count(time.time_ns() // 1_000_000)
        self._references = itertools.cycle(range(1, 256))
        self._partial: dict[tuple[str, str, int, int], dict[int, tuple[smpp.ShortMessage, str]]] = {}
        self._sessions: set[_Session] = set()
        self._receivers: list[_Session] = []
        self._turn = 0
        self._bound = asyncio.Event()
        self._receiver_ready = asyncio.Event()
        # Replaced on every record, so each waiter wakes once per change.
        self._sent_changed = asyncio.Event()
        self._pending = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._connections: set[asyncio.Task[Any]] = set()
        self._server: asyncio.Server | None = None
        self._runner: web.AppRunner | None = None
        self._port = 0

    # ---- Lifecycle ---------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen for ESMEs; returns the bound port."""
        if self._server is not None:
            raise RuntimeError("simulator already started")
        self._server = await asyncio.start_server(self._serve, host, port)
        self._port = int(self._server.sockets[0].getsockname()[1])
        _event(logging.INFO, "simulator_listening", host=host, port=self._port)
        return self._port

    @property
    def port(self) -> int:
        return self._port

    async def start_control(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Serve the control API; returns its bound port."""
        if self._runner is not None:
            raise RuntimeError("control API already started")
        runner = web.AppRunner(create_control_app(self), access_log=None)
        await runner.setup()
        self._runner = runner
        site = web.TCPSite(runner, host, port)
        await site.start()
        control_port = int(runner.addresses[0][1])
        _event(logging.INFO, "simulator_control_listening", host=host, port=control_port)
        return control_port

    async def stop(self) -> None:
        """Unbind bound ESMEs (as an SMSC going down does), then close everything."""
        if self._server is not None:
            self._server.close()
        unbinds = [
            session.request(smpp.unbind(0))[1]
            for session in list(self._sessions)
            if session.mode is not None and not session.closed
        ]
        if unbinds:
            await asyncio.wait(unbinds, timeout=1.0)
        for future in unbinds:
            if not future.done():
                future.cancel()
            elif not future.cancelled():
                future.exception()  # a lost link is expected here; mark it seen
        for session in list(self._sessions):
            self._close(session)
            session.writer.close()  # also cuts one still lingering after a drop
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._connections:
            await asyncio.wait(list(self._connections), timeout=1.0)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        if self._server is None:
            await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    # ---- Waiting for things to happen ---------------------------------------------------------

    @property
    def bound_modes(self) -> list[str]:
        return sorted(s.mode for s in self._sessions if s.mode is not None and not s.closed)

    @property
    def pending(self) -> int:
        """deliver_sm (MO and receipts) not yet answered by any ESME."""
        return self._pending

    # The waits take a timeout (ruff ASYNC109) because tests and the control API call them with
    # one and want a message saying what did not happen, not a bare cancellation.
    async def wait_bound(
        self, timeout: float = 10.0, *, receiving: bool = False  # noqa: ASYNC109
    ) -> None:
        """Return once an ESME is bound (one that can receive, if asked); TimeoutError otherwise."""
        event = self._receiver_ready if receiving else self._bound
        try:
            async with asyncio.timeout(timeout):
                await event.wait()
        except TimeoutError:
            raise NotBound(f"no ESME bound within {timeout} s") from None

    async def wait_sent(
        self, phone: str | None = None, count: int = 1, timeout: float = 10.0  # noqa: ASYNC109
    ) -> list[Sent]:
        """Messages recorded to phone (or to anyone), once there are at least count of them."""
        matching: list[Sent] = []
        scanned = 0
        try:
            async with asyncio.timeout(timeout):
                while True:
                    changed = self._sent_changed
                    # Only what came since the last look: load tests wait for thousands.
                    matching += self.sent_to(phone, scanned)
                    scanned = len(self.sent)
                    if len(matching) >= count:
                        return matching
                    await changed.wait()
        except TimeoutError:
            got = len(matching)
            raise TimeoutError(f"{got} of {count} messages recorded within {timeout} s") from None

    def sent_to(self, phone: str | None, start: int = 0) -> list[Sent]:
        """Recorded messages to phone (all when None), from index start of `sent` on."""
        return [s for s in self.sent[start:] if phone is None or _same_phone(s.phone, phone)]

    async def enquire_link(self, timeout: float = 5.0) -> list[int]:  # noqa: ASYNC109
        """Send enquire_link to every bound ESME; the statuses of their answers."""
        futures = [
            session.request(smpp.enquire_link(0))[1]
            for session in list(self._sessions)
            if session.mode is not None and not session.closed
        ]
        if not futures:
            return []
        async with asyncio.timeout(timeout):
            return list(await asyncio.gather(*futures))

    # ---- MO traffic ---------------------------------------------------------------------------

    async def send_mo(
        self,
        phone: str,
        text: str | None = None,
        *,
        data_coding: int | None = None,
        payload: bytes | None = None,
        udh_reference: int | None = None,
        tlvs: bytes = b"",
        timeout: float = 10.0,  # noqa: ASYNC109 - expiry leaves the deliveries pending
    ) -> list[int]:
        """Send an MO from phone to the service number; the status of each deliver_sm_resp.

        Either text (encoded as a handset would: GSM or UCS-2, UDH parts when long) or payload
        with data_coding (raw bytes). Raises NotBound when no receiving ESME binds within
        timeout, TimeoutError when the ESME has not answered every part by then; unanswered
        parts stay pending and are sent again on the next bind.
        """
        number = _wire_number(phone)
        segments = self._mo_segments(text, data_coding, payload, udh_reference)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        await self.wait_bound(timeout, receiving=True)
        templates = [
            _deliver_sm(number, (self.service_number, self.service_ton, self.service_npi),
                        coding, user_data, esm_class, tlvs)
            for coding, user_data, esm_class in segments
        ]
        label = phone if phone.startswith("+") else "+" + number
        tasks = [
            self._spawn(self._deliver(_Delivery(template, label, text or "", part, len(templates))))
            for part, template in enumerate(templates, start=1)
        ]
        _event(logging.INFO, "mo_sent", msisdn=_mask(label), parts=len(tasks),
               length=len(text) if text is not None else len(payload or b""))
        _done, unanswered = await asyncio.wait(tasks, timeout=max(0.0, deadline - loop.time()))
        if unanswered:
            raise TimeoutError(
                f"{len(unanswered)} of {len(tasks)} deliver_sm unanswered after {timeout} s"
            )
        if any(task.cancelled() for task in tasks):
            raise ConnectionError("the simulator stopped before the ESME answered")
        return [task.result() for task in tasks]

    async def ussd(
        self,
        phone: str,
        text: str = "",
        *,
        session: int | None = None,
        op: int | None = None,
        reply: bool = True,
        timeout: float = 10.0,  # noqa: ASYNC109 - one deadline for the deliver_sm and the screen
    ) -> UssdReply | None:
        """Play one step of a USSD dialogue from phone; the screen the ESME answers with.

        The first step dials (PSSR indication, text like "*7377#"), the next ones answer (USSR
        confirm), unless op names another operation (vendor codes, an abort). session is the
        its_session_info session number, each step carrying the dialogue's next sequence number;
        None sends no its_session_info, as platforms that key dialogues on the phone do. With
        reply=False (an abort) nothing is awaited but the deliver_sm_resp, and None is returned.
        Raises TimeoutError when no screen comes within timeout.
        """
        if session is not None and not 0 <= session <= 0xFF:
            raise ValueError("session must be an octet (0-255)")
        dialogue = (_wire_number(phone), session)
        previous = self._ussd_dialogues.get(dialogue)
        if op is None:
            op = USSD_PSSR_INDICATION if previous is None else USSD_USSR_CONFIRM
        step = 0 if previous is None or op == USSD_PSSR_INDICATION else (previous + 1) % 0x80
        self._ussd_dialogues[dialogue] = step
        tlvs = smpp.tlv(smpp.TAG_USSD_SERVICE_OP, bytes([op]))
        if session is not None:
            tlvs += smpp.tlv(smpp.TAG_ITS_SESSION_INFO, bytes([session, step << 1]))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        start = len(self.sent)
        statuses = await self.send_mo(phone, text, tlvs=tlvs, timeout=timeout)
        if any(status != smpp.ESME_ROK for status in statuses):
            raise ConnectionError(f"the ESME refused the USSD step: {smpp.status_name(statuses[0])}")
        if not reply:
            self._ussd_dialogues.pop(dialogue, None)
            return None
        try:
            async with asyncio.timeout_at(deadline):
                while True:
                    changed = self._sent_changed
                    for sent in self.sent[start:]:
                        answer = _ussd_answer(sent, phone, session)
                        if answer is not None:
                            if answer.end:
                                self._ussd_dialogues.pop(dialogue, None)
                            return answer
                    start = len(self.sent)
                    await changed.wait()
        except TimeoutError:
            raise TimeoutError(f"no USSD screen within {timeout} s") from None

    def _mo_segments(
        self,
        text: str | None,
        data_coding: int | None,
        payload: bytes | None,
        udh_reference: int | None,
    ) -> list[tuple[int, bytes, int]]:
        if text is not None and payload is None:
            if data_coding is not None:
                raise ValueError("data_coding goes with payload; text picks its own")
            if udh_reference is not None and not 0 <= udh_reference <= 0xFFFF:
                raise ValueError("udh_reference must fit 16 bits")
            reference = next(self._references) if udh_reference is None else udh_reference
            parts = smpp.split_text(text, reference)
            esm_class = smpp.UDHI if len(parts) > 1 else 0
            return [(coding, user_data, esm_class) for coding, user_data in parts]
        if payload is not None and text is None:
            if data_coding is None or not 0 <= data_coding <= 0xFF:
                raise ValueError("payload needs a data_coding octet")
            return [(data_coding, payload, 0)]
        raise ValueError("give either text or payload")

    async def _deliver(self, delivery: _Delivery) -> int:
        """Send a deliver_sm until an ESME answers it, riding out dropped connections."""
        self._pending += 1
        try:
            while True:
                session = await self._receiver(delivery.preferred)
                async with session.window:
                    if not session.receiving:
                        continue
                    sequence, future = session.request(delivery.template)
                    try:
                        status = await future
                    except _LinkLost:
                        delivery.attempts += 1
                        _event(logging.INFO, "deliver_pending", msisdn=_mask(delivery.phone),
                               attempts=delivery.attempts, receipt=delivery.receipt)
                        continue
                break
        finally:
            self._pending -= 1
        if delivery.receipt:
            self.receipts_sent += 1
        else:
            self.acknowledged.append(Acknowledged(
                delivery.phone, delivery.text, delivery.part, delivery.parts, sequence, status,
                datetime.now(UTC),
            ))
        if status != smpp.ESME_ROK:
            _event(logging.INFO, "deliver_refused", msisdn=_mask(delivery.phone),
                   status=smpp.status_name(status), receipt=delivery.receipt)
        return status

    async def _receiver(self, preferred: _Session | None) -> _Session:
        while True:
            if preferred is not None and preferred.receiving:
                return preferred
            if self._receivers:
                self._turn = (self._turn + 1) % len(self._receivers)
                return self._receivers[self._turn]
            await self._receiver_ready.wait()

    def _spawn(self, coroutine: Coroutine[Any, Any, _T]) -> asyncio.Task[_T]:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _log.error("simulator_task_failed", exc_info=task.exception())

    # ---- The SMPP server ----------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        peername = writer.get_extra_info("peername")
        peer = f"{peername[0]}:{peername[1]}" if isinstance(peername, tuple) else "?"
        session = _Session(writer, self.mo_window, peer)
        self._sessions.add(session)
        _event(logging.INFO, "esme_connected", peer=peer)
        buffer = bytearray()
        try:
            while not session.closed:
                data = await reader.read(_READ_CHUNK)
                if not data:
                    break
                buffer += data
                # Every complete PDU in the chunk is handled without an await in between.
                try:
                    for raw in smpp.frames(buffer):
                        self._handle_safely(session, raw)
                        if session.closed:
                            break
                except smpp.PduError:
                    # No way to find the next PDU boundary: the stream is lost. frames() has
                    # taken every PDU before it, so the bad length is at the front.
                    _event(logging.WARNING, "pdu_bad_length", peer=peer,
                           length=int.from_bytes(buffer[:4], "big"))
                    self._close(session)
                if not session.closed and session.transport.get_write_buffer_size() > _HIGH_WATER:
                    await writer.drain()
            if session.lingering:
                async with asyncio.timeout(_LINGER):
                    while await reader.read(_READ_CHUNK):
                        pass  # what the ESME sent after the close is not answered
        except (OSError, TimeoutError):
            pass  # the ESME went away (or never closed its side); nothing is owed to it
        finally:
            self._close(session)
            writer.close()
            self._sessions.discard(session)
            if task is not None:
                self._connections.discard(task)
            _event(logging.INFO, "esme_disconnected", peer=peer)

    def _close(self, session: _Session, *, linger: bool = False) -> None:
        """End a session; its unanswered deliver_sm go back to waiting for a bind.

        With linger the ESME still gets every response written so far, then FIN: closing a
        socket with unread input sends RST instead, and an RST can destroy responses still on
        their way, so the ESME would resend messages the SMSC already accepted.
        """
        if session.closed:
            return
        session.closed = True
        was_bound = session.mode is not None
        session.mode = None
        if session in self._receivers:
            self._receivers.remove(session)
            if not self._receivers:
                self._receiver_ready.clear()
        if was_bound and not any(s.mode for s in self._sessions if not s.closed):
            self._bound.clear()
        for future in session.outstanding.values():
            if not future.done():
                future.set_exception(_LinkLost())
        session.outstanding.clear()
        if linger and session.transport.can_write_eof():
            session.lingering = True
            session.transport.write_eof()  # sent once the buffered responses are out
        else:
            session.writer.close()

    def _handle_safely(self, session: _Session, data: bytes) -> None:
        header = smpp.parse_header(data)
        try:
            self._handle(session, header, data)
        except Exception:
            # A bug in one PDU's handling must not take the whole SMSC down.
            _log.exception("pdu_failed", extra={"command_id": f"0x{header.command_id:08X}",
                                                "peer": session.peer})
            if not header.command_id & smpp.RESPONSE_BIT:
                session.send(smpp.generic_nack(header.sequence, smpp.ESME_RSYSERR))

    def _handle(self, session: _Session, header: smpp.Header, data: bytes) -> None:
        command_id = header.command_id
        if command_id & smpp.RESPONSE_BIT:
            future = session.outstanding.pop(header.sequence, None)
            if future is not None and not future.done():
                future.set_result(header.status)
            return
        if command_id == smpp.SUBMIT_SM:
            if session.mode not in _TRANSMITTING:
                session.send(smpp.generic_nack(header.sequence, smpp.ESME_RINVBNDSTS))
                return
            self._on_submit(session, header, data)
        elif command_id == smpp.ENQUIRE_LINK:
            # SMPP 3.4 allows enquire_link in every state, bound or not.
            session.send(smpp.enquire_link_resp(header.sequence))
        elif command_id in _BIND_MODES:
            self._on_bind(session, header, data)
        elif command_id == smpp.UNBIND:
            if session.mode is None:
                session.send(smpp.generic_nack(header.sequence, smpp.ESME_RINVBNDSTS))
                return
            session.send(smpp.unbind_resp(header.sequence))
            _event(logging.INFO, "esme_unbound", peer=session.peer)
            self._close(session, linger=True)
        else:
            _event(logging.INFO, "pdu_unknown_command", peer=session.peer,
                   command_id=f"0x{command_id:08X}")
            session.send(smpp.generic_nack(header.sequence, smpp.ESME_RINVCMDID))

    def _on_bind(self, session: _Session, header: smpp.Header, data: bytes) -> None:
        if session.mode is not None:
            session.send(smpp.response(header.command_id, header.sequence, smpp.ESME_RALYBND))
            return
        try:
            system_id, password, _system_type = smpp.c_strings(data, 3)
        except smpp.PduError:
            _event(logging.WARNING, "pdu_malformed", peer=session.peer, command="bind")
            session.send(smpp.generic_nack(header.sequence, smpp.ESME_RINVCMDLEN))
            return
        status = smpp.ESME_ROK
        if not hmac.compare_digest(system_id.encode(), self.system_id.encode()):
            status = ESME_RINVSYSID
        elif not hmac.compare_digest(password.encode(), self._password.encode()):
            status = smpp.ESME_RINVPASWD
        if status != smpp.ESME_ROK:
            session.send(smpp.response(header.command_id, header.sequence, status))
            _event(logging.WARNING, "bind_refused", peer=session.peer, system_id=system_id,
                   status=smpp.status_name(status))
            # A real SMSC hangs up on a failed bind rather than let the client guess again.
            self._close(session, linger=True)
            return
        mode = _BIND_MODES[header.command_id]
        session.send(smpp.response(header.command_id, header.sequence,
                                  body=SYSTEM_ID.encode() + b"\x00"))
        session.mode = mode
        self.binds += 1
        self._bound.set()
        if mode in _RECEIVING:
            self._receivers.append(session)
            self._receiver_ready.set()
        _event(logging.INFO, "bind_accepted", peer=session.peer, mode=mode, pending=self._pending)

    def _on_submit(self, session: _Session, header: smpp.Header, data: bytes) -> None:
        try:
            message = smpp.decode_sm(data)
        except smpp.PduError as exc:
            _event(logging.WARNING, "pdu_malformed", peer=session.peer, command="submit_sm",
                   reason=str(exc))
            session.send(smpp.generic_nack(header.sequence, smpp.ESME_RINVCMDLEN))
            return
        self._received += 1
        if self.throttle_every and self._received % self.throttle_every == 0:
            self.throttled += 1
            session.send(smpp.submit_sm_resp(header.sequence, "", smpp.ESME_RTHROTTLED))
            _event(logging.DEBUG, "submit_throttled", peer=session.peer)
            return
        if not self.message_payload and smpp.TAG_MESSAGE_PAYLOAD in message.tlvs:
            self.payload_refused += 1
            session.send(smpp.submit_sm_resp(header.sequence, "", smpp.ESME_ROPTPARNOTALLWD))
            _event(logging.INFO, "submit_refused", peer=session.peer, reason="message_payload")
            return
        number = next(self._message_ids)
        # "decimal" receipts exist to test an SMSC that writes the id in hex in submit_sm_resp
        # and in decimal in the receipt, so that format forces hex here.
        if self.message_id_format == "hex" or self.receipt_format == "decimal":
            message_id = f"{number:012X}"
        else:
            message_id = str(number)
        session.send(smpp.submit_sm_resp(header.sequence, message_id))
        self.submits += 1
        session.submits += 1
        now = datetime.now(UTC)
        if self.receipts and message.registered_delivery & 1:
            self._spawn(self._send_receipt(session, message, number, message_id, now))
        self._collect(message, message_id, now)
        if self.drop_after and session.submits % self.drop_after == 0:
            self.drops += 1
            _event(logging.INFO, "esme_dropped", peer=session.peer, submits=session.submits)
            self._close(session, linger=True)

    def _collect(self, message: smpp.ShortMessage, message_id: str, now: datetime) -> None:
        """Record a message once all its parts are in; parts may come in any order."""
        concat = message.concat
        if concat is None or concat.total <= 1 or not 1 <= concat.number <= concat.total:
            self._record([(message, message_id)], now)
            return
        key = (message.source, message.destination, concat.reference, concat.total)
        parts = self._partial.get(key)
        if parts is None:
            if len(self._partial) >= _MAX_PARTIAL:
                del self._partial[next(iter(self._partial))]
            parts = self._partial[key] = {}
        # A part sent again (its response was lost) replaces the earlier copy and its id.
        parts[concat.number] = (message, message_id)
        if len(parts) == concat.total:
            del self._partial[key]
            self._record([parts[number] for number in range(1, concat.total + 1)], now)

    def _record(self, parts: list[tuple[smpp.ShortMessage, str]], now: datetime) -> None:
        first = parts[0][0]
        # Decoding the joined payload keeps characters split across parts (surrogates) whole.
        text, is_text = smpp.decode_text(first.data_coding, b"".join(m.payload for m, _ in parts))
        whole = len(parts) == 1 and not first.concat and smpp.TAG_MESSAGE_PAYLOAD in first.tlvs
        sent = Sent(
            phone=_phone(first.destination, first.dest_ton),
            text=text if is_text else "",
            parts=smpp.count_parts(text) if whole and is_text else len(parts),
            message_ids=tuple(message_id for _, message_id in parts),
            source=first.source,
            data_coding=first.data_coding,
            tlvs=dict(first.tlvs),
            at=now,
        )
        self.sent.append(sent)
        changed, self._sent_changed = self._sent_changed, asyncio.Event()
        changed.set()
        _event(logging.INFO, "message_recorded", msisdn=_mask(sent.phone), parts=sent.parts,
               length=len(sent.text), data_coding=sent.data_coding)

    # ---- Delivery receipts --------------------------------------------------------------------

    async def _send_receipt(
        self,
        session: _Session,
        message: smpp.ShortMessage,
        number: int,
        message_id: str,
        submitted: datetime,
    ) -> None:
        if self.receipt_delay:
            await asyncio.sleep(self.receipt_delay)
        template = self._receipt_pdu(message, number, message_id, submitted, datetime.now(UTC))
        phone = _phone(message.destination, message.dest_ton)
        await self._deliver(_Delivery(template, phone, "", 1, 1, receipt=True, preferred=session))

    def _receipt_pdu(
        self,
        message: smpp.ShortMessage,
        number: int,
        message_id: str,
        submitted: datetime,
        done: datetime,
    ) -> bytes:
        # A receipt travels back: from the handset to the service that submitted.
        source = (message.destination, message.dest_ton, message.dest_npi)
        destination = (message.source, message.source_ton, message.source_npi)
        if self.receipt_format == "tlv":
            tlvs = (
                smpp.tlv(smpp.TAG_RECEIPTED_MESSAGE_ID, message_id.encode() + b"\x00")
                + smpp.tlv(smpp.TAG_MESSAGE_STATE, bytes([2]))  # DELIVERED
                + smpp.tlv(smpp.TAG_NETWORK_ERROR_CODE, bytes([3, 0, 0]))  # GSM, no error
            )
            return _deliver_sm_from(source, destination, 0, b"", 0x04, tlvs)
        text = self._receipt_text(message, number, message_id, submitted, done)
        if _GSM_AS_ASCII.fullmatch(text):
            # Receipts are hot in load tests and the GSM codec is slow; on these characters
            # GSM 03.38 and ASCII agree.
            user_data = text.encode("ascii")
        else:
            [(_coding, user_data)] = smpp.split_text(text, 0)
        return _deliver_sm_from(source, destination, 0, user_data, 0x04, b"")

    def _receipt_text(
        self,
        message: smpp.ShortMessage,
        number: int,
        message_id: str,
        submitted: datetime,
        done: datetime,
    ) -> str:
        # SMSCs write receipt dates in their own local time.
        if self.receipt_format == "garbage":
            return f"#DLR ok 1/1 delivered {done.astimezone():%y%m%d%H%M}"
        pattern = "%y%m%d%H%M%S" if self.receipt_format == "text12" else "%y%m%d%H%M"
        receipt_id = str(number) if self.receipt_format == "decimal" else message_id
        head = (
            f"id:{receipt_id} sub:001 dlvrd:001 submit date:{submitted.astimezone():{pattern}} "
            f"done date:{done.astimezone():{pattern}} stat:DELIVRD err:000 text:"
        )
        snippet = message.text[:_RECEIPT_SNIPPET] if message.is_text else ""
        if snippet and smpp.is_gsm(snippet) and smpp.gsm_septets(head + snippet) <= 160:
            return head + snippet
        return head

    # ---- Control API entry point --------------------------------------------------------------

    async def converse(
        self, phone: str, text: str, wait: float = 5.0
    ) -> tuple[list[int], list[Sent]]:
        """Send an MO and collect the replies to that phone, as POST /mo does.

        Replies are collected until none came for REPLY_QUIET seconds after the last one, or for
        wait seconds when none comes at all. Raises NotBound, or TimeoutError when the ESME does
        not answer the MO within wait.
        """
        await self.wait_bound(wait, receiving=True)
        start = len(self.sent)
        statuses = await self.send_mo(phone, text, timeout=wait)
        loop = asyncio.get_running_loop()
        began = loop.time()
        replies: list[Sent] = []
        quiet_until = 0.0
        while True:
            changed = self._sent_changed
            new = self.sent_to(phone, start)
            start = len(self.sent)
            now = loop.time()
            if new:
                replies.extend(new)
                quiet_until = now + REPLY_QUIET
            limit = min(quiet_until, began + wait + REPLY_CAP) if replies else began + wait
            if now >= limit:
                return statuses, replies
            try:
                async with asyncio.timeout(limit - now):
                    await changed.wait()
            except TimeoutError:
                pass


def _deliver_sm(
    number: str,
    destination: tuple[str, int, int],
    data_coding: int,
    user_data: bytes,
    esm_class: int,
    tlvs: bytes,
) -> bytes:
    return _deliver_sm_from((number, 1, 1), destination, data_coding, user_data, esm_class, tlvs)


def _deliver_sm_from(
    source: tuple[str, int, int],
    destination: tuple[str, int, int],
    data_coding: int,
    user_data: bytes,
    esm_class: int,
    tlvs: bytes,
) -> bytes:
    template = smpp.build_deliver_sm(0, source, destination, data_coding, user_data,
                                    esm_class=esm_class, tlvs=tlvs)
    if user_data:
        return template
    # smpp.build_deliver_sm sends its "-" placeholder when the user data is empty; an empty SMS
    # must arrive empty. sm_length and short_message sit right before the TLVs.
    index = len(template) - len(tlvs) - 2
    if template[index : index + 2] != b"\x01-":
        return template
    body = template[smpp.HEADER_LENGTH : index] + b"\x00" + template[index + 2 :]
    _length, command_id, status, sequence = smpp.HEADER.unpack_from(template)
    return smpp.HEADER.pack(smpp.HEADER_LENGTH + len(body), command_id, status, sequence) + body


def _ussd_answer(sent: Sent, phone: str, session: int | None) -> UssdReply | None:
    """sent as the screen of phone's dialogue with that session number; None if it is not one."""
    op = sent.tlvs.get(smpp.TAG_USSD_SERVICE_OP)
    if not op or not _same_phone(sent.phone, phone):
        return None
    info = sent.tlvs.get(smpp.TAG_ITS_SESSION_INFO)
    if session is not None and info and info[0] != session:
        return None
    return UssdReply(sent.text, op[0], info)


def _wire_number(phone: str) -> str:
    """'+79031234567' as SMPP carries it with TON 1 NPI 1: digits without '+'."""
    number = phone.removeprefix("+")
    if not number.isdigit() or not 5 <= len(number) <= 15:
        raise ValueError("phone must be an international number like +79031234567")
    return number


def _phone(number: str, ton: int) -> str:
    return "+" + number if ton == 1 and number.isdigit() else number


def _same_phone(first: str, second: str) -> bool:
    return first.removeprefix("+") == second.removeprefix("+")


def _mask(phone: str) -> str:
    """+79037672024 -> +7903***2024: enough to tell numbers apart in a log, not to dial one."""
    if len(phone) <= 8:
        return "***" + phone[-2:]
    keep = 5 if phone.startswith("+") else 4
    return phone[:keep] + "***" + phone[-4:]


def _event(level: int, event: str, **fields: object) -> None:
    """One log line per event: the message is its stable name, the details are extra fields."""
    if _log.isEnabledFor(level):
        _log.log(level, event, extra=fields)


# ---- Control API ------------------------------------------------------------------------------

SIMULATOR_KEY = web.AppKey("simulator", Simulator)
MAX_WAIT = 300.0


class _ControlError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Domain errors become JSON answers here, in one place."""
    try:
        return await handler(request)
    except _ControlError as error:
        return web.json_response({"error": error.message}, status=error.status)


def create_control_app(simulator: Simulator) -> web.Application:
    app = web.Application(middlewares=[_errors])
    app[SIMULATOR_KEY] = simulator
    app.router.add_routes([
        web.post("/mo", _post_mo),
        web.post("/ussd", _post_ussd),
        web.get("/sent", _get_sent),
        web.get("/status", _get_status),
    ])
    return app


async def _json_object(request: web.Request) -> dict[str, Any]:
    """The request's JSON object, or a 400 that says what is wrong with it."""
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise _ControlError(400, "body must be JSON") from None
    if not isinstance(body, dict):
        raise _ControlError(400, "body must be a JSON object")
    return body


async def _post_mo(request: web.Request) -> web.Response:
    body = await _json_object(request)
    phone = body.get("phone")
    text = body.get("text")
    wait = body.get("wait", 5.0)
    if not isinstance(phone, str) or not phone:
        raise _ControlError(400, "phone is missing")
    if not isinstance(text, str):
        raise _ControlError(400, "text is missing")
    if isinstance(wait, bool) or not isinstance(wait, int | float) or not 0 < wait <= MAX_WAIT:
        raise _ControlError(400, f"wait must be a number of seconds up to {MAX_WAIT:g}")
    try:
        _wire_number(phone)
    except ValueError as exc:
        raise _ControlError(400, str(exc)) from None
    simulator = request.app[SIMULATOR_KEY]
    try:
        statuses, replies = await simulator.converse(phone, text, float(wait))
    except NotBound:
        raise _ControlError(503, "no ESME is bound to the simulator") from None
    except TimeoutError:
        raise _ControlError(504, "the ESME did not answer the deliver_sm in time") from None
    return web.json_response({
        "status": statuses,
        "replies": [{"text": reply.text, "parts": reply.parts} for reply in replies],
    })


async def _post_ussd(request: web.Request) -> web.Response:
    """One USSD step: {"phone", "text", "session", "op", "reply", "wait"} -> {"reply": screen}."""
    body = await _json_object(request)
    phone, text = body.get("phone"), body.get("text", "")
    session, op, reply = body.get("session"), body.get("op"), body.get("reply", True)
    wait = body.get("wait", 10.0)
    if not isinstance(phone, str) or not isinstance(text, str):
        raise _ControlError(400, "phone and text must be strings")
    for name, value in (("session", session), ("op", op)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or not 0 <= value <= 0xFF):
            raise _ControlError(400, f"{name} must be an octet (0-255)")
    if not isinstance(reply, bool):
        raise _ControlError(400, "reply must be true or false")
    if isinstance(wait, bool) or not isinstance(wait, int | float) or not 0 < wait <= MAX_WAIT:
        raise _ControlError(400, f"wait must be a number of seconds up to {MAX_WAIT:g}")
    try:
        answer = await request.app[SIMULATOR_KEY].ussd(
            phone, text, session=session, op=op, reply=reply, timeout=float(wait)
        )
    except ValueError as exc:
        raise _ControlError(400, str(exc)) from None
    except NotBound:
        raise _ControlError(503, "no ESME is bound to the simulator") from None
    except TimeoutError as exc:
        raise _ControlError(504, str(exc)) from None
    except ConnectionError as exc:
        raise _ControlError(502, str(exc)) from None
    if answer is None:
        return web.json_response({"reply": None})
    return web.json_response({"reply": {
        "text": answer.text, "op": answer.op, "end": answer.end,
        "session_info": answer.session_info.hex() if answer.session_info is not None else None,
    }})


async def _get_sent(request: web.Request) -> web.Response:
    phone = request.query.get("phone") or None
    messages = request.app[SIMULATOR_KEY].sent_to(phone)
    return web.json_response([_sent_json(message) for message in messages])


def _sent_json(message: Sent) -> dict[str, Any]:
    return {
        "phone": message.phone,
        "text": message.text,
        "parts": message.parts,
        "message_ids": list(message.message_ids),
        "source": message.source,
        "data_coding": message.data_coding,
        "tlvs": {f"0x{tag:04X}": value.hex() for tag, value in message.tlvs.items()},
        "at": message.at.isoformat(),
    }


async def _get_status(request: web.Request) -> web.Response:
    simulator = request.app[SIMULATOR_KEY]
    return web.json_response({
        "bound": simulator.bound_modes,
        "binds": simulator.binds,
        "submits": simulator.submits,
        "throttled": simulator.throttled,
        "drops": simulator.drops,
        "sent": len(simulator.sent),
        "acknowledged": len(simulator.acknowledged),
        "receipts_sent": simulator.receipts_sent,
        "pending": simulator.pending,
    })


# ---- Entry point for `smsgate simulator` / `make run` ---------------------------------------


async def run_simulator(config: Config) -> None:
    """Serve SMPP on [smsc] host/port and the control API on [simulator]; runs until cancelled."""
    settings = config.simulator
    try:
        simulator = Simulator(
            system_id=settings.system_id or config.smsc.system_id,
            password=settings.password or config.smsc.password,
            receipts=settings.receipts,
            receipt_format=settings.receipt_format,
            message_id_format=settings.message_id_format,
            throttle_every=settings.throttle_every,
            drop_after=settings.drop_after,
            mo_window=settings.mo_window,
            message_payload=settings.message_payload,
            service_number=config.smsc.source_addr,
            service_ton=config.smsc.source_ton,
            service_npi=config.smsc.source_npi,
        )
    except ValueError as exc:
        raise ConfigError(f"[simulator] {exc}") from None
    try:
        await simulator.start(config.smsc.host, config.smsc.port)
        await simulator.start_control(settings.control_host, settings.control_port)
        await asyncio.Event().wait()
    finally:
        await simulator.stop()
