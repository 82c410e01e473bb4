"""What every handler sees and returns; handlers never see a PDU or build SQL."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    import sqlite3

    from smsgate.services import Services


@dataclass(frozen=True)
class Reply:
    """A text to send back to the resident who wrote."""

    text: str
    # Replies carrying a password or code are marked so nothing ever logs their bodies.
    secret: bool = False


@dataclass(frozen=True)
class Context:
    phone: str  # E.164
    text: str  # the whole text as received
    keyword: str  # the keyword as matched (normalised)
    args: tuple[str, ...]  # the words after the keyword, as typed
    services: Services
    channel: str = "sms"
    extra: dict[str, str] = field(default_factory=dict)


class Handler(ABC):
    """One command: its keywords (Russian, English, transliteration), its help, its handle()."""

    name: ClassVar[str]
    keywords: ClassVar[tuple[str, ...]]
    help: ClassVar[str]
    # A bare keyword of a command that needs arguments answers with its help.
    needs_args: ClassVar[bool] = False

    @abstractmethod
    async def handle(self, ctx: Context) -> list[Reply]:
        """The replies to one text; an empty list means no answer at all."""

    def handle_now(self, ctx: Context, db: sqlite3.Connection) -> list[Reply] | None:
        """The same replies, right away, or None (the default): this text needs `handle`.

        For commands that only read committed data (БАЛАНС) or nothing (ПОМОЩЬ): the gateway
        answers those inside the transaction that stores the text, reading through `db`, so the
        text and its reply cost one commit instead of two. Nothing here may wait, write, send or
        take long: it runs on the event loop with the store's write lock held.
        """
        return None
