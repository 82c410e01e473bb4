"""Old message bodies are blanked after the retention period; stale counters and codes go."""

from __future__ import annotations

import pytest

from smsgate import housekeeping
from smsgate.config import from_dict
from store import inbox, outbox, ratelimits
from store.db import Store, now

DAY = 86400.0


@pytest.fixture
def db_store(empty_store: Store) -> Store:
    return empty_store  # not conftest's demo store


async def test_sweep_blanks_old_bodies_and_keeps_recent_ones(db_store: Store) -> None:
    config = from_dict({"store": {"message_retention_days": 30}})
    at = now()
    async with db_store.tx() as db:
        old, recent, pending = await inbox.store_inbound(db, [
            inbox.NewInbound("+79031234567", "Пароль", 8, None, "sms", at - 40 * DAY),
            inbox.NewInbound("+79031234567", "Баланс", 8, None, "sms", at - 2 * DAY),
            inbox.NewInbound("+79031234568", "Помощь", 8, b"\x01", "sms", at - 40 * DAY),
        ], at - 60 * DAY)
        assert old and recent and pending
        await inbox.finish_inbound(db, [(old, "done", "password"), (recent, "done", "balance")])
        await outbox.enqueue(db, [outbox.NewOutgoing("in:1:0", "+79031234567", "secret 1", 1)],
                               at - 40 * DAY)
        await outbox.enqueue(db, [outbox.NewOutgoing("in:9:0", "+79031234567", "queued", 1)],
                               at - 40 * DAY)
        await db.execute("UPDATE outbox SET state = 'delivered' WHERE request_key = 'in:1:0'")
        await ratelimits.record(db, "password:+79031234567", at - 3 * DAY)
        await ratelimits.record(db, "password:+79031234567", at - 60)
        await db.execute(
            "INSERT INTO codes VALUES ('+79031234567', 'reset', 'h', '', ?, 0, ?)", (at - 1, at - 700)
        )
    swept = await housekeeping.sweep(db_store, config)
    assert swept == housekeeping.Swept(bodies_blanked=2, rate_events=1, codes=1, parts=0)
    async with db_store.db.execute("SELECT text, raw, state FROM inbox ORDER BY id") as cursor:
        rows = [tuple(row) for row in await cursor.fetchall()]
    # The old answered text is blanked; a recent one and one still waiting to be handled stay.
    assert rows == [("", None, "done"), ("Баланс", None, "done"), ("Помощь", b"\x01", "new")]
    async with db_store.db.execute("SELECT text, state FROM outbox ORDER BY id") as cursor:
        assert [tuple(row) for row in await cursor.fetchall()] == [("", "delivered"), ("queued", "queued")]
    assert await ratelimits.count(db_store.db, "password:+79031234567", 0) == 1
    assert (await housekeeping.sweep(db_store, config)) == housekeeping.Swept(0, 0, 0, 0)
