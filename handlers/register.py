"""РЕГ <account> <receipt code> / REG: link an account to the phone, creating the resident if new."""

from __future__ import annotations

from typing import ClassVar

from handlers.base import Context, Handler, Reply
from smsgate import texts
from smsgate.services import Outcome


class RegisterHandler(Handler):
    name = "register"
    keywords: ClassVar[tuple[str, ...]] = (
        "рег", "регистрация", "reg", "register", "registration", "registraciya",
    )
    help = texts.HELP_REGISTER
    needs_args = True

    async def handle(self, ctx: Context) -> list[Reply]:
        if len(ctx.args) < 2:
            return [Reply(texts.REGISTER_USAGE)]
        # The code is the last word; the account may have been typed with spaces in it.
        account, code = " ".join(ctx.args[:-1]), ctx.args[-1]
        result = await ctx.services.register(ctx.phone, account, code)
        if result.outcome is Outcome.LOCKED:
            return [Reply(texts.REGISTER_LOCKED)]
        if result.outcome is Outcome.BAD:
            return [Reply(texts.REGISTER_BAD)]
        if result.outcome is Outcome.ALREADY:
            return [Reply(texts.REGISTER_ALREADY.format(account=result.account))]
        if result.password:
            text = texts.REGISTER_OK.format(
                account=result.account, password=result.password, card=result.card_number
            )
            return [Reply(text, secret=True)]
        return [Reply(texts.REGISTER_LINKED.format(account=result.account))]
