"""The Gateway: its parts built, wired together, started and stopped (smsgate/gateway/__init__.py)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

from handlers import HANDLERS
from smsgate import security, ussd
from smsgate.config import Config
from smsgate.gateway.counters import Counters
from smsgate.gateway.flow import FlowControl
from smsgate.gateway.inbound import InboundWriter
from smsgate.gateway.processor import Processor
from smsgate.gateway.receipts import Receipts
from smsgate.gateway.sender import Sender
from smsgate.linger import ReceiptLinger
from smsgate.readers import BalanceReader
from smsgate.router import Router
from smsgate.services import Services
from smsgate.smpp import Inbound, SmppSession
from store.db import Store


@dataclass
class Parts:
    """The gateway's parts, each with its own state; they call one another's methods."""

    flow: FlowControl
    receipts: Receipts
    sender: Sender
    processor: Processor
    inbound: InboundWriter


class Gateway:
    def __init__(self, config: Config, store: Store) -> None:
        # What the rest of smsgate uses: the website (services), the operator listener (session,
        # counters, started_at, long_text), `smsgate run`, the tests.
        self.config = config
        self.store = store
        self.services = Services(store, config, wake_outbox=self.wake_sender)
        self.router = Router(HANDLERS, self.services)
        self.ussd = ussd.SmppUssd(config.ussd, ussd.UssdEngine(self.services, config))
        self.reader = BalanceReader(store.path) if config.store.reader_min_batch else None
        self.counters = Counters()
        self.started_at = time.time()
        # Receipts alone wait a little for a text, to be stored in its transaction (linger.py).
        self.session = SmppSession(config.smsc, self._store_batch, on_bound=self._on_bound,
                                   batching=ReceiptLinger(config.smsc.receipt_linger))
        # The parts.
        flow = FlowControl(config.smsc.window)
        receipts = Receipts(store, self.session, self.counters, config.smsc.indoubt_grace)
        sender = Sender(config.smsc, store, self.session, flow, receipts, self.counters)
        processor = Processor(store, self.router, self.ussd, flow, sender, self.counters)
        inbound = InboundWriter(config, store, self.router, self.reader, flow, processor, sender,
                                receipts, self.counters)
        self.parts = Parts(flow, receipts, sender, processor, inbound)
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        security.READY.keep(self.config.passwords.ready)
        if self.reader is not None:
            self.reader.start()
        parts = self.parts
        await parts.processor.resume()
        await parts.sender.resume()
        self._tasks = [
            asyncio.create_task(self.session.run(), name="session"),
            asyncio.create_task(parts.processor.run(), name="processor"),
            asyncio.create_task(parts.processor.commit_loop(), name="committer"),
            asyncio.create_task(parts.sender.queue.scan_loop(), name="outbox-scan"),
            asyncio.create_task(parts.sender.run(), name="sender"),
            asyncio.create_task(parts.sender.results.run(), name="results"),
        ]

    async def stop(self) -> None:
        await self.session.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.parts.sender.stop()
        self.parts.processor.stop()
        await self.parts.sender.results.flush()
        if self.reader is not None:
            await self.reader.close()

    def wake_sender(self) -> None:
        """Something was queued outside the gateway's own flow (the website, a USSD menu)."""
        self.parts.sender.queue.wake()

    @property
    def long_text(self) -> str:
        """How long texts go out now: "udh", "payload", or "udh" after the SMSC refused payload."""
        return self.parts.sender.long_text

    async def _store_batch(self, batch: list[Inbound]) -> None:
        await self.parts.inbound.store_batch(batch)

    def _on_bound(self, up: bool) -> None:
        if up:
            self.parts.sender.queue.wake()
