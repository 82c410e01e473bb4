"""The USSD menu: its screens declared as data, over the same Services as the SMS commands.

A screen holds at most SCREEN_LIMIT characters: Cyrillic travels as UCS-2, and a USSD screen
holds 80 of those. Invalid input shows the same screen again with a hint, built to fit as well:
on a menu the hint takes the place of the title line; content longer than a screen is cut into
pages ("9 Далее", "0 Назад") and there the hint takes the place of those two lines, naming the
digits that work. A password never appears on a screen: it goes by SMS, as Screen.sms.

The menu knows nothing of the transport: smsgate/ussd.py drives it from SMPP and from HTTP.
"""

from __future__ import annotations

import re
import textwrap
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from handlers.balance import format_debts
from handlers.base import Reply
from smsgate import texts
from smsgate.services import Outcome, Services

SCREEN_LIMIT = 80  # UCS-2 characters of one USSD screen
HINT = "Неверный ввод"
ACCEPT_KEY = "1"
NEXT_KEY = "9"
BACK_KEY = "0"
NEXT = f"{NEXT_KEY} Далее"
BACK = f"{BACK_KEY} Назад"
PAGE_HINTS = {True: f"Введите {NEXT_KEY} или {BACK_KEY}", False: f"Введите {BACK_KEY}"}

MAIN_TITLE = "Расчётный центр"
PASSWORD_TITLE = "Новый пароль"
PASSWORD_QUESTION = "Придёт в SMS, старый перестанет действовать."
PASSWORD_ACCEPT = "Прислать"
PASSWORD_DONE = "Новый пароль отправлен в SMS. Смените его при входе на сайт."
REMINDERS_TITLE = "Напоминания о долге"
REMINDERS_ARE_ON = "Сейчас включены."
REMINDERS_ARE_OFF = "Сейчас отключены."
REMINDERS_DONE = {
    True: "Напоминания о долге включены. Отключить: пункт 3 меню или SMS СТОП.",
    False: "Напоминания о долге отключены. Включить: пункт 3 меню или SMS СТАРТ.",
}
HELP_LINES = (
    "1 Долг: по каждому поставщику.",
    "2 Пароль для сайта придёт в SMS.",
    "3 Напоминания о долге: вкл/выкл.",
    "Команды SMS на {number}: БАЛАНС, ПАРОЛЬ, РЕГ, СТОП, СТАРТ.",
)
NOT_REGISTERED = "Номер не зарегистрирован. SMS на {number}: РЕГ счёт код_с_квитанции"
EXPIRED = "Время сеанса истекло. Наберите код снова."

# A thousands space inside an amount ("1 571,40"): a line is never wrapped there.
_AMOUNT_SPACE = re.compile(r"(?<=\d) (?=\d{3}(?!\d))")
_NO_BREAK = "\u00a0"
# What a screen can do without in a provider's name: the legal form and the quotes.
_LEGAL_FORM = re.compile(r"(?<![\w-])(?:ООО|ОАО|ЗАО|ПАО|АО)\s+")
_QUOTES = re.compile(r"[\"«»]")


def screen_length(text: str) -> int:
    """Characters as a USSD screen counts them (UCS-2 code units)."""
    return len(text.encode("utf-16-be")) // 2


@dataclass(frozen=True)
class Screen:
    """What the resident sees after one input, and whether the session ends with it."""

    text: str
    end: bool = False
    # Sent as ordinary SMS through the outbox: a password never appears on a screen.
    sms: tuple[Reply, ...] = ()


@dataclass(frozen=True)
class MenuContext:
    phone: str  # E.164
    services: Services
    service_number: str  # where SMS commands go; the help and registration screens quote it


Action = Callable[[MenuContext], Awaitable[Screen]]


@dataclass(frozen=True)
class Prompt:
    """A question answered with "1" (do it) or "0" (back): its text, the label of "1", the deed."""

    question: str
    accept: str
    action: Action


@dataclass
class MenuState:
    """Where one session is: the nodes from the root to the one shown, and what that one holds."""

    path: list[Node] = field(default_factory=list)
    pages: tuple[str, ...] = ()
    page: int = 0
    prompt: Prompt | None = None

    @property
    def node(self) -> Node:
        return self.path[-1]

    def copy(self) -> MenuState:
        return MenuState(list(self.path), self.pages, self.page, self.prompt)


class _Up:
    """Go back to the node above (and show it afresh)."""


UP = _Up()


