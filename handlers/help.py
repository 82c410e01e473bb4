"""ПОМОЩЬ / HELP / ?: the list of commands; also the answer to anything unknown."""

from __future__ import annotations

import sqlite3
from typing import ClassVar

from handlers.base import Context, Handler, Reply
from smsgate import texts


class HelpHandler(Handler):
    name = "help"
    keywords: ClassVar[tuple[str, ...]] = (
        "помощь", "help", "pomosh", "pomoshch", "?", "справка", "spravka", "info", "команды",
    )
    help = texts.HELP

    async def handle(self, ctx: Context) -> list[Reply]:
        return [Reply(texts.HELP)]

    def handle_now(self, ctx: Context, db: sqlite3.Connection) -> list[Reply]:
        return [Reply(texts.HELP)]
