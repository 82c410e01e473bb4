"""The SMPP link to the operator's SMSC: bind, keep alive, read, submit, reconnect.

Inbound deliver_sm go to the sink in batches and are answered once stored (inbound.py); submits
go through the window (window.py). A lost link fails what was in flight with LinkDown (the caller
resends after the next bind) and reconnects with backoff and jitter. `SmppSession.state` is
"down" (connecting, or waiting to reconnect), "bound" (submits go out) or "throttled" (bound, and
submits wait out a pause after ESME_RTHROTTLED or ESME_RMSGQFUL).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable

from smsgate import logs
from smsgate.config import SmscConfig
from smsgate.smpp.codec import Header, PduError, decode_sm, frames, generic_nack, parse_header
from smsgate.smpp.constants import (
    BIND_TRANSCEIVER,
    DELIVER_SM,
    ENQUIRE_LINK,
    ESME_RINVCMDID,
    ESME_ROK,
    GENERIC_NACK,
    MAX_PDU_LENGTH,
    RESPONSE_BIT,
    UNBIND,
)
from smsgate.smpp.inbound import AtOnce, Batching, Inbound, InboundAcks, InboundSink, Received
from smsgate.smpp.stats import LinkStats
from smsgate.smpp.window import THROTTLING, Submit, SubmitWindow
from smsgate.smpp.workarounds import (
    bind_transceiver,
    enquire_link,
    enquire_link_resp,
    status_name,
    unbind,
    unbind_resp,
)

log = logs.get("smpp")

READ_CHUNK = 65536


class LinkDown(Exception):
    """The link went down before the SMSC answered; the request may be sent again."""


class BindRefused(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"bind refused: {status_name(status)}")
        self.status = status


class _Link:
    """The connection of the current bind: its writer, sequence numbers and the writes of a turn."""

    def __init__(self, bound: asyncio.Event) -> None:
        self.bound = bound
        self.writer: asyncio.StreamWriter | None = None  # while bound
        self.lost = asyncio.Event()  # set to end the current link
        self.last_read = time.monotonic()
        self._sequence = random.randrange(1, 0x10000)
        self._unsent: list[bytes] = []
        self._unsent_for: asyncio.StreamWriter | None = None

    @property
    def up(self) -> bool:
        return self.writer is not None and self.bound.is_set()

    def next_sequence(self) -> int:
        self._sequence = self._sequence + 1 if self._sequence < 0x7FFFFFFF else 1
        return self._sequence

    def send(self, data: bytes) -> None:
        """Write at the end of this turn of the loop, with whatever else is sent in it.

        Under load many submits are ready in the same turn; one write for all of them is one
        system call instead of one each.
        """
        writer = self.writer
        if writer is not self._unsent_for:
            # Whatever waits for a link that went down is dropped: its requests failed (LinkDown).
            self._unsent, self._unsent_for = [], writer
        self._unsent.append(data)
        if len(self._unsent) == 1:
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        data, self._unsent = b"".join(self._unsent), []
        writer = self._unsent_for
        if data and writer is not None and writer is self.writer and not writer.is_closing():
            writer.write(data)


class SmppSession:
    """A transceiver bind to the SMSC, kept up until stop().

    sink stores each batch of deliver_sm before they are answered; on_bound hears of each bind and
    each loss; batching decides whether a batch waits for company first (by default none waits).
    """

    def __init__(
        self,
        config: SmscConfig,
        sink: InboundSink,
        on_bound: Callable[[bool], None] | None = None,
        *,
        batching: Batching | None = None,
    ) -> None:
        # What the owner gave.
        self.config = config
        self.on_bound = on_bound or (lambda _up: None)
        # What the owner reads.
        self.bound = asyncio.Event()
        self.stats = LinkStats()
        # The link, what is sent on it, and what arrived and is not answered yet.
        self._link = _Link(self.bound)
        self._window = SubmitWindow(config, self._link, self.stats)
        self._requests: dict[int, asyncio.Future[tuple[int, bytes]]] = {}  # outside the window
        self._acks = InboundAcks(sink, batching or AtOnce(), self.stats)
        self._stopped = asyncio.Event()

    @property
    def state(self) -> str:
        if self.bound.is_set():
            return "throttled" if self._window.throttle.paused else "bound"
        return "down"

    # ---- lifecycle ------------------------------------------------------------------------------

    async def run(self) -> None:
        """Bind and serve until stop(); reconnects with exponential backoff and jitter."""
        delay = self.config.reconnect_min
        while not self._stopped.is_set():
            binds = self.stats.binds
            try:
                await self._connect_and_serve()
            except (OSError, TimeoutError, BindRefused, PduError,
                    asyncio.IncompleteReadError, LinkDown) as exc:
                self.stats.last_error = f"{type(exc).__name__}: {exc}"[:200]
                if not self.bound.is_set():
                    self.stats.bind_failures += 1
                log.warning("bind_failed", extra={"error": self.stats.last_error,
                                                  "host": self.config.host, "port": self.config.port})
            finally:
                self._mark_down()
            if self._stopped.is_set():
                break
            if self.stats.binds > binds:
                # The SMSC took the bind: it is there, and the link may come back at once. The
                # backoff grows only while binds fail (an SMSC that drops every few dozen
                # submits would otherwise leave every reconnect waiting reconnect_max).
                delay = self.config.reconnect_min
            # Jitter spreads reconnects; operators answer an instant re-bind with ESME_RALYBND.
            pause = random.uniform(delay / 2, delay)
            log.info("reconnect_wait", extra={"seconds": round(pause, 3)})
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(pause):  # wait_for could swallow stop()'s cancellation
                    await self._stopped.wait()
            delay = min(delay * 2, self.config.reconnect_max)

    async def stop(self) -> None:
        """Unbind cleanly (waiting briefly for unbind_resp) and close the link."""
        self._stopped.set()
        if self._link.writer is not None and self.bound.is_set():
            try:
                await asyncio.wait_for(self._request(unbind), 2.0)
            except (LinkDown, TimeoutError, OSError):
                pass
        self._close()

    def _close(self) -> None:
        if self._link.writer is not None:
            self._link.writer.close()
        self._link.lost.set()

    def _mark_down(self) -> None:
        was_bound = self.bound.is_set()
        self.bound.clear()
        self._link.writer = None
        self.stats.bound_since = None
        for future in self._requests.values():
            if not future.done():
                future.set_exception(LinkDown("link lost"))
        self._requests.clear()
        for item in self._window.take_all():
            if not item.answer.done():
                item.answer.set_exception(LinkDown("link lost"))
        if was_bound:
            if self._stopped.is_set():  # our own unbind at shutdown: nothing for an operator to chase
                log.info("unbound", extra={"host": self.config.host, "port": self.config.port})
            else:
                log.warning("bind_lost", extra={"error": self.stats.last_error})
            self.on_bound(False)

    async def _connect_and_serve(self) -> None:
        timeout = self.config.socket_timeout
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(self.config.host, self.config.port, limit=MAX_PDU_LENGTH), timeout
        )
        try:
            writer.write(bind_transceiver(
                self._link.next_sequence(), self.config.system_id, self.config.password,
                self.config.system_type,
            ))
            buffer = bytearray()  # what follows the bind's answer stays for the read loop
            header = parse_header(await asyncio.wait_for(_first_pdu(reader, buffer), timeout))
            if header.command_id != BIND_TRANSCEIVER | RESPONSE_BIT:
                raise PduError(f"unexpected answer to bind: 0x{header.command_id:08X}")
            if header.status != ESME_ROK:
                raise BindRefused(header.status)
            self._link.writer = writer
            self._link.lost = asyncio.Event()
            self._link.last_read = time.monotonic()
            self.stats.binds += 1
            self.stats.bound_since = time.time()
            self.stats.last_error = ""
            self.bound.set()
            log.info("bind_ok", extra={"host": self.config.host, "port": self.config.port,
                                       "system_id": self.config.system_id})
            self.on_bound(True)
            self._window.pump()  # what waited for the link
            queue: asyncio.Queue[Received] = asyncio.Queue()
            tasks = [
                asyncio.create_task(self._read_loop(reader, writer, buffer, queue), name="smpp-read"),
                asyncio.create_task(self._acks.run(writer, queue), name="smpp-ack"),
                asyncio.create_task(self._keepalive(), name="smpp-keepalive"),
                asyncio.create_task(self._link.lost.wait(), name="smpp-lost"),
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

    async def _read_loop(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, buffer: bytearray,
        queue: asyncio.Queue[Received],
    ) -> None:
        # Whatever arrived is read at once and split into PDUs here: under load a read brings
        # dozens of them, and two awaited reads for each cost more than handling it.
        link = self._link
        while True:
            for raw in frames(buffer):
                if not self._handle(parse_header(raw), raw, writer, queue):
                    return
            data = await reader.read(READ_CHUNK)
            if not data:
                raise asyncio.IncompleteReadError(bytes(buffer), None)
            link.last_read = time.monotonic()
            buffer += data

    def _handle(
        self, header: Header, raw: bytes, writer: asyncio.StreamWriter, queue: asyncio.Queue[Received],
    ) -> bool:
        """Act on one PDU from the SMSC; False once the SMSC unbinds."""
        command = header.command_id
        if command & RESPONSE_BIT:
            if self._window.answered(header.sequence, header.status, raw):
                return True
            future = self._requests.pop(header.sequence, None)
            if future is not None and not future.done():
                future.set_result((header.status, raw))
            elif command != GENERIC_NACK:
                log.warning("response_unmatched", extra={"command": f"0x{command:08X}",
                                                         "sequence": header.sequence})
        elif command == DELIVER_SM:
            self.stats.inbound += 1
            item: Inbound
            try:
                item = decode_sm(raw)
            except PduError as exc:
                self.stats.malformed += 1
                log.warning("pdu_malformed", extra={"command": "deliver_sm", "error": str(exc),
                                                    "octets": len(raw)})
                item = raw
            queue.put_nowait((header.sequence, item))
            if self._acks.waiting is not None:
                self._acks.arrived(queue, item)
        elif command == ENQUIRE_LINK:
            writer.write(enquire_link_resp(header.sequence))
        elif command == UNBIND:
            writer.write(unbind_resp(header.sequence))
            self.stats.last_error = "unbind from SMSC"
            log.info("unbind_received")
            return False
        else:
            log.warning("pdu_unsupported", extra={"command": f"0x{command:08X}"})
            writer.write(generic_nack(header.sequence, ESME_RINVCMDID))
        return True

    async def _keepalive(self) -> None:
        interval = self.config.enquire_link_interval
        while True:
            await asyncio.sleep(min(interval, 1.0, self.config.response_timeout / 4))
            self._window.expire()
            if time.monotonic() - self._link.last_read < interval:
                continue
            try:
                await asyncio.wait_for(self._request(enquire_link), self.config.socket_timeout)
            except TimeoutError:
                self.stats.last_error = "no answer to enquire_link"
                raise LinkDown(self.stats.last_error) from None

    # ---- requests -----------------------------------------------------------------------------

    async def _request(self, build: Callable[[int], bytes]) -> tuple[int, bytes]:
        """Send a request outside the submit window (unbind, enquire_link); its response."""
        if not self._link.up:
            raise LinkDown("not bound")
        sequence = self._link.next_sequence()
        future: asyncio.Future[tuple[int, bytes]] = asyncio.get_running_loop().create_future()
        self._requests[sequence] = future
        try:
            self._link.send(build(sequence))
            return await future
        finally:
            self._requests.pop(sequence, None)

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
            item = Submit(build, parts, loop.create_future())
            self._window.add(item, first=again)
            try:
                status, raw = await item.answer
            except TimeoutError:
                # An SMSC that stops answering submits is treated as a dead link.
                self.stats.last_error = "submit_sm got no answer"
                self._close()
                raise LinkDown(self.stats.last_error) from None
            self.stats.submits += 1
            if status in THROTTLING:
                again = True  # the pause began when the answer was read (SubmitWindow.answered)
                continue
            self._window.throttle.succeeded()
            if len(self.stats.submit_latency) < 10000:
                self.stats.submit_latency.append(time.monotonic() - item.sent_at)
            return status, raw


async def _first_pdu(reader: asyncio.StreamReader, buffer: bytearray) -> bytes:
    """The first PDU of the stream; what follows it stays in buffer."""
    while True:
        for raw in frames(buffer):
            return raw
        data = await reader.read(READ_CHUNK)
        if not data:
            raise asyncio.IncompleteReadError(bytes(buffer), None)
        buffer += data