class Node(ABC):
    """One screen of the menu that waits for input."""

    async def enter(self, state: MenuState, ctx: MenuContext) -> Screen | None:
        """Prepare what the node shows in state; or a final screen to show instead of it."""
        return None

    @abstractmethod
    def screen(self, state: MenuState, hint: bool = False) -> Screen:
        """The node's screen; with hint, as shown again after an input it did not understand."""

    @abstractmethod
    async def choose(self, state: MenuState, choice: str, ctx: MenuContext) -> Step:
        """What an input leads to."""


def titled(title: str, body: str, hint: bool) -> Screen:
    """A screen under a title line, which the hint replaces."""
    return Screen(f"{HINT if hint else title}\n{body}")


# What an input on a node leads to: a screen to show (a page of this node, or a final one), a
# node to enter, UP, or None when the input means nothing here.
Step = Screen | Node | _Up | None


@dataclass(frozen=True)
class Option:
    key: str
    label: str
    target: Node


class Choice(Node):
    """A list of numbered options, each leading to a node."""

    def __init__(self, title: str, options: Sequence[Option], *, back: bool = True) -> None:
        self.title = title
        self.options = tuple(options)
        self.back = back
        self._targets = {option.key: option.target for option in self.options}
        if len(self._targets) != len(self.options) or (back and BACK_KEY in self._targets):
            raise ValueError(f"menu {title!r} has two options under one key")

    def screen(self, state: MenuState, hint: bool = False) -> Screen:
        lines = [f"{option.key} {option.label}" for option in self.options]
        return titled(self.title, "\n".join([*lines, BACK] if self.back else lines), hint)

    async def choose(self, state: MenuState, choice: str, ctx: MenuContext) -> Step:
        if self.back and choice == BACK_KEY:
            return UP
        return self._targets.get(choice)


class Pages(Node):
    """A text longer than a screen, shown a page at a time: "9 Далее", "0 Назад"."""

    def __init__(self, content: Callable[[MenuContext], Awaitable[list[str] | Screen]]) -> None:
        self.content = content

    async def enter(self, state: MenuState, ctx: MenuContext) -> Screen | None:
        content = await self.content(ctx)
        if isinstance(content, Screen):
            return content
        state.pages = paginate(content)
        return None

    def screen(self, state: MenuState, hint: bool = False) -> Screen:
        more = state.page + 1 < len(state.pages)
        footer = PAGE_HINTS[more] if hint else (f"{NEXT}\n{BACK}" if more else BACK)
        return Screen("\n".join(line for line in (state.pages[state.page], footer) if line))

    async def choose(self, state: MenuState, choice: str, ctx: MenuContext) -> Step:
        if choice == NEXT_KEY and state.page + 1 < len(state.pages):
            state.page += 1
            return self.screen(state)
        if choice == BACK_KEY:
            if state.page == 0:
                return UP
            state.page -= 1
            return self.screen(state)
        return None


class Confirm(Node):
    """A question: "1" does what it asks, "0" goes back."""

    def __init__(self, title: str, prompt: Callable[[MenuContext], Awaitable[Prompt | Screen]]) -> None:
        self.title = title
        self.prompt = prompt

    async def enter(self, state: MenuState, ctx: MenuContext) -> Screen | None:
        prompt = await self.prompt(ctx)
        if isinstance(prompt, Screen):
            return prompt
        state.prompt = prompt
        return None

    def screen(self, state: MenuState, hint: bool = False) -> Screen:
        assert state.prompt is not None
        prompt = state.prompt
        return titled(self.title, f"{prompt.question}\n{ACCEPT_KEY} {prompt.accept}\n{BACK}", hint)

    async def choose(self, state: MenuState, choice: str, ctx: MenuContext) -> Step:
        assert state.prompt is not None
        if choice == ACCEPT_KEY:
            return await state.prompt.action(ctx)
        return UP if choice == BACK_KEY else None


def paginate(lines: Sequence[str]) -> tuple[str, ...]:
    """Lines cut into pages that fit one screen with the longest footer (or hint) under them."""
    footer = max(len(f"{NEXT}\n{BACK}"), *(len(hint) for hint in PAGE_HINTS.values()))
    width = SCREEN_LIMIT - len("\n") - footer
    pages: list[str] = []
    current: list[str] = []
    for piece in (piece for line in lines for piece in _wrap(line, width)):
        if current and len("\n".join([*current, piece])) > width:
            pages.append("\n".join(current))
            current = []
        current.append(piece)
    pages.append("\n".join(current))
    return tuple(pages)


