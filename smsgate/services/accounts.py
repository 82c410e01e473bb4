"""What a resident's accounts show: debts (БАЛАНС and the site), charges, payments, texts, reminders."""

from __future__ import annotations

import datetime as dt
import sqlite3

from smsgate import logs, texts
from smsgate.services.base import Part, day_strings, local_today
from smsgate.services.results import AccountDebts, AccountDetail
from store import debts, inbox, residents
from store.db import NotFound

log = logs.get("services")


class Accounts(Part):
    """Reading what a resident has: debts, charges, payments, their texts; the reminder flag."""

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

    async def set_reminders(self, who: str, enabled: bool) -> bool:
        found = await self.store.write(residents.set_reminders_sync, who, enabled)  # СТОП, СТАРТ
        log.info("reminders_changed", extra={"msisdn": who, "enabled": enabled, "known": found})
        return found

    async def resident_by_phone(self, who: str) -> residents.Resident | None:
        """The resident a phone belongs to (USSD menus start here); None if not registered."""
        return await residents.by_phone(self.store.db, who)


    async def resident(self, resident_id: int) -> residents.Resident | None:
        """The resident a web session belongs to; None once the row is gone."""
        try:
            return await residents.get(self.store.db, resident_id)
        except NotFound:
            return None


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
        rows = await inbox.history(self.store.db, resident.phone, limit)
        return [(direction, texts.mask_secrets(text), at, state) for direction, text, at, state in rows]


