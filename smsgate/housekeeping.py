"""Keeping personal data minimal (152-FZ): old message bodies blanked, stale counters dropped."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from smsgate import logs
from smsgate.config import Config
from store import codes, ratelimits, retention
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
        bodies = await retention.blank_bodies(db, cutoff)
        # Limits look back a day at most; registration lock-outs an hour.
        events = await ratelimits.prune(db, at - 2 * DAY)
        expired = await codes.delete_expired(db, at)
        # Parts whose siblings never came within a day will not come.
        parts = await retention.drop_parts(db, at - DAY)
    swept = Swept(bodies, events, expired, parts)
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
