"""The inbox: texts in (stored before the SMSC is answered), parts of long texts, acknowledgement."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import aiosqlite

from store.db import in_lists, in_thread, next_id, rows_with_ids


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
    for marks, phones in in_lists(sorted({item.phone for item in items})):
        rows = db.execute(
            "SELECT phone, text_hash, received_at, id FROM inbox INDEXED BY inbox_unacked"
            f" WHERE acked = 0 AND phone IN ({marks})", phones,
        ).fetchall()
        unacked.update(((row[0], row[1]), int(row[3])) for row in rows if row[2] > redelivery_since)
    ids: list[int | None] = []
    rows_to_insert: list[tuple[object, ...]] = []
    redelivered: list[int] = []
    new_id = next_id(db, "inbox")
    for item, digest in zip(items, digests, strict=True):
        if (item.phone, digest) in unacked:
            ids.append(None)
            earlier = unacked[item.phone, digest]
            if earlier is not None:
                redelivered.append(earlier)
                unacked[item.phone, digest] = None
            continue
        unacked[item.phone, digest] = None
        ids.append(new_id)
        rows_to_insert.append((new_id, item.phone, item.text, item.data_coding, item.raw,
                               item.channel, item.received_at, digest, item.extra))
        new_id += 1
    db.executemany(
        "INSERT INTO inbox (id, phone, text, data_coding, raw, channel, received_at, text_hash, extra)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows_to_insert,
    )
    if repeated is None:
        mark_acked_sync(db, redelivered)
    else:
        repeated += redelivered
    return ids


def _digest(item: NewInbound) -> str:
    if item.channel == "ussd":
        # USSD answers repeat legitimately ("1", then "1" on the next screen) and a dialogue is
        # not redelivered later: only a copy in the same batch (same arrival) is the same input.
        marks = f"{item.extra}\x00{item.received_at!r}".encode()
        return text_hash(item.phone, item.text, (item.raw or b"") + marks)
    return text_hash(item.phone, item.text, item.raw)


def mark_acked_sync(db: sqlite3.Connection, ids: Iterable[int]) -> None:
    db.executemany("UPDATE inbox SET acked = 1 WHERE id = ?", [(i,) for i in ids])


async def pending_inbound(db: aiosqlite.Connection, limit: int = 1000) -> list[Inbound]:
    async with db.execute(
        "SELECT id, phone, text, data_coding, raw, channel, received_at, extra FROM inbox"
        " WHERE state = 'new' ORDER BY id LIMIT ?", (limit,),
    ) as cur:
        return [Inbound(*row) for row in await cur.fetchall()]


async def get_inbound(db: aiosqlite.Connection, ids: Sequence[int]) -> list[Inbound]:
    rows = await rows_with_ids(
        db, "SELECT id, phone, text, data_coding, raw, channel, received_at, extra FROM inbox"
        " WHERE id IN ({marks}) AND state = 'new' ORDER BY id", ids,
    )
    return [Inbound(*row) for row in rows]


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


def store_part_sync(
    db: sqlite3.Connection, phone: str, reference: int, total: int, number: int, text: str,
    data_coding: int, at: float,
) -> list[str] | None:
    """Keep one part of a long text; the texts of all parts once every part is there."""
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


async def history(db: aiosqlite.Connection, phone: str, limit: int = 20) -> list[tuple[str, str, float, str]]:
    """A resident's own SMS history, texts in and replies out: (direction, text, at, state), newest first."""
    sql = """
        SELECT 'in', text, received_at, state FROM inbox WHERE phone = ? AND channel != 'ussd'
        UNION ALL
        SELECT 'out', text, created_at, state FROM outbox WHERE phone = ? AND kind != 'ussd'
        ORDER BY 3 DESC LIMIT ?
    """
    async with db.execute(sql, (phone, phone, limit)) as cur:
        return [(row[0], row[1], float(row[2]), row[3]) for row in await cur.fetchall()]


async def pending_count(db: aiosqlite.Connection) -> int:
    """Texts stored but not yet answered."""
    async with db.execute("SELECT count(*) FROM inbox WHERE state = 'new'") as cursor:
        row = await cursor.fetchone()
    return int(row[0]) if row else 0
