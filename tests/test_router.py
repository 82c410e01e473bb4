"""Keyword matching: case, ё, punctuation, look-alike Latin letters, transliteration."""

from __future__ import annotations

import pytest

from handlers import HANDLERS, Context, Handler, Reply
from smsgate.router import Router, fold


class _NoServices:
    """Router.match never touches services."""


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
    class Twin(Handler):
        name = "twin"
        keywords = ("баланс",)
        help = "-"

        async def handle(self, ctx: Context) -> list[Reply]:
            return []

    with pytest.raises(ValueError, match="баланс"):
        Router([*HANDLERS, Twin()], _NoServices())  # type: ignore[arg-type]


def test_every_help_fits_one_sms() -> None:
    from smsgate import pdu

    for handler in HANDLERS:
        assert pdu.count_parts(handler.help) == 1, handler.name


def test_every_fixed_text_fits_one_sms() -> None:
    """Replies cost money per part: each fixed text, filled with realistic values, is one SMS."""
    from smsgate import pdu, texts

    values = {"password": "AbCdEfGh34", "account": "1234567890", "card": "1234567890", "code": "123456"}
    for name in dir(texts):
        value = getattr(texts, name)
        if name.isupper() and isinstance(value, str):
            assert pdu.count_parts(value.format(**values)) == 1, name
