"""Keyword matching: case, ё, punctuation, look-alike Latin letters, transliteration."""

from __future__ import annotations

import sqlite3

import pytest

from handlers import HANDLERS, Context, Handler, Reply
from smsgate import texts
from smsgate.router import Router, fold


class _NoServices:
    """Router.match never touches services."""


class _Fake(Handler):
    """A handler for the tests below: each sets its own name and keywords."""

    name = "fake"
    keywords: tuple[str, ...] = ()
    help = "-"

    async def handle(self, ctx: Context) -> list[Reply]:
        return []


def router() -> Router:
    return Router(HANDLERS, _NoServices())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "handler"),
    [
        ("Пароль", "password"), ("ПАРОЛЬ", "password"), ("пaроль", "password"),  # Latin "a"
        ("  Пароль!!! ", "password"), ("password", "password"), ("PAROL", "password"),
        ("Баланс", "balance"), ("долг", "balance"), ("BALANCE", "balance"), ("dolg", "balance"),
        ("Бaлaнс?", "balance"), ("РЕГ 123 456", "register"), ("reg 1 2", "register"),
        ("Рег1234567890 123456", "register"), ("Помощь", "help"), ("HELP", "help"), ("?", "help"),
        ("Стоп", "stop"), ("STOP", "stop"), ("Старт", "start"), ("start", "start"),
        ("ёлки-палки", "help"), ("", "help"), ("🙂🙂", "help"), ("x" * 5000, "help"),
    ],
)
def test_keywords(text: str, handler: str) -> None:
    assert router().match(text)[0].name == handler


def test_arguments_are_kept_as_typed() -> None:
    _handler, _keyword, args = router().match("рег № 12-34 56 654321")
    assert args == ("№", "12-34", "56", "654321")


def test_fold_handles_mixed_scripts() -> None:
    assert "пароль" in fold("ПaРOЛЬ")
    assert "help" in fold("НЕLР")  # Cyrillic look-alikes in a Latin word


def test_duplicate_keywords_are_refused() -> None:
    class Twin(_Fake):
        name = "twin"
        keywords = ("баланс",)

    with pytest.raises(ValueError, match="баланс"):
        Router([*HANDLERS, Twin()], _NoServices())  # type: ignore[arg-type]


def test_every_help_fits_one_sms() -> None:
    from smsgate import smpp

    for handler in HANDLERS:
        assert smpp.count_parts(handler.help) == 1, handler.name


def test_every_fixed_text_fits_one_sms() -> None:
    """Replies cost money per part: each fixed text, filled with realistic values, is one SMS."""
    from smsgate import smpp, texts

    values = {"password": "AbCdEfGh34", "account": "1234567890", "card": "1234567890", "code": "123456"}
    for name in dir(texts):
        value = getattr(texts, name)
        if name.isupper() and isinstance(value, str):
            assert smpp.count_parts(value.format(**values)) == 1, name


def test_only_commands_that_answer_at_once_are_routed_now() -> None:
    db = sqlite3.connect(":memory:")
    now = router().route_now
    for text in ("Пароль", "РЕГ 123 456", "Стоп", "Старт"):
        assert now("+79031234567", text, db) is None, text  # these wait, write or send
    helped = now("+79031234567", "что-то", db)
    assert helped is not None and (helped.handler, helped.replies) == ("help", [Reply(texts.HELP)])
    bare = now("+79031234567", "РЕГ", db)  # a bare keyword needing arguments gets its help
    assert bare is not None and bare.replies[0].text == texts.HELP_REGISTER
    unreadable = now("+79031234567", "\x00", db, readable=False)
    assert unreadable is not None and unreadable.replies == [Reply(texts.UNREADABLE)]


def test_a_failing_quick_answer_is_left_to_route() -> None:
    class Broken(_Fake):
        name = "help"
        keywords = ("сломано",)

        def handle_now(self, ctx: Context, db: sqlite3.Connection) -> list[Reply] | None:
            raise RuntimeError("no quick answer today")

    assert Router([Broken()], _NoServices()).route_now(  # type: ignore[arg-type]
        "+79031234567", "сломано", sqlite3.connect(":memory:")
    ) is None
