"""Registration and account linking: РЕГ by SMS, the site's two steps, another account once in."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import aiosqlite

from smsgate import logs, phone, security, texts
from smsgate.services.base import LOGIN_WINDOW, normalise_account
from smsgate.services.results import Outcome, RegisterResult, WebRegistration
from smsgate.services.sending import Sending
from store import accounts, codes, ratelimits, residents
from store.db import now

# The one-time code of registration on the site: its hash is the password sent, its payload the account.
REGISTER_PURPOSE = "web-register"
log = logs.get("services")


@dataclass(frozen=True)
class _Attached:
    """What registration's shared second half did."""

    resident: residents.Resident
    created: bool
    linked: bool
    password_set: bool



class Registration(Sending):
    """Linking accounts to phones: РЕГ by SMS, the site's two steps, more accounts once logged in."""

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
        if not await self._secret_sms_allowed(sms_key, ip_key, at):
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
        live = self._code_live(stored, at)
        # An argon2 check even without a live code, so the time taken tells nothing either.
        matches = await security.verify_password(
            secret.strip(), stored.code_hash if stored is not None and live else None
        )
        if stored is None or not live or not matches:
            await self._count_wrong_code(who, REGISTER_PURPOSE, stored, ip_key, at)
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

