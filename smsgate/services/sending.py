"""SMS the services queue for sending: answers to requests over HTTP, and texts nobody asked for."""

from __future__ import annotations

import secrets

from smsgate import logs, phone, smpp
from smsgate.services.base import DAY, HOUR, Part, local_today
from store import outbox, ratelimits
from store.db import now

log = logs.get("services")


class Sending(Part):
    """Queueing SMS: answers to requests over HTTP, and texts under the anti-pumping caps."""

    async def queue_answer(self, to: str, text: str, kind: str, request_key: str) -> None:
        """Queue the SMS answer to a resident's own request that came over HTTP (USSD aggregators).

        As for SMS replies, and unlike `queue_sms`, no anti-pumping caps apply: the request's own
        limits bound it (`new_password`), and a password once changed must reach the phone.
        """
        async with self.store.tx() as db:
            await outbox.enqueue(
                db, [outbox.NewOutgoing(request_key, to, text, smpp.count_parts(text), kind)], now()
            )
        self._wake()

    async def queue_sms(self, to: str, text: str, kind: str, request_key: str | None = None) -> bool:
        """Queue an SMS that no inbound text asked for (web codes, notices); anti-pumping applies."""
        if not phone.is_russian_mobile(to):
            log.warning("sms_refused", extra={"msisdn": to, "reason": "not_ru_mobile", "kind": kind})
            return False
        at = now()
        parts = smpp.count_parts(text)
        prefix_key, day_key = _caps_keys(to)
        refusal = await self._refusal(prefix_key, day_key, parts, at)
        if refusal:
            log.warning("sms_refused", extra={"msisdn": to, "reason": refusal, "kind": kind})
            return False
        key = request_key or f"{kind}:{to}:{secrets.token_hex(8)}"
        async with self.store.tx() as db:
            await outbox.enqueue(db, [outbox.NewOutgoing(key, to, text, parts, kind)], at)
            await ratelimits.record(db, prefix_key, at)
            for _ in range(parts):
                await ratelimits.record(db, day_key, at)
        self._wake()
        return True

    async def _sms_room(self, to: str, text: str) -> bool:
        """Whether queue_sms would take this text now (the same checks; queue_sms records them)."""
        prefix_key, day_key = _caps_keys(to)
        return not await self._refusal(prefix_key, day_key, smpp.count_parts(text), now())

    async def _refusal(self, prefix_key: str, day_key: str, parts: int, at: float) -> str:
        """Why the anti-pumping caps refuse `parts` more parts now; "" when they do not."""
        if not await self._within(prefix_key, HOUR, self.limits.sms_per_prefix_per_hour, at):
            return "prefix_limit"
        sent = await ratelimits.count(self.store.db, day_key, at - DAY)
        return "daily_cap" if sent + parts > self.config.web.daily_sms_cap else ""


def _caps_keys(to: str) -> tuple[str, str]:
    """The counters of the caps: texts per number prefix an hour, parts per local day."""
    return f"sms-prefix:{phone.prefix(to)}", f"web-sms-parts:{local_today().isoformat()}"
