"""Inbox and outbox: every text in or out is stored before the SMSC is answered or asked."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import aiosqlite

from store.db import in_thread


def text_hash(phone: str, text: str, raw: bytes | None) -> str:
    digest = hashlib.blake2b(digest_size=12)
    digest.update(phone.encode())
    digest.update(b"\x00")
    digest.update(text.encode("utf-8", "surrogatepass"))
    if raw:
        digest.update(b"\x00")
        digest.update(raw)
    return digest.hexdigest()


# Value classes built for every PDU or text are slotted, not frozen: a frozen dataclass sets each
# field through object.__setattr__, several times the cost of a plain one. None is ever changed.
@dataclass(slots=True)
class Inbound:
    id: int
    phone: str
    text: str
    data_coding: int
    raw: bytes | None
    channel: str
    received_at: float
    extra: str


@dataclass(slots=True)
class NewInbound:
    phone: str
    text: str
    data_coding: int
    raw: bytes | None
    channel: str
    received_at: float
    extra: str = ""


async def store_inbound(
    db: aiosqlite.Connection, items: Sequence[NewInbound], redelivery_since: float
) -> list[int | None]:
    """Store texts (inside a write transaction); a text that repeats one stored but never
    acknowledged is a redelivery: None.
    """
    return await in_thread(db, store_inbound_sync, items, redelivery_since)


# The gateway's hot paths write in one trip to the database thread (Store.write); these *_sync
# functions are the statements, run there; the async functions of the same name wrap them.


def store_inbound_sync(
    db: sqlite3.Connection, items: Sequence[NewInbound], redelivery_since: float,
    repeated: list[int] | None = None,
) -> list[int | None]:
    """`store_inbound`, inside a write transaction. A text repeating an earlier one of the same
    batch counts as its redelivery too. One query looks for repeats (in the index of unacknowledged
    texts only: a phone's history does not count) and one prepared insert writes the rest.

    A stored text that a batch repeats is answered with it, so only that one repeat counts as its
    redelivery: the ids of such texts go to `repeated` for the caller to mark acknowledged once
    the batch is, or are marked right away when no list is given.
    """
    if not items:
        return []  # a batch of receipts only: no statement at all
    digests = [_digest(item) for item in items]
    # (phone, hash) of texts stored and not acknowledged, with the id of the stored row when it
    # is from before this batch.
    unacked: dict[tuple[str, str], int | None] = {}
    for marks, phones in _in_lists(sorted({item.phone for item in items})):
        rows = db.execute(
            "SELECT phone, text_hash, received_at, id FROM inbox INDEXED BY inbox_unacked"
            f" WHERE acked = 0 AND phone IN ({marks})", phones,
        ).fetchall()
        unacked.update(((row[0], row[1]), int(row[3])) for row in rows if row[2] > redelivery_since)
    ids: list[int | None] = []
    rows_to_insert: list[tuple[object, ...]] = []
    redelivered: list[int] = []
    next_id = _next_id(db, "inbox")
    for item, digest in zip(items, digests, strict=True):
        if (item.phone, digest) in unacked:
            ids.append(None)
            earlier = unacked[item.phone, digest]
            if earlier is not None:
                redelivered.append(earlier)
                unacked[item.phone, digest] = None
            continue
        unacked[item.phone, digest] = None
        ids.append(next_id)
        rows_to_insert.append((next_id, item.phone, item.text, item.data_coding, item.raw,
                               item.channel, item.received_at, digest, item.extra))
        next_id += 1
    db.executemany(
        "INSERT INTO inbox (id, phone, text, data_coding, raw, channel, received_at, text_hash, extra)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows_to_insert,
    )
    if repeated is None:
        mark_acked_sync(db, redelivered)
    else:
        repeated += redelivered
    return ids


def _next_id(db: sqlite3.Connection, table: str) -> int:
    """The id SQLite would give the next row (inside a write transaction nobody else takes it).

    Ids are given here so that one prepared statement inserts a whole batch: a multi-row INSERT
    ... RETURNING is new SQL for every batch size, compiled each time, and returns rows in no
    promised order.
    """
    return int(db.execute(f"SELECT coalesce(max(id), 0) + 1 FROM {table}").fetchone()[0])


def _digest(item: NewInbound) -> str:
    if item.channel == "ussd":
        # USSD answers repeat legitimately ("1", then "1" on the next screen) and a dialogue is
        # not redelivered later: only a copy in the same batch (same arrival) is the same input.
        marks = f"{item.extra}\x00{item.received_at!r}".encode()
        return text_hash(item.phone, item.text, (item.raw or b"") + marks)
    return text_hash(item.phone, item.text, item.raw)


# Values in an IN list per statement: far below SQLite's limit of 32,766 parameters.
_MAX_ROWS = 500
# IN lists are padded to one of these lengths (repeating a value), so that a handful of
# statements serve every batch size and stay in sqlite3's cache of prepared statements.
_IN_SIZES = (8, 64, _MAX_ROWS)
_T = TypeVar("_T")


def _chunks(items: Sequence[_T], size: int) -> Iterator[Sequence[_T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _in_lists(values: Sequence[_T]) -> Iterator[tuple[str, tuple[_T, ...]]]:
    """("?,?,...", values) for `IN (...)`, in chunks padded to one of _IN_SIZES."""
    for chunk in _chunks(values, _MAX_ROWS):
        size = next(size for size in _IN_SIZES if size >= len(chunk))
        padded = (*chunk, *[chunk[-1]] * (size - len(chunk)))
        yield ",".join("?" * size), padded


async def mark_acked(db: aiosqlite.Connection, ids: Iterable[int]) -> None:
    await in_thread(db, mark_acked_sync, list(ids))


def mark_acked_sync(db: sqlite3.Connection, ids: Iterable[int]) -> None:
    db.executemany("UPDATE inbox SET acked = 1 WHERE id = ?", [(i,) for i in ids])


async def pending_inbound(db: aiosqlite.Connection, limit: int = 1000) -> list[Inbound]:
    async with db.execute(
        "SELECT id, phone, text, data_coding, raw, channel, received_at, extra FROM inbox"
        " WHERE state = 'new' ORDER BY id LIMIT ?", (limit,),
    ) as cur:
        return [Inbound(*row) for row in await cur.fetchall()]


async def get_inbound(db: aiosqlite.Connection, ids: Sequence[int]) -> list[Inbound]:
    rows = await _rows_with_ids(
        db, "SELECT id, phone, text, data_coding, raw, channel, received_at, extra FROM inbox"
        " WHERE id IN ({marks}) AND state = 'new' ORDER BY id", ids,
    )
    return [Inbound(*row) for row in rows]


async def _rows_with_ids(db: aiosqlite.Connection, sql: str, ids: Sequence[int]) -> list[Any]:
    """Rows of sql (its IN list written `{marks}`) for every id, a statement per chunk of ids."""
    found: list[Any] = []
    for marks, chunk in _in_lists(ids):
        found += await db.execute_fetchall(sql.format(marks=marks), chunk)
    return found


async def finish_inbound(
    db: aiosqlite.Connection, done: Sequence[tuple[int, str, str]]
) -> None:
    """Mark texts handled: (inbox id, state, handler name)."""
    await in_thread(db, finish_inbound_sync, done)


def finish_inbound_sync(db: sqlite3.Connection, done: Sequence[tuple[int, str, str]]) -> None:
    db.executemany(
        "UPDATE inbox SET state = ?, handler = ? WHERE id = ?",
        [(state, handler, inbox_id) for inbox_id, state, handler in done],
    )


async def store_part(
    db: aiosqlite.Connection, phone: str, reference: int, total: int, number: int, text: str,
    data_coding: int, at: float,
) -> list[str] | None:
    """Keep one part of a long text; returns the texts of all parts once every part is there."""
    return await in_thread(db, store_part_sync, phone, reference, total, number, text, data_coding, at)


def store_part_sync(
    db: sqlite3.Connection, phone: str, reference: int, total: int, number: int, text: str,
    data_coding: int, at: float,
) -> list[str] | None:
    db.execute(
        "INSERT OR REPLACE INTO inbox_parts (phone, reference, total, number, text, data_coding,"
        " received_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (phone, reference, total, number, text, data_coding, at),
    )
    rows = db.execute(
        "SELECT number, text FROM inbox_parts WHERE phone = ? AND reference = ? AND total = ?"
        " ORDER BY number", (phone, reference, total),
    ).fetchall()
    if len(rows) < total:
        return None
    db.execute(
        "DELETE FROM inbox_parts WHERE phone = ? AND reference = ? AND total = ?",
        (phone, reference, total),
    )
    return [row[1] for row in rows]


@dataclass(slots=True)
class Outgoing:
    id: int
    phone: str
    text: str
    kind: str
    extra: str
    created_at: float


@dataclass(slots=True)
class NewOutgoing:
    request_key: str
    phone: str
    text: str
    parts: int
    kind: str = "reply"
    extra: str = ""


async def enqueue(
    db: aiosqlite.Connection, items: Sequence[NewOutgoing], now: float
) -> list[int]:
    """Queue texts to send (inside a write transaction); a request key already queued is not
    queued twice. Returns the ids of the rows inserted, in the order of items.
    """
    return await in_thread(db, enqueue_sync, items, now)


def enqueue_sync(db: sqlite3.Connection, items: Sequence[NewOutgoing], now: float) -> list[int]:
    return [outbox_id for outbox_id, _item in enqueue_rows_sync(db, items, now)]


def enqueue_rows_sync(
    db: sqlite3.Connection, items: Sequence[NewOutgoing], now: float
) -> list[tuple[int, NewOutgoing]]:
    """`enqueue`, inside a write transaction, with each id next to the item it was given to."""
    taken: set[str] = set()
    for marks, keys in _in_lists([item.request_key for item in items]):
        rows = db.execute(f"SELECT request_key FROM outbox WHERE request_key IN ({marks})", keys)
        taken.update(row[0] for row in rows)
    queued: list[tuple[int, NewOutgoing]] = []
    next_id = _next_id(db, "outbox")
    for item in items:
        if item.request_key not in taken:
            taken.add(item.request_key)
            queued.append((next_id, item))
            next_id += 1
    db.executemany(
        "INSERT INTO outbox (id, request_key, phone, text, kind, parts, created_at, extra)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [(outbox_id, item.request_key, item.phone, item.text, item.kind, item.parts, now, item.extra)
         for outbox_id, item in queued],
    )
    return queued


async def queued(db: aiosqlite.Connection, after_id: int = 0, limit: int = 1000) -> list[Outgoing]:
    async with db.execute(
        "SELECT id, phone, text, kind, extra, created_at FROM outbox WHERE state = 'queued'"
        " AND id > ? ORDER BY id LIMIT ?", (after_id, limit),
    ) as cur:
        return [Outgoing(*row) for row in await cur.fetchall()]


async def get_outgoing(db: aiosqlite.Connection, ids: Sequence[int]) -> list[Outgoing]:
    rows = await _rows_with_ids(
        db, "SELECT id, phone, text, kind, extra, created_at FROM outbox"
        " WHERE id IN ({marks}) AND state = 'queued' ORDER BY id", ids,
    )
    return [Outgoing(*row) for row in rows]


# part_no of a message submitted whole (message_payload): the SMSC splits it, and its one id and
# one receipt stand for all of its parts.
WHOLE = 0


@dataclass(slots=True)
class PartResult:
    outbox_id: int
    part_no: int
    smsc_id: str
    smsc_keys: tuple[str, ...]
    at: float


async def record_submitted(
    db: aiosqlite.Connection, parts: Sequence[PartResult], finished: Sequence[tuple[int, float]]
) -> None:
    """Record parts the SMSC accepted, and the messages whose every part it accepted."""
    await in_thread(db, record_submitted_sync, parts, finished)


def record_submitted_sync(
    db: sqlite3.Connection, parts: Sequence[PartResult], finished: Sequence[tuple[int, float]]
) -> None:
    db.executemany(
        "INSERT OR REPLACE INTO outbox_parts (outbox_id, part_no, smsc_id, state, submitted_at)"
        " VALUES (?, ?, ?, 'submitted', ?)",
        [(part.outbox_id, part.part_no, part.smsc_id, part.at) for part in parts],
    )
    db.executemany(
        "INSERT OR IGNORE INTO part_keys (smsc_key, outbox_id, part_no) VALUES (?, ?, ?)",
        [(key, part.outbox_id, part.part_no) for part in parts for key in part.smsc_keys],
    )
    db.executemany(
        "UPDATE outbox SET state = 'submitted', submitted_at = ? WHERE id = ? AND state = 'queued'",
        [(at, outbox_id) for outbox_id, at in finished],
    )


async def record_failed(
    db: aiosqlite.Connection, failures: Sequence[tuple[int, str, float]]
) -> None:
    await in_thread(db, record_failed_sync, failures)


def record_failed_sync(db: sqlite3.Connection, failures: Sequence[tuple[int, str, float]]) -> None:
    db.executemany(
        "UPDATE outbox SET state = 'failed', error = ?, done_at = ? WHERE id = ?",
        [(error, at, outbox_id) for outbox_id, error, at in failures],
    )


FINAL_STATES = {"DELIVRD": "delivered", "EXPIRED": "expired", "UNDELIV": "failed",
                "REJECTD": "failed", "DELETED": "failed", "UNKNOWN": "failed"}


async def store_receipt(
    db: aiosqlite.Connection, smsc_id: str, stat: str, err: str, body: str, at: float
) -> int:
    """Keep every receipt, matched or not, so a malformed one can be looked at later."""
    return (await store_receipts(db, [NewReceipt(smsc_id, stat, err, body)], at))[0]


@dataclass(slots=True)
class NewReceipt:
    smsc_id: str
    stat: str
    err: str
    body: str


async def store_receipts(
    db: aiosqlite.Connection, receipts: Sequence[NewReceipt], at: float
) -> list[int]:
    """Keep receipts (inside a write transaction); their ids, in order."""
    return await in_thread(db, store_receipts_sync, receipts, at)


def store_receipts_sync(
    db: sqlite3.Connection, receipts: Sequence[NewReceipt], at: float,
    outbox_ids: Sequence[int | None] | None = None,
) -> list[int]:
    """Keep receipts, with the message each names when already matched (match_receipts_sync with
    link=False); their ids, in order."""
    if not receipts:
        return []
    first = _next_id(db, "receipts")
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


async def match_receipt(
    db: aiosqlite.Connection, receipt_id: int, keys: Iterable[str], stat: str, err: str, at: float
) -> int | None:
    """Apply a stored receipt to the part it names; returns the outbox id, None if none matches."""
    return (await match_receipts(db, [ReceiptMatch(receipt_id, tuple(keys), stat, err, at)]))[0]


@dataclass(slots=True)
class ReceiptMatch:
    receipt_id: int
    keys: Iterable[str]  # the readings of the SMSC id (keys.normalise_message_id)
    stat: str
    err: str
    at: float


async def match_receipts(
    db: aiosqlite.Connection, receipts: Sequence[ReceiptMatch]
) -> list[int | None]:
    """Apply stored receipts to the parts they name: the outbox id of each, None where none matches.

    A few statements for the whole batch, never one per receipt: the part a key names, the
    receipts' links, the parts' final states, and the messages whose every part is final.
    """
    return await in_thread(db, match_receipts_sync, receipts)


def match_receipts_sync(
    db: sqlite3.Connection, receipts: Sequence[ReceiptMatch], link: bool = True
) -> list[int | None]:
    """match_receipts inside a write transaction. link=False: the receipts are not stored yet
    (their receipt_id is not read); the caller stores them with the outbox ids returned."""
    key_lists = [sorted(set(receipt.keys)) for receipt in receipts]
    # Of the parts a key names, the newest message wins (an SMSC may reuse ids after a while).
    best: dict[str, tuple[int, int]] = {}
    for marks, chunk in _in_lists(sorted({key for keys in key_lists for key in keys})):
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
    for marks, outbox_ids in _in_lists(sorted(last)):
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


async def recorded_parts(db: aiosqlite.Connection, outbox_id: int) -> set[int]:
    return (await recorded_parts_of(db, [outbox_id])).get(outbox_id, set())


async def recorded_parts_of(db: aiosqlite.Connection, outbox_ids: Sequence[int]) -> dict[int, set[int]]:
    """Parts the SMSC accepted already, per message (only messages with some are keys)."""
    found: dict[int, set[int]] = {}
    rows = await _rows_with_ids(
        db, "SELECT outbox_id, part_no FROM outbox_parts WHERE outbox_id IN ({marks})", outbox_ids
    )
    for row in rows:
        found.setdefault(int(row[0]), set()).add(int(row[1]))
    return found


async def first_queued_per_phone(db: aiosqlite.Connection) -> list[int]:
    async with db.execute("SELECT min(id) FROM outbox WHERE state = 'queued' GROUP BY phone") as cur:
        return [int(row[0]) for row in await cur.fetchall()]


async def queue_depth(db: aiosqlite.Connection) -> int:
    async with db.execute("SELECT count(*) FROM outbox WHERE state = 'queued'") as cur:
        row = await cur.fetchone()
    return int(row[0]) if row else 0


async def history(db: aiosqlite.Connection, phone: str, limit: int = 20) -> list[tuple[str, str, float, str]]:
    """A resident's own SMS history: (direction, text, at, state), newest first."""
    sql = """
        SELECT 'in', text, received_at, state FROM inbox WHERE phone = ? AND channel != 'ussd'
        UNION ALL
        SELECT 'out', text, created_at, state FROM outbox WHERE phone = ? AND kind != 'ussd'
        ORDER BY 3 DESC LIMIT ?
    """
    async with db.execute(sql, (phone, phone, limit)) as cur:
        return [(row[0], row[1], float(row[2]), row[3]) for row in await cur.fetchall()]


async def queue_summary(db: aiosqlite.Connection) -> tuple[int, float | None]:
    """How many messages wait to be submitted, and when the oldest of them was queued."""
    async with db.execute(
        "SELECT count(*), min(created_at) FROM outbox WHERE state = 'queued'"
    ) as cur:
        row = await cur.fetchone()
    return (int(row[0]), row[1]) if row else (0, None)
