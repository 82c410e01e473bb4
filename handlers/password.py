"""ПАРОЛЬ / PASSWORD / PAROL: a new random password by SMS, to be changed at the next web login."""

from __future__ import annotations

from typing import ClassVar

from handlers.base import Context, Handler, Reply
from smsgate import texts
from smsgate.services import Outcome


class PasswordHandler(Handler):
    name = "password"
    keywords: ClassVar[tuple[str, ...]] = ("пароль", "password", "parol", "pass", "пасворд")
    help = texts.HELP_PASSWORD

    async def handle(self, ctx: Context) -> list[Reply]:
        result = await ctx.services.new_password(ctx.phone)
        if result.outcome is Outcome.OK and result.password:
            return [Reply(texts.PASSWORD_SENT.format(password=result.password), secret=True)]
        if result.outcome is Outcome.UNKNOWN:
            return [Reply(texts.NOT_REGISTERED)]
        if result.outcome is Outcome.LIMITED:
            return [Reply(texts.PASSWORD_LIMIT)]
        return []  # refused before: silence
