"""Delivery receipts: every one kept, and matched to the part it names (by the keys of store/keys.py)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from store.db import in_lists, next_id
from store.outbox import WHOLE

FINAL_STATES = {"DELIVRD": "delivered", "EXPIRED": "expired", "UNDELIV": "failed",
                "REJECTD": "failed", "DELETED": "failed", "UNKNOWN": "failed"}


@dataclass(slots=True)
class NewReceipt:
    smsc_id: str
    stat: str
    err: str
    body: str


def store_receipts_sync(
    db: sqlite3.Connection, receipts: Sequence[NewReceipt], at: float,
    outbox_ids: Sequence[int | None] | None = None,
) -> list[int]:
    """Keep receipts (inside a write transaction), matched or not, so that a malformed one can be
    looked at later; with the message each names when already matched (match_receipts_sync with
    link=False). Their ids, in order."""
    if not receipts:
        return []
    first = next_id(db, "receipts")
    ids = list(range(first, first + len(receipts)))
    links = outbox_ids if outbox_ids is not None else [None] * len(receipts)
    db.executemany(
        "INSERT INTO receipts (id, smsc_id, stat, err, body, received_at, outbox_id)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        [(receipt_id, receipt.smsc_id[:100], receipt.stat[:20], receipt.err[:20], receipt.body[:500], at,
          outbox_id)
         for receipt_id, receipt, outbox_id in zip(ids, receipts, links, strict=True)],
    )
    return ids


@dataclass(slots=True)
class ReceiptMatch:
    receipt_id: int
    keys: Iterable[str]  # the readings of the SMSC id (keys.receipt_keys)
    stat: str
    err: str
    at: float


def match_receipts_sync(
    db: sqlite3.Connection, receipts: Sequence[ReceiptMatch], link: bool = True
) -> list[int | None]:
    """Apply receipts to the parts they name (inside a write transaction): the outbox id of each,
    None where none matches.

    A few statements for the whole batch, never one per receipt: the part a key names, the
    receipts' links, the parts' final states, and the messages whose every part is final.
    link=False: the receipts are not stored yet (their receipt_id is not read); the caller stores
    them with the outbox ids returned.
    """
    key_lists = [sorted(set(receipt.keys)) for receipt in receipts]
    # Of the parts a key names, the newest message wins (an SMSC may reuse ids after a while).
    best: dict[str, tuple[int, int]] = {}
    for marks, chunk in in_lists(sorted({key for keys in key_lists for key in keys})):
        rows = db.execute(
            f"SELECT smsc_key, outbox_id, part_no FROM part_keys WHERE smsc_key IN ({marks})", chunk
        ).fetchall()
        for row in rows:
            found = (int(row[1]), int(row[2]))
            if found > best.get(row[0], (-1, -1)):
                best[row[0]] = found
    matched: list[int | None] = []
    links: list[tuple[int, int]] = []
    finals: list[tuple[str, float, int, int]] = []
    last: dict[int, ReceiptMatch] = {}  # per message, its last final receipt in the batch
    for receipt, keys in zip(receipts, key_lists, strict=True):
        candidates = [best[key] for key in keys if key in best]
        if not candidates:
            matched.append(None)
            continue
        outbox_id, part_no = max(candidates)
        matched.append(outbox_id)
        links.append((outbox_id, receipt.receipt_id))
        state = FINAL_STATES.get(receipt.stat)
        if state is not None:  # intermediate (ENROUTE, ACCEPTD): nothing final to record yet
            finals.append((state, receipt.at, outbox_id, part_no))
            last[outbox_id] = receipt
    if links and link:
        db.executemany("UPDATE receipts SET outbox_id = ? WHERE id = ?", links)
    if not finals:
        return matched
    db.executemany(
        "UPDATE outbox_parts SET state = ?, done_at = ? WHERE outbox_id = ? AND part_no = ?", finals
    )
    done: list[tuple[str, float, str, int]] = []
    for marks, outbox_ids in in_lists(sorted(last)):
        rows = db.execute(
            "SELECT o.id, o.parts, count(p.part_no), coalesce(sum(p.state = 'delivered'), 0),"
            f" coalesce(max(p.state = 'expired'), 0), coalesce(min(p.part_no) = {WHOLE}, 0)"
            " FROM outbox AS o LEFT JOIN outbox_parts AS p"
            f" ON p.outbox_id = o.id AND p.state != 'submitted' WHERE o.id IN ({marks})"
            " GROUP BY o.id", outbox_ids,
        ).fetchall()
        for row in rows:
            outbox_id, parts, final, delivered, expired, whole = (int(value) for value in row)
            if whole:
                parts = 1  # submitted whole: its one receipt settles it
            if final < parts:
                continue
            receipt = last[outbox_id]
            overall = "delivered" if delivered >= parts else ("expired" if expired else "failed")
            error = "" if overall == "delivered" else f"{receipt.stat} err:{receipt.err}"
            done.append((overall, receipt.at, error, outbox_id))
    if done:
        db.executemany("UPDATE outbox SET state = ?, done_at = ?, error = ? WHERE id = ?", done)
    return matched
