"""The outbox: replies out (queued before they are submitted), submit results, queue queries."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

import aiosqlite

from store.db import in_lists, in_thread, next_id, rows_with_ids


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
    for marks, keys in in_lists([item.request_key for item in items]):
        rows = db.execute(f"SELECT request_key FROM outbox WHERE request_key IN ({marks})", keys)
        taken.update(row[0] for row in rows)
    queued: list[tuple[int, NewOutgoing]] = []
    new_id = next_id(db, "outbox")
    for item in items:
        if item.request_key not in taken:
            taken.add(item.request_key)
            queued.append((new_id, item))
            new_id += 1
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
    rows = await rows_with_ids(
        db, "SELECT id, phone, text, kind, extra, created_at FROM outbox"
        " WHERE id IN ({marks}) AND state = 'queued' ORDER BY id", ids,
    )
    return [Outgoing(*row) for row in rows]


# part_no of a message submitted whole (message_payload): the SMSC splits it, and its one id and
# one receipt stand for all of its parts. smsgate.smpp.outgoing numbers that one submit the same.
WHOLE = 0


@dataclass(slots=True)
class PartResult:
    outbox_id: int
    part_no: int
    smsc_id: str
    smsc_keys: tuple[str, ...]  # what a receipt finds it under (store/keys.py)
    at: float


def record_submitted_sync(
    db: sqlite3.Connection, parts: Sequence[PartResult], finished: Sequence[tuple[int, float]]
) -> None:
    """Record parts the SMSC accepted, and the messages whose every part it accepted."""
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


def record_failed_sync(db: sqlite3.Connection, failures: Sequence[tuple[int, str, float]]) -> None:
    db.executemany(
        "UPDATE outbox SET state = 'failed', error = ?, done_at = ? WHERE id = ?",
        [(error, at, outbox_id) for outbox_id, error, at in failures],
    )


async def recorded_parts_of(db: aiosqlite.Connection, outbox_ids: Sequence[int]) -> dict[int, set[int]]:
    """Parts the SMSC accepted already, per message (only messages with some are keys)."""
    found: dict[int, set[int]] = {}
    rows = await rows_with_ids(
        db, "SELECT outbox_id, part_no FROM outbox_parts WHERE outbox_id IN ({marks})", outbox_ids
    )
    for row in rows:
        found.setdefault(int(row[0]), set()).add(int(row[1]))
    return found


async def first_queued_per_phone(db: aiosqlite.Connection) -> list[int]:
    async with db.execute("SELECT min(id) FROM outbox WHERE state = 'queued' GROUP BY phone") as cur:
        return [int(row[0]) for row in await cur.fetchall()]


async def queue_summary(db: aiosqlite.Connection) -> tuple[int, float | None]:
    """How many messages wait to be submitted, and when the oldest of them was queued."""
    async with db.execute(
        "SELECT count(*), min(created_at) FROM outbox WHERE state = 'queued'"
    ) as cur:
        row = await cur.fetchone()
    return (int(row[0]), row[1]) if row else (0, None)
