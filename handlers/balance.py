"""БАЛАНС / ДОЛГ / BALANCE / DOLG: debt per provider for every linked account, and the total."""

from __future__ import annotations

import sqlite3
from typing import ClassVar

from handlers.base import Context, Handler, Reply
from smsgate import texts
from smsgate.services import AccountDebts, day_strings, local_today


def format_debts(items: list[AccountDebts]) -> str:
    lines = ["Долг на " + day_strings(local_today())[0]]
    grand_total = 0
    for item in items:
        lines.append(f"Счёт {item.account}:")
        if not item.lines:
            lines.append("начислений нет")
        for debt in item.lines:
            if debt.amount >= 0:
                lines.append(f"{debt.provider}: {texts.money(debt.amount)}")
            else:
                lines.append(f"{debt.provider}: аванс {texts.money(-debt.amount)}")
        grand_total += item.total
    if grand_total > 0:
        lines.append(f"Итого к оплате: {texts.money(grand_total)} руб.")
    elif grand_total < 0:
        lines.append(f"Итого: долга нет, аванс {texts.money(-grand_total)} руб.")
    else:
        lines.append("Итого: долга нет.")
    return "\n".join(lines)


class BalanceHandler(Handler):
    name = "balance"
    keywords: ClassVar[tuple[str, ...]] = (
        "баланс", "долг", "balance", "balans", "dolg", "debt", "задолженность", "zadolzhennost",
    )
    help = texts.HELP_BALANCE

    async def handle(self, ctx: Context) -> list[Reply]:
        return self.replies(await ctx.services.debts_of_phone(ctx.phone))

    def handle_now(self, ctx: Context, db: sqlite3.Connection) -> list[Reply]:
        return self.replies(ctx.services.debts_of_phone_now(db, ctx.phone))

    @staticmethod
    def replies(found: list[AccountDebts] | None) -> list[Reply]:
        if found is None:
            return [Reply(texts.NOT_REGISTERED)]
        if not found:
            return [Reply(texts.NO_ACCOUNTS)]
        return [Reply(format_debts(found))]
