"""The USSD menu driven directly, and every screen it can show measured against the limit.

`test_every_screen_fits` walks the menu as a resident would, pressing every key on every screen,
for residents with realistic data (each demo account, and one resident with the longest reports
linked together), then adds the screens no walk reaches (expiry, failures, the HTTP refusals).
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable

import pytest

from handlers import ussd_menu
from handlers.ussd_menu import (
    HINT,
    MAIN,
    SCREEN_LIMIT,
    Menu,
    MenuContext,
    MenuState,
    Pages,
    Screen,
    paginate,
    screen_length,
)
from smsgate import security, texts
from smsgate.config import Config
from smsgate.services import Services
from smsgate.tools.demo import DemoAccount
from smsgate.web import ussd as web_ussd
from store import residents
from store.db import Store

PHONE = "+79031234567"
STRANGER = "+79160000000"
# Every key a resident might press, and things that are not keys at all.
KEYS = ("1", "2", "3", "4", "9", "0", "5", "", " 1 ", "*", "11", "Долг")
MAIN_SCREEN = "Расчётный центр\n1 Долг\n2 Новый пароль\n3 Напоминания вкл/выкл\n4 Помощь"


@pytest.fixture
def services(config: Config, store: Store) -> Services:
    return Services(store, config)


async def add_resident(store: Store, phone: str, accounts: Iterable[str]) -> None:
    async with store.tx() as db:
        resident = await residents.create(db, phone, security.new_card_number())
        for number in accounts:
            await residents.link_account(db, resident.id, number)


def context(services: Services, phone: str = PHONE) -> MenuContext:
    return MenuContext(phone, services, services.config.smsc.source_addr)


async def script(menu: Menu, ctx: MenuContext, *inputs: str) -> list[Screen]:
    state = MenuState()
    screens = [await menu.start(state, ctx)]
    for value in inputs:
        screens.append(await menu.answer(state, value, ctx))
    return screens


async def walk(menu: Menu, ctx: MenuContext) -> list[Screen]:
    """Every screen reachable from the first by any sequence of KEYS (each state expanded once)."""
    state = MenuState()
    first = await menu.start(state, ctx)
    shown = [first]
    queue = deque([state] if not first.end else [])
    expanded: set[tuple[object, ...]] = set()
    while queue:
        current = queue.popleft()
        prompt = current.prompt.question if current.prompt else None
        key = (tuple(map(id, current.path)), current.pages, current.page, prompt)
        if key in expanded:
            continue
        expanded.add(key)
        for value in KEYS:
            following = current.copy()
            screen = await menu.answer(following, value, ctx)
            shown.append(screen)
            if not screen.end:
                queue.append(following)
    return shown


async def all_debt_pages(menu: Menu, ctx: MenuContext) -> list[Screen]:
    """Option 1, then "9" to the last page, with the hinted version of every page."""
    state = MenuState()
    await menu.start(state, ctx)
    screens = [await menu.answer(state, "1", ctx)]
    while not screens[-1].end:
        screens.append(await menu.answer(state.copy(), "5", ctx))
        if "\n9 Далее" not in screens[-2].text:
            break
        screens.append(await menu.answer(state, "9", ctx))
    return screens


async def test_every_screen_fits(
    services: Services, store: Store, demo: list[DemoAccount]
) -> None:
    menu = Menu()
    shown: list[Screen] = []
    sms: list[str] = []
    # Realistic data: every account of the demo center, each with a resident of its own.
    async with store.db.execute("SELECT number FROM accounts ORDER BY number") as cursor:
        numbers = [str(row[0]) for row in await cursor.fetchall()]
    assert len(numbers) >= 300
    lengths: dict[str, int] = {}
    for index, number in enumerate(numbers):
        phone = f"+7950{index:07d}"
        await add_resident(store, phone, [number])
        pages = await all_debt_pages(menu, context(services, phone))
        lengths[number] = len(pages)
        shown += pages
    # The longest reports linked to one resident; the demo profiles; no accounts; no resident.
    longest = sorted(lengths, key=lengths.__getitem__)[-4:]
    await add_resident(store, PHONE, longest)
    await add_resident(store, "+79031110001", [demo[1].number])  # overpaid: «аванс»
    await add_resident(store, "+79031110002", [demo[2].number])  # paid up
    await add_resident(store, "+79031110003", [])
    for phone in (PHONE, "+79031110001", "+79031110002", "+79031110003", STRANGER):
        # Walks again after the first has changed things: reminders flip, passwords run out.
        for _ in range(5):
            for screen in await walk(menu, context(services, phone)):
                shown.append(screen)
                sms += [reply.text for reply in screen.sms]
    # Screens the transports show.
    fixed = [ussd_menu.EXPIRED, texts.TEMPORARY_ERROR, web_ussd.DISABLED, web_ussd.FORBIDDEN,
             web_ussd.INCOMPLETE, web_ussd.TOO_LONG, web_ussd.NOT_MOBILE, web_ussd.OTHER_PHONE]
    shown += [Screen(text, end=True) for text in fixed]

    too_long = {screen.text for screen in shown if screen_length(screen.text) > SCREEN_LIMIT}
    assert not too_long, "\n\n".join(f"{screen_length(t)} chars:\n{t}" for t in sorted(too_long))
    texts_shown = {screen.text for screen in shown}
    # The walks did reach what they should have: a guard against a walk that saw little.
    for expected in (MAIN_SCREEN, texts.PASSWORD_LIMIT, texts.NO_ACCOUNTS, ussd_menu.PASSWORD_DONE,
                     *ussd_menu.REMINDERS_DONE.values(), ussd_menu.NOT_REGISTERED.format(number="7377")):
        assert expected in texts_shown, expected
    for fragment in ("аванс", "Итого: долга нет", "Введите 9 или 0", "Введите 0", HINT,
                     "Сейчас отключены.", "Сейчас включены.", "Команды SMS на 7377"):
        assert any(fragment in text for text in texts_shown), fragment
    assert max(lengths.values()) >= 4
    # Passwords went by SMS, never on a screen.
    passwords = [texts.find_secret(text) for text in sms]
    assert len(passwords) >= 3 and all(passwords)
    assert not any(password in text for password in passwords if password for text in texts_shown)


async def test_main_menu_and_invalid_input(services: Services, store: Store, demo: list[DemoAccount]) -> None:
    await add_resident(store, PHONE, [demo[0].number])
    main, wrong, empty, back = await script(Menu(), context(services), "7", "", "0")
    assert main == Screen(MAIN_SCREEN)
    assert wrong == empty == back == Screen(MAIN_SCREEN.replace("Расчётный центр", HINT))


async def test_unregistered_phone_gets_one_screen(services: Services) -> None:
    [screen] = await script(Menu(), context(services, STRANGER))
    assert screen == Screen("Номер не зарегистрирован. SMS на 7377: РЕГ счёт код_с_квитанции", end=True)


async def test_debt_pages_carry_the_sms_report(
    services: Services, store: Store, demo: list[DemoAccount]
) -> None:
    await add_resident(store, PHONE, [demo[0].number, demo[1].number])
    ctx = context(services)
    screens = await all_debt_pages(Menu(), ctx)
    pages = [screen.text for screen in screens if "Введите" not in screen.text]
    assert len(pages) > 2
    assert all(page.endswith("\n9 Далее\n0 Назад") for page in pages[:-1])
    assert pages[-1].endswith("\n0 Назад") and "9 Далее" not in pages[-1]
    content = "\n".join(re.sub(r"\n(9 Далее\n)?0 Назад$", "", page) for page in pages)
    found = await services.debts_of_phone(PHONE)
    assert found is not None
    report = ussd_menu.format_debts(found)
    # The same report as БАЛАНС by SMS, names without legal forms and quotes.
    assert content == report.replace('"', "").replace("АО ", "").replace("ООО ", "")
    assert f"Счёт {demo[1].number}:" in content and "аванс" in content


async def test_pages_go_back_to_the_menu(services: Services, store: Store, demo: list[DemoAccount]) -> None:
    await add_resident(store, PHONE, [demo[0].number])
    screens = await script(Menu(), context(services), "1", "9", "0", "0", "4", "9", "0", "0")
    first, second, again, main = screens[1:5]
    assert second.text != first.text and again == first and main == Screen(MAIN_SCREEN)
    help_first, _help_second, help_again, main_again = screens[5:]
    assert help_first.text.startswith("1 Долг: по каждому поставщику.")
    assert help_again == help_first and main_again == Screen(MAIN_SCREEN)


async def test_password_confirmed_goes_by_sms(
    services: Services, store: Store, demo: list[DemoAccount]
) -> None:
    await add_resident(store, PHONE, [demo[0].number])
    _main, question, hinted, done = await script(Menu(), context(services), "2", "7", "1")
    assert question == Screen("Новый пароль\nПридёт в SMS, старый перестанет действовать.\n"
                              "1 Прислать\n0 Назад")
    assert hinted.text == question.text.replace("Новый пароль", HINT, 1)
    assert done.end and done.text == ussd_menu.PASSWORD_DONE
    [sms] = done.sms
    password = texts.find_secret(sms.text)
    assert sms.secret and password and password not in done.text
    resident = await residents.by_phone(services.store.db, PHONE)
    assert resident is not None and resident.must_change_password
    assert await security.verify_password(password, resident.password_hash)


async def test_password_limits_are_the_sms_ones(
    services: Services, store: Store, demo: list[DemoAccount]
) -> None:
    await add_resident(store, PHONE, [demo[0].number])
    for _ in range(services.limits.password_per_hour):
        assert (await services.new_password(PHONE)).password  # as ПАРОЛЬ by SMS would
    for _ in range(2):  # refused, then (where SMS goes silent) refused again
        *_, done = await script(Menu(), context(services), "2", "1")
        assert done == Screen(texts.PASSWORD_LIMIT, end=True)


async def test_reminders_toggle(services: Services, store: Store, demo: list[DemoAccount]) -> None:
    await add_resident(store, PHONE, [demo[0].number])
    _main, question, done = await script(Menu(), context(services), "3", "1")
    assert question.text == "Напоминания о долге\nСейчас включены.\n1 Отключить\n0 Назад"
    assert done == Screen(ussd_menu.REMINDERS_DONE[False], end=True)
    resident = await residents.by_phone(services.store.db, PHONE)
    assert resident is not None and not resident.reminders
    _main, question, back = await script(Menu(), context(services), "3", "0")
    assert question.text == "Напоминания о долге\nСейчас отключены.\n1 Включить\n0 Назад"
    assert back == Screen(MAIN_SCREEN)
    *_, done = await script(Menu(), context(services), "3", "1")
    assert done == Screen(ussd_menu.REMINDERS_DONE[True], end=True)


def test_menu_options_and_pagination_rules() -> None:
    assert [option.key for option in MAIN.options] == ["1", "2", "3", "4"]
    with pytest.raises(ValueError, match="two options"):
        ussd_menu.Choice("x", [ussd_menu.Option("1", "a", MAIN), ussd_menu.Option("1", "b", MAIN)])
    long_line = 'ООО "Региональный оператор по обращению с ТКО Алтайского края": 12 345 678,90'
    pages = paginate([long_line, "Итого к оплате: 1 234,56 руб."])
    assert all(len(page) <= SCREEN_LIMIT - len("\n9 Далее\n0 Назад") for page in pages)
    joined = "\n".join(pages)
    assert "12 345 678,90" in joined and "1 234,56" in joined  # amounts are never broken


async def test_a_failing_content_is_a_final_screen(services: Services) -> None:
    async def closed(ctx: MenuContext) -> Screen:
        return Screen("закрыто", end=True)

    state = MenuState()
    menu = Menu(ussd_menu.Choice("Меню", [ussd_menu.Option("1", "Раздел", Pages(closed))], back=False))
    assert await menu._enter(state, menu.root, context(services)) == Screen("Меню\n1 Раздел")
    assert await menu.answer(state, "1", context(services)) == Screen("закрыто", end=True)
    assert state.path == [menu.root]
