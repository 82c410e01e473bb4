"""What residents can do, written once: the SMS handlers, USSD menus and web views all call these."""

from __future__ import annotations

import datetime as dt
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from zoneinfo import ZoneInfo

from smsgate import logs, pdu, phone, security
from smsgate.config import Config
from store import accounts, debts, messages, ratelimits, residents
from store.db import Store, now

TIMEZONE = ZoneInfo("Asia/Barnaul")
HOUR = 3600.0
DAY = 86400.0
log = logs.get("services")


def local_today() -> dt.date:
    return dt.datetime.now(TIMEZONE).date()


def normalise_account(raw: str) -> str:
    """Account numbers are typed with spaces, dashes and №; only the digits matter."""
    return re.sub(r"[\s\-№#N]", "", raw.strip(), flags=re.IGNORECASE)


class Outcome(Enum):
    OK = "ok"
    UNKNOWN = "unknown"  # phone not registered
    LIMITED = "limited"  # refused politely, once
    SILENT = "silent"  # refused again: no answer at all
    BAD = "bad"  # wrong account or code (one answer for both)
    LOCKED = "locked"  # too many wrong tries
    ALREADY = "already"  # nothing to do


@dataclass(frozen=True)
class PasswordResult:
    outcome: Outcome
    password: str | None = None


@dataclass(frozen=True)
class RegisterResult:
    outcome: Outcome
    account: str = ""
    password: str | None = None  # set when a new resident was created
    card_number: str = ""
    resident_id: int | None = None


@dataclass(frozen=True)
class AccountDebts:
    account: str
    address: str
    lines: tuple[debts.ProviderDebt, ...]

    @property
    def total(self) -> int:
        return sum(line.amount for line in self.lines)


# Called after something was queued for sending, to wake the sender without waiting for a poll.
OutboxWaker = Callable[[], None]


