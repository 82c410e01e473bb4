"""The SMPP link to the operator's SMSC: bind, keep alive, read, submit with a window, reconnect.

Inbound deliver_sm PDUs are handed to a sink in batches; the sink stores them durably and only
then are they answered with deliver_sm_resp (one commit for many texts). Submits go through a
window of unanswered requests and a per-part rate; ESME_RTHROTTLED / ESME_RMSGQFUL pause the whole
bind with backoff and the same part is sent again. A lost link fails what was in flight with
LinkDown (the caller resends after the next bind) and reconnects with backoff and jitter.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from smsgate import logs
from smsgate.config import SmscConfig
from smsgate.smpp import pdu

log = logs.get("smpp")

# What the sink receives: the decoded message, or the raw bytes of a PDU that could not be decoded
# (kept so nothing is lost even when it cannot be read).
Inbound = pdu.ShortMessage | bytes
InboundSink = Callable[[list[Inbound]], Awaitable[None]]
MAX_BATCH = 500
# Batches of deliver_sm being stored at once (each answered when the sink returns it).
SINK_BATCHES = 4
READ_CHUNK = 65536
# Receipts that linger (SmscConfig.receipt_linger) stop waiting once this many have come.
LINGER_BATCH = 64
# After a linger in which nothing else came, none for this long: an SMSC that sends nothing more
# until its deliver_sm are answered (a small window) would only wait with us every time.
LINGER_PAUSE = 1.0


class LinkDown(Exception):
    """The link went down before the SMSC answered; the request may be sent again."""


class BindRefused(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"bind refused: {pdu.status_name(status)}")
        self.status = status


@dataclass
class LinkStats:
    binds: int = 0
    bind_failures: int = 0
    submits: int = 0
    throttled: int = 0
    inbound: int = 0
    malformed: int = 0
    last_error: str = ""
    bound_since: float | None = None
    submit_latency: list[float] = field(default_factory=list)
    lingered: int = 0  # batches of receipts that waited for a text (SmscConfig.receipt_linger)
    lingered_alone: int = 0  # of those, the ones that waited while nothing else came


class RateLimiter:
    """Spaces sends at `rate` per second, allowing a small burst."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self._next = 0.0

    async def take(self) -> None:
        delay = self.delay()
        if delay > 0:
            await asyncio.sleep(delay)

    def delay(self, weight: int = 1) -> float:
        """Take `weight` slots (SMS parts); the seconds to wait for them (0 when it is now)."""
        now = time.monotonic()
        slot = max(self._next, now - self.interval * 4)  # up to a 5-part burst after idling
        self._next = slot + self.interval * weight
        return slot - now


@dataclass(slots=True, eq=False)
class _Submit:
    """One submit_sm from its call to its answer: waiting for room in the window, or on the wire."""

    build: Callable[[int], bytes]
    parts: int  # SMS parts it carries, for the submit rate
    answer: asyncio.Future[tuple[int, bytes]]
    sequence: int = 0  # once written
    sent_at: float = 0.0
    deadline: float = 0.0
    holds_slot: bool = False


