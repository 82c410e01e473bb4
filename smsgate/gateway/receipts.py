"""Delivery receipts after their batch is stored, receipts that wait for their part, parts in doubt.

A receipt names no recorded part when it overtook the group commit of its submit_sm_resp: it
waits as an orphan and is matched again after the next commits, for ORPHAN_SECONDS. A part whose
submit got no answer (the link or the process died) is in doubt: an unmatched receipt from its
phone, quoting its text, shows the SMSC took it; else, after `[smsc] indoubt_grace`, it is sent
again.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from dataclasses import dataclass

from smsgate import logs, smpp
from smsgate.gateway.addresses import phone_of
from smsgate.gateway.counters import Counters
from smsgate.smpp import SmppSession
from store import keys
from store import receipts as stored_receipts
from store.db import Store

log = logs.get("gateway")
ORPHAN_SECONDS = 30.0  # how long a receipt waits for the submit it names to be recorded


@dataclass
class Orphan:
    """A receipt that names no recorded part (yet)."""

    receipt_id: int
    phone: str
    receipt: smpp.Receipt
    keys: frozenset[str]
    at: float
    give_up_at: float
    settled_doubt: bool = False


@dataclass(slots=True)
class _Doubt:
    """A phone's part whose submit got no answer."""

    part_text: str
    smsc_id: asyncio.Future[str]  # resolved by a receipt that shows the SMSC took it


@dataclass(slots=True)
class IncomingReceipts:
    """The receipts of one inbound batch, read before its transaction."""

    messages: list[smpp.ShortMessage]
    parsed: list[smpp.Receipt]
    rows: list[stored_receipts.NewReceipt]
    keys: list[frozenset[str]]

    @classmethod
    def read(cls, messages: list[smpp.ShortMessage]) -> IncomingReceipts:
        parsed = [smpp.parse_receipt(message) for message in messages]
        rows = [stored_receipts.NewReceipt(receipt.message_id, receipt.stat, receipt.err, message.text)
                for receipt, message in zip(parsed, messages, strict=True)]
        key_sets = [frozenset(keys.receipt_keys(receipt.message_id)) for receipt in parsed]
        return cls(messages, parsed, rows, key_sets)

    def write(self, db: sqlite3.Connection, at: float) -> tuple[list[int], list[int | None]]:
        """Inside the inbound transaction: (receipt ids, the outbox id each matched or None)."""
        # Matched first, so that each receipt is stored with its message in one INSERT.
        matched = stored_receipts.match_receipts_sync(db, [
            stored_receipts.ReceiptMatch(0, key_set, receipt.stat, receipt.err, at)
            for key_set, receipt in zip(self.keys, self.parsed, strict=True)
        ], link=False)
        receipt_ids = stored_receipts.store_receipts_sync(db, self.rows, at, matched)
        return receipt_ids, matched


def _log_receipt(outbox_id: int, receipt: smpp.Receipt) -> None:
    log.info("dlr", extra={"outbox_id": outbox_id, "stat": receipt.stat, "err": receipt.err})


class Receipts:
    def __init__(self, store: Store, session: SmppSession, counters: Counters, indoubt_grace: float) -> None:
        self._store = store
        self._session = session
        self._counters = counters
        self._indoubt_grace = indoubt_grace
        self._orphans: list[Orphan] = []
        self._doubts: dict[str, _Doubt] = {}  # one part per phone

    @property
    def waiting(self) -> bool:
        """Whether receipts wait to be matched again."""
        return bool(self._orphans)

    def stored(
        self, incoming: IncomingReceipts, receipt_ids: list[int], matched: list[int | None], at: float
    ) -> None:
        """After the inbound transaction committed: logged, or kept as orphans."""
        self._counters.receipts += len(incoming.messages)
        give_up_at = time.monotonic() + ORPHAN_SECONDS
        for receipt_id, receipt, message, key_set, outbox_id in zip(
            receipt_ids, incoming.parsed, incoming.messages, incoming.keys, matched, strict=True
        ):
            if outbox_id is not None:
                _log_receipt(outbox_id, receipt)  # the usual case: no orphan to make
                continue
            self._counters.receipts_waited += 1
            self._matched(Orphan(receipt_id, phone_of(message), receipt, key_set, at, give_up_at), None)

    def _matched(self, orphan: Orphan, outbox_id: int | None) -> None:
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
            self._counters.receipts_unmatched += 1
            log.warning("dlr_unmatched", extra={"smsc_id": receipt.message_id[:64],
                                                "stat": receipt.stat, "receipt_id": orphan.receipt_id})

    async def retry_orphans(self) -> None:
        orphans, self._orphans = self._orphans, []
        if not orphans:
            return
        matched = await self._store.write(stored_receipts.match_receipts_sync, [
            stored_receipts.ReceiptMatch(orphan.receipt_id, orphan.keys, orphan.receipt.stat,
                                         orphan.receipt.err, orphan.at)
            for orphan in orphans
        ])
        for orphan, outbox_id in zip(orphans, matched, strict=True):
            self._matched(orphan, outbox_id)

    # ---- parts in doubt ------------------------------------------------------------------------

    async def settle_doubt(self, phone: str, outbox_id: int, part_text: str) -> str | None:
        """Wait for a receipt from this phone that shows the SMSC took the part; its id or None."""
        await self._session.bound.wait()
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._doubts[phone] = _Doubt(part_text, future)
        for orphan in self._orphans:  # the receipt may have come before we started waiting
            if orphan.phone == phone and not orphan.settled_doubt:
                orphan.settled_doubt = self._claim_doubt(orphan)
                if orphan.settled_doubt:
                    break
        try:
            smsc_id = await asyncio.wait_for(future, self._indoubt_grace)
        except TimeoutError:
            log.info("submit_resent", extra={"msisdn": phone, "outbox_id": outbox_id})
            return None
        finally:
            self._doubts.pop(phone, None)
        log.info("submit_confirmed_by_receipt", extra={"msisdn": phone, "outbox_id": outbox_id})
        return smsc_id

    def _claim_doubt(self, orphan: Orphan) -> bool:
        """An unmatched receipt from a phone with a part in doubt settles it (one per phone)."""
        doubt = self._doubts.get(orphan.phone)
        if doubt is None or doubt.smsc_id.done() or not orphan.receipt.message_id:
            return False
        snippet = orphan.receipt.fields.get("text", "").strip().lower()
        if snippet and not doubt.part_text.strip().lower().startswith(snippet[:10]):
            return False
        doubt.smsc_id.set_result(orphan.receipt.message_id)
        return True
