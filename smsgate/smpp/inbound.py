"""deliver_sm from their arrival to their deliver_sm_resp: stored by the sink in batches, then answered.

deliver_sm_resp tells the SMSC it may forget a message, so each one is answered only once the
sink has stored its batch (one commit for many texts); what the sink fails to store is answered
with ESME_RX_T_APPN, and the SMSC delivers it again.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from smsgate import logs
from smsgate.smpp.codec import ShortMessage, deliver_sm_resp
from smsgate.smpp.constants import ESME_ROK, ESME_RX_T_APPN
from smsgate.smpp.stats import LinkStats

log = logs.get("smpp")

# What the sink receives: the decoded message, or the raw bytes of a PDU that could not be decoded
# (kept so nothing is lost even when it cannot be read).
Inbound = ShortMessage | bytes
InboundSink = Callable[[list[Inbound]], Awaitable[None]]
# A deliver_sm's sequence number and what it carried.
Received = tuple[int, Inbound]
MAX_BATCH = 500
# Batches of deliver_sm being stored at once (each answered when the sink returns it).
SINK_BATCHES = 4


class Batching(Protocol):
    """When a batch of deliver_sm goes to the sink: at once, or after waiting a little for company.

    A wait holds the batch's deliver_sm_resp back; the session's owner decides when that is worth
    it (the gateway: receipts, so that the store commits them with the next text).
    """

    def wait(self, batch: Sequence[Received], unanswered: int, most_unanswered: int) -> float:
        """Seconds the batch waits for more deliver_sm before it goes to the sink; 0 for none.

        unanswered: the deliver_sm unanswered with it (this batch and those in the sink);
        most_unanswered: the most the session has had unanswered at once.
        """
        ...

    def enough(self, item: Inbound, waiting: int) -> bool:
        """Whether item, come during a wait, ends it; waiting: the deliver_sm come since it began."""
        ...

    def waited(self, alone: bool) -> None:
        """A wait is over; alone when nothing came during it."""
        ...


class AtOnce:
    """Every batch goes to the sink at once."""

    def wait(self, batch: Sequence[Received], unanswered: int, most_unanswered: int) -> float:
        return 0.0

    def enough(self, item: Inbound, waiting: int) -> bool:
        return True

    def waited(self, alone: bool) -> None:
        return None


class InboundAcks:
    """Hands what arrived to the sink in batches; answers each deliver_sm once its batch is stored."""

    def __init__(self, sink: InboundSink, batching: Batching, stats: LinkStats) -> None:
        self.sink = sink
        self.batching = batching
        self.stats = stats
        self.in_sink = 0  # deliver_sm in batches the sink is storing
        self.most_unanswered = 0  # the most deliver_sm the session has had unanswered at once
        self.waiting: asyncio.Future[None] | None = None  # a batch waiting for company

    def arrived(self, queue: asyncio.Queue[Received], item: Inbound) -> None:
        """item was just put in queue while a batch waits for company: it may end the wait."""
        waiting = self.waiting
        if waiting is not None and not waiting.done() and self.batching.enough(item, queue.qsize()):
            waiting.set_result(None)

    async def run(self, writer: asyncio.StreamWriter, queue: asyncio.Queue[Received]) -> None:
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
                unanswered = self.in_sink + len(batch)
                self.most_unanswered = max(self.most_unanswered, unanswered)
                seconds = self.batching.wait(batch, unanswered, self.most_unanswered)
                if seconds > 0:
                    await self._wait_for_company(queue, batch, seconds)
                await slots.acquire()
                while len(batch) < MAX_BATCH and not queue.empty():
                    batch.append(queue.get_nowait())  # what came while every slot was taken
                self.in_sink += len(batch)
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
        self.in_sink -= count

    async def _store_and_answer(self, writer: asyncio.StreamWriter, batch: list[Received]) -> None:
        try:
            await self.sink([item for _sequence, item in batch])
            status = ESME_ROK
        except Exception:
            # Not stored, so not acknowledged as received: the SMSC will deliver it again.
            log.exception("inbound_store_failed", extra={"count": len(batch)})
            status = ESME_RX_T_APPN
        if writer.is_closing():
            return  # the link went down meanwhile: the SMSC delivers these again
        # One write (one system call) for the whole batch.
        writer.write(b"".join(deliver_sm_resp(sequence, status) for sequence, _item in batch))
        if writer.transport.get_write_buffer_size() > 64 * 1024:
            await writer.drain()

    async def _wait_for_company(
        self, queue: asyncio.Queue[Received], batch: list[Received], seconds: float
    ) -> None:
        """Wait until `batching` says enough has come or the seconds pass; then take what came."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self.waiting = future
        timer = loop.call_later(seconds, _resolve, future)
        try:
            await future
        finally:
            self.waiting = None
            timer.cancel()
        alone = queue.empty()
        self.stats.lingered += 1
        if alone:
            self.stats.lingered_alone += 1
        self.batching.waited(alone)
        while len(batch) < MAX_BATCH and not queue.empty():
            batch.append(queue.get_nowait())


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