class SmppSession:
    def __init__(
        self,
        config: SmscConfig,
        sink: InboundSink,
        on_bound: Callable[[bool], None] | None = None,
    ) -> None:
        self.config = config
        self.sink = sink
        self.on_bound = on_bound or (lambda _up: None)
        self.bound = asyncio.Event()
        self.stats = LinkStats()
        # Submits waiting for room in the window, and those on the wire by sequence. A slot that
        # an answer frees goes to the next one waiting in the same turn of the loop (_pump).
        self._queued: deque[_Submit] = deque()
        self._in_window: dict[int, _Submit] = {}
        self._used = 0  # window slots held: submits on the wire or waiting out the submit rate
        self._rate = RateLimiter(config.submit_rate)
        self._resume = asyncio.Event()
        self._resume.set()
        self._throttle_delay = config.throttle_pause
        self._pending: dict[int, asyncio.Future[tuple[int, bytes]]] = {}
        self._unsent: list[bytes] = []
        self._unsent_for: asyncio.StreamWriter | None = None
        self._sequence = random.randrange(1, 0x10000)
        self._writer: asyncio.StreamWriter | None = None
        self._stopping = False
        self._stop_event = asyncio.Event()
        self._last_read = time.monotonic()
        self._link_lost = asyncio.Event()
        # Receipts lingering for a text to share its transaction: resolved when one comes.
        self._lingering: asyncio.Future[None] | None = None
        self._linger_after = 0.0
        self._most_unanswered = 0  # the most deliver_sm this link has had unanswered at once
        self._in_sink = 0  # deliver_sm in batches the sink is storing

    @property
    def state(self) -> str:
        if self.bound.is_set():
            return "throttled" if not self._resume.is_set() else "bound"
        return "down"

    def _next_sequence(self) -> int:
        self._sequence = self._sequence + 1 if self._sequence < 0x7FFFFFFF else 1
        return self._sequence

    # ---- lifecycle ------------------------------------------------------------------------------

    async def run(self) -> None:
        """Bind and serve until stop(); reconnects with exponential backoff and jitter."""
        delay = self.config.reconnect_min
        while not self._stopping:
            bound_at = time.monotonic()
            try:
                await self._connect_and_serve()
            except (OSError, TimeoutError, BindRefused, pdu.PduError,
                    asyncio.IncompleteReadError, LinkDown) as exc:
                self.stats.last_error = f"{type(exc).__name__}: {exc}"[:200]
                if not self.bound.is_set():
                    self.stats.bind_failures += 1
                log.warning("bind_failed", extra={"error": self.stats.last_error,
                                                  "host": self.config.host, "port": self.config.port})
            finally:
                self._mark_down()
            if self._stopping:
                break
            if time.monotonic() - bound_at > 30:
                delay = self.config.reconnect_min  # a link that held a while restarts the backoff
            # Jitter spreads reconnects; operators answer an instant re-bind with ESME_RALYBND.
            pause = random.uniform(delay / 2, delay)
            log.info("reconnect_wait", extra={"seconds": round(pause, 2)})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop_event.wait(), pause)
            delay = min(delay * 2, self.config.reconnect_max)

    async def stop(self) -> None:
        """Unbind cleanly (waiting briefly for unbind_resp) and close the link."""
        self._stopping = True
        self._stop_event.set()
        writer = self._writer
        if writer is not None and self.bound.is_set():
            try:
                await asyncio.wait_for(self._request(pdu.unbind), 2.0)
            except (LinkDown, TimeoutError, OSError):
                pass
        self._close()

    def _close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._link_lost.set()

    def _mark_down(self) -> None:
        was_bound = self.bound.is_set()
        self.bound.clear()
        self._writer = None
        self.stats.bound_since = None
        for future in self._pending.values():
            if not future.done():
                future.set_exception(LinkDown("link lost"))
        self._pending.clear()
        for item in self._in_window.values():
            self._free(item)
            if not item.answer.done():
                item.answer.set_exception(LinkDown("link lost"))
        self._in_window.clear()
        if was_bound:
            if self._stopping:  # our own unbind at shutdown: nothing for an operator to chase
                log.info("unbound", extra={"host": self.config.host, "port": self.config.port})
            else:
                log.warning("bind_lost", extra={"error": self.stats.last_error})
            self.on_bound(False)

    async def _connect_and_serve(self) -> None:
        timeout = self.config.socket_timeout
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(self.config.host, self.config.port, limit=pdu.MAX_PDU_LENGTH),
            timeout,
        )
        try:
            sequence = self._next_sequence()
            writer.write(pdu.bind_transceiver(
                sequence, self.config.system_id, self.config.password, self.config.system_type
            ))
            header, _body = await asyncio.wait_for(self._read_pdu(reader), timeout)
            if header.command_id != pdu.BIND_TRANSCEIVER | pdu.RESPONSE_BIT:
                raise pdu.PduError(f"unexpected answer to bind: 0x{header.command_id:08X}")
            if header.status != pdu.ESME_ROK:
                raise BindRefused(header.status)
            self._writer = writer
            self._link_lost = asyncio.Event()
            self._last_read = time.monotonic()
            self.stats.binds += 1
            self.stats.bound_since = time.time()
            self.stats.last_error = ""
            self.bound.set()
            log.info("bind_ok", extra={"host": self.config.host, "port": self.config.port,
                                       "system_id": self.config.system_id})
            self.on_bound(True)
            self._pump()  # what waited for the link
            queue: asyncio.Queue[tuple[int, Inbound]] = asyncio.Queue()
            tasks = [
                asyncio.create_task(self._read_loop(reader, writer, queue), name="smpp-read"),
                asyncio.create_task(self._ack_loop(writer, queue), name="smpp-ack"),
                asyncio.create_task(self._keepalive(), name="smpp-keepalive"),
                asyncio.create_task(self._link_lost.wait(), name="smpp-lost"),
            ]
            try:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in tasks:
                    task.cancel()
                for task in tasks:
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    # ---- reading ------------------------------------------------------------------------------

    @staticmethod
    async def _read_pdu(reader: asyncio.StreamReader) -> tuple[pdu.Header, bytes]:
        head = await reader.readexactly(pdu.HEADER_LENGTH)
        header = pdu.parse_header(head)
        if header.length < pdu.HEADER_LENGTH or header.length > pdu.MAX_PDU_LENGTH:
            # The stream cannot be resynchronised after a bad length: the link must be reset.
            raise pdu.PduError(f"bad command_length {header.length}")
        body = await reader.readexactly(header.length - pdu.HEADER_LENGTH)
        return header, head + body

    async def _read_loop(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
        queue: asyncio.Queue[tuple[int, Inbound]],
    ) -> None:
        # Whatever arrived is read at once and split into PDUs here: under load a read brings
        # dozens of them, and two awaited reads for each cost more than handling it.
        buffer = bytearray()
        while True:
            data = await reader.read(READ_CHUNK)
            if not data:
                raise asyncio.IncompleteReadError(bytes(buffer), None)
            self._last_read = time.monotonic()
            buffer += data
            offset = 0
            while len(buffer) - offset >= pdu.HEADER_LENGTH:
                length = int.from_bytes(buffer[offset : offset + 4], "big")
                if length < pdu.HEADER_LENGTH or length > pdu.MAX_PDU_LENGTH:
                    # The stream cannot be resynchronised after a bad length: the link must be reset.
                    raise pdu.PduError(f"bad command_length {length}")
                if len(buffer) - offset < length:
                    break
                raw = bytes(buffer[offset : offset + length])
                offset += length
                if not self._handle(pdu.parse_header(raw), raw, writer, queue):
                    return
            del buffer[:offset]

    def _handle(
        self, header: pdu.Header, raw: bytes, writer: asyncio.StreamWriter,
        queue: asyncio.Queue[tuple[int, Inbound]],
    ) -> bool:
        """Act on one PDU from the SMSC; False once the SMSC unbinds."""
        command = header.command_id
        if command & pdu.RESPONSE_BIT:
            sent = self._in_window.pop(header.sequence, None)
            if sent is not None:
                self._submit_answered(sent, header.status, raw)
                return True
            future = self._pending.pop(header.sequence, None)
            if future is not None and not future.done():
                future.set_result((header.status, raw))
            elif command != pdu.GENERIC_NACK:
                log.warning("response_unmatched", extra={"command": f"0x{command:08X}",
                                                         "sequence": header.sequence})
        elif command == pdu.DELIVER_SM:
            self.stats.inbound += 1
            item: Inbound
            try:
                item = pdu.decode_sm(raw)
            except pdu.PduError as exc:
                self.stats.malformed += 1
                log.warning("pdu_malformed", extra={"command": "deliver_sm", "error": str(exc),
                                                    "octets": len(raw)})
                item = raw
            queue.put_nowait((header.sequence, item))
            lingering = self._lingering
            if lingering is not None and not lingering.done() and (
                isinstance(item, bytes) or not item.is_receipt or queue.qsize() >= LINGER_BATCH
            ):
                lingering.set_result(None)
        elif command == pdu.ENQUIRE_LINK:
            writer.write(pdu.enquire_link_resp(header.sequence))
        elif command == pdu.UNBIND:
            writer.write(pdu.unbind_resp(header.sequence))
            self.stats.last_error = "unbind from SMSC"
            log.info("unbind_received")
            return False
        else:
            log.warning("pdu_unsupported", extra={"command": f"0x{command:08X}"})
            writer.write(pdu.generic_nack(header.sequence, pdu.ESME_RINVCMDID))
        return True

    async def _ack_loop(
        self, writer: asyncio.StreamWriter, queue: asyncio.Queue[tuple[int, Inbound]]
    ) -> None:
        """Hand everything that arrived to the sink in one batch; answer each PDU once it returns.

        Up to SINK_BATCHES batches are in the sink at once: what arrives while one is being
        stored goes to the sink at once, to wait in the store's queue for the next group commit,
        instead of here for the batch ahead to be answered first (a turn of the loop and more,
        while the SMSC's window holds what it has).
        """
        slots = asyncio.Semaphore(SINK_BATCHES)
        storing: set[asyncio.Task[None]] = set()
        try:
            while True:
                batch = [await queue.get()]
                while len(batch) < MAX_BATCH and not queue.empty():
                    batch.append(queue.get_nowait())
                self._most_unanswered = max(self._most_unanswered, self._in_sink + len(batch))
                if self._may_linger(batch):
                    await self._linger(queue, batch)
                await slots.acquire()
                while len(batch) < MAX_BATCH and not queue.empty():
                    batch.append(queue.get_nowait())  # what came while every slot was taken
                self._in_sink += len(batch)
                task = asyncio.create_task(self._store_and_answer(writer, batch))
                storing.add(task)
                task.add_done_callback(functools.partial(self._stored, storing, slots, len(batch)))
        finally:
            # The link is going down: a batch still in the sink is neither answered nor lost (it
            # is stored or not; the SMSC delivers it again either way and redeliveries are found).
            for task in storing:
                task.cancel()

    def _stored(
        self, storing: set[asyncio.Task[None]], slots: asyncio.Semaphore, count: int,
        task: asyncio.Task[None],
    ) -> None:
        storing.discard(task)
        slots.release()
        self._in_sink -= count

    async def _store_and_answer(
        self, writer: asyncio.StreamWriter, batch: list[tuple[int, Inbound]]
    ) -> None:
        try:
            await self.sink([item for _sequence, item in batch])
            status = pdu.ESME_ROK
        except Exception:
            # Not stored, so not acknowledged as received: the SMSC will deliver it again.
            log.exception("inbound_store_failed", extra={"count": len(batch)})
            status = pdu.ESME_RX_T_APPN
        if writer.is_closing():
            return  # the link went down meanwhile: the SMSC delivers these again
        # One write (one system call) for the whole batch.
        writer.write(b"".join(pdu.deliver_sm_resp(sequence, status) for sequence, _item in batch))
        if writer.transport.get_write_buffer_size() > 64 * 1024:
            await writer.drain()

    def _may_linger(self, batch: list[tuple[int, Inbound]]) -> bool:
        """Whether a batch waits a little for company (`SmscConfig.receipt_linger`).

        Only receipts wait: they settle what was sent, and nobody waits for their answer. Each
        batch is a transaction with an fsync, and at a few hundred texts a second every receipt
        came alone: waiting up to a few milliseconds for the next text stores them with it, one
        transaction instead of three for a text with a 2-part reply. They do not wait while the
        SMSC may be holding back what it has for us until these are answered: this batch and
        those being stored are half or more of the most this link has had unanswered at once, or
        a linger lately in which nothing else came.
        """
        if self.config.receipt_linger <= 0 or len(batch) >= LINGER_BATCH:
            return False
        unanswered = self._in_sink + len(batch)
        if unanswered * 2 > self._most_unanswered or time.monotonic() < self._linger_after:
            return False
        return all(not isinstance(item, bytes) and item.is_receipt for _sequence, item in batch)

    async def _linger(
        self, queue: asyncio.Queue[tuple[int, Inbound]], batch: list[tuple[int, Inbound]]
    ) -> None:
        """Wait until a text comes, LINGER_BATCH receipts are waiting, or receipt_linger passes."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._lingering = future
        timer = loop.call_later(self.config.receipt_linger, _resolve, future)
        try:
            await future
        finally:
            self._lingering = None
            timer.cancel()
        self.stats.lingered += 1
        if queue.empty():
            self.stats.lingered_alone += 1
            self._linger_after = time.monotonic() + LINGER_PAUSE
        while len(batch) < MAX_BATCH and not queue.empty():
            batch.append(queue.get_nowait())

    async def _keepalive(self) -> None:
        interval = self.config.enquire_link_interval
        while True:
            await asyncio.sleep(min(interval, 1.0, self.config.response_timeout / 4))
            self._expire_submits()
            if time.monotonic() - self._last_read < interval:
                continue
            try:
                await asyncio.wait_for(self._request(pdu.enquire_link), self.config.socket_timeout)
            except TimeoutError:
                self.stats.last_error = "no answer to enquire_link"
                raise LinkDown(self.stats.last_error) from None

    # ---- requests -----------------------------------------------------------------------------

    async def _request(self, build: Callable[[int], bytes]) -> tuple[int, bytes]:
        """Send a request outside the submit window (unbind, enquire_link); its response."""
        writer = self._writer
        if writer is None or not self.bound.is_set():
            raise LinkDown("not bound")
        sequence = self._next_sequence()
        future: asyncio.Future[tuple[int, bytes]] = asyncio.get_running_loop().create_future()
        self._pending[sequence] = future
        try:
            self._send(writer, build(sequence))
            return await future
        finally:
            self._pending.pop(sequence, None)

    def _expire_submits(self) -> None:
        """Fail submits past their deadline (checked by _keepalive, not a timer per submit)."""
        now = time.monotonic()
        for sequence in [sequence for sequence, item in self._in_window.items()
                         if item.deadline <= now]:
            item = self._in_window.pop(sequence)
            self._free(item)
            if not item.answer.done():
                item.answer.set_exception(TimeoutError())

    # ---- the submit window ----------------------------------------------------------------------

    def _pump(self) -> None:
        """Write waiting submits while the window has room, the link is up and not paused.

        Called where room is made (an answer read, a bind, the end of a pause) and for each new
        submit: a slot freed by an answer is taken in the same turn of the loop, and the submit
        goes out with that turn's other writes, instead of waking its caller's task to write it
        a turn or two later while the window stands partly empty.
        """
        while (self._queued and self._used < self.config.window and self.bound.is_set()
               and self._resume.is_set()):
            item = self._queued.popleft()
            if item.answer.done():
                continue  # its caller was cancelled while it waited
            self._used += 1
            item.holds_slot = True
            delay = self._rate.delay(item.parts)
            if delay > 0:
                asyncio.get_running_loop().call_later(delay, self._write_submit, item)
            else:
                self._write_submit(item)

    def _write_submit(self, item: _Submit) -> None:
        writer = self._writer
        if item.answer.done():  # its caller was cancelled during the rate's wait
            self._free(item)
            self._pump()
            return
        if writer is None or not self.bound.is_set():
            # The link dropped during the rate's wait: first in line for the next bind.
            self._free(item)
            self._queued.appendleft(item)
            return
        item.sequence = self._next_sequence()
        item.sent_at = time.monotonic()
        item.deadline = item.sent_at + self.config.response_timeout
        self._in_window[item.sequence] = item
        self._send(writer, item.build(item.sequence))

    def _free(self, item: _Submit) -> None:
        if item.holds_slot:
            item.holds_slot = False
            self._used -= 1

    def _submit_answered(self, item: _Submit, status: int, raw: bytes) -> None:
        self._free(item)
        if status in (pdu.ESME_RTHROTTLED, pdu.ESME_RMSGQFUL):
            self._throttled(status)  # paused before the freed slot can be taken
        if not item.answer.done():
            item.answer.set_result((status, raw))
        if self._queued:
            self._pump()

    def _send(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        """Write at the end of this turn of the loop, with whatever else is sent in it.

        Under load many submits are ready in the same turn; one write for all of them is one
        system call instead of one each.
        """
        if writer is not self._unsent_for:
            # Whatever waits for a link that went down is dropped: its requests failed (LinkDown).
            self._unsent, self._unsent_for = [], writer
        self._unsent.append(data)
        if len(self._unsent) == 1:
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        data, self._unsent = b"".join(self._unsent), []
        writer = self._unsent_for
        if data and writer is not None and writer is self._writer and not writer.is_closing():
            writer.write(data)

    async def submit(self, build: Callable[[int], bytes], parts: int = 1) -> tuple[int, bytes]:
        """Send one submit_sm (built for a sequence number); returns (status, response).

        `parts` is how many SMS parts it carries (a whole text in message_payload carries all of
        its own): the submit rate is counted in parts, as operators sell it.

        Waits in line while the window is full, the link unbound or paused by throttling (a
        throttled submit is sent again first when the pause ends); raises LinkDown if the link
        drops while it is on the wire.
        """
        loop = asyncio.get_running_loop()
        again = False
        while True:
            item = _Submit(build, parts, loop.create_future())
            if again:
                self._queued.appendleft(item)
            else:
                self._queued.append(item)
            self._pump()
            try:
                status, raw = await item.answer
            except TimeoutError:
                # An SMSC that stops answering submits is treated as a dead link.
                self.stats.last_error = "submit_sm got no answer"
                self._close()
                raise LinkDown(self.stats.last_error) from None
            self.stats.submits += 1
            if status in (pdu.ESME_RTHROTTLED, pdu.ESME_RMSGQFUL):
                again = True  # the pause began when the answer was read (_submit_answered)
                continue
            self._throttle_delay = self.config.throttle_pause
            if len(self.stats.submit_latency) < 10000:
                self.stats.submit_latency.append(time.monotonic() - item.sent_at)
            return status, raw

    def _throttled(self, status: int) -> None:
        self.stats.throttled += 1
        if not self._resume.is_set():
            return
        delay = self._throttle_delay
        self._throttle_delay = min(delay * 2, self.config.throttle_pause_max)
        log.warning("throttled", extra={"status": pdu.status_name(status), "pause_s": delay})
        self._resume.clear()
        asyncio.get_running_loop().call_later(delay, self._resume_sending)

    def _resume_sending(self) -> None:
        self._resume.set()
        self._pump()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
