"""Keeping personal data minimal (152-FZ): message bodies blanked, parts that never joined dropped."""

from __future__ import annotations

import aiosqlite


async def blank_bodies(db: aiosqlite.Connection, before: float) -> int:
    """Blank the bodies of texts, replies and receipts older than `before`; return how many.

    Texts still to be answered and replies still to be sent keep theirs.
    """
    inbox = await db.execute(
        "UPDATE inbox SET text = '', raw = NULL WHERE received_at < ? AND state != 'new'"
        " AND (text != '' OR raw IS NOT NULL)", (before,),
    )
    outbox = await db.execute(
        "UPDATE outbox SET text = '' WHERE created_at < ? AND state != 'queued' AND text != ''",
        (before,),
    )
    receipts = await db.execute(
        "UPDATE receipts SET body = '' WHERE received_at < ? AND body != ''", (before,)
    )
    return inbox.rowcount + outbox.rowcount + receipts.rowcount


async def drop_parts(db: aiosqlite.Connection, before: float) -> int:
    """Drop the stored parts of long texts received before `before`; return how many."""
    cursor = await db.execute("DELETE FROM inbox_parts WHERE received_at < ?", (before,))
    return cursor.rowcount
