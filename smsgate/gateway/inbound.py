"""The inbound writer: the session's sink. Everything in a batch is durable when it returns.

One transaction a batch stores its texts (long texts once every part is there), its receipts,
and the acknowledgements and submit results pending, and answers at once what can be answered
at once (БАЛАНС, ПОМОЩЬ: `Handler.handle_now`), so that a text and its reply cost one commit.
Big batches have their БАЛАНС replies read ahead by the reader process (smsgate/readers.py).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from handlers.base import Reply
from smsgate import logs, smpp, ussd
from smsgate.config import Config
from smsgate.gateway.addresses import phone_of
from smsgate.gateway.counters import Counters
from smsgate.gateway.flow import FlowControl
from smsgate.gateway.processor import Processor, reply_rows
from smsgate.gateway.receipts import IncomingReceipts, Receipts
from smsgate.gateway.results import ResultsWrite
from smsgate.gateway.sender import Sender
from smsgate.readers import BalanceReader
from smsgate.router import Routed, Router
from smsgate.smpp import Inbound
from store import inbox, outbox
from store.db import Store, now

log = logs.get("gateway")


@dataclass
class _RoutedNow:
    """What the inbound transaction did besides storing: texts routed in it, and phones held."""

    routed: dict[int, Routed] = field(default_factory=dict)  # by inbox id
    queued: list[tuple[int, outbox.NewOutgoing]] = field(default_factory=list)
    held: list[str] = field(default_factory=list)
    # БАЛАНС replies read by the reader process before the transaction, by the text's index.
    read_ahead: dict[int, list[str]] = field(default_factory=dict)
    read_ms: float = 0.0  # what reading them took, a text


class InboundWriter:
    def __init__(
        self, config: Config, store: Store, router: Router, reader: BalanceReader | None,
        flow: FlowControl, processor: Processor, sender: Sender, receipts: Receipts,
        counters: Counters,
    ) -> None:
        # Settings and the parts it talks to.
        self._config = config
        self._store = store
        self._router = router
        self._reader = reader
        self._flow = flow
        self._processor = processor
        self._sender = sender
        self._receipts = receipts
        self._counters = counters
        # The last batch's turn: batches are stored in the order they came (store_batch).
        self._ahead: asyncio.Future[None] | None = None

    async def store_batch(self, batch: list[Inbound]) -> None:
        """The session's sink: everything in the batch is durable when this returns."""
        if any(isinstance(item, bytes) or not item.is_receipt for item in batch):
            # Texts wait while routing is behind; receipts never do (they settle what was sent).
            await self._processor.wait_for_room()
        at = now()
        texts: list[inbox.NewInbound] = []
        parts: list[smpp.ShortMessage] = []
        receipts: list[smpp.ShortMessage] = []
        for item in batch:
            if isinstance(item, bytes):
                texts.append(inbox.NewInbound("", "", -1, item, "sms", at, extra="malformed"))
            elif item.is_receipt:
                receipts.append(item)
            elif item.concat is not None and item.concat.total > 1:
                parts.append(item)
            else:
                texts.append(self._new_inbound(item, item.text, at))
        since = at - self._config.limits.redelivery_window_seconds
        # A receipt can overtake the group commit of its submit_sm_resp: write those first. Texts
        # acknowledged since the last commit are always recorded first: a text the same as one of
        # them is the resident's next text, not the SMSC delivering that one again.
        results = self._sender.results.writer(acks_only=not receipts)
        repeated: list[int] = []  # stored texts this batch repeats (redeliveries)
        routed_now = _RoutedNow()
        # Batches are stored in the order they came, though one may wait for the reader process
        # while the next (small, or without БАЛАНС) would not: each waits for the one before it.
        previous, self._ahead = self._ahead, asyncio.get_running_loop().create_future()
        mine = self._ahead
        try:
            if self._reader is not None and len(texts) >= self._config.store.reader_min_batch:
                await self._read_ahead(texts, routed_now)
            if previous is not None and not previous.done():
                await previous
        finally:
            # Resolved right before this batch's write is queued (no await in between).
            if not mine.done():
                mine.set_result(None)
        incoming = IncomingReceipts.read(receipts) if receipts else None
        try:
            ids = await self._write(texts, parts, incoming, results, at, since, repeated, routed_now)
        except BaseException:
            results.put_back()  # not written: the next commit takes them
            for held in routed_now.held:
                self._flow.release(held)
            raise
        results.written()
        for item_id, stored in zip(ids, texts, strict=True):
            if item_id is None:
                self._counters.redelivered += 1
                log.info("sms_redelivered", extra={"msisdn": stored.phone})
                continue
            self._counters.received += 1
            log.info("sms_in", extra={"msisdn": stored.phone, "inbox_id": item_id,
                                      "chars": len(stored.text), "coding": stored.data_coding})
            routed = routed_now.routed.get(item_id)
            if routed is not None:  # routed in the same transaction
                self._router.log_handled(stored.phone, routed)
                continue
            if stored.phone:
                self._processor.offer(inbox.Inbound(
                    item_id, stored.phone, stored.text, stored.data_coding, stored.raw, stored.channel,
                    stored.received_at, stored.extra,
                ))
            else:
                log.warning("pdu_kept_unanswerable", extra={"inbox_id": item_id})
        fresh = [item_id for item_id in ids if item_id is not None] + repeated
        if fresh:
            # Acknowledged as soon as the sink returns (the session answers the batch right
            # after, with nothing in between); recorded in the next transaction.
            self._sender.results.acknowledged(fresh)
        if routed_now.queued:
            self._sender.send_new(routed_now.queued, at)

    async def _read_ahead(self, texts: list[inbox.NewInbound], routed_now: _RoutedNow) -> None:
        """БАЛАНС replies of a big batch read by the reader process while the loop goes on."""
        assert self._reader is not None
        wanted = [
            index for index, item in enumerate(texts)
            if item.channel == "sms" and item.data_coding >= 0 and item.phone
            and item.phone not in self._flow.held and self._router.match(item.text)[0].name == "balance"
        ]
        if not wanted:
            return
        started = time.perf_counter()
        found = await self._reader.replies([texts[index].phone for index in wanted])
        if found is not None:
            routed_now.read_ahead = dict(zip(wanted, found, strict=True))
            routed_now.read_ms = round((time.perf_counter() - started) * 1000 / len(wanted), 1)

    async def _write(
        self, texts: list[inbox.NewInbound], parts: list[smpp.ShortMessage],
        incoming: IncomingReceipts | None, results: ResultsWrite, at: float, since: float,
        repeated: list[int], routed_now: _RoutedNow,
    ) -> list[int | None]:
        def write(db: sqlite3.Connection) -> tuple[list[int | None], list[int], list[int | None]]:
            # All of it in one transaction and one trip to the database.
            results.write(db)  # taken here, as late as can be
            for part in parts:
                assert part.concat is not None
                whole = inbox.store_part_sync(
                    db, phone_of(part), part.concat.reference, part.concat.total,
                    part.concat.number, part.text, part.data_coding, at,
                )
                if whole is not None:
                    texts.append(self._new_inbound(part, "".join(whole), at))
            ids = inbox.store_inbound_sync(db, texts, since, repeated)
            self._route_in_transaction(db, texts, ids, at, routed_now)
            if incoming is None:
                return ids, [], []
            receipt_ids, matched = incoming.write(db, at)
            return ids, receipt_ids, matched

        ids, receipt_ids, matched = await self._store.write(write)
        if incoming is not None:
            self._receipts.stored(incoming, receipt_ids, matched, at)
        return ids

    def _route_in_transaction(
        self, db: sqlite3.Connection, texts: Sequence[inbox.NewInbound],
        ids: Sequence[int | None], at: float, routed_now: _RoutedNow,
    ) -> None:
        """Inside the transaction that stores `texts`: route those that can be answered at once.

        A text whose handler answers at once (БАЛАНС, ПОМОЩЬ; `Handler.handle_now`) gets its reply
        queued and its inbox row finished in this same transaction, so the text and its reply
        cost one commit, not two. That is only done while its phone has no earlier text still
        unanswered (replies go out in the order the texts came) and while the replies queued and
        not yet submitted stay under what the processor itself lets through; every other text is
        held for its phone (FlowControl.hold) and goes to the processor.
        """
        room = self._flow.room_for_replies_now()
        held = self._flow.held
        outgoing: list[outbox.NewOutgoing] = []
        done: list[tuple[int, str, str]] = []
        for index, (item_id, item) in enumerate(zip(ids, texts, strict=True)):
            if item_id is None or not item.phone:
                continue  # a redelivery, or nobody to answer
            routed = None
            if item.channel == "sms" and room > 0 and item.phone not in held:
                try:
                    ready = routed_now.read_ahead.get(index)
                    if ready is not None:  # read ahead by the reader process
                        routed = Routed("balance", [Reply(text) for text in ready], ms=routed_now.read_ms)
                    else:
                        routed = self._router.route_now(
                            item.phone, item.text, db, readable=item.data_coding >= 0
                        )
                except Exception:
                    # Never at the cost of the batch's commit: the processor takes the text.
                    log.exception("answer_now_failed", extra={"msisdn": item.phone})
            if routed is None:
                self._flow.hold(item.phone)
                routed_now.held.append(item.phone)
                continue
            routed_now.routed[item_id] = routed
            done.append((item_id, "done" if routed.ok else "failed", routed.handler))
            if item.phone.startswith("+"):
                replies = reply_rows(item_id, item.phone, routed)
                room -= len(replies)
                outgoing += replies
        if done:
            routed_now.queued = outbox.enqueue_rows_sync(db, outgoing, at)
            inbox.finish_inbound_sync(db, done)

    @staticmethod
    def _new_inbound(message: smpp.ShortMessage, text: str, at: float) -> inbox.NewInbound:
        extra = ussd.inbox_extra(message)
        channel = "ussd" if extra else "sms"
        raw = None if message.is_text else message.payload
        coding = message.data_coding if message.is_text else -1
        return inbox.NewInbound(phone_of(message), text, coding, raw, channel, at, extra)
