"""Every text a resident reads by SMS, in one place (Russian; one SMS where it can be)."""

from __future__ import annotations

import re
import string

SERVICE = "Расчётный центр"

HELP = "БАЛАНС-долг; ПАРОЛЬ-новый пароль; РЕГ счёт код; СТОП/СТАРТ-напоминания"
HELP_BALANCE = "БАЛАНС (или ДОЛГ) - долг по каждому поставщику и итог по вашим счетам"
HELP_PASSWORD = "ПАРОЛЬ - новый пароль для входа на сайт придёт в ответном SMS"
HELP_REGISTER = "Регистрация: РЕГ счёт код_с_квитанции, напр. РЕГ 1234567890 123456"
HELP_STOP = "СТОП - не присылать напоминания о долге; СТАРТ - присылать снова"

NOT_REGISTERED = (
    "Номер не зарегистрирован. Отправьте: РЕГ номер_счёта код_с_квитанции"
)
PASSWORD_SENT = "Ваш новый пароль: {password}. Смените его при входе на сайт."
PASSWORD_LIMIT = "Лимит новых паролей исчерпан. Попробуйте позже."
REGISTER_OK = "Счёт {account} подключён. Пароль: {password}, карта жителя {card}"
REGISTER_LINKED = "Счёт {account} подключён к вашему номеру. Долг: БАЛАНС"
REGISTER_ALREADY = "Счёт {account} уже подключён к вашему номеру."
REGISTER_BAD = "Номер счёта или код с квитанции не подходят. Проверьте: РЕГ счёт код"
REGISTER_LOCKED = "Слишком много неверных попыток. Попробуйте через час."
REGISTER_USAGE = HELP_REGISTER
NO_ACCOUNTS = "К номеру не подключено ни одного счёта. Отправьте: РЕГ счёт код"
STOPPED = "Напоминания отключены. Чтобы включить: СТАРТ"
STARTED = "Напоминания включены. Чтобы отключить: СТОП"
UNREADABLE = "Не удалось прочитать сообщение. Команды: БАЛАНС, ПАРОЛЬ, РЕГ, ПОМОЩЬ"
TEMPORARY_ERROR = "Сервис временно недоступен, повторите запрос позже."

# Web-originated texts.
WEB_RESET_CODE = "Код для смены пароля: {code}. Никому его не сообщайте."
WEB_PASSWORD_CHANGED = "Пароль кабинета изменён. Если это не вы, отправьте ПАРОЛЬ."
# Registration on the site, step 1: the secret proves the phone; the account is not named, in case
# the number was mistyped. A phone already registered keeps its password: it gets a code instead.
WEB_REGISTER_PASSWORD = "Пароль для сайта: {password}. Введите его на странице регистрации."
WEB_REGISTER_CODE = "Код подключения счёта на сайте: {code}. Никому его не сообщайте."


def money(kopecks: int) -> str:
    """1234567 -> '12 345,67'."""
    sign = "-" if kopecks < 0 else ""
    roubles, kop = divmod(abs(kopecks), 100)
    grouped = f"{roubles:,}".replace(",", " ")
    return f"{sign}{grouped},{kop:02d}"


def _secret_pattern(template: str) -> re.Pattern[str]:
    """A template as a regex whose {password} and {code} are groups named `secret`."""
    pattern = ""
    for literal, field_name, _, _ in string.Formatter().parse(template):
        pattern += re.escape(literal)
        if field_name in ("password", "code"):
            pattern += r"(?P<secret>\S+?)"
        elif field_name is not None:
            pattern += ".*?"
    return re.compile(pattern, re.DOTALL)


# Texts that carry a password or a code; the web history shows them masked.
_SECRET_TEXTS = tuple(_secret_pattern(t) for t in (
    PASSWORD_SENT, REGISTER_OK, WEB_RESET_CODE, WEB_REGISTER_PASSWORD, WEB_REGISTER_CODE,
))


def _secret_span(text: str) -> tuple[int, int] | None:
    for pattern in _SECRET_TEXTS:
        found = pattern.fullmatch(text)
        if found:
            return found.span("secret")
    return None


def find_secret(text: str) -> str | None:
    """The password or code in a text sent with one of the templates above, if it is one."""
    span = _secret_span(text)
    return text[span[0]:span[1]] if span else None


def mask_secrets(text: str) -> str:
    """A sent text as the resident's history shows it: a password or code replaced by dots."""
    span = _secret_span(text)
    return text[:span[0]] + "•" * 6 + text[span[1]:] if span else text