class Services:
    def __init__(self, store: Store, config: Config, wake_outbox: OutboxWaker | None = None) -> None:
        self.store = store
        self.config = config
        self.limits = config.limits
        self._wake = wake_outbox or (lambda: None)

    # ---- limits ----------------------------------------------------------------------------

    async def _within(self, key: str, window: float, limit: int, at: float) -> bool:
        return await ratelimits.count(self.store.db, key, at - window) < limit

    # ---- password by SMS ---------------------------------------------------------------------

    async def new_password(self, who: str) -> PasswordResult:
        """A fresh random password for a registered phone, at most N an hour and M a day."""
        at = now()
        resident = await residents.by_phone(self.store.db, who)
        if resident is None:
            return PasswordResult(Outcome.UNKNOWN)
        key = f"password:{who}"
        allowed = await self._within(key, HOUR, self.limits.password_per_hour, at) and (
            await self._within(key, DAY, self.limits.password_per_day, at)
        )
        if not allowed:
            refused_key = f"password-refused:{who}"
            if not await self._within(refused_key, DAY, 1, at):
                return PasswordResult(Outcome.SILENT)
            async with self.store.tx() as db:
                await ratelimits.record(db, refused_key, at)
            return PasswordResult(Outcome.LIMITED)
        password = security.new_password()
        password_hash = await security.hash_password(password)
        async with self.store.tx() as db:
            await residents.set_password(db, resident.id, password_hash, must_change=True)
            await ratelimits.record(db, key, at)
        log.info("password_issued", extra={"msisdn": who, "channel": "sms"})
        return PasswordResult(Outcome.OK, password)

    # ---- registration --------------------------------------------------------------------------

    async def register(self, who: str, account_raw: str, receipt_code: str) -> RegisterResult:
        """Link an account to a phone with the code from the receipt; creates the resident if new.

        A wrong account and a wrong code get the same answer, and wrong tries lock the phone out.
        """
        at = now()
        fail_key = f"register-failed:{who}"
        window = self.limits.register_lock_minutes * 60.0
        if not await self._within(fail_key, window, self.limits.register_failures, at):
            return RegisterResult(Outcome.LOCKED)
        number = normalise_account(account_raw)
        account = await accounts.get(self.store.db, number) if number.isdigit() else None
        # Compare against something even for unknown accounts, so timing does not tell them apart.
        expected = account.receipt_code if account else secrets.token_hex(4)
        if account is None or not security.receipt_codes_equal(receipt_code, expected):
            async with self.store.tx() as db:
                await ratelimits.record(db, fail_key, at)
            log.info("register_refused", extra={"msisdn": who, "reason": "bad_pair"})
            return RegisterResult(Outcome.BAD)
        resident = await residents.by_phone(self.store.db, who)
        password: str | None = None
        password_hash: str | None = None
        if resident is None:
            password = security.new_password()
            password_hash = await security.hash_password(password)
        async with self.store.tx() as db:
            if resident is None:
                card = await self._free_card_number()
                resident = await residents.create(db, who, card)
                assert password_hash is not None
                await residents.set_password(db, resident.id, password_hash, must_change=True)
            linked = await residents.link_account(db, resident.id, number)
            await ratelimits.clear(db, fail_key)
        log.info("registered", extra={"msisdn": who, "new_resident": password is not None})
        outcome = Outcome.OK if linked or password else Outcome.ALREADY
        return RegisterResult(outcome, number, password, resident.card_number, resident.id)

    async def _free_card_number(self) -> str:
        while True:
            card = security.new_card_number()
            if not await residents.card_taken(self.store.db, card):
                return card

    # ---- debts ------------------------------------------------------------------------------

    async def debts_of_phone(self, who: str) -> list[AccountDebts] | None:
        """Debts per provider for every account linked to the phone; None if not registered."""
        resident = await residents.by_phone(self.store.db, who)
        if resident is None:
            return None
        return await self.debts_of_resident(resident.id)

    async def debts_of_resident(self, resident_id: int) -> list[AccountDebts]:
        today = local_today()
        result: list[AccountDebts] = []
        for number in await residents.accounts_of(self.store.db, resident_id):
            account = await accounts.get(self.store.db, number)
            lines = await debts.by_provider(
                self.store.db, number, today.strftime("%Y-%m"), today.isoformat()
            )
            result.append(AccountDebts(number, account.address if account else "", tuple(lines)))
        return result

    # ---- reminders --------------------------------------------------------------------------

    async def set_reminders(self, who: str, enabled: bool) -> bool:
        async with self.store.tx() as db:
            found = await residents.set_reminders(db, who, enabled)
        log.info("reminders_changed", extra={"msisdn": who, "enabled": enabled, "known": found})
        return found

    # ---- sending on behalf of the web or notifications ------------------------------------------

    async def queue_sms(self, to: str, text: str, kind: str, request_key: str | None = None) -> bool:
        """Queue an SMS that no inbound text asked for (web codes, notices); anti-pumping applies."""
        if not phone.is_russian_mobile(to):
            log.warning("sms_refused", extra={"msisdn": to, "reason": "not_ru_mobile", "kind": kind})
            return False
        at = now()
        parts = pdu.count_parts(text)
        prefix_key = f"sms-prefix:{phone.prefix(to)}"
        if not await self._within(prefix_key, HOUR, self.limits.sms_per_prefix_per_hour, at):
            log.warning("sms_refused", extra={"msisdn": to, "reason": "prefix_limit", "kind": kind})
            return False
        day_key = f"web-sms-parts:{local_today().isoformat()}"
        if await ratelimits.count(self.store.db, day_key, at - DAY) + parts > self.config.web.daily_sms_cap:
            log.warning("sms_refused", extra={"msisdn": to, "reason": "daily_cap", "kind": kind})
            return False
        key = request_key or f"{kind}:{to}:{secrets.token_hex(8)}"
        async with self.store.tx() as db:
            await messages.enqueue(db, [messages.NewOutgoing(key, to, text, parts, kind)], at)
            await ratelimits.record(db, prefix_key, at)
            for _ in range(parts):
                await ratelimits.record(db, day_key, at)
        self._wake()
        return True
