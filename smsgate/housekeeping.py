"""Keeping personal data minimal (152-FZ): old message bodies blanked, stale counters dropped."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from smsgate import logs
from smsgate.config import Config
from store.db import Store, now

log = logs.get("housekeeping")
DAY = 86400.0
INTERVAL = 3600.0


@dataclass(frozen=True)
class Swept:
    bodies_blanked: int
    rate_events: int
    codes: int
    parts: int


async def sweep(store: Store, config: Config) -> Swept:
    """One pass: message bodies past the retention period, counters past the longest window."""
    at = now()
    cutoff = at - config.store.message_retention_days * DAY
    async with store.tx() as db:
        inbox = await db.execute(
            "UPDATE inbox SET text = '', raw = NULL WHERE received_at < ? AND state != 'new'"
            " AND (text != '' OR raw IS NOT NULL)", (cutoff,),
        )
        outbox = await db.execute(
            "UPDATE outbox SET text = '' WHERE created_at < ? AND state != 'queued' AND text != ''",
            (cutoff,),
        )
        receipts = await db.execute(
            "UPDATE receipts SET body = '' WHERE received_at < ? AND body != ''", (cutoff,)
        )
        # Limits look back a day at most; registration lock-outs an hour.
        events = await db.execute("DELETE FROM rate_events WHERE at < ?", (at - 2 * DAY,))
        codes = await db.execute("DELETE FROM codes WHERE expires_at < ?", (at,))
        # Parts whose siblings never came within a day will not come.
        parts = await db.execute("DELETE FROM inbox_parts WHERE received_at < ?", (at - DAY,))
    swept = Swept(
        inbox.rowcount + outbox.rowcount + receipts.rowcount, events.rowcount, codes.rowcount,
        parts.rowcount,
    )
    if any(vars(swept).values()):
        log.info("housekeeping", extra=vars(swept))
    return swept


async def run(store: Store, config: Config) -> None:
    """Sweep at start and then every hour, until cancelled."""
    while True:
        try:
            await sweep(store, config)
        except Exception:
            log.exception("housekeeping_failed")
        await asyncio.sleep(INTERVAL)
