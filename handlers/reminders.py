"""СТОП / STOP and СТАРТ / START: reminders off and on (answers to questions never stop)."""

from __future__ import annotations

from typing import ClassVar

from handlers.base import Context, Handler, Reply
from smsgate import texts


class StopHandler(Handler):
    name = "stop"
    keywords: ClassVar[tuple[str, ...]] = ("стоп", "stop", "otpiska", "отписка", "unsubscribe")
    help = texts.HELP_STOP

    async def handle(self, ctx: Context) -> list[Reply]:
        if not await ctx.services.set_reminders(ctx.phone, False):
            return [Reply(texts.NOT_REGISTERED)]
        return [Reply(texts.STOPPED)]


class StartHandler(Handler):
    name = "start"
    keywords: ClassVar[tuple[str, ...]] = ("старт", "start", "подписка", "podpiska", "subscribe")
    help = texts.HELP_STOP

    async def handle(self, ctx: Context) -> list[Reply]:
        if not await ctx.services.set_reminders(ctx.phone, True):
            return [Reply(texts.NOT_REGISTERED)]
        return [Reply(texts.STARTED)]
