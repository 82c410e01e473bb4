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
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from handlers import HANDLERS
from handlers.base import Reply
from smsgate import logs, phone, security, smpp, ussd
from smsgate.config import Config
from smsgate.readers import BalanceReader
from smsgate.router import Routed, Router
from smsgate.services import Services
from smsgate.smpp import Inbound, LinkDown, SmppSession
from store import keys, messages
from store.db import Store, now

log = logs.get("gateway")
_T = TypeVar("_T")
PROCESS_BATCH = 256
ROUTE_LIMIT = 1000  # texts being routed at once (most wait for their phone's earlier text)
RESULTS_DELAY = 0.02  # seconds submit results wait to be written with others
ORPHAN_SECONDS = 30.0  # how long a receipt waits for the submit it names to be recorded


@dataclass
class _Orphan:
    """A receipt that names no recorded part (yet)."""

    receipt_id: int
    phone: str
    receipt: smpp.Receipt
    keys: frozenset[str]
    at: float
    give_up_at: float
    settled_doubt: bool = False


@dataclass
class _Answer:
    """A routed inbox item: the handler's verdict and the outbox rows to write with it."""

    item: messages.Inbound
    handler: str
    ok: bool
    outgoing: list[messages.NewOutgoing]


class _InTurn:
    """Work one item after another per key (a phone's texts, a phone's replies), many keys at once,
    at most `limit` items started and not finished in all."""

    def __init__(self, limit: int) -> None:
        self._slots = asyncio.Semaphore(limit)
        self._tails: dict[str, asyncio.Task[None]] = {}

    async def start(self, key: str, work: Callable[[], Awaitable[None]]) -> None:
        """Start work() once the key's earlier work is done; waits while `limit` are under way."""
        await self._slots.acquire()
        task = asyncio.create_task(self._after(self._tails.get(key), work))
        self._tails[key] = task
        task.add_done_callback(functools.partial(self._done, key))

    @staticmethod
    async def _after(previous: asyncio.Task[None] | None, work: Callable[[], Awaitable[None]]) -> None:
        if previous is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.shield(previous)
        await work()

    def _done(self, key: str, task: asyncio.Task[None]) -> None:
        self._slots.release()
        if self._tails.get(key) is task:
            del self._tails[key]

    def cancel(self) -> None:
        for task in self._tails.values():
            task.cancel()


@dataclass
class _Quick:
    """What the inbound transaction did besides storing: texts answered in it, and phones held."""

    answered: dict[int, Routed] = field(default_factory=dict)
    queued: list[tuple[int, messages.NewOutgoing]] = field(default_factory=list)
    held: list[str] = field(default_factory=list)
    # БАЛАНС replies read by the reader process before the transaction, by the text's index.
    ready: dict[int, list[str]] = field(default_factory=dict)
    ready_ms: float = 0.0  # what reading them took, a text


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
    receipts_waited: int = 0  # named no recorded part when they came: matched again later
    handler_errors: int = 0


def _log_receipt(outbox_id: int, receipt: smpp.Receipt) -> None:
    log.info("dlr", extra={"outbox_id": outbox_id, "stat": receipt.stat, "err": receipt.err})


@functools.lru_cache(maxsize=65536)
def _normalised(source: str) -> str:
    """A sender's address in E.164, or as it came; cached: parsing costs more than the rest of a text."""
    if len(source) == 11 and source.startswith("79") and source.isascii() and source.isdigit():
        return "+" + source  # a Russian mobile number as SMPP carries it: every one is valid
    try:
        return phone.normalise(source)
    except phone.BadPhone:
        return source


