"""The sender: queued replies to the SMSC, one message at a time per phone, many phones at once.

`OutboxQueue` offers what is queued: rows just committed (they travel as rows: reading back what
was written a moment ago would cost a trip to the database), and ids the periodic scan finds
(queued by others, or before a restart). `Sender` submits each message's parts (built by
smsgate.smpp.outgoing) and notes the SMSC's answers for the next group commit (SubmitResults).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import time

from smsgate import logs, phone, smpp
from smsgate.config import SmscConfig
from smsgate.gateway.counters import Counters
from smsgate.gateway.flow import FlowControl
from smsgate.gateway.in_turn import InTurn
from smsgate.gateway.receipts import Receipts
from smsgate.gateway.results import SubmitResults
from smsgate.smpp import LinkDown, SmppSession
from store import outbox
from store.db import Store, now

log = logs.get("gateway")
SEND_BATCH = 500  # entries the sender takes from its queue at once
SCAN_LIMIT = 5000  # queued rows one scan offers


class OutboxQueue:
    """Queued messages offered to the sender, each once until its result is recorded."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._entries: asyncio.Queue[int | outbox.Outgoing] = asyncio.Queue()
        self._scheduled: set[int] = set()  # queued to send or in flight, until recorded
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Scan now: something was queued elsewhere (the website, a USSD menu's SMS)."""
        self._wake.set()

    def schedule(self, outbox_id: int, row: outbox.Outgoing | None = None) -> None:
        """Offer a queued message to the sender: its row when just written, else its id."""
        if outbox_id not in self._scheduled:
            self._scheduled.add(outbox_id)
            self._entries.put_nowait(outbox_id if row is None else row)

    def release(self, outbox_id: int) -> None:
        """Recorded, or left queued after an error: a later scan may offer it again."""
        self._scheduled.discard(outbox_id)

    async def next_entries(self) -> list[int | outbox.Outgoing]:
        entries = [await self._entries.get()]
        while len(entries) < SEND_BATCH and not self._entries.empty():
            entries.append(self._entries.get_nowait())
        return entries

    async def scan_loop(self) -> None:
        """Pick up what others queued (web, restarts): on a wake-up, or every second."""
        while True:
            # asyncio.timeout, not wait_for: with wait_for's inner task, a cancellation that comes
            # as the timeout fires can be lost, and Gateway.stop would wait for this loop for ever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._wake.wait()
            self._wake.clear()
            rows = await outbox.queued(self._store.db, after_id=0, limit=SCAN_LIMIT)
            for row in rows:
                self.schedule(row.id)


class _Resumed:
    """What the last run left of messages on their way."""

    def __init__(self) -> None:
        self.accepted: dict[int, set[int]] = {}  # parts the SMSC accepted, of rows about to be sent
        # The first queued message of each phone at start: it may have been on the wire when the
        # process stopped, so each of its parts is in doubt.
        self.in_doubt: set[int] = set()


class Sender:
    def __init__(
        self, config: SmscConfig, store: Store, session: SmppSession, flow: FlowControl,
        receipts: Receipts, counters: Counters,
    ) -> None:
        # Settings and the parts it talks to.
        self._config = config
        self._store = store
        self._session = session
        self._flow = flow
        self._receipts = receipts
        self._counters = counters
        # What to send, and what it answered.
        self.queue = OutboxQueue(store)
        self.results = SubmitResults(store, self.queue, flow, receipts)
        # Sending: replies in order per phone; what a restart left.
        self._in_turn = InTurn(max(config.window * 4, 64))
        self._resumed = _Resumed()
        # Set once the SMSC refuses a text whole in message_payload ([smsc] long_text = "payload"):
        # from then on, until a restart, long texts go as UDH parts.
        self._payload_refused = False

    @property
    def long_text(self) -> str:
        """How long texts go out now: "udh", "payload", or "udh" after the SMSC refused payload."""
        if self._config.long_text == "payload" and self._payload_refused:
            return "udh (the SMSC refused message_payload)"
        return self._config.long_text

    async def resume(self) -> None:
        """At start: what was queued before is in doubt where it may have been on the wire."""
        self._resumed.in_doubt = set(await outbox.first_queued_per_phone(self._store.db))
        self.queue.wake()

    def send_new(self, queued: list[tuple[int, outbox.NewOutgoing]], at: float) -> None:
        """Replies just committed: to the sender, as rows."""
        self._counters.replies_queued += len(queued)
        for outbox_id, item in queued:
            self._flow.reply_queued(outbox_id)
            self.queue.schedule(outbox_id, outbox.Outgoing(
                outbox_id, item.phone, item.text, item.kind, item.extra, at
            ))

    def stop(self) -> None:
        self._in_turn.cancel()

    async def run(self) -> None:
        """The send loop: rows as they are offered, each phone's one after another."""
        while True:
            entries = await self.queue.next_entries()
            rows = [entry for entry in entries if isinstance(entry, outbox.Outgoing)]
            ids = [entry for entry in entries if isinstance(entry, int)]
            if ids:
                # Read back: queued by others or before a restart; parts the SMSC accepted then
                # are not sent again. Rows just written by a commit have no parts yet.
                found = await outbox.get_outgoing(self._store.db, ids)
                self._resumed.accepted.update(await outbox.recorded_parts_of(self._store.db, ids))
                for gone in set(ids) - {row.id for row in found}:
                    self.queue.release(gone)  # no longer queued (sent before a restart)
                    self._resumed.accepted.pop(gone, None)
                    self._flow.reply_settled(gone)
                rows = sorted([*rows, *found], key=lambda row: row.id)
            for row in rows:
                await self._in_turn.start(row.phone, functools.partial(self._send_one, row))

    async def _send_one(self, row: outbox.Outgoing) -> None:
        try:
            await self._submit_message(row)
        except Exception:
            # Left queued: the periodic scan offers it again once it is no longer scheduled.
            log.exception("send_error", extra={"msisdn": row.phone, "outbox_id": row.id})
            self.queue.release(row.id)
            self._flow.reply_settled(row.id)

    async def _submit_message(self, row: outbox.Outgoing) -> None:
        smsc = self._config
        source = (smsc.source_addr, smsc.source_ton, smsc.source_npi)
        destination = (phone.smpp_address(row.phone), 1, 1)
        extra = json.loads(row.extra) if row.extra else {}
        tlvs = bytes.fromhex(extra.get("tlvs", ""))
        done = self._resumed.accepted.pop(row.id, set())
        try:
            message = smpp.outgoing_message(
                row.text, kind="ussd" if row.kind == "ussd" else "sms", source=source,
                destination=destination, receipts=smsc.request_delivery_receipts, tlvs=tlvs,
                long_text="udh" if self._payload_refused else smsc.long_text,
                # From the row, so that parts sent again after a restart still join.
                reference=row.id % 255 + 1, done=done,
            )
        except ValueError as exc:
            self._fail(row, f"unsendable: {exc}")
            return
        started = time.monotonic()
        parts = message.parts
        responses: list[tuple[int, str] | None]
        if row.id in self._resumed.in_doubt:
            responses = [None] * len(parts)  # all in doubt
        elif parts:
            # All parts on the wire at once, in order, each waiting for its own answer: the first
            # right here (it is written before the others' tasks start), the rest in tasks.
            rest = [asyncio.ensure_future(self._submit_part(row.id, part)) for part in parts[1:]]
            try:
                head = await self._submit_part(row.id, parts[0], message.weight)
            except BaseException:
                await asyncio.gather(*rest, return_exceptions=True)
                raise
            responses = [head, *[await task for task in rest]]
        else:
            responses = []
        refused = ""
        for part, response in zip(parts, responses, strict=True):
            if response is None:
                # Sent when the link (or the process) died, with no answer: settled one at a time.
                status, smsc_id = await self._submit_in_doubt(row, part, message.weight)
                if status == smpp.ESME_ROK:
                    self.results.part_accepted(row.id, part.number, smsc_id)
            else:
                status, smsc_id = response
            if status != smpp.ESME_ROK:
                refused = refused or f"submit refused: {smpp.status_name(status)}"
            if message.whole and status in smpp.PAYLOAD_REFUSALS:
                # This SMSC does not take message_payload: this text, and every later one, as parts.
                self._payload_refused = True
                log.warning("message_payload_refused", extra={
                    "msisdn": row.phone, "outbox_id": row.id, "status": smpp.status_name(status),
                })
                await self._submit_message(row)
                return
        self._resumed.in_doubt.discard(row.id)
        if refused:
            self._fail(row, refused)
            return
        self.results.finished(row.id)
        self._counters.sent += 1
        self._flow.reply_settled(row.id)  # out of the sender's way; its results wait for a commit
        log.info("sms_out", extra={"msisdn": row.phone, "outbox_id": row.id, "parts": message.count,
                                   "kind": row.kind,
                                   "ms": round((time.monotonic() - started) * 1000, 1),
                                   "queued_ms": round((now() - row.created_at) * 1000, 1)})

    async def _submit_part(
        self, outbox_id: int, part: smpp.OutgoingPart, weight: int = 1
    ) -> tuple[int, str] | None:
        """(status, SMSC id) of one part, or None if the link dropped before the answer.

        An accepted part is noted for the next commit as soon as its own answer is read, not
        once every part of its message is answered: the SMSC sends the part's receipt right
        behind its submit_sm_resp, and the transaction that stores that receipt must already
        hold the part to match it (else the receipt waits as an orphan and is matched again).
        """
        response = await self._try_submit(part, weight)
        if response is None:
            return None
        status, smsc_id = response[0], smpp.response_message_id(response[1])
        if status == smpp.ESME_ROK:
            self.results.part_accepted(outbox_id, part.number, smsc_id)
        return status, smsc_id

    async def _try_submit(self, part: smpp.OutgoingPart, weight: int) -> tuple[int, bytes] | None:
        """(status, response PDU) of one submit, or None if the link dropped before the answer."""
        try:
            return await self._session.submit(part.build, weight)
        except LinkDown:
            return None

    async def _submit_in_doubt(
        self, row: outbox.Outgoing, part: smpp.OutgoingPart, weight: int
    ) -> tuple[int, str]:
        """A part that may or may not have reached the SMSC: (status, SMSC id) once settled."""
        part_text = part.text()
        while True:
            # If the SMSC had accepted it, its receipt names this phone: only then is it not
            # sent again.
            smsc_id = await self._receipts.settle_doubt(row.phone, row.id, part_text)
            if smsc_id is not None:
                return smpp.ESME_ROK, smsc_id
            response = await self._try_submit(part, weight)
            if response is not None:
                return response[0], smpp.response_message_id(response[1])
            # The link dropped again before the answer: in doubt again.

    def _fail(self, row: outbox.Outgoing, error: str) -> None:
        self._counters.failed += 1
        self.results.failed(row.id, error)
        self._flow.reply_settled(row.id)
        log.warning("sms_failed", extra={"msisdn": row.phone, "outbox_id": row.id, "error": error})
