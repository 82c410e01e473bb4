"""What residents can do, written once: the SMS handlers, USSD menus and web views all call these."""

from __future__ import annotations

import datetime as dt
import functools
import re
import secrets
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from zoneinfo import ZoneInfo

import aiosqlite

from smsgate import logs, phone, security, smpp, texts
from smsgate.config import Config
from store import accounts, codes, debts, messages, ratelimits, residents
from store.db import NotFound, Store, now

TIMEZONE = ZoneInfo("Asia/Barnaul")
HOUR = 3600.0
DAY = 86400.0
# Web guesses (passwords, receipt codes, reset codes) are counted over this window.
LOGIN_WINDOW = HOUR
RESET_PURPOSE = "reset"
# The one-time code of registration on the site: its hash is the password sent, its payload the account.
REGISTER_PURPOSE = "web-register"
PASSWORD_MIN_LENGTH = 8
PASSWORD_MAX_LENGTH = 128
# The passwords every guessing list starts with; length alone does not keep these out.
_COMMON_PASSWORDS = frozenset({
    "password", "password1", "qwerty123", "qwertyui", "qwerty12345", "iloveyou", "1q2w3e4r",
    "1qaz2wsx", "zaq12wsx", "asdfghjk", "йцукенгш", "пароль123", "abcd1234", "12345678",
    "123456789", "1234567890", "87654321", "11111111", "00000000", "12341234",
})
log = logs.get("services")


def local_today() -> dt.date:
    return dt.datetime.now(TIMEZONE).date()


@functools.lru_cache(maxsize=4)
def day_strings(day: dt.date) -> tuple[str, str, str]:
    """A day as the SMS texts and queries write it: (DD.MM.YYYY, YYYY-MM, YYYY-MM-DD).

    Kept, since every БАЛАНС needs them and strftime costs more than the rest of its formatting.
    """
    return f"{day:%d.%m.%Y}", f"{day:%Y-%m}", day.isoformat()


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
    NOT_MOBILE = "not_mobile"  # not a Russian mobile number: no SMS can go there
    WEAK = "weak"  # the new password breaks a rule (ChangeResult.weakness says which)
    UNAVAILABLE = "unavailable"  # no SMS can be sent now (daily cap, prefix limit)


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
class WebRegistration:
    """Step 2 of registration on the site: the phone proven by the secret from the SMS."""

    outcome: Outcome  # OK (linked), ALREADY (linked before), BAD (wrong, expired, used up) or LOCKED
    account: str = ""
    # Set when the password from the SMS became the resident's, so the page logs them in with it.
    resident: residents.Resident | None = None


@dataclass(frozen=True)
class _Attached:
    """What registration's shared second half did."""

    resident: residents.Resident
    created: bool
    linked: bool
    password_set: bool


@dataclass(frozen=True)
class AccountDebts:
    account: str
    address: str
    lines: tuple[debts.ProviderDebt, ...]

    @property
    def total(self) -> int:
        return sum(line.amount for line in self.lines)


@dataclass(frozen=True)
class LoginResult:
    outcome: Outcome  # OK, BAD (unknown login or wrong password: one answer) or LOCKED
    resident: residents.Resident | None = None


@dataclass(frozen=True)
class ChangeResult:
    outcome: Outcome  # OK, BAD (wrong current password or code), LOCKED or WEAK
    weakness: str = ""  # for WEAK: "short", "long", "login", "simple" or "same"
    resident: residents.Resident | None = None


