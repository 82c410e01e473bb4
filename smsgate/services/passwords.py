"""Passwords: a new one by SMS, logging in on the site, changing one, resetting one by a code."""

from __future__ import annotations

import re
import secrets
import sqlite3

from smsgate import logs, phone, security, texts
from smsgate.services.base import DAY, HOUR, LOGIN_WINDOW
from smsgate.services.results import ChangeResult, LoginResult, Outcome, PasswordResult
from smsgate.services.sending import Sending
from store import codes, ratelimits, residents
from store.db import now

RESET_PURPOSE = "reset"
PASSWORD_MIN_LENGTH = 8
PASSWORD_MAX_LENGTH = 128
# The passwords every guessing list starts with; length alone does not keep these out.
_COMMON_PASSWORDS = frozenset({
    "password", "password1", "qwerty123", "qwertyui", "qwerty12345", "iloveyou", "1q2w3e4r",
    "1qaz2wsx", "zaq12wsx", "asdfghjk", "йцукенгш", "пароль123", "abcd1234", "12345678",
    "123456789", "1234567890", "87654321", "11111111", "00000000", "12341234",
})
log = logs.get("services")


class Passwords(Sending):
    """A new password by SMS, logging in, changing a password, resetting it by a code."""

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
        # meanwhile would wait for it (at 5% ПАРОЛЬ and 500 texts/s, 15% of the time).
        await self.store.write(_issue_password, resident.id, password_hash, key, at)
        log.info("password_issued", extra={"msisdn": who, "channel": channel})
        return PasswordResult(Outcome.OK, password)


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


    async def request_reset(self, who: str, ip: str) -> Outcome:
        """Send a 6-digit code for a new password; OK whether or not the phone is registered.

        Limits count every request, registered or not, so they cannot tell residents apart either.
        """
        if not phone.is_russian_mobile(who):
            return Outcome.NOT_MOBILE
        at = now()
        key = f"reset:{who}"
        ip_key = f"sms-ip:{ip}"
        if not await self._secret_sms_allowed(key, ip_key, at):
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
        if stored is None or not self._code_live(stored, at) or not security.codes_equal(
            code.strip(), stored.payload, stored.code_hash
        ):
            await self._count_wrong_code(who, RESET_PURPOSE, stored, ip_key, at)
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



def _issue_password(db: sqlite3.Connection, resident_id: int, password_hash: str, key: str,
                    at: float) -> None:
    residents.set_password_sync(db, resident_id, password_hash, must_change=True)
    ratelimits.record_sync(db, key, at)