def _wrap(line: str, width: int) -> list[str]:
    if len(line) <= width:
        return [line]
    kept = _AMOUNT_SPACE.sub(_NO_BREAK, line)
    return [piece.replace(_NO_BREAK, " ") for piece in textwrap.wrap(kept, width)]


# ---- What the options do ------------------------------------------------------------------------


def not_registered(ctx: MenuContext) -> Screen:
    return Screen(NOT_REGISTERED.format(number=ctx.service_number), end=True)


async def debt_lines(ctx: MenuContext) -> list[str] | Screen:
    """The report of the SMS command БАЛАНС, a line at a time, with providers' names shortened."""
    found = await ctx.services.debts_of_phone(ctx.phone)
    if found is None:
        return not_registered(ctx)
    if not found:
        return Screen(texts.NO_ACCOUNTS, end=True)
    return [_QUOTES.sub("", _LEGAL_FORM.sub("", line)) for line in format_debts(found).split("\n")]


async def help_lines(ctx: MenuContext) -> list[str]:
    return [line.format(number=ctx.service_number) for line in HELP_LINES]


async def password_prompt(ctx: MenuContext) -> Prompt:
    return Prompt(PASSWORD_QUESTION, PASSWORD_ACCEPT, issue_password)


async def issue_password(ctx: MenuContext) -> Screen:
    """ПАРОЛЬ, with its limits; the password itself goes by SMS."""
    result = await ctx.services.new_password(ctx.phone, channel="ussd")
    if result.outcome is Outcome.OK and result.password:
        sms = Reply(texts.PASSWORD_SENT.format(password=result.password), secret=True)
        return Screen(PASSWORD_DONE, end=True, sms=(sms,))
    if result.outcome is Outcome.UNKNOWN:
        return not_registered(ctx)
    # Limited (SMS answers once, then stays silent): a USSD session must end with some text.
    return Screen(texts.PASSWORD_LIMIT, end=True)


async def reminders_prompt(ctx: MenuContext) -> Prompt | Screen:
    resident = await ctx.services.resident_by_phone(ctx.phone)
    if resident is None:
        return not_registered(ctx)
    if resident.reminders:
        return Prompt(REMINDERS_ARE_ON, "Отключить", _set_reminders(False))
    return Prompt(REMINDERS_ARE_OFF, "Включить", _set_reminders(True))


def _set_reminders(enabled: bool) -> Action:
    async def action(ctx: MenuContext) -> Screen:
        if not await ctx.services.set_reminders(ctx.phone, enabled):
            return not_registered(ctx)
        return Screen(REMINDERS_DONE[enabled], end=True)

    return action


MAIN = Choice(MAIN_TITLE, back=False, options=(
    Option("1", "Долг", Pages(debt_lines)),
    Option("2", "Новый пароль", Confirm(PASSWORD_TITLE, password_prompt)),
    Option("3", "Напоминания вкл/выкл", Confirm(REMINDERS_TITLE, reminders_prompt)),
    Option("4", "Помощь", Pages(help_lines)),
))


class Menu:
    """Drives one session through the nodes: start, then one input at a time."""

    def __init__(self, root: Node = MAIN) -> None:
        self.root = root

    async def start(self, state: MenuState, ctx: MenuContext) -> Screen:
        """The first screen: the root for a registered phone, how to register for any other."""
        if await ctx.services.resident_by_phone(ctx.phone) is None:
            return not_registered(ctx)
        return await self._enter(state, self.root, ctx)

    async def answer(self, state: MenuState, text: str, ctx: MenuContext) -> Screen:
        """The screen an input leads to; state moves along with it."""
        node = state.node
        step = await node.choose(state, text.strip(), ctx)
        if isinstance(step, Screen):
            return step
        if isinstance(step, Node):
            return await self._enter(state, step, ctx)
        if isinstance(step, _Up) and len(state.path) > 1:
            state.path.pop()
            return await self._enter(state, state.path.pop(), ctx)
        return node.screen(state, hint=True)

    @staticmethod
    async def _enter(state: MenuState, node: Node, ctx: MenuContext) -> Screen:
        state.path.append(node)
        state.pages, state.page, state.prompt = (), 0, None
        instead = await node.enter(state, ctx)
        if instead is not None:
            state.path.pop()
            return instead
        return node.screen(state)
