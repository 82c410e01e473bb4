"""The flow: SMSC -> inbox (stored, then acknowledged) -> router -> outbox (stored) -> SMSC.

Three loops share one store: the session's sink writes whatever arrived in one transaction; the
processor routes stored texts and writes their replies together with the inbox state; the sender
submits queued replies, one message at a time per phone (so replies arrive in order) and many
phones at once, and records the SMSC's answers in group commits.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import json
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import aiosqlite

from handlers import HANDLERS, Reply
from smsgate import logs, pdu, phone
from smsgate.config import Config
from smsgate.router import Router
from smsgate.services import Services
from smsgate.session import Inbound, LinkDown, SmppSession
from store import messages
from store.db import Store, now

log = logs.get("gateway")
PROCESS_BATCH = 256
ORPHAN_SECONDS = 30.0  # how long a receipt waits for the submit it names to be recorded


@dataclass
class _Orphan:
    """A receipt that names no recorded part (yet)."""

    receipt_id: int
    phone: str
    receipt: pdu.Receipt
    keys: frozenset[str]
    at: float
    give_up_at: float
    settled_doubt: bool = False


_Pending = tuple[
    list[messages.PartResult], list[tuple[int, float]], list[tuple[int, str, float]], list[int]
]


@dataclass
class Counters:
    received: int = 0
    redelivered: int = 0
    replies_queued: int = 0
    sent: int = 0
    failed: int = 0
    receipts: int = 0
    receipts_unmatched: int = 0
    handler_errors: int = 0


class Gateway:
    def __init__(self, config: Config, store: Store) -> None:
        self.config = config
        self.store = store
        self.services = Services(store, config, wake_outbox=self.wake_sender)
        self.router = Router(HANDLERS, self.services)
        self.session = SmppSession(config.smsc, self._store_inbound, on_bound=self._on_bound)
        self.counters = Counters()
        self.started_at = time.time()
        self._to_process: asyncio.Queue[int] = asyncio.Queue()
        self._to_send: asyncio.Queue[int] = asyncio.Queue()
        self._wake_scan = asyncio.Event()
        self._last_queued_id = 0
        self._scheduled: set[int] = set()  # queued to send or in flight, until recorded
        self._phone_tails: dict[str, asyncio.Task[None]] = {}
        self._results: list[messages.PartResult] = []
        self._finished: list[tuple[int, float]] = []
        self._failures: list[tuple[int, str, float]] = []
        self._results_ready = asyncio.Event()
        self._acked_pending: list[int] = []
        self._orphans: list[_Orphan] = []
        # A part per phone whose submit got no answer: (its text, resolved with the SMSC id).
        self._doubts: dict[str, tuple[str, asyncio.Future[str]]] = {}
        self._startup_doubts: set[int] = set()
        self._reference = itertools.count(int(time.time()) % 256)
        self._tasks: list[asyncio.Task[None]] = []
        self._send_slots = asyncio.Semaphore(max(config.smsc.window * 4, 64))

    # ---- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        for item in await messages.pending_inbound(self.store.db, limit=1_000_000):
            self._to_process.put_nowait(item.id)
        # The first queued message of each phone may have been on the wire when we stopped.
        self._startup_doubts = set(await messages.first_queued_per_phone(self.store.db))
        self._wake_scan.set()
        self._tasks = [
            asyncio.create_task(self.session.run(), name="session"),
            asyncio.create_task(self._process_loop(), name="processor"),
            asyncio.create_task(self._scan_loop(), name="outbox-scan"),
            asyncio.create_task(self._send_loop(), name="sender"),
            asyncio.create_task(self._results_loop(), name="results"),
        ]

    async def stop(self) -> None:
        await self.session.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for tail in list(self._phone_tails.values()):
            tail.cancel()
        await self._flush_results()

    def wake_sender(self) -> None:
        self._wake_scan.set()

    def _on_bound(self, up: bool) -> None:
        if up:
            self._wake_scan.set()

    # ---- inbound --------------------------------------------------------------------------------

    async def _store_inbound(self, batch: list[Inbound]) -> None:
        """The session's sink: everything in the batch is durable when this returns."""
        at = now()
        texts: list[messages.NewInbound] = []
        parts: list[pdu.ShortMessage] = []
        receipts: list[pdu.ShortMessage] = []
        for item in batch:
            if isinstance(item, bytes):
                texts.append(messages.NewInbound("", "", -1, item, "sms", at, extra="malformed"))
            elif item.is_receipt:
                receipts.append(item)
            elif item.concat is not None and item.concat.total > 1:
                parts.append(item)
            else:
                texts.append(self._new_inbound(item, item.text, at))
        since = at - self.config.limits.redelivery_window_seconds
        # A receipt can overtake the group commit of its submit_sm_resp: write those first.
        pending = self._take_results() if receipts else None
        try:
            ids = await self._write_inbound(texts, parts, receipts, pending, at, since)
        except BaseException:
            if pending is not None:
                self._restore_results(pending)  # not written: the next commit takes them
            raise
        if pending is not None:
            self._results_written(pending)
        for item_id, stored in zip(ids, texts, strict=True):
            if item_id is None:
                self.counters.redelivered += 1
                log.info("sms_redelivered", extra={"msisdn": stored.phone})
                continue
            self.counters.received += 1
            log.info("sms_in", extra={"msisdn": stored.phone, "inbox_id": item_id,
                                      "chars": len(stored.text), "coding": stored.data_coding})
            if stored.phone:
                self._to_process.put_nowait(item_id)
            else:
                log.warning("pdu_kept_unanswerable", extra={"inbox_id": item_id})
        fresh = [item_id for item_id in ids if item_id is not None]
        if fresh:
            # Acknowledged as soon as the sink returns; recorded in the next transaction.
            asyncio.get_running_loop().call_soon(self._note_acked, fresh)

    async def _write_inbound(
        self, texts: list[messages.NewInbound], parts: list[pdu.ShortMessage],
        receipts: list[pdu.ShortMessage], pending: _Pending | None, at: float, since: float,
    ) -> list[int | None]:
        async with self.store.tx() as db:
            if pending is not None:
                await self._write_results(db, pending)
            for part in parts:
                assert part.concat is not None
                whole = await messages.store_part(
                    db, self._phone_of(part), part.concat.reference, part.concat.total,
                    part.concat.number, part.text, part.data_coding, at,
                )
                if whole is not None:
                    texts.append(self._new_inbound(part, "".join(whole), at))
            ids = await messages.store_inbound(db, texts, since)
            for receipt in receipts:
                await self._apply_receipt(db, receipt, at)
        return ids

    def _note_acked(self, ids: list[int]) -> None:
        self._acked_pending.extend(ids)
        self._results_ready.set()

    @staticmethod
    def _phone_of(message: pdu.ShortMessage) -> str:
        try:
            return phone.normalise(message.source)
        except phone.BadPhone:
            return message.source

    def _new_inbound(self, message: pdu.ShortMessage, text: str, at: float) -> messages.NewInbound:
        extra = ""
        if message.ussd_service_op is not None:
            extra = json.dumps({"ussd_op": message.ussd_service_op,
                                "session": (message.its_session_info or b"").hex()})
        raw = None if message.is_text else message.payload
        coding = message.data_coding if message.is_text else -1
        return messages.NewInbound(self._phone_of(message), text, coding, raw, "sms", at, extra)

    async def _apply_receipt(
        self, db: aiosqlite.Connection, message: pdu.ShortMessage, at: float
    ) -> None:
        receipt = pdu.parse_receipt(message)
        keys = frozenset(pdu.normalise_message_id(receipt.message_id))
        receipt_id = await messages.store_receipt(
            db, receipt.message_id, receipt.stat, receipt.err, message.text, at
        )
        self.counters.receipts += 1
        orphan = _Orphan(receipt_id, self._phone_of(message), receipt, keys, at,
                         time.monotonic() + ORPHAN_SECONDS)
        await self._match(db, orphan)

    async def _match(self, db: aiosqlite.Connection, orphan: _Orphan) -> bool:
        receipt = orphan.receipt
        matched = await messages.match_receipt(
            db, orphan.receipt_id, orphan.keys, receipt.stat, receipt.err, orphan.at
        )
        if matched is not None:
            log.info("dlr", extra={"outbox_id": matched, "stat": receipt.stat, "err": receipt.err})
            return True
        if not orphan.settled_doubt:
            orphan.settled_doubt = self._claim_doubt(orphan)
        if orphan.keys and time.monotonic() < orphan.give_up_at:
            # The submit_sm_resp it names may still be on its way to the store: try again later.
            self._orphans.append(orphan)
        else:
            self.counters.receipts_unmatched += 1
            log.warning("dlr_unmatched", extra={"smsc_id": receipt.message_id[:64],
                                                "stat": receipt.stat, "receipt_id": orphan.receipt_id})
        return False

    async def _retry_orphans(self) -> None:
        orphans, self._orphans = self._orphans, []
        if not orphans:
            return
        async with self.store.tx() as db:
            for orphan in orphans:
                await self._match(db, orphan)

    # ---- processing -----------------------------------------------------------------------------

    async def _process_loop(self) -> None:
        while True:
            ids = [await self._to_process.get()]
            while len(ids) < PROCESS_BATCH and not self._to_process.empty():
                ids.append(self._to_process.get_nowait())
            try:
                await self._process(ids)
            except Exception:
                # Left in state 'new': retried after a pause and again at the next start.
                log.exception("process_failed", extra={"count": len(ids)})
                await asyncio.sleep(1.0)
                for item_id in ids:
                    self._to_process.put_nowait(item_id)

    async def _process(self, ids: Sequence[int]) -> None:
        items = await messages.get_inbound(self.store.db, ids)
        by_phone: dict[str, list[messages.Inbound]] = defaultdict(list)
        for item in items:
            by_phone[item.phone].append(item)
        results: dict[int, tuple[str, list[Reply], bool]] = {}

        async def one_phone(texts: list[messages.Inbound]) -> None:
            # Texts from one phone are handled in order; different phones at once.
            for item in texts:
                routed = await self.router.route(
                    item.phone, item.text, item.channel, readable=item.data_coding >= 0
                )
                results[item.id] = (routed.handler, routed.replies, routed.ok)

        await asyncio.gather(*(one_phone(texts) for texts in by_phone.values()))
        outgoing: list[messages.NewOutgoing] = []
        done: list[tuple[int, str, str]] = []
        for item in items:
            handler, replies, ok = results[item.id]
            if not ok:
                self.counters.handler_errors += 1
            done.append((item.id, "done" if ok else "failed", handler))
            if not item.phone.startswith("+"):
                continue  # not a number we can answer (unparseable or foreign address)
            for number, reply in enumerate(replies):
                outgoing.append(messages.NewOutgoing(
                    f"in:{item.id}:{number}", item.phone, reply.text, pdu.count_parts(reply.text),
                    "secret" if reply.secret else "reply",
                ))
        async with self.store.tx() as db:
            new_ids = await messages.enqueue(db, outgoing, now())
            await messages.finish_inbound(db, done)
        self.counters.replies_queued += len(new_ids)
        for outbox_id in new_ids:
            self._schedule(outbox_id)

    # ---- sending --------------------------------------------------------------------------------

    async def _scan_loop(self) -> None:
        """Pick up what others queued (web, restarts): on a wake-up, or every second."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake_scan.wait(), 1.0)
            self._wake_scan.clear()
            rows = await messages.queued(self.store.db, after_id=0, limit=5000)
            for row in rows:
                self._schedule(row.id)

    def _schedule(self, outbox_id: int) -> None:
        if outbox_id not in self._scheduled:
            self._scheduled.add(outbox_id)
            self._to_send.put_nowait(outbox_id)

    async def _send_loop(self) -> None:
        while True:
            ids = [await self._to_send.get()]
            while len(ids) < 500 and not self._to_send.empty():
                ids.append(self._to_send.get_nowait())
            rows = await messages.get_outgoing(self.store.db, ids)
            for gone in set(ids) - {row.id for row in rows}:
                self._scheduled.discard(gone)  # no longer queued (sent before a restart)
            for row in rows:
                await self._send_slots.acquire()
                previous = self._phone_tails.get(row.phone)
                task = asyncio.create_task(self._send_one(row, previous))
                self._phone_tails[row.phone] = task
                task.add_done_callback(functools.partial(self._tail_done, row.phone))

    def _tail_done(self, who: str, task: asyncio.Task[None]) -> None:
        self._send_slots.release()
        if self._phone_tails.get(who) is task:
            del self._phone_tails[who]

    async def _send_one(self, row: messages.Outgoing, previous: asyncio.Task[None] | None) -> None:
        if previous is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.shield(previous)
        try:
            await self._submit_message(row)
        except Exception:
            # Left queued: the periodic scan offers it again once it is no longer scheduled.
            log.exception("send_error", extra={"msisdn": row.phone, "outbox_id": row.id})
            self._scheduled.discard(row.id)

    async def _submit_message(self, row: messages.Outgoing) -> None:
        smsc = self.config.smsc
        source = (smsc.source_addr, smsc.source_ton, smsc.source_npi)
        destination = (phone.smpp_address(row.phone), 1, 1)
        extra = json.loads(row.extra) if row.extra else {}
        tlvs = bytes.fromhex(extra.get("tlvs", ""))
        try:
            # The reference comes from the row, so parts sent again after a restart still join.
            parts = pdu.split_text(row.text, reference=row.id % 255 + 1)
        except ValueError as exc:
            self._fail(row, f"unsendable: {exc}")
            return
        registered = 1 if smsc.request_delivery_receipts else 0
        started = time.monotonic()
        done_parts = await messages.recorded_parts(self.store.db, row.id)
        in_doubt = row.id in self._startup_doubts
        for number, (coding, data) in enumerate(parts, start=1):
            if number in done_parts:
                continue  # accepted before a restart
            udh = len(parts) > 1

            def build(sequence: int, coding: int = coding, data: bytes = data, udh: bool = udh) -> bytes:
                return pdu.build_submit_sm(sequence, source, destination, coding, data, udh=udh,
                                           registered_delivery=registered, tlvs=tlvs)

            smsc_id: str | None = None
            while smsc_id is None:
                if in_doubt:
                    # Sent when the link (or the process) died, with no answer: if the SMSC had
                    # accepted it, its receipt names this phone. Only then is it not sent again.
                    smsc_id = await self._settle_doubt(row, self._part_text(coding, data, udh))
                    in_doubt = False
                    if smsc_id is not None:
                        break
                try:
                    status, response = await self.session.submit(build)
                except LinkDown:
                    in_doubt = True
                    continue
                if status != pdu.ESME_ROK:
                    self._fail(row, f"submit refused: {pdu.status_name(status)}")
                    return
                smsc_id = pdu.response_message_id(response)
            self._results.append(messages.PartResult(
                row.id, number, smsc_id, tuple(sorted(pdu.normalise_message_id(smsc_id))), now()
            ))
        self._startup_doubts.discard(row.id)
        self._finished.append((row.id, now()))
        self.counters.sent += 1
        self._results_ready.set()
        log.info("sms_out", extra={"msisdn": row.phone, "outbox_id": row.id, "parts": len(parts),
                                   "kind": row.kind,
                                   "ms": round((time.monotonic() - started) * 1000, 1),
                                   "queued_ms": round((now() - row.created_at) * 1000, 1)})

    @staticmethod
    def _part_text(coding: int, data: bytes, udh: bool) -> str:
        payload = data[data[0] + 1:] if udh else data
        return pdu.decode_text(coding, payload)[0]

    async def _settle_doubt(self, row: messages.Outgoing, part_text: str) -> str | None:
        """Wait for a receipt from this phone that shows the SMSC took the part; its id or None."""
        await self.session.bound.wait()
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._doubts[row.phone] = (part_text, future)
        for orphan in self._orphans:  # the receipt may have come before we started waiting
            if orphan.phone == row.phone and not orphan.settled_doubt:
                orphan.settled_doubt = self._claim_doubt(orphan)
                if orphan.settled_doubt:
                    break
        try:
            smsc_id = await asyncio.wait_for(future, self.config.smsc.indoubt_grace)
        except TimeoutError:
            log.info("submit_resent", extra={"msisdn": row.phone, "outbox_id": row.id})
            return None
        finally:
            self._doubts.pop(row.phone, None)
        log.info("submit_confirmed_by_receipt", extra={"msisdn": row.phone, "outbox_id": row.id})
        return smsc_id

    def _claim_doubt(self, orphan: _Orphan) -> bool:
        """An unmatched receipt from a phone with a part in doubt settles it (one per phone)."""
        waiting = self._doubts.get(orphan.phone)
        if waiting is None or waiting[1].done() or not orphan.receipt.message_id:
            return False
        part_text, future = waiting
        snippet = orphan.receipt.fields.get("text", "").strip().lower()
        if snippet and not part_text.strip().lower().startswith(snippet[:10]):
            return False
        future.set_result(orphan.receipt.message_id)
        return True

    def _fail(self, row: messages.Outgoing, error: str) -> None:
        self.counters.failed += 1
        self._failures.append((row.id, error, now()))
        self._results_ready.set()
        log.warning("sms_failed", extra={"msisdn": row.phone, "outbox_id": row.id, "error": error})

    async def _results_loop(self) -> None:
        """Group commit of what the SMSC answered: one transaction for everything since the last."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._results_ready.wait(), 1.0 if self._orphans else None)
            self._results_ready.clear()
            await self._flush_results()
            await self._retry_orphans()

    async def _flush_results(self) -> None:
        pending = self._take_results()
        if not any(pending):
            return
        try:
            async with self.store.tx() as db:
                await self._write_results(db, pending)
        except BaseException:
            self._restore_results(pending)
            raise
        self._results_written(pending)

    def _take_results(self) -> _Pending:
        pending = (self._results, self._finished, self._failures, self._acked_pending)
        self._results, self._finished, self._failures, self._acked_pending = [], [], [], []
        return pending

    def _restore_results(self, pending: _Pending) -> None:
        results, finished, failures, acked = pending
        self._results = results + self._results
        self._finished = finished + self._finished
        self._failures = failures + self._failures
        self._acked_pending = acked + self._acked_pending
        self._results_ready.set()

    @staticmethod
    async def _write_results(db: aiosqlite.Connection, pending: _Pending) -> None:
        results, finished, failures, acked = pending
        if results or finished:
            await messages.record_submitted(db, results, finished)
        if failures:
            await messages.record_failed(db, failures)
        if acked:
            await messages.mark_acked(db, acked)

    def _results_written(self, pending: _Pending) -> None:
        # Only now may a scan see these rows as no longer queued.
        _results, finished, failures, _acked = pending
        for outbox_id, _at in finished:
            self._scheduled.discard(outbox_id)
        for outbox_id, _error, _at in failures:
            self._scheduled.discard(outbox_id)