@dataclass(frozen=True)
class AccountDetail:
    """One linked account as the web shows it: debts, last month's charges, recent payments."""

    balance: AccountDebts
    period: str  # YYYY-MM of `charges`; empty when nothing was charged lately
    charges: tuple[debts.ServiceCharge, ...]
    payments: tuple[debts.Payment, ...]


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

    async def new_password(self, who: str, channel: str = "sms") -> PasswordResult:
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
            await self.store.write(ratelimits.record_sync, refused_key, at)
            return PasswordResult(Outcome.LIMITED)
        password, password_hash = await security.issue_password()
        # In the gateway's group commit, not a transaction of its own: `tx()` holds the store's
        # lock across its trips to aiosqlite's thread and its own fsync, and every text arriving
        # meanwhile waited for it (at 5% ПАРОЛЬ and 500 texts/s the lock was held 15% of the time).
        await self.store.write(_issue_password, resident.id, password_hash, key, at)
        log.info("password_issued", extra={"msisdn": who, "channel": channel})
        return PasswordResult(Outcome.OK, password)

    # ---- registration --------------------------------------------------------------------------

    async def register(self, who: str, account_raw: str, receipt_code: str) -> RegisterResult:
        """РЕГ by SMS: link an account to the phone (the network proved it); creates the resident if new.

        A wrong account and a wrong code get the same answer, and wrong tries lock the phone out.
        Only SMS feeds this lock: the web counts its guesses apart (see `register_web`).
        """
        at = now()
        fail_key = f"register-failed:{who}"
        window = self.limits.register_lock_minutes * 60.0
        if not await self._within(fail_key, window, self.limits.register_failures, at):
            return RegisterResult(Outcome.LOCKED)
        number = normalise_account(account_raw)
        if not await self._receipt_matches(number, receipt_code):
            async with self.store.tx() as db:
                await ratelimits.record(db, fail_key, at)
            log.info("register_refused", extra={"msisdn": who, "reason": "bad_pair"})
            return RegisterResult(Outcome.BAD)
        password: str | None = None
        password_hash: str | None = None
        if await residents.by_phone(self.store.db, who) is None:
            password, password_hash = await security.issue_password()
        async with self.store.tx() as db:
            attached = await self._attach(db, who, number, password_hash)
            await ratelimits.clear(db, fail_key)
        issued = password if attached.password_set else None
        log.info("registered", extra={"msisdn": who, "new_resident": attached.created})
        outcome = Outcome.OK if attached.linked or issued else Outcome.ALREADY
        resident = attached.resident
        return RegisterResult(outcome, number, issued, resident.card_number, resident.id)

    async def _receipt_matches(self, number: str, receipt_code: str) -> bool:
        """Whether the code is the one on the account's receipt; an unknown account is just a no."""
        account = await accounts.get(self.store.db, number) if number.isdigit() else None
        # Compare against something even for unknown accounts, so timing does not tell them apart.
        expected = account.receipt_code if account else secrets.token_hex(4)
        matches = security.receipt_codes_equal(receipt_code, expected)
        return matches and account is not None

    async def _attach(
        self, db: aiosqlite.Connection, who: str, number: str, password_hash: str | None
    ) -> _Attached:
        """Registration's second half, once phone and receipt are proven; SMS and web both end here.

        Creates the resident if the phone is new and links the account. A password hash is set only
        on a resident without one, never over theirs, and must be changed: it travelled by SMS.
        Runs inside the caller's transaction.
        """
        resident = await residents.by_phone(db, who)
        created = resident is None
        if resident is None:
            resident = await residents.create(db, who, await self._free_card_number())
        password_set = password_hash is not None and resident.password_hash is None
        if password_hash is not None and password_set:
            await residents.set_password(db, resident.id, password_hash, must_change=True)
            resident = await residents.get(db, resident.id)
        linked = await residents.link_account(db, resident.id, number)
        return _Attached(resident, created, linked, password_set)

    async def _free_card_number(self) -> str:
        while True:
            card = security.new_card_number()
            if not await residents.card_taken(self.store.db, card):
                return card

    # ---- debts ------------------------------------------------------------------------------

    async def debts_of_phone(self, who: str) -> list[AccountDebts] | None:
        """Debts per provider for every account linked to the phone; None if not registered."""
        # One indexed query, without a trip to another thread.
        return await self.store.read(self.debts_of_phone_now, who)

    @staticmethod
    def debts_of_phone_now(db: sqlite3.Connection, who: str) -> list[AccountDebts] | None:
        """`debts_of_phone` through a connection at hand (a handler's `handle_now`)."""
        _label, period, today = day_strings(local_today())
        balances = debts.of_phone_sync(db, who, period, today)
        if balances is None:
            return None
        return [AccountDebts(item.account, item.address, item.lines) for item in balances]

    async def debts_of_resident(self, resident_id: int) -> list[AccountDebts]:
        today = local_today()
        # One query for every linked account: БАЛАНС is the text residents send most.
        balances = await debts.of_resident(
            self.store.db, resident_id, today.strftime("%Y-%m"), today.isoformat()
        )
        return [AccountDebts(item.account, item.address, item.lines) for item in balances]

    # ---- reminders --------------------------------------------------------------------------

    async def set_reminders(self, who: str, enabled: bool) -> bool:
        found = await self.store.write(residents.set_reminders_sync, who, enabled)  # СТОП, СТАРТ
        log.info("reminders_changed", extra={"msisdn": who, "enabled": enabled, "known": found})
        return found

    async def resident_by_phone(self, who: str) -> residents.Resident | None:
        """The resident a phone belongs to (USSD menus start here); None if not registered."""
        return await residents.by_phone(self.store.db, who)

    # ---- sending on behalf of the web or notifications ------------------------------------------

    async def queue_answer(self, to: str, text: str, kind: str, request_key: str) -> None:
        """Queue the SMS answer to a resident's own request that came over HTTP (USSD aggregators).

        As for SMS replies, and unlike `queue_sms`, no anti-pumping caps apply: the request's own
        limits bound it (`new_password`), and a password once changed must reach the phone.
        """
        async with self.store.tx() as db:
            await messages.enqueue(
                db, [messages.NewOutgoing(request_key, to, text, smpp.count_parts(text), kind)], now()
            )
        self._wake()

    async def queue_sms(self, to: str, text: str, kind: str, request_key: str | None = None) -> bool:
        """Queue an SMS that no inbound text asked for (web codes, notices); anti-pumping applies."""
        if not phone.is_russian_mobile(to):
            log.warning("sms_refused", extra={"msisdn": to, "reason": "not_ru_mobile", "kind": kind})
            return False
        at = now()
        parts = smpp.count_parts(text)
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

    # ---- the website (issue 3): logging in, passwords, reset codes, linking ---------------------

    async def resident(self, resident_id: int) -> residents.Resident | None:
        """The resident a web session belongs to; None once the row is gone."""
        try:
            return await residents.get(self.store.db, resident_id)
        except NotFound:
            return None

    async def login(self, login: str, password: str, ip: str) -> LoginResult:
        """Check a login (a phone written any common way, or a card number) and its password.

        Failures are counted per resident and per IP. An unknown login costs the same hash and gets
        the same answer as a wrong password, and locks the same way, so residents cannot be told apart.
        """
        at = now()
        resident = await self._resident_by_login(login)
        account_key = self._login_key(resident, login)
        ip_key = f"web-failed-ip:{ip}"
        if not (
            await self._within(account_key, LOGIN_WINDOW, self.limits.login_failures_per_account, at)
            and await self._within(ip_key, LOGIN_WINDOW, self.limits.login_failures_per_ip, at)
        ):
            log.info("login_failed", extra={"reason": "throttled"})
            return LoginResult(Outcome.LOCKED)
        if not await security.verify_password(password, resident.password_hash if resident else None):
            async with self.store.tx() as db:
                await ratelimits.record(db, account_key, at)
                await ratelimits.record(db, ip_key, at)
            log.info("login_failed", extra={"reason": "bad_pair"})
            return LoginResult(Outcome.BAD)
        assert resident is not None
        async with self.store.tx() as db:
            await ratelimits.clear(db, account_key)
        log.info("login_ok", extra={"msisdn": resident.phone, "channel": "web"})
        return LoginResult(Outcome.OK, resident)

    async def _resident_by_login(self, login: str) -> residents.Resident | None:
        text = login.strip()
        compact = re.sub(r"[\s\-]", "", text)
        # A ten-digit card number can also read as a phone without +7; the card wins when it exists.
        if security.is_card_number(compact):
            found = await residents.by_card(self.store.db, compact)
            if found is not None:
                return found
        try:
            who = phone.normalise(text)
        except phone.BadPhone:
            return None
        return await residents.by_phone(self.store.db, who)

    @staticmethod
    def _login_key(resident: residents.Resident | None, login: str) -> str:
        if resident is not None:
            return f"login-failed:{resident.id}"
        try:
            return f"login-failed:{phone.normalise(login)}"
        except phone.BadPhone:
            return f"login-failed:{login.strip().lower()[:64]}"

    @staticmethod
    def password_weakness(new_password: str, resident_phone: str, card_number: str = "") -> str:
        """Why a new password is refused ("" when it is fine): length, the login itself, a common one."""
        if len(new_password) < PASSWORD_MIN_LENGTH:
            return "short"
        if len(new_password) > PASSWORD_MAX_LENGTH:
            return "long"
        compact = re.sub(r"[\s\-+()]", "", new_password)
        national = resident_phone[2:]  # +79031234567 -> 9031234567
        if compact in {national, "7" + national, "8" + national, card_number}:
            return "login"
        if len(set(new_password)) < 4 or new_password.lower() in _COMMON_PASSWORDS:
            return "simple"
        return ""

    async def change_password(
        self, resident_id: int, current: str, new_password: str, ip: str
    ) -> ChangeResult:
        """Replace a password by the resident's own; wrong current passwords count as failed logins."""
        at = now()
        resident = await residents.get(self.store.db, resident_id)
        weakness = self.password_weakness(new_password, resident.phone, resident.card_number)
        if not weakness and new_password == current:
            weakness = "same"
        if weakness:
            return ChangeResult(Outcome.WEAK, weakness)
        account_key = self._login_key(resident, "")
        ip_key = f"web-failed-ip:{ip}"
        if not (
            await self._within(account_key, LOGIN_WINDOW, self.limits.login_failures_per_account, at)
            and await self._within(ip_key, LOGIN_WINDOW, self.limits.login_failures_per_ip, at)
        ):
            return ChangeResult(Outcome.LOCKED)
        if not await security.verify_password(current, resident.password_hash):
            async with self.store.tx() as db:
                await ratelimits.record(db, account_key, at)
                await ratelimits.record(db, ip_key, at)
            return ChangeResult(Outcome.BAD)
        password_hash = await security.hash_password(new_password)
        async with self.store.tx() as db:
            await residents.set_password(db, resident.id, password_hash, must_change=False)
            await ratelimits.clear(db, account_key)
        log.info("password_changed", extra={"msisdn": resident.phone, "channel": "web"})
        if not resident.must_change_password:
            # Replacing a password that came by SMS needs no notice: only the phone's owner had it.
            await self.queue_sms(resident.phone, texts.WEB_PASSWORD_CHANGED, "notice")
        return ChangeResult(Outcome.OK, resident=await residents.get(self.store.db, resident.id))

    async def _sms_room(self, to: str, text: str) -> bool:
        """Whether queue_sms would take this text now (the same checks; queue_sms records them)."""
        at = now()
        prefix_key = f"sms-prefix:{phone.prefix(to)}"
        if not await self._within(prefix_key, HOUR, self.limits.sms_per_prefix_per_hour, at):
            return False
        day_key = f"web-sms-parts:{local_today().isoformat()}"
        sent = await ratelimits.count(self.store.db, day_key, at - DAY)
        return sent + smpp.count_parts(text) <= self.config.web.daily_sms_cap

    async def request_reset(self, who: str, ip: str) -> Outcome:
        """Send a 6-digit code for a new password; OK whether or not the phone is registered.

        Limits count every request, registered or not, so they cannot tell residents apart either.
        """
        if not phone.is_russian_mobile(who):
            return Outcome.NOT_MOBILE
        at = now()
        key = f"reset:{who}"
        ip_key = f"sms-ip:{ip}"
        allowed = (
            await self._within(key, HOUR, self.limits.password_per_hour, at)
            and await self._within(key, DAY, self.limits.password_per_day, at)
            and await self._within(ip_key, HOUR, self.limits.sms_per_ip_per_hour, at)
        )
        if not allowed:
            log.info("reset_refused", extra={"msisdn": who, "reason": "limit"})
            return Outcome.LIMITED
        code = security.new_code()
        text = texts.WEB_RESET_CODE.format(code=code)
        if not await self._sms_room(who, text):
            return Outcome.UNAVAILABLE
        resident = await residents.by_phone(self.store.db, who)
        salt = secrets.token_hex(16)
        expires = at + self.limits.code_ttl_minutes * 60.0
        async with self.store.tx() as db:
            await ratelimits.record(db, key, at)
            await ratelimits.record(db, ip_key, at)
            if resident is not None:
                # A resend replaces the code: only the newest one works.
                await codes.put(db, who, RESET_PURPOSE, security.hash_code(code, salt), salt, expires, at)
        if resident is not None and not await self.queue_sms(who, text, "secret"):
            async with self.store.tx() as db:
                await codes.delete(db, who, RESET_PURPOSE)
        log.info("reset_requested", extra={"msisdn": who})
        return Outcome.OK

    async def confirm_reset(self, who: str, code: str, new_password: str, ip: str) -> ChangeResult:
        """Set a new password with the code sent by request_reset: single use, expiring, few tries."""
        at = now()
        ip_key = f"web-failed-ip:{ip}"
        if not await self._within(ip_key, LOGIN_WINDOW, self.limits.login_failures_per_ip, at):
            return ChangeResult(Outcome.LOCKED)
        # Checked before the code, so a weak password does not use up a try.
        weakness = self.password_weakness(new_password, who)
        if weakness:
            return ChangeResult(Outcome.WEAK, weakness)
        stored = await codes.get(self.store.db, who, RESET_PURPOSE)
        live = stored is not None and stored.expires_at > at and stored.attempts < self.limits.code_attempts
        if stored is None or not live or not security.codes_equal(code.strip(), stored.payload,
                                                                    stored.code_hash):
            async with self.store.tx() as db:
                await ratelimits.record(db, ip_key, at)
                if stored is not None:
                    if not live or stored.attempts + 1 >= self.limits.code_attempts:
                        await codes.delete(db, who, RESET_PURPOSE)
                    else:
                        await codes.add_attempt(db, who, RESET_PURPOSE)
            log.info("reset_refused", extra={"msisdn": who, "reason": "bad_code"})
            return ChangeResult(Outcome.BAD)
        password_hash = await security.hash_password(new_password)
        async with self.store.tx() as db:
            # Checked again inside the transaction: of two requests with one code, one wins.
            again = await codes.get(db, who, RESET_PURPOSE)
            resident = await residents.by_phone(db, who)
            if again is None or again.code_hash != stored.code_hash or resident is None:
                return ChangeResult(Outcome.BAD)
            await codes.delete(db, who, RESET_PURPOSE)
            await residents.set_password(db, resident.id, password_hash, must_change=False)
            await ratelimits.clear(db, self._login_key(resident, ""))
        log.info("password_changed", extra={"msisdn": who, "channel": "reset"})
        await self.queue_sms(who, texts.WEB_PASSWORD_CHANGED, "notice")
        return ChangeResult(Outcome.OK, resident=await residents.get(self.store.db, resident.id))

    # ---- registration on the website: two steps, nothing created until the phone is proven -----

    def _web_guess_keys(self, ip: str, number: str, who: str) -> list[tuple[str, float, int]]:
        """Receipt codes typed on the web count per IP, per account and per phone typed.

        The phone is not proven on the web, so its failures never reach the SMS lock
        (`register-failed:<phone>`): a stranger typing someone's number cannot lock them out of РЕГ.
        """
        window = self.limits.register_lock_minutes * 60.0
        return [
            (f"web-failed-ip:{ip}", LOGIN_WINDOW, self.limits.login_failures_per_ip),
            (f"register-failed-account:{number}", window, self.limits.register_failures),
            (f"web-register-failed:{who}", window, self.limits.register_failures),
        ]

    async def _guess_allowed(self, ip: str, number: str, who: str, at: float) -> bool:
        for key, window, limit in self._web_guess_keys(ip, number, who):
            if not await self._within(key, window, limit, at):
                return False
        return True

    async def _record_guess(self, ip: str, number: str, who: str, at: float) -> None:
        async with self.store.tx() as db:
            for key, _, _ in self._web_guess_keys(ip, number, who):
                await ratelimits.record(db, key, at)

    async def register_web(
        self, who: str, account_raw: str, receipt_code: str, ip: str
    ) -> RegisterResult:
        """Step 1 on the site: check the receipt as `register` does, then send a password by SMS.

        The phone is typed, not proven (it may be mistyped), so nothing about the resident is
        stored: the password is kept hashed as a one-time code (expiring, few tries, replaced on
        resend) that `confirm_register_web` turns into the registration. A phone that already has
        a password gets a code instead and keeps its password. The page says the same either way.
        """
        if not phone.is_russian_mobile(who):
            return RegisterResult(Outcome.NOT_MOBILE)
        at = now()
        number = normalise_account(account_raw)
        if not await self._guess_allowed(ip, number, who, at):
            return RegisterResult(Outcome.LOCKED)
        sms_key = f"web-register-sms:{who}"
        ip_key = f"sms-ip:{ip}"
        allowed = (
            await self._within(sms_key, HOUR, self.limits.password_per_hour, at)
            and await self._within(sms_key, DAY, self.limits.password_per_day, at)
            and await self._within(ip_key, HOUR, self.limits.sms_per_ip_per_hour, at)
        )
        if not allowed:
            log.info("register_refused", extra={"msisdn": who, "reason": "limit", "channel": "web"})
            return RegisterResult(Outcome.LIMITED)
        password = security.new_password()
        resident = await residents.by_phone(self.store.db, who)
        if resident is not None and resident.password_hash is not None:
            text = texts.WEB_REGISTER_CODE.format(code=password)
        else:
            text = texts.WEB_REGISTER_PASSWORD.format(password=password)
        if not await self._sms_room(who, text):
            return RegisterResult(Outcome.UNAVAILABLE)
        if not await self._receipt_matches(number, receipt_code):
            await self._record_guess(ip, number, who, at)
            log.info("register_refused", extra={"msisdn": who, "reason": "bad_pair", "channel": "web"})
            return RegisterResult(Outcome.BAD)
        # Hashed as a password: when the phone turns out new, this very hash becomes the resident's.
        password_hash = await security.hash_password(password)
        expires = at + self.limits.code_ttl_minutes * 60.0
        async with self.store.tx() as db:
            # A resend replaces the code: only the newest one works.
            await codes.put(db, who, REGISTER_PURPOSE, password_hash, number, expires, at)
            await ratelimits.record(db, sms_key, at)
            await ratelimits.record(db, ip_key, at)
            # Whoever typed this pair knows the code; guesses at it no longer need counting.
            await ratelimits.clear(db, f"register-failed-account:{number}")
            await ratelimits.clear(db, f"web-register-failed:{who}")
        if not await self.queue_sms(who, text, "secret"):
            async with self.store.tx() as db:
                await codes.delete(db, who, REGISTER_PURPOSE)
            return RegisterResult(Outcome.UNAVAILABLE)
        log.info("register_code_sent", extra={"msisdn": who, "channel": "web"})
        return RegisterResult(Outcome.OK, number)

    async def confirm_register_web(self, who: str, secret: str, ip: str) -> WebRegistration:
        """Step 2: the password (or code) from the SMS proves the phone; only now is anything stored.

        Then registration ends as by SMS (`_attach`): the resident is created if new, the account
        linked. The password from the SMS becomes the resident's only where they had none; a resident
        with a password of their own keeps it and logs in with it (docs/web.md says why).
        """
        at = now()
        ip_key = f"web-failed-ip:{ip}"
        if not await self._within(ip_key, LOGIN_WINDOW, self.limits.login_failures_per_ip, at):
            return WebRegistration(Outcome.LOCKED)
        stored = await codes.get(self.store.db, who, REGISTER_PURPOSE)
        live = stored is not None and stored.expires_at > at and stored.attempts < self.limits.code_attempts
        # An argon2 check even without a live code, so the time taken tells nothing either.
        matches = await security.verify_password(
            secret.strip(), stored.code_hash if stored is not None and live else None
        )
        if stored is None or not live or not matches:
            async with self.store.tx() as db:
                await ratelimits.record(db, ip_key, at)
                if stored is not None:
                    if not live or stored.attempts + 1 >= self.limits.code_attempts:
                        await codes.delete(db, who, REGISTER_PURPOSE)
                    else:
                        await codes.add_attempt(db, who, REGISTER_PURPOSE)
            log.info("register_refused", extra={"msisdn": who, "reason": "bad_code", "channel": "web"})
            return WebRegistration(Outcome.BAD)
        number = stored.payload
        async with self.store.tx() as db:
            # Checked again inside the transaction: of two requests with one code, one wins.
            again = await codes.get(db, who, REGISTER_PURPOSE)
            if again is None or again.code_hash != stored.code_hash:
                return WebRegistration(Outcome.BAD)
            await codes.delete(db, who, REGISTER_PURPOSE)
            if await accounts.get(db, number) is None:  # gone with an import since step 1
                return WebRegistration(Outcome.BAD)
            attached = await self._attach(db, who, number, stored.code_hash)
        log.info("registered", extra={"msisdn": who, "new_resident": attached.created, "channel": "web"})
        outcome = Outcome.OK if attached.linked else Outcome.ALREADY
        return WebRegistration(outcome, number, attached.resident if attached.password_set else None)

    async def link_account(
        self, resident_id: int, account_raw: str, receipt_code: str, ip: str
    ) -> RegisterResult:
        """Link another account to a logged-in resident: the receipt check, then `_attach`.

        Wrong codes count as web guesses (per IP, account and phone), not in the phone's SMS lock.
        """
        at = now()
        resident = await residents.get(self.store.db, resident_id)
        number = normalise_account(account_raw)
        if not await self._guess_allowed(ip, number, resident.phone, at):
            return RegisterResult(Outcome.LOCKED)
        if not await self._receipt_matches(number, receipt_code):
            await self._record_guess(ip, number, resident.phone, at)
            log.info("register_refused", extra={"msisdn": resident.phone, "reason": "bad_pair",
                                                "channel": "web"})
            return RegisterResult(Outcome.BAD)
        async with self.store.tx() as db:
            attached = await self._attach(db, resident.phone, number, None)
        log.info("account_linked", extra={"msisdn": resident.phone, "channel": "web"})
        outcome = Outcome.OK if attached.linked else Outcome.ALREADY
        return RegisterResult(outcome, number, None, attached.resident.card_number, attached.resident.id)

    async def account_details(self, resident_id: int) -> list[AccountDetail]:
        """Every linked account: debts per provider (as BALANCE computes them), charges, payments."""
        today = local_today()
        details: list[AccountDetail] = []
        for account_debts in await self.debts_of_resident(resident_id):
            period, charges = await self._last_charges(account_debts.account, today)
            payments = await debts.recent_payments(
                self.store.db, account_debts.account, today.isoformat(), limit=10
            )
            details.append(AccountDetail(account_debts, period, tuple(charges), tuple(payments)))
        return details

    async def _last_charges(self, number: str, today: dt.date) -> tuple[str, list[debts.ServiceCharge]]:
        """Charges per provider and service in the latest month billed (of the last three).

        The store sums charges up to a period; one month's charges are the difference of two sums.
        """
        month = today.replace(day=1)
        for _ in range(3):
            before = (month - dt.timedelta(days=1)).replace(day=1)
            upto = await debts.charges_by_service(self.store.db, number, month.strftime("%Y-%m"))
            earlier = {
                (line.provider, line.service): line.amount
                for line in await debts.charges_by_service(
                    self.store.db, number, before.strftime("%Y-%m")
                )
            }
            lines = [
                debts.ServiceCharge(line.provider, line.service,
                                    line.amount - earlier.get((line.provider, line.service), 0))
                for line in upto
                if line.amount != earlier.get((line.provider, line.service), 0)
            ]
            if lines:
                return month.strftime("%Y-%m"), lines
            month = before
        return "", []

    async def sms_history(self, resident_id: int, limit: int = 20) -> list[tuple[str, str, float, str]]:
        """The resident's own texts, newest first, with passwords and codes masked."""
        resident = await residents.get(self.store.db, resident_id)
        rows = await messages.history(self.store.db, resident.phone, limit)
        return [(direction, texts.mask_secrets(text), at, state) for direction, text, at, state in rows]


def _issue_password(db: sqlite3.Connection, resident_id: int, password_hash: str, key: str,
                    at: float) -> None:
    residents.set_password_sync(db, resident_id, password_hash, must_change=True)
    ratelimits.record_sync(db, key, at)
