"""Load for benchmarks: a lean SMSC that pushes texts through its window and times the replies,
and the minimal echo ESMEs that measure what the link itself can carry.

`LoadSmsc` speaks the same SMPP 3.4 as `smsgate.tools.simulator.Simulator` (it builds and reads PDUs
with `smsgate.smpp`) but keeps nothing per message once its reply is complete, so a run of 100,000
texts measures the ESME, not a growing list in the SMSC. A text's latency runs from the moment
its deliver_sm is written to the moment the last part of its reply (submit_sm) is read.

`python -m smsgate.tools.loadgen echo --port N` runs an echo ESME: it binds, answers each deliver_sm
with deliver_sm_resp and one submit_sm, and answers receipts with deliver_sm_resp only. Nothing
else: no store, no router. `--client lean` (the default) is `EchoEsme`, written on
asyncio.Protocol with prebuilt PDU bytes, sending through the same window of 100 the gateway
uses: what Python can carry at all. `--client aiosmpplib` is `LibraryEcho`, the echo client
that measures the raw link (the reference of the bench's ratio target): aiosmpplib's own ESME
(no window of its own), broker and correlator, the correlator's expiry rescan limited to once a
second.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import itertools
import logging
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from aiosmpplib import (
    ESME,
    NPI,
    TON,
    AbstractHook,
    BindMode,
    BindTransceiverResp,
    DeliverSm,
    SmppMessage,
    SubmitSm,
)
from aiosmpplib.broker import SimpleBroker
from aiosmpplib.correlator import SimpleCorrelator
from aiosmpplib.retrytimer import AbstractRetryTimer
from aiosmpplib.state import PhoneNumber

from smsgate import smpp
from smsgate.config import SmscConfig

# The gateway's own defaults: it binds to the load SMSC as it would to the operator's.
_DEFAULTS = SmscConfig()
SYSTEM_ID = _DEFAULTS.system_id
SERVICE_NUMBER = _DEFAULTS.source_addr
WINDOW = 100
RECEIPT = 0x04  # esm_class of an SMSC delivery receipt


@dataclass(frozen=True)
class Text:
    """One MO text to send: who, which kind (for per-kind latency), and what."""

    phone: str  # E.164
    kind: str
    text: str


@dataclass
class RunResult:
    """What one run measured; latencies in seconds, per kind of text."""

    texts: int = 0
    replies: int = 0
    parts: int = 0  # SMS parts of the replies (a submit_sm with message_payload carries several)
    submits: int = 0  # submit_sm read
    receipts: int = 0
    seconds: float = 0.0
    latencies: dict[str, list[float]] = field(default_factory=dict)
    # Replies whose text did not look like an answer to the text they answer (or came unasked).
    mismatched: int = 0
    # deliver_sm answered with an error status (the SMSC would deliver them again).
    refused: int = 0
    # Most deliver_sm a fixed-rate run could not send on time because the window was full.
    late: int = 0
    # A few of the mismatched replies, to say what went wrong.
    examples: list[str] = field(default_factory=list)

    @property
    def replies_per_second(self) -> float:
        return self.replies / self.seconds if self.seconds > 0 else 0.0

    def percentile(self, quantile: float, kind: str | None = None) -> float:
        """Latency at quantile (0..1) in milliseconds, over one kind or all."""
        values = sorted(
            value for name, found in self.latencies.items() if kind in (None, name) for value in found
        )
        if not values:
            return 0.0
        index = min(len(values) - 1, max(0, round(quantile * len(values)) - 1))
        return values[index] * 1000


Classifier = Callable[[str], str]


def _deliver_sm(
    source: tuple[str, int, int], destination: tuple[str, int, int], esm_class: int,
    data_coding: int, short_message: bytes,
) -> bytes:
    """A deliver_sm with sequence 0, field by field (SMPP 3.4 section 4.6.1)."""
    body = b"".join((
        b"\x00", bytes(source[1:]), source[0].encode(), b"\x00",
        bytes(destination[1:]), destination[0].encode(), b"\x00",
        bytes((esm_class, 0, 0)), b"\x00\x00",
        bytes((0, 0, data_coding, 0, len(short_message))), short_message,
    ))
    return smpp.HEADER.pack(smpp.HEADER_LENGTH + len(body), smpp.DELIVER_SM, 0, 0) + body


def take_pdus(buffer: bytearray, data: bytes) -> list[bytes]:
    """Append what arrived to buffer; take out and return the whole PDUs in it, in order.

    A bad command_length raises smpp.PduError: the protocol's data_received fails, and asyncio
    closes the connection.
    """
    buffer += data
    return list(smpp.frames(buffer))


class _Reply:
    """Parts of one reply seen so far."""

    __slots__ = ("first", "seen", "total")

    def __init__(self, total: int) -> None:
        self.total = total
        self.seen = 0
        self.first = ""


class LoadSmsc(asyncio.Protocol):
    """An SMSC for one ESME at a time: sends MO texts within its window and times every reply."""

    def __init__(
        self, *, window: int = WINDOW, receipts: bool = True, classify: Classifier | None = None,
        system_id: str = SYSTEM_ID, password: str = _DEFAULTS.password,
    ) -> None:
        self.window = window
        self.receipts = receipts
        self.classify = classify or (lambda _text: "")
        self.system_id = system_id
        self.password = password
        self.port = 0
        self.binds = 0
        self._server: asyncio.Server | None = None
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._bound = asyncio.Event()
        self._in_flight = 0  # deliver_sm (texts and receipts) not yet answered
        self._receipts: collections.deque[bytes] = collections.deque()
        self._templates: dict[tuple[str, str], bytes] = {}
        self._sequence = 0
        self._message_ids = itertools.count(time.time_ns() // 1_000_000)
        self._date = ""
        self._date_at = 0.0
        # Per phone, texts sent and not yet answered, oldest first: replies come in order.
        self._waiting: dict[str, collections.deque[tuple[float, str]]] = {}
        self._partial: dict[tuple[str, int], _Reply] = {}
        self._result = RunResult()
        self._texts: Iterator[Text] = iter(())
        self._due = 0  # texts a fixed-rate run may send by now
        self._sent = 0
        self._outstanding = 0
        self._first_sent = 0.0
        self._last_reply = 0.0
        self._done: asyncio.Future[None] | None = None

    # ---- lifecycle ------------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1") -> int:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: self, host, 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def stop(self) -> None:
        if self._transport is not None:
            self._transport.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def wait_bound(self, timeout: float = 30.0) -> None:  # noqa: ASYNC109
        async with asyncio.timeout(timeout):
            await self._bound.wait()

    # ---- a run ----------------------------------------------------------------------------------

    async def run(
        self, texts: list[Text], rate: float | None = None, classify: Classifier | None = None,
        timeout: float = 600.0,  # noqa: ASYNC109
    ) -> RunResult:
        """Send texts (as fast as the window allows, or at rate a second); wait for every reply.

        classify names the kind of text a reply answers, from the reply's first part; a reply
        classified differently from the text it is taken to answer counts as mismatched.
        """
        await self.wait_bound()
        if classify is not None:
            self.classify = classify
        loop = asyncio.get_running_loop()
        self._result = RunResult(texts=len(texts))
        self._texts = iter(texts)
        self._sent = 0
        self._outstanding = len(texts)
        self._done = loop.create_future()
        self._first_sent = time.monotonic()
        self._last_reply = self._first_sent
        pacer: asyncio.Task[None] | None = None
        if rate is None:
            self._due = len(texts)
            self._pump()
        else:
            self._due = 0
            pacer = asyncio.create_task(self._pace(rate, len(texts)))
        try:
            if texts:
                async with asyncio.timeout(timeout):
                    await self._done
        finally:
            if pacer is not None:
                pacer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pacer
        result = self._result
        result.seconds = self._last_reply - self._first_sent
        return result

    async def _pace(self, rate: float, total: int) -> None:
        started = time.monotonic()
        while self._due < total:
            await asyncio.sleep(0.002)
            self._due = min(total, int((time.monotonic() - started) * rate) + 1)
            self._pump()
            self._result.late = max(self._result.late, self._due - self._sent)

    def _template(self, text: Text) -> bytes:
        key = (text.phone, text.text)
        template = self._templates.get(key)
        if template is None:
            [(coding, user_data)] = smpp.split_text(text.text, 0)
            template = _deliver_sm((text.phone.removeprefix("+"), 1, 1), (SERVICE_NUMBER, 3, 0),
                                   0, coding, user_data)
            if len(self._templates) < 200_000:
                self._templates[key] = template
        return template

    def _send(self, template: bytes) -> None:
        assert self._transport is not None
        self._sequence = self._sequence % 0x7FFFFFFF + 1
        self._in_flight += 1
        self._transport.write(template[:12] + self._sequence.to_bytes(4, "big") + template[16:])

    def _pump(self) -> None:
        """Fill the window: receipts first (they are owed), then texts that are due."""
        if self._transport is None or not self._bound.is_set() or self._transport.is_closing():
            return
        while self._in_flight < self.window:
            if self._receipts:
                self._send(self._receipts.popleft())
            elif self._sent < self._due:
                text = next(self._texts)
                self._sent += 1
                now = time.monotonic()
                if self._sent == 1:
                    self._first_sent = now
                self._waiting.setdefault(text.phone, collections.deque()).append((now, text.kind))
                self._send(self._template(text))
            else:
                return

    # ---- the wire -------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        if self._transport is not None:
            transport.close()  # one ESME at a time
            return
        self._transport = transport
        self._buffer.clear()

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._bound.clear()
        self._in_flight = 0
        if self._done is not None and not self._done.done():
            self._done.set_exception(ConnectionError("the ESME went away during a run"))

    def data_received(self, data: bytes) -> None:
        for raw in take_pdus(self._buffer, data):
            if self._transport is None or self._transport.is_closing():
                return  # unbound or gone: writing on would only warn "socket.send() raised"
            self._handle(raw)
        self._pump()

    def _handle(self, raw: bytes) -> None:
        _length, command, status, sequence = smpp.HEADER.unpack_from(raw)
        assert self._transport is not None
        if command == smpp.SUBMIT_SM:
            self._on_submit(raw, sequence)
        elif command == smpp.DELIVER_SM | smpp.RESPONSE_BIT:
            self._in_flight -= 1
            if status != smpp.ESME_ROK:
                self._result.refused += 1
        elif command == smpp.BIND_TRANSCEIVER:
            system_id, password, _type = smpp.c_strings(raw, 3)
            ok = (system_id, password) == (self.system_id, self.password)
            self._transport.write(smpp.response(
                command, sequence, smpp.ESME_ROK if ok else smpp.ESME_RINVPASWD, b"loadgen\x00"
            ))
            if ok:
                self.binds += 1
                self._bound.set()
        elif command == smpp.ENQUIRE_LINK:
            self._transport.write(smpp.enquire_link_resp(sequence))
        elif command == smpp.UNBIND:
            self._transport.write(smpp.unbind_resp(sequence))
            self._bound.clear()  # nothing more is sent to it
            self._transport.close()
        elif not command & smpp.RESPONSE_BIT:
            self._transport.write(smpp.generic_nack(sequence, smpp.ESME_RINVCMDID))

    def _on_submit(self, raw: bytes, sequence: int) -> None:
        assert self._transport is not None
        message = smpp.decode_sm(raw)
        number = next(self._message_ids)
        message_id = f"{number:012X}"
        self._transport.write(smpp.response(smpp.SUBMIT_SM, sequence, body=message_id.encode() + b"\x00"))
        result = self._result
        result.submits += 1
        whole = not message.concat and smpp.TAG_MESSAGE_PAYLOAD in message.tlvs
        result.parts += smpp.count_parts(message.text) if whole else 1
        if self.receipts and message.registered_delivery & 1:
            self._receipts.append(self._receipt(message, message_id))
            result.receipts += 1
        phone = "+" + message.destination
        concat = message.concat
        if concat is None or concat.total <= 1:
            self._complete(phone, message.text)
            return
        key = (phone, concat.reference)
        reply = self._partial.get(key)
        if reply is None:
            reply = self._partial[key] = _Reply(concat.total)
        reply.seen += 1
        if concat.number == 1:
            reply.first = message.text
        if reply.seen >= reply.total:
            del self._partial[key]
            self._complete(phone, reply.first)

    def _complete(self, phone: str, first_text: str) -> None:
        now = time.monotonic()
        result = self._result
        waiting = self._waiting.get(phone)
        if not waiting:
            self._mismatch(f"{phone}: unasked reply {first_text[:30]!r}")
            return
        sent_at, kind = waiting.popleft()
        if not waiting:
            del self._waiting[phone]
        if self.classify(first_text) != kind:
            self._mismatch(f"{phone}: {kind} answered with {first_text[:30]!r}")
        result.latencies.setdefault(kind, []).append(now - sent_at)
        result.replies += 1
        self._last_reply = now
        self._outstanding -= 1
        if self._outstanding == 0 and self._done is not None and not self._done.done():
            self._done.set_result(None)

    def _mismatch(self, example: str) -> None:
        self._result.mismatched += 1
        if len(self._result.examples) < 5:
            self._result.examples.append(example)

    def _receipt(self, message: smpp.ShortMessage, message_id: str) -> bytes:
        now = time.time()
        if now - self._date_at >= 1.0:
            self._date = time.strftime("%y%m%d%H%M", time.localtime(now))
            self._date_at = now
        text = (f"id:{message_id} sub:001 dlvrd:001 submit date:{self._date} done date:{self._date}"
                " stat:DELIVRD err:000 text:")
        return _deliver_sm((message.destination, message.dest_ton, message.dest_npi),
                           (message.source, message.source_ton, message.source_npi),
                           RECEIPT, 0, text.encode("ascii"))


# ---- the echo ESMEs: the raw link -----------------------------------------------------------------


def reply_text(parts: int) -> str:
    """The echo's reply: Cyrillic, so UCS-2, 70 characters in one part, 67 in each part of a long one."""
    body = "Ответ: баланс 0,00 руб."
    size = 70 if parts == 1 else 67 * parts - 10
    return (body * (size // len(body) + 1))[:size]


class EchoEsme(asyncio.Protocol):
    """Binds, answers each text with deliver_sm_resp and one reply of `parts` parts; nothing else."""

    def __init__(self, parts: int = 1, window: int = WINDOW) -> None:
        self.window = window
        self.reply = reply_text(parts)
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._sequence = 0
        self._in_flight = 0
        self._queued: collections.deque[bytes] = collections.deque()
        self._references = itertools.cycle(range(1, 256))
        self.bound = asyncio.Event()
        self.lost = asyncio.Event()

    async def connect(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        await loop.create_connection(lambda: self, host, port)
        assert self._transport is not None
        self._transport.write(smpp.bind_transceiver(self._next(), SYSTEM_ID, _DEFAULTS.password))
        async with asyncio.timeout(10):
            await self.bound.wait()

    def _next(self) -> int:
        self._sequence = self._sequence % 0x7FFFFFFF + 1
        return self._sequence

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.set()

    def data_received(self, data: bytes) -> None:
        for raw in take_pdus(self._buffer, data):
            self._handle(raw)

    def _handle(self, raw: bytes) -> None:
        assert self._transport is not None
        header = smpp.parse_header(raw)
        command = header.command_id
        if command == smpp.DELIVER_SM:
            message = smpp.decode_sm(raw)
            self._transport.write(smpp.deliver_sm_resp(header.sequence))
            if not message.is_receipt:
                self._reply(message.source)
        elif command == smpp.SUBMIT_SM | smpp.RESPONSE_BIT:
            self._in_flight -= 1
            while self._queued and self._in_flight < self.window:
                self._write(self._queued.popleft())
        elif command == smpp.BIND_TRANSCEIVER | smpp.RESPONSE_BIT:
            self.bound.set()
        elif command == smpp.ENQUIRE_LINK:
            self._transport.write(smpp.enquire_link_resp(header.sequence))
        elif command == smpp.UNBIND:
            self._transport.write(smpp.unbind_resp(header.sequence))
            self._transport.close()

    def _reply(self, source: str) -> None:
        parts = smpp.split_text(self.reply, next(self._references))
        for coding, data in parts:
            built = smpp.build_submit_sm(
                0, (SERVICE_NUMBER, 3, 0), (source, 1, 1), coding, data, udh=len(parts) > 1,
            )
            if self._in_flight < self.window:
                self._write(built)
            else:
                self._queued.append(built)

    def _write(self, template: bytes) -> None:
        assert self._transport is not None
        self._in_flight += 1
        self._transport.write(template[:12] + self._next().to_bytes(4, "big") + template[16:])


class _Correlator(SimpleCorrelator):  # type: ignore[misc]  # aiosmpplib has no type hints
    """aiosmpplib's in-memory correlator with its expiry rescan limited to once a second.

    SimpleCorrelator walks all it holds on every put and get, a few times a PDU: every request
    awaiting its response and every submit_sm awaiting its receipt, kept 3 days. When receipts do
    not come back (the SMSC of the bench's raw link without receipts sends none), that is
    every reply so far, and the client collapses (under 100 replies/s here within 10,000 texts).
    Nothing else differs from the library's.
    """

    def __init__(self, name: str) -> None:
        super().__init__(name, "")  # no directory: in memory
        self._rescanned = 0.0

    async def _remove_expired(self) -> None:
        now = time.monotonic()
        if now - self._rescanned >= 1.0:
            self._rescanned = now
            await super()._remove_expired()


class _EchoHook(AbstractHook):  # type: ignore[misc]
    """Answers each text (not receipts) with one submit_sm, enqueued for the ESME to send."""

    def __init__(self, broker: SimpleBroker, reply: str) -> None:
        self.broker = broker
        self.reply = reply
        self.source = PhoneNumber(SERVICE_NUMBER, TON.NETWORK_SPECIFIC, NPI.UNKNOWN)
        self.bound = asyncio.Event()
        self._log_ids = itertools.count(1)

    async def sending(self, smpp_message: SmppMessage, pdu: bytes, client_id: str) -> None:
        pass

    async def received(self, smpp_message: SmppMessage | None, pdu: bytes, client_id: str) -> None:
        if isinstance(smpp_message, DeliverSm):
            if not smpp_message.is_receipt():
                # ucs2 named, not left to the library's guess (GSM 03.38 first, then UCS-2): the
                # same 140 octets in one part, data_coding 8, without a failed encoding each time.
                # A log_id, as the library expects: without one it logs a warning for every receipt
                # ("Could not correlate delivery receipt") even when it did correlate it.
                await self.broker.enqueue(SubmitSm(
                    short_message=self.reply, source=self.source, encoding="ucs2",
                    destination=PhoneNumber(smpp_message.source.number, TON.INTERNATIONAL, NPI.ISDN),
                    log_id=str(next(self._log_ids)),
                ))
        elif isinstance(smpp_message, BindTransceiverResp):
            self.bound.set()

    async def send_error(self, smpp_message: SmppMessage, error: Exception, client_id: str) -> None:
        pass  # the library logs what it could not send; LoadSmsc misses the reply


class _NoReconnect(AbstractRetryTimer):  # type: ignore[misc]
    """Ends the echo with its connection: instead of waiting to reconnect, says so and waits for stop()."""

    def __init__(self) -> None:
        self.lost = asyncio.Event()
        self.stopped = asyncio.Event()

    async def wait(self) -> None:
        self.lost.set()
        await self.stopped.wait()

    def reset(self) -> None:
        pass

    def next_delay(self) -> float:
        return 0.0


class LibraryEcho:
    """The raw link, the ratio target's reference: aiosmpplib's ESME bound as transceiver, its in-memory
    broker, and its SimpleCorrelator with the expiry rescan limited; answers each text with one
    1-part reply (asking for a receipt, the library's default). The ESME answers deliver_sm
    itself, after the hook has enqueued the reply, and writes each PDU as soon as it is built.
    """

    def __init__(self) -> None:
        self.broker = SimpleBroker()
        self.hook = _EchoHook(self.broker, reply_text(1))
        self.retry = _NoReconnect()
        self.lost = self.retry.lost
        self.esme: ESME | None = None
        self._task: asyncio.Task[None] | None = None

    async def connect(self, host: str, port: int) -> None:
        self.esme = ESME(
            host, port, SYSTEM_ID, _DEFAULTS.password, bind_mode=BindMode.TRANSCEIVER, client_id="echo",
            log_level=logging.WARNING, hook=self.hook, broker=self.broker,
            correlator=_Correlator(SYSTEM_ID), retry_timer=self.retry,
        )
        self._task = asyncio.create_task(self.esme.start())
        bound = asyncio.create_task(self.hook.bound.wait())
        lost = asyncio.create_task(self.lost.wait())
        try:
            async with asyncio.timeout(10):
                await asyncio.wait([bound, lost], return_when=asyncio.FIRST_COMPLETED)
        finally:
            bound.cancel()
            lost.cancel()
        if not self.hook.bound.is_set():
            await self.close()
            raise ConnectionError("aiosmpplib's ESME did not bind")

    async def close(self) -> None:
        if self.esme is not None:
            await self.esme.stop()  # unbinds, unless the connection is gone already
        self.retry.stopped.set()
        if self._task is not None:
            await self._task


async def _echo(port: int, parts: int, client: str) -> None:
    esme = LibraryEcho() if client == "aiosmpplib" else EchoEsme(parts)
    await esme.connect("127.0.0.1", port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    lost = asyncio.create_task(esme.lost.wait())
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait([lost, stopped], return_when=asyncio.FIRST_COMPLETED)
    lost.cancel()
    stopped.cancel()
    if isinstance(esme, LibraryEcho):
        await esme.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m smsgate.tools.loadgen", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    echo = commands.add_parser("echo", help="run an echo ESME against a LoadSmsc")
    echo.add_argument("--port", type=int, required=True)
    echo.add_argument("--parts", type=int, default=1, help="SMS parts in each reply (lean only)")
    echo.add_argument("--client", choices=("lean", "aiosmpplib"), default="lean",
                      help="lean: EchoEsme, prebuilt PDUs; aiosmpplib: the library's ESME (1-part replies)")
    args = parser.parse_args(argv)
    if args.client == "aiosmpplib" and args.parts != 1:
        parser.error("--client aiosmpplib answers with 1-part replies only")
    asyncio.run(_echo(args.port, args.parts, args.client))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
