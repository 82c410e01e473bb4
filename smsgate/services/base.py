"""What every part of the services shares: the store, the limits, the resident's local day."""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Callable
from zoneinfo import ZoneInfo

from smsgate.config import Config
from store import codes, ratelimits
from store.db import Store

TIMEZONE = ZoneInfo("Asia/Barnaul")
HOUR = 3600.0
DAY = 86400.0
# Web guesses (passwords, receipt codes, reset codes) are counted over this window.
LOGIN_WINDOW = HOUR

# Called after something was queued for sending, to wake the sender without waiting for a poll.
OutboxWaker = Callable[[], None]


def local_today() -> dt.date:
    return dt.datetime.now(TIMEZONE).date()


@functools.lru_cache(maxsize=4)
def day_strings(day: dt.date) -> tuple[str, str, str]:
    """A day as the SMS texts and queries write it: (DD.MM.YYYY, YYYY-MM, YYYY-MM-DD).

    Cached, since every БАЛАНС needs them and strftime costs more than the rest of its formatting.
    """
    return f"{day:%d.%m.%Y}", f"{day:%Y-%m}", day.isoformat()


def normalise_account(raw: str) -> str:
    """Account numbers are typed with spaces, dashes and №; only the digits matter."""
    return re.sub(r"[\s\-№#N]", "", raw.strip(), flags=re.IGNORECASE)


class Part:
    """The state the parts of `Services` share; each part adds methods, none adds state."""

    def __init__(self, store: Store, config: Config, wake_outbox: OutboxWaker | None = None) -> None:
        self.store = store
        self.config = config
        self.limits = config.limits
        self._wake = wake_outbox or (lambda: None)

    async def _within(self, key: str, window: float, limit: int, at: float) -> bool:
        """Whether fewer than `limit` events were recorded under `key` in the last `window` seconds."""
        return await ratelimits.count(self.store.db, key, at - window) < limit

    async def _secret_sms_allowed(self, key: str, ip_key: str, at: float) -> bool:
        """The limits of a request that sends a secret by SMS: per phone an hour and a day, per IP."""
        return (
            await self._within(key, HOUR, self.limits.password_per_hour, at)
            and await self._within(key, DAY, self.limits.password_per_day, at)
            and await self._within(ip_key, HOUR, self.limits.sms_per_ip_per_hour, at)
        )

    def _code_live(self, stored: codes.Code | None, at: float) -> bool:
        """Whether a stored one-time code still counts: not expired, tries left."""
        return stored is not None and stored.expires_at > at and stored.attempts < self.limits.code_attempts

    async def _count_wrong_code(
        self, who: str, purpose: str, stored: codes.Code | None, ip_key: str, at: float
    ) -> None:
        """A wrong one-time code counts against the IP and uses up a try; the last try deletes it."""
        async with self.store.tx() as db:
            await ratelimits.record(db, ip_key, at)
            if stored is not None:
                if not self._code_live(stored, at) or stored.attempts + 1 >= self.limits.code_attempts:
                    await codes.delete(db, who, purpose)
                else:
                    await codes.add_attempt(db, who, purpose)