class Gateway:
    def __init__(self, config: Config, store: Store) -> None:
        self.config = config
        self.store = store
        self.services = Services(store, config, wake_outbox=self.wake_sender)
        self.router = Router(HANDLERS, self.services)
        self.ussd = ussd.SmppUssd(config.ussd, ussd.UssdEngine(self.services, config))
        self.session = SmppSession(config.smsc, self._store_inbound, on_bound=self._on_bound)
        self.counters = Counters()
        self.started_at = time.time()
        # Texts just stored, and replies just queued, travel as rows: reading back what was
        # written a moment ago would cost a trip to the database. Ids are read (restarts, retries).
        self._to_process: asyncio.Queue[int | messages.Inbound] = asyncio.Queue()
        self._to_send: asyncio.Queue[int | messages.Outgoing] = asyncio.Queue()
        self._wake_scan = asyncio.Event()
        self._last_queued_id = 0
        self._scheduled: set[int] = set()  # queued to send or in flight, until recorded
        self._sending = _InTurn(max(config.smsc.window * 4, 64))  # replies in order per phone
        self._recorded: dict[int, set[int]] = {}  # parts accepted before, of rows about to be sent
        # Set once the SMSC refuses a text whole in message_payload ([smsc] long_text = "payload"):
        # from then on, until a restart, long texts go as UDH parts.
        self._payload_refused = False
        self._ahead: asyncio.Future[None] | None = None  # the last batch's turn (_store_inbound)
        self.reader = (BalanceReader(store.path)
                       if config.store.reader_min_batch and store.writes_on_loop else None)
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
        # Routing: tasks per phone (texts of one phone in order), results waiting for a commit.
        self._routing = _InTurn(ROUTE_LIMIT)
        self._routed: list[_Answer] = []
        self._routed_ready = asyncio.Event()
        # Texts stored and not yet answered, per phone: while a phone has one, its next texts wait
        # their turn in the processor even when they could be answered at once (replies in order).
        self._unanswered: dict[str, int] = {}
        # Backpressure, so that memory and latency stay bounded when texts come faster than
        # replies can be submitted: texts taken for routing and not yet committed, and replies
        # queued by the processor and not yet submitted. Past their limits the processor stops
        # taking texts, then the sink stops acknowledging them (the SMSC holds them meanwhile).
        self._processing = 0
        self._answering: set[int] = set()
        self._answering_limit = max(config.smsc.window, 16)
        self._processing_limit = PROCESS_BATCH
        self._room = asyncio.Event()

    # ---- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        security.READY.keep(self.config.passwords.ready)
        if self.reader is not None:
            self.reader.start()
        for item in await messages.pending_inbound(self.store.db, limit=1_000_000):
            self._to_process.put_nowait(item.id)
            self._hold(item.phone)
        # The first queued message of each phone may have been on the wire when we stopped.
        self._startup_doubts = set(await messages.first_queued_per_phone(self.store.db))
        self._wake_scan.set()
        self._tasks = [
            asyncio.create_task(self.session.run(), name="session"),
            asyncio.create_task(self._process_loop(), name="processor"),
            asyncio.create_task(self._commit_loop(), name="committer"),
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
        self._sending.cancel()
        self._routing.cancel()
        await self._flush_results()
        if self.reader is not None:
            await self.reader.close()

    def wake_sender(self) -> None:
        self._wake_scan.set()

    def _on_bound(self, up: bool) -> None:
        if up:
            self._wake_scan.set()

    # ---- inbound --------------------------------------------------------------------------------

    async def _store_inbound(self, batch: list[Inbound]) -> None:
        """The session's sink: everything in the batch is durable when this returns."""
        if any(isinstance(item, bytes) or not item.is_receipt for item in batch):
            # Texts wait while routing is behind; receipts never do (they settle what was sent).
            await self._wait_for_room(
                self._processing_limit, lambda: self._to_process.qsize() + self._processing
            )
        at = now()
        texts: list[messages.NewInbound] = []
        parts: list[smpp.ShortMessage] = []
        receipts: list[smpp.ShortMessage] = []
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
        # A receipt can overtake the group commit of its submit_sm_resp: write those first. Texts
        # acknowledged since the last commit are always recorded first: a text the same as one of
        # them is the resident's next text, not the SMSC delivering that one again.
        take = self._take_results if receipts else self._take_acks
        # Taken inside the transaction when it runs on the loop (as late as can be: parts answered
        # meanwhile are in it, for the receipts behind them), before it when it runs in a thread.
        pending: list[_Pending] = [] if self.store.writes_on_loop else [take()]
        repeated: list[int] = []  # stored texts this batch repeats (redeliveries)
        quick = _Quick()
        # Batches are stored in the order they came, though one may wait for the reader process
        # while the next (small, or without БАЛАНС) would not: each waits for the one before it.
        previous, self._ahead = self._ahead, asyncio.get_running_loop().create_future()
        mine = self._ahead
        try:
            if self.reader is not None and len(texts) >= self.config.store.reader_min_batch:
                await self._read_ahead(texts, quick)
            if previous is not None and not previous.done():
                await previous
        finally:
            # Resolved right before this batch's write is queued (no await in between).
            if not mine.done():
                mine.set_result(None)
        try:
            ids = await self._write_inbound(
                texts, parts, receipts, pending, take, at, since, repeated, quick
            )
        except BaseException:
            if pending:
                self._restore_results(pending[0])  # not written: the next commit takes them
            for held in quick.held:
                self._release(held)
            raise
        if pending:
            self._results_written(pending[0])
        for item_id, stored in zip(ids, texts, strict=True):
            if item_id is None:
                self.counters.redelivered += 1
                log.info("sms_redelivered", extra={"msisdn": stored.phone})
                continue
            self.counters.received += 1
            log.info("sms_in", extra={"msisdn": stored.phone, "inbox_id": item_id,
                                      "chars": len(stored.text), "coding": stored.data_coding})
            routed = quick.answered.get(item_id)
            if routed is not None:  # answered in the same transaction
                self.router.log_handled(stored.phone, routed)
                continue
            if stored.phone:
                self._to_process.put_nowait(messages.Inbound(
                    item_id, stored.phone, stored.text, stored.data_coding, stored.raw, stored.channel,
                    stored.received_at, stored.extra,
                ))
            else:
                log.warning("pdu_kept_unanswerable", extra={"inbox_id": item_id})
        fresh = [item_id for item_id in ids if item_id is not None] + repeated
        if fresh:
            # Acknowledged as soon as the sink returns (the session answers the batch right
            # after, with nothing in between); recorded in the next transaction.
            self._note_acked(fresh)
        if quick.queued:
            self._queued(quick.queued, at)

    async def _read_ahead(self, texts: list[messages.NewInbound], quick: _Quick) -> None:
        """БАЛАНС replies of a big batch read by the reader process while the loop goes on."""
        assert self.reader is not None
        wanted = [
            index for index, item in enumerate(texts)
            if item.channel == "sms" and item.data_coding >= 0 and item.phone
            and item.phone not in self._unanswered and self.router.match(item.text)[0].name == "balance"
        ]
        if not wanted:
            return
        started = time.perf_counter()
        found = await self.reader.replies([texts[index].phone for index in wanted])
        if found is not None:
            quick.ready = dict(zip(wanted, found, strict=True))
            quick.ready_ms = round((time.perf_counter() - started) * 1000 / len(wanted), 1)

    async def _write_inbound(
        self, texts: list[messages.NewInbound], parts: list[smpp.ShortMessage],
        receipts: list[smpp.ShortMessage], pending: list[_Pending], take: Callable[[], _Pending],
        at: float, since: float, repeated: list[int], quick: _Quick,
    ) -> list[int | None]:
        parsed = [smpp.parse_receipt(message) for message in receipts]
        new_receipts = [messages.NewReceipt(receipt.message_id, receipt.stat, receipt.err, message.text)
                        for receipt, message in zip(parsed, receipts, strict=True)]
        keys = [frozenset(keys.receipt_keys(receipt.message_id)) for receipt in parsed]

        def write(db: sqlite3.Connection) -> tuple[list[int | None], list[int], list[int | None]]:
            # All of it in one transaction and one trip to the database thread.
            if not pending:
                pending.append(take())
            self._write_results(db, pending[0])
            for part in parts:
                assert part.concat is not None
                whole = messages.store_part_sync(
                    db, self._phone_of(part), part.concat.reference, part.concat.total,
                    part.concat.number, part.text, part.data_coding, at,
                )
                if whole is not None:
                    texts.append(self._new_inbound(part, "".join(whole), at))
            ids = messages.store_inbound_sync(db, texts, since, repeated)
            if self.store.writes_on_loop:  # else this runs in another thread: gateway state stays out
                self._answer_now(db, texts, ids, at, quick)
            # Matched first, so that each receipt is stored with its message in one INSERT.
            matched = messages.match_receipts_sync(db, [
                messages.ReceiptMatch(0, key_set, receipt.stat, receipt.err, at)
                for key_set, receipt in zip(keys, parsed, strict=True)
            ], link=False)
            receipt_ids = messages.store_receipts_sync(db, new_receipts, at, matched)
            return ids, receipt_ids, matched

        ids, receipt_ids, matched = await self.store.write(write)
        if receipts:
            self.counters.receipts += len(receipts)
            give_up_at = time.monotonic() + ORPHAN_SECONDS
            for receipt_id, receipt, message, key_set, outbox_id in zip(
                receipt_ids, parsed, receipts, keys, matched, strict=True
            ):
                if outbox_id is not None:
                    _log_receipt(outbox_id, receipt)  # the usual case: no orphan to make
                    continue
                self.counters.receipts_waited += 1
                orphan = _Orphan(receipt_id, self._phone_of(message), receipt, key_set, at, give_up_at)
                self._matched(orphan, None)
        return ids

    def _answer_now(
        self, db: sqlite3.Connection, texts: Sequence[messages.NewInbound],
        ids: Sequence[int | None], at: float, quick: _Quick,
    ) -> None:
        """Inside the transaction that stores `texts`: answer those that can be answered at once.

        A text whose handler answers at once (БАЛАНС, ПОМОЩЬ; `Handler.handle_now`) gets its reply
        queued and its inbox row finished in this same transaction, so the text and its reply
        cost one commit, not two. That is only done while its phone has no earlier text still
        unanswered (replies go out in the order the texts came) and while the replies queued and
        not yet submitted stay under what the processor itself lets through; every other text is
        held for its phone (`_hold`) and goes to the processor.
        """
        room = self._answering_limit + PROCESS_BATCH - len(self._answering)
        outgoing: list[messages.NewOutgoing] = []
        done: list[tuple[int, str, str]] = []
        for index, (item_id, item) in enumerate(zip(ids, texts, strict=True)):
            if item_id is None or not item.phone:
                continue  # a redelivery, or nobody to answer
            routed = None
            if item.channel == "sms" and room > 0 and item.phone not in self._unanswered:
                try:
                    ready = quick.ready.get(index)
                    if ready is not None:  # read ahead by the reader process
                        routed = Routed("balance", [Reply(text) for text in ready], ms=quick.ready_ms)
                    else:
                        routed = self.router.route_now(
                            item.phone, item.text, db, readable=item.data_coding >= 0
                        )
                except Exception:
                    # Never at the cost of the batch's commit: the processor takes the text.
                    log.exception("answer_now_failed", extra={"msisdn": item.phone})
            if routed is None:
                self._hold(item.phone)
                quick.held.append(item.phone)
                continue
            quick.answered[item_id] = routed
            done.append((item_id, "done" if routed.ok else "failed", routed.handler))
            if item.phone.startswith("+"):
                replies = self._outgoing(item_id, item.phone, routed)
                room -= len(replies)
                outgoing += replies
        if done:
            quick.queued = messages.enqueue_rows_sync(db, outgoing, at)
            messages.finish_inbound_sync(db, done)

    def _hold(self, who: str) -> None:
        self._unanswered[who] = self._unanswered.get(who, 0) + 1

    def _release(self, who: str) -> None:
        left = self._unanswered.get(who, 0) - 1
        if left > 0:
            self._unanswered[who] = left
        else:
            self._unanswered.pop(who, None)

    @staticmethod
    def _outgoing(item_id: int, who: str, routed: Routed) -> list[messages.NewOutgoing]:
        return [
            messages.NewOutgoing(f"in:{item_id}:{number}", who, reply.text,
                                 smpp.count_parts(reply.text), "secret" if reply.secret else "reply")
            for number, reply in enumerate(routed.replies)
        ]

    def _note_acked(self, ids: list[int]) -> None:
        self._acked_pending.extend(ids)
        self._results_ready.set()

    @staticmethod
    def _phone_of(message: smpp.ShortMessage) -> str:
        return _normalised(message.source)

    def _new_inbound(self, message: smpp.ShortMessage, text: str, at: float) -> messages.NewInbound:
        extra = ussd.inbox_extra(message)
        channel = "ussd" if extra else "sms"
        raw = None if message.is_text else message.payload
        coding = message.data_coding if message.is_text else -1
        return messages.NewInbound(self._phone_of(message), text, coding, raw, channel, at, extra)

    def _matched(self, orphan: _Orphan, outbox_id: int | None) -> None:
        receipt = orphan.receipt
        if outbox_id is not None:
            _log_receipt(outbox_id, receipt)
            return
        if not orphan.settled_doubt:
            orphan.settled_doubt = self._claim_doubt(orphan)
        if orphan.keys and time.monotonic() < orphan.give_up_at:
            # The submit_sm_resp it names may still be on its way to the store: try again later.
            self._orphans.append(orphan)
        else:
            self.counters.receipts_unmatched += 1
            log.warning("dlr_unmatched", extra={"smsc_id": receipt.message_id[:64],
                                                "stat": receipt.stat, "receipt_id": orphan.receipt_id})

    async def _retry_orphans(self) -> None:
        orphans, self._orphans = self._orphans, []
        if not orphans:
            return
        matched = await self.store.write(messages.match_receipts_sync, [
            messages.ReceiptMatch(orphan.receipt_id, orphan.keys, orphan.receipt.stat,
                                  orphan.receipt.err, orphan.at)
            for orphan in orphans
        ])
        for orphan, outbox_id in zip(orphans, matched, strict=True):
            self._matched(orphan, outbox_id)

    # ---- processing -----------------------------------------------------------------------------

    async def _process_loop(self) -> None:
        """Route stored texts: one phone's texts one after another, different phones at once.

        Nothing waits for a whole batch: a slow command (ПАРОЛЬ hashes a password) holds up its
        own phone only, and `_commit_loop` writes whatever is routed in group commits.
        """
        while True:
            await self._wait_for_room(self._answering_limit, lambda: len(self._answering))
            entries = [await self._to_process.get()]
            while len(entries) < PROCESS_BATCH and not self._to_process.empty():
                entries.append(self._to_process.get_nowait())
            items = [entry for entry in entries if isinstance(entry, messages.Inbound)]
            ids = [entry for entry in entries if isinstance(entry, int)]
            try:
                if ids:
                    items += await messages.get_inbound(self.store.db, ids)
            except Exception:
                log.exception("process_failed", extra={"count": len(ids)})
                await asyncio.sleep(1.0)
                for entry in entries:
                    self._to_process.put_nowait(entry)
                continue
            items.sort(key=lambda item: item.id)  # each phone's texts in the order they came
            self._processing += len(items)
            for item in items:
                await self._routing.start(item.phone, functools.partial(self._route_one, item))

    async def _route_one(self, item: messages.Inbound) -> None:
        try:
            if item.channel == "ussd":
                # A menu screen, and any SMS the menu sends, are outbox rows like replies.
                rows = await self.ussd.answer(item)  # before naming _routed: commits swap it
                self._routed.append(_Answer(item, "ussd", True, rows))
                self._routed_ready.set()
                return
            routed = await self.router.route(
                item.phone, item.text, item.channel, readable=item.data_coding >= 0
            )
        except Exception:
            # Left in state 'new': retried after a pause and again at the next start.
            log.exception("process_failed", extra={"count": 1})
            self._processing -= 1
            asyncio.get_running_loop().call_later(1.0, self._to_process.put_nowait, item.id)
            return
        # A phone not starting with + is not a number we can answer (unparseable or foreign).
        outgoing = self._outgoing(item.id, item.phone, routed) if item.phone.startswith("+") else []
        self._routed.append(_Answer(item, routed.handler, routed.ok, outgoing))
        self._routed_ready.set()

    async def _commit_loop(self) -> None:
        """Replies and inbox states of everything routed since the last commit, in one transaction."""
        while True:
            await self._routed_ready.wait()
            self._routed_ready.clear()
            answers, self._routed = self._routed, []
            if not answers:
                continue
            try:
                await self._commit(answers)
            except Exception:
                # Left in state 'new': routed again after a pause (request keys stop doubles).
                log.exception("process_failed", extra={"count": len(answers)})
                await asyncio.sleep(1.0)
                for answer in answers:
                    self._to_process.put_nowait(answer.item.id)
            finally:
                self._processing -= len(answers)
                self._room.set()

    async def _commit(self, answers: Sequence[_Answer]) -> None:
        outgoing: list[messages.NewOutgoing] = []
        done: list[tuple[int, str, str]] = []
        for answer in answers:
            if not answer.ok:
                self.counters.handler_errors += 1
            done.append((answer.item.id, "done" if answer.ok else "failed", answer.handler))
            outgoing += answer.outgoing
        at = now()

        def write(db: sqlite3.Connection) -> list[tuple[int, messages.NewOutgoing]]:
            queued = messages.enqueue_rows_sync(db, outgoing, at)
            messages.finish_inbound_sync(db, done)
            return queued

        queued = await self._write_with_results(write)
        for answer in answers:
            self._release(answer.item.phone)
        self._queued(queued, at)

    def _queued(self, queued: list[tuple[int, messages.NewOutgoing]], at: float) -> None:
        """Replies just committed: to the sender."""
        self.counters.replies_queued += len(queued)
        for outbox_id, item in queued:
            self._answering.add(outbox_id)
            self._schedule(outbox_id, messages.Outgoing(
                outbox_id, item.phone, item.text, item.kind, item.extra, at
            ))

    async def _wait_for_room(self, limit: int, used: Callable[[], int]) -> None:
        """Backpressure: wait while a stage holds `limit` items or more."""
        while used() >= limit:
            self._room.clear()
            await self._room.wait()

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

    def _schedule(self, outbox_id: int, row: messages.Outgoing | None = None) -> None:
        """Offer a queued message to the sender: its row when just written, else its id."""
        if outbox_id not in self._scheduled:
            self._scheduled.add(outbox_id)
            self._to_send.put_nowait(outbox_id if row is None else row)

    @property
    def long_text(self) -> str:
        """How long texts go out now: "udh", "payload", or "udh" after the SMSC refused payload."""
        if self.config.smsc.long_text == "payload" and self._payload_refused:
            return "udh (the SMSC refused message_payload)"
        return self.config.smsc.long_text

    async def _send_loop(self) -> None:
        while True:
            entries = [await self._to_send.get()]
            while len(entries) < 500 and not self._to_send.empty():
                entries.append(self._to_send.get_nowait())
            rows = [entry for entry in entries if isinstance(entry, messages.Outgoing)]
            ids = [entry for entry in entries if isinstance(entry, int)]
            if ids:
                # Read back: queued by others or before a restart; parts the SMSC accepted then
                # are not sent again. Rows just written by _commit have no parts yet.
                found = await messages.get_outgoing(self.store.db, ids)
                self._recorded.update(await messages.recorded_parts_of(self.store.db, ids))
                for gone in set(ids) - {row.id for row in found}:
                    self._scheduled.discard(gone)  # no longer queued (sent before a restart)
                    self._recorded.pop(gone, None)
                    self._answered(gone)
                rows = sorted([*rows, *found], key=lambda row: row.id)
            for row in rows:
                await self._sending.start(row.phone, functools.partial(self._send_one, row))

    async def _send_one(self, row: messages.Outgoing) -> None:
        try:
            await self._submit_message(row)
        except Exception:
            # Left queued: the periodic scan offers it again once it is no longer scheduled.
            log.exception("send_error", extra={"msisdn": row.phone, "outbox_id": row.id})
            self._scheduled.discard(row.id)
            self._answered(row.id)

    async def _submit_message(self, row: messages.Outgoing) -> None:
        smsc = self.config.smsc
        source = (smsc.source_addr, smsc.source_ton, smsc.source_npi)
        destination = (phone.smpp_address(row.phone), 1, 1)
        extra = json.loads(row.extra) if row.extra else {}
        tlvs = bytes.fromhex(extra.get("tlvs", ""))
        done_parts = self._recorded.pop(row.id, set())
        whole = False
        try:
            if row.kind == "ussd":
                parts = [smpp.encode_ussd(row.text)]  # a screen is one message, never split
                count = 1
            else:
                count = smpp.count_parts(row.text)
                if count > 255:
                    raise ValueError("text needs more than 255 SMS parts")
                # Whole in one submit_sm when configured and nothing of it went as parts before a
                # restart (nor the other way round: a message accepted whole is done).
                whole = (count > 1 and smsc.long_text == "payload" and not self._payload_refused
                         and not done_parts)
                # The reference comes from the row, so parts sent again after a restart still join.
                parts = [] if whole else smpp.split_text(row.text, reference=row.id % 255 + 1)
        except ValueError as exc:
            self._fail(row, f"unsendable: {exc}")
            return
        # A USSD screen is not delivered later or apart: there is nothing for a receipt to tell.
        registered = 1 if smsc.request_delivery_receipts and row.kind != "ussd" else 0
        started = time.monotonic()
        udh = count > 1
        builders: list[tuple[int, Callable[[int], bytes], bytes]] = []
        if whole:
            coding, encoded = smpp.encode_whole(row.text)

            def build_whole(sequence: int) -> bytes:
                return smpp.build_submit_sm(sequence, source, destination, coding, b"",
                                           registered_delivery=registered, tlvs=tlvs,
                                           message_payload=encoded)

            builders.append((messages.WHOLE, build_whole, bytes((coding,)) + encoded))
            udh = False
        elif messages.WHOLE not in done_parts:
            for number, (coding, data) in enumerate(parts, start=1):
                if number in done_parts:
                    continue  # accepted before a restart

                def build(sequence: int, coding: int = coding, data: bytes = data) -> bytes:
                    return smpp.build_submit_sm(sequence, source, destination, coding, data,
                                               udh=udh, registered_delivery=registered, tlvs=tlvs)

                builders.append((number, build, bytes((coding,)) + data))
        weight = count if whole else 1  # SMS parts a submit carries, for the submit rate
        if row.id in self._startup_doubts:
            first: list[tuple[int, str] | None] = [None] * len(builders)  # all in doubt
        elif builders:
            # All parts on the wire at once, in order, each waiting for its own answer: the first
            # right here (it is written before the others' tasks start), the rest in tasks.
            rest = [asyncio.ensure_future(self._submit_part(row.id, n, b)) for n, b, _c in builders[1:]]
            try:
                head = await self._submit_part(row.id, builders[0][0], builders[0][1], weight)
            except BaseException:
                await asyncio.gather(*rest, return_exceptions=True)
                raise
            first = [head, *[await task for task in rest]]
        else:
            first = []
        refused = ""
        for (number, builder, coded), answer in zip(builders, first, strict=True):
            if answer is None:
                # Sent when the link (or the process) died, with no answer: settled one at a time.
                part_text = self._part_text(coded[0], coded[1:], udh)
                status, smsc_id = await self._submit_in_doubt(row, builder, part_text, weight)
                if status == smpp.ESME_ROK:
                    self._note_part(row.id, number, smsc_id)
            else:
                status, smsc_id = answer
            if status != smpp.ESME_ROK:
                refused = refused or f"submit refused: {smpp.status_name(status)}"
            if whole and status in smpp.PAYLOAD_REFUSALS:
                # This SMSC does not take message_payload: this text, and every later one, as parts.
                self._payload_refused = True
                log.warning("message_payload_refused", extra={
                    "msisdn": row.phone, "outbox_id": row.id, "status": smpp.status_name(status),
                })
                await self._submit_message(row)
                return
        if refused:
            self._startup_doubts.discard(row.id)
            self._fail(row, refused)
            return
        self._startup_doubts.discard(row.id)
        self._finished.append((row.id, now()))
        self.counters.sent += 1
        self._results_ready.set()
        self._answered(row.id)  # out of the sender's way; its results wait for a commit
        log.info("sms_out", extra={"msisdn": row.phone, "outbox_id": row.id, "parts": count,
                                   "kind": row.kind,
                                   "ms": round((time.monotonic() - started) * 1000, 1),
                                   "queued_ms": round((now() - row.created_at) * 1000, 1)})

    async def _submit_part(
        self, outbox_id: int, number: int, build: Callable[[int], bytes], weight: int = 1
    ) -> tuple[int, str] | None:
        """(status, SMSC id) of one part, or None if the link dropped before the answer.

        An accepted part is noted for the next commit as soon as its own answer is read, not
        once every part of its message is answered: the SMSC sends the part's receipt right
        behind its submit_sm_resp, and the transaction that stores that receipt must already
        hold the part to match it (else the receipt waits as an orphan and is matched again).
        """
        answer = await self._try_submit(build, weight)
        if answer is None:
            return None
        status, smsc_id = answer[0], smpp.response_message_id(answer[1])
        if status == smpp.ESME_ROK:
            self._note_part(outbox_id, number, smsc_id)
        return status, smsc_id

    def _note_part(self, outbox_id: int, number: int, smsc_id: str) -> None:
        key = keys.message_id_key(smsc_id)
        self._results.append(messages.PartResult(
            outbox_id, number, smsc_id, (key,) if key is not None else (), now()
        ))

    async def _try_submit(
        self, build: Callable[[int], bytes], weight: int = 1
    ) -> tuple[int, bytes] | None:
        """(status, response) of one submit, or None if the link dropped before the answer."""
        try:
            return await self.session.submit(build, weight)
        except LinkDown:
            return None

    async def _submit_in_doubt(
        self, row: messages.Outgoing, build: Callable[[int], bytes], part_text: str,
        weight: int = 1,
    ) -> tuple[int, str]:
        """A part that may or may not have reached the SMSC: (status, SMSC id) once settled."""
        while True:
            # If the SMSC had accepted it, its receipt names this phone: only then is it not
            # sent again.
            smsc_id = await self._settle_doubt(row, part_text)
            if smsc_id is not None:
                return smpp.ESME_ROK, smsc_id
            answer = await self._try_submit(build, weight)
            if answer is not None:
                return answer[0], smpp.response_message_id(answer[1])
            # The link dropped again before the answer: in doubt again.

    @staticmethod
    def _part_text(coding: int, data: bytes, udh: bool) -> str:
        payload = data[data[0] + 1:] if udh else data
        return smpp.decode_text(coding, payload)[0]

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
        self._answered(row.id)
        log.warning("sms_failed", extra={"msisdn": row.phone, "outbox_id": row.id, "error": error})

    async def _results_loop(self) -> None:
        """Group commit of what the SMSC answered: one transaction for everything since the last."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._results_ready.wait(), 1.0 if self._orphans else None)
            # Results are not on anyone's way (a text is answered once its reply is submitted):
            # gathered a little longer they cost fewer commits, or ride along with the next
            # inbound or reply commit for free.
            await asyncio.sleep(RESULTS_DELAY)
            self._results_ready.clear()
            await self._flush_results()
            await self._retry_orphans()

    async def _flush_results(self) -> None:
        if self._results or self._finished or self._failures or self._acked_pending:
            await self._write_with_results(lambda _db: None)

    async def _write_with_results(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        """store.write(work), the pending submit results written first in the same transaction.

        They are taken inside the transaction, as late as can be (before it, when it runs in
        another thread: gateway state stays on the loop). A receipt's transaction matches it
        against the parts recorded so far and takes the results noted since: results taken
        before their write ran, by a write that then came after the receipt's in the same
        group, would leave the receipt without its part.
        """
        pending: list[_Pending] = [] if self.store.writes_on_loop else [self._take_results()]

        def write(db: sqlite3.Connection) -> _T:
            if not pending:
                pending.append(self._take_results())
            self._write_results(db, pending[0])
            return work(db)

        try:
            result = await self.store.write(write)
        except BaseException:
            if pending:
                self._restore_results(pending[0])  # not written: the next commit takes them
            raise
        self._results_written(pending[0])
        return result

    def _take_results(self) -> _Pending:
        pending = (self._results, self._finished, self._failures, self._acked_pending)
        self._results, self._finished, self._failures, self._acked_pending = [], [], [], []
        return pending

    def _take_acks(self) -> _Pending:
        acked, self._acked_pending = self._acked_pending, []
        return [], [], [], acked

    def _restore_results(self, pending: _Pending) -> None:
        results, finished, failures, acked = pending
        self._results = results + self._results
        self._finished = finished + self._finished
        self._failures = failures + self._failures
        self._acked_pending = acked + self._acked_pending
        self._results_ready.set()

    @staticmethod
    def _write_results(db: sqlite3.Connection, pending: _Pending) -> None:
        """Inside a write transaction, in the database thread."""
        results, finished, failures, acked = pending
        if results or finished:
            messages.record_submitted_sync(db, results, finished)
        if failures:
            messages.record_failed_sync(db, failures)
        if acked:
            messages.mark_acked_sync(db, acked)

    def _results_written(self, pending: _Pending) -> None:
        # Only now may a scan see these rows as no longer queued.
        _results, finished, failures, _acked = pending
        for outbox_id, _at in finished:
            self._scheduled.discard(outbox_id)
            self._answered(outbox_id)
        for outbox_id, _error, _at in failures:
            self._scheduled.discard(outbox_id)
            self._answered(outbox_id)

    def _answered(self, outbox_id: int) -> None:
        if outbox_id in self._answering:
            self._answering.discard(outbox_id)
            self._room.set()
