"""Inbox and outbox: every text in or out is stored before the SMSC is answered or asked."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import aiosqlite


def text_hash(phone: str, text: str, raw: bytes | None) -> str:
    digest = hashlib.blake2b(digest_size=12)
    digest.update(phone.encode())
    digest.update(b"\x00")
    digest.update(text.encode("utf-8", "surrogatepass"))
    if raw:
        digest.update(b"\x00")
        digest.update(raw)
    return digest.hexdigest()


@dataclass(frozen=True)
class Inbound:
    id: int
    phone: str
    text: str
    data_coding: int
    raw: bytes | None
    channel: str
    received_at: float
    extra: str


@dataclass(frozen=True)
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
    """Store texts; a text that repeats one stored but never acknowledged is a redelivery: None."""
    ids: list[int | None] = []
    for item in items:
        digest = text_hash(item.phone, item.text, item.raw)
        async with db.execute(
            "SELECT id FROM inbox WHERE phone = ? AND text_hash = ? AND acked = 0"
            " AND received_at > ? LIMIT 1", (item.phone, digest, redelivery_since),
        ) as cur:
            if await cur.fetchone() is not None:
                ids.append(None)
                continue
        cursor = await db.execute(
            "INSERT INTO inbox (phone, text, data_coding, raw, channel, received_at, text_hash,"
            " extra) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (item.phone, item.text, item.data_coding, item.raw, item.channel, item.received_at,
             digest, item.extra),
        )
        ids.append(cursor.lastrowid)
    return ids


async def mark_acked(db: aiosqlite.Connection, ids: Iterable[int]) -> None:
    await db.executemany("UPDATE inbox SET acked = 1 WHERE id = ?", [(i,) for i in ids])


async def mark_unacked_acked(db: aiosqlite.Connection) -> None:
    """At start-up every stored text counts as answered once we reconnect and see no redelivery."""
    await db.execute("UPDATE inbox SET acked = 1 WHERE acked = 0 AND state != 'new'")


async def pending_inbound(db: aiosqlite.Connection, limit: int = 1000) -> list[Inbound]:
    async with db.execute(
        "SELECT id, phone, text, data_coding, raw, channel, received_at, extra FROM inbox"
        " WHERE state = 'new' ORDER BY id LIMIT ?", (limit,),
    ) as cur:
        return [Inbound(*row) for row in await cur.fetchall()]


async def get_inbound(db: aiosqlite.Connection, ids: Sequence[int]) -> list[Inbound]:
    marks = ",".join("?" * len(ids))
    async with db.execute(
        "SELECT id, phone, text, data_coding, raw, channel, received_at, extra FROM inbox"
        f" WHERE id IN ({marks}) AND state = 'new' ORDER BY id", tuple(ids),
    ) as cur:
        return [Inbound(*row) for row in await cur.fetchall()]


async def finish_inbound(
    db: aiosqlite.Connection, done: Sequence[tuple[int, str, str]]
) -> None:
    """Mark texts handled: (inbox id, state, handler name)."""
    await db.executemany(
        "UPDATE inbox SET state = ?, handler = ? WHERE id = ?",
        [(state, handler, inbox_id) for inbox_id, state, handler in done],
    )


async def store_part(
    db: aiosqlite.Connection, phone: str, reference: int, total: int, number: int, text: str,
    data_coding: int, at: float,
) -> list[str] | None:
    """Keep one part of a long text; returns the texts of all parts once every part is there."""
    await db.execute(
        "INSERT OR REPLACE INTO inbox_parts (phone, reference, total, number, text, data_coding,"
        " received_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (phone, reference, total, number, text, data_coding, at),
    )
    async with db.execute(
        "SELECT number, text FROM inbox_parts WHERE phone = ? AND reference = ? AND total = ?"
        " ORDER BY number", (phone, reference, total),
    ) as cur:
        rows = list(await cur.fetchall())
    if len(rows) < total:
        return None
    await db.execute(
        "DELETE FROM inbox_parts WHERE phone = ? AND reference = ? AND total = ?",
        (phone, reference, total),
    )
    return [row[1] for row in rows]


@dataclass(frozen=True)
class Outgoing:
    id: int
    phone: str
    text: str
    kind: str
    extra: str
    created_at: float


@dataclass(frozen=True)
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
    """Queue texts to send; a request key already queued is not queued twice."""
    ids: list[int] = []
    for item in items:
        cursor = await db.execute(
            "INSERT OR IGNORE INTO outbox (request_key, phone, text, kind, parts, created_at, extra)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (item.request_key, item.phone, item.text, item.kind, item.parts, now, item.extra),
        )
        if cursor.rowcount and cursor.lastrowid is not None:
            ids.append(cursor.lastrowid)
    return ids


async def queued(db: aiosqlite.Connection, after_id: int = 0, limit: int = 1000) -> list[Outgoing]:
    async with db.execute(
        "SELECT id, phone, text, kind, extra, created_at FROM outbox WHERE state = 'queued'"
        " AND id > ? ORDER BY id LIMIT ?", (after_id, limit),
    ) as cur:
        return [Outgoing(*row) for row in await cur.fetchall()]


async def get_outgoing(db: aiosqlite.Connection, ids: Sequence[int]) -> list[Outgoing]:
    marks = ",".join("?" * len(ids))
    async with db.execute(
        "SELECT id, phone, text, kind, extra, created_at FROM outbox"
        f" WHERE id IN ({marks}) AND state = 'queued' ORDER BY id", tuple(ids),
    ) as cur:
        return [Outgoing(*row) for row in await cur.fetchall()]


@dataclass(frozen=True)
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
    await db.executemany(
        "INSERT OR REPLACE INTO outbox_parts (outbox_id, part_no, smsc_id, state, submitted_at)"
        " VALUES (?, ?, ?, 'submitted', ?)",
        [(part.outbox_id, part.part_no, part.smsc_id, part.at) for part in parts],
    )
    await db.executemany(
        "INSERT OR IGNORE INTO part_keys (smsc_key, outbox_id, part_no) VALUES (?, ?, ?)",
        [(key, part.outbox_id, part.part_no) for part in parts for key in part.smsc_keys],
    )
    await db.executemany(
        "UPDATE outbox SET state = 'submitted', submitted_at = ? WHERE id = ? AND state = 'queued'",
        [(at, outbox_id) for outbox_id, at in finished],
    )


async def record_failed(
    db: aiosqlite.Connection, failures: Sequence[tuple[int, str, float]]
) -> None:
    await db.executemany(
        "UPDATE outbox SET state = 'failed', error = ?, done_at = ? WHERE id = ?",
        [(error, at, outbox_id) for outbox_id, error, at in failures],
    )


FINAL_STATES = {"DELIVRD": "delivered", "EXPIRED": "expired", "UNDELIV": "failed",
                "REJECTD": "failed", "DELETED": "failed", "UNKNOWN": "failed"}


async def store_receipt(
    db: aiosqlite.Connection, smsc_id: str, stat: str, err: str, body: str, at: float
) -> int:
    """Keep every receipt, matched or not, so a malformed one can be looked at later."""
    cursor = await db.execute(
        "INSERT INTO receipts (smsc_id, stat, err, body, received_at) VALUES (?, ?, ?, ?, ?)",
        (smsc_id[:100], stat[:20], err[:20], body[:500], at),
    )
    assert cursor.lastrowid is not None
    return cursor.lastrowid


async def match_receipt(
    db: aiosqlite.Connection, receipt_id: int, keys: Iterable[str], stat: str, err: str, at: float
) -> int | None:
    """Apply a stored receipt to the part it names; returns the outbox id, None if none matches."""
    key_list = sorted(set(keys))
    if not key_list:
        return None
    marks = ",".join("?" * len(key_list))
    async with db.execute(
        f"SELECT outbox_id, part_no FROM part_keys WHERE smsc_key IN ({marks})"
        " ORDER BY outbox_id DESC LIMIT 1", tuple(key_list),
    ) as cur:
        row = await cur.fetchone()
    if row is None:
        return None
    outbox_id, part_no = int(row[0]), int(row[1])
    await db.execute("UPDATE receipts SET outbox_id = ? WHERE id = ?", (outbox_id, receipt_id))
    state = FINAL_STATES.get(stat)
    if state is None:
        return outbox_id  # intermediate (ENROUTE, ACCEPTD): nothing final to record yet
    await db.execute(
        "UPDATE outbox_parts SET state = ?, done_at = ? WHERE outbox_id = ? AND part_no = ?",
        (state, at, outbox_id, part_no),
    )
    async with db.execute(
        "SELECT o.parts, count(p.part_no), coalesce(sum(p.state = 'delivered'), 0),"
        " coalesce(max(p.state = 'expired'), 0) FROM outbox AS o LEFT JOIN outbox_parts AS p"
        " ON p.outbox_id = o.id AND p.state != 'submitted' WHERE o.id = ?", (outbox_id,),
    ) as cur:
        summary = await cur.fetchone()
    if summary and int(summary[1]) >= int(summary[0]):
        parts, delivered, expired = int(summary[0]), int(summary[2]), int(summary[3])
        overall = "delivered" if delivered >= parts else ("expired" if expired else "failed")
        await db.execute(
            "UPDATE outbox SET state = ?, done_at = ?, error = ? WHERE id = ?",
            (overall, at, "" if overall == "delivered" else f"{stat} err:{err}", outbox_id),
        )
    return outbox_id


async def recorded_parts(db: aiosqlite.Connection, outbox_id: int) -> set[int]:
    async with db.execute("SELECT part_no FROM outbox_parts WHERE outbox_id = ?", (outbox_id,)) as cur:
        return {int(row[0]) for row in await cur.fetchall()}


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
        SELECT 'in', text, received_at, state FROM inbox WHERE phone = ?
        UNION ALL
        SELECT 'out', text, created_at, state FROM outbox WHERE phone = ?
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
