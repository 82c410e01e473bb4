"""From a resident's text to a handler: keyword matching that forgives how phones type."""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass

from handlers import Context, Handler, Reply
from smsgate import logs, texts
from smsgate.services import Services

log = logs.get("router")

# Latin letters that look like Cyrillic ones, and the reverse: a phone may mix them in one word.
_LATIN_TO_CYRILLIC = str.maketrans("aAbBcCeEHkKmMoOpPTxXyY3", "аАвВсСеЕНкКмМоОрРТхХуУЗ")
_CYRILLIC_TO_LATIN = str.maketrans("аАВсСеЕНкКмМоОрРТхХуУ", "aABcCeEHkKmMoOpPTxXyY")
_CYRILLIC = re.compile(r"[а-яё]", re.IGNORECASE)
_LATIN = re.compile(r"[a-z]", re.IGNORECASE)
_EDGE_PUNCTUATION = re.compile(r"^[\W_]+|[\W_]+$")
MAX_TEXT = 1000  # characters looked at; longer texts are cut, never refused


def fold(word: str) -> set[str]:
    """The forms a typed word may be matched under: lower case, ё=е, look-alikes resolved."""
    stripped = _EDGE_PUNCTUATION.sub("", word) or word.strip()
    forms = {stripped.lower()}
    # Look-alikes are resolved before lower-casing: Н looks like H, but н does not look like h.
    if _CYRILLIC.search(stripped):
        forms.add(stripped.translate(_LATIN_TO_CYRILLIC).lower())
    if _LATIN.search(stripped):
        forms.add(stripped.translate(_CYRILLIC_TO_LATIN).lower())
    return {form.replace("ё", "е") for form in forms}


def split_words(text: str) -> list[str]:
    return text[:MAX_TEXT].replace("\x00", " ").split()


@dataclass(frozen=True)
class Routed:
    handler: str
    replies: list[Reply]
    ok: bool = True
    ms: float | None = None  # the handler's time, when a handler was asked (logged as sms_handled)


class Router:
    def __init__(self, handlers: Sequence[Handler], services: Services) -> None:
        self.services = services
        self._by_keyword: dict[str, Handler] = {}
        self._fallback: Handler | None = None
        for handler in handlers:
            for keyword in handler.keywords:
                key = keyword.lower().replace("ё", "е")
                if key in self._by_keyword:
                    other = self._by_keyword[key].name
                    raise ValueError(f"keyword {keyword!r} claimed by {other} and {handler.name}")
                self._by_keyword[key] = handler
            if handler.name == "help":
                self._fallback = handler
        if self._fallback is None:
            raise ValueError("a handler named 'help' is needed for unknown texts")

    def match(self, text: str) -> tuple[Handler, str, tuple[str, ...]]:
        words = split_words(text)
        if words:
            for form in fold(words[0]):
                handler = self._by_keyword.get(form)
                if handler is not None:
                    return handler, form, tuple(words[1:])
            # "Рег1234567890" or "?" glued to a word: try the keyword as a prefix of the first word.
            glued = re.match(r"^([^\W\d_]+)(\d[\d\-]*)$", words[0])
            if glued:
                for form in fold(glued.group(1)):
                    handler = self._by_keyword.get(form)
                    if handler is not None and handler.needs_args:
                        return handler, form, (glued.group(2), *words[1:])
        assert self._fallback is not None
        return self._fallback, "", tuple(words[1:])

    async def route(self, phone: str, text: str, channel: str = "sms", readable: bool = True) -> Routed:
        started = time.perf_counter()
        handler, ctx, early = self._prepare(phone, text, channel, readable)
        if early is not None:
            return early
        try:
            replies = await handler.handle(ctx)
        except Exception:
            # One resident's failure must not stop the gateway; they are told to try again.
            log.exception("handler_error", extra={"msisdn": phone, "handler": handler.name})
            return Routed(handler.name, [Reply(texts.TEMPORARY_ERROR)], ok=False)
        routed = self._handled(handler, replies, started)
        self.log_handled(phone, routed)
        return routed

    def route_now(
        self, phone: str, text: str, db: sqlite3.Connection, channel: str = "sms",
        readable: bool = True,
    ) -> Routed | None:
        """`route` without waiting, for texts whose handler answers at once (`handle_now`), reading
        through `db`; None for every other text, and when the quick answer fails (`route` then
        takes the text, and reports a failure of its own). Not logged here: the caller logs it
        with `log_handled` once the text is stored, so that its `sms_in` comes first."""
        started = time.perf_counter()
        handler, ctx, early = self._prepare(phone, text, channel, readable)
        if early is not None:
            return early
        try:
            replies = handler.handle_now(ctx, db)
        except Exception:
            log.exception("handler_error", extra={"msisdn": phone, "handler": handler.name})
            return None
        if replies is None:
            return None
        return self._handled(handler, replies, started)

    def _prepare(
        self, phone: str, text: str, channel: str, readable: bool
    ) -> tuple[Handler, Context, Routed | None]:
        """The handler and its context, and the answer when the handler need not be asked."""
        handler, keyword, args = self.match(text)
        ctx = Context(phone, text, keyword, args, self.services, channel)
        if not readable:
            log.info("sms_unreadable", extra={"msisdn": phone})
            return handler, ctx, Routed("unreadable", [Reply(texts.UNREADABLE)])
        if handler.needs_args and not args:
            return handler, ctx, Routed(handler.name, [Reply(handler.help)])
        return handler, ctx, None

    @staticmethod
    def _handled(handler: Handler, replies: list[Reply], started: float) -> Routed:
        return Routed(handler.name, replies, ms=round((time.perf_counter() - started) * 1000, 1))

    @staticmethod
    def log_handled(phone: str, routed: Routed) -> None:
        if routed.ms is not None:
            log.info("sms_handled", extra={"msisdn": phone, "handler": routed.handler,
                                           "replies": len(routed.replies), "ms": routed.ms})
