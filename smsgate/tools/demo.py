"""Demo data: a small settlement center in Barnaul, so smsgate can be tried without real exports."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import aiosqlite

from store import accounts, debts, meta
from store.db import Store

BARNAUL = ZoneInfo("Asia/Barnaul")
ACCOUNTS = 300
# Full months billed, ending with the month before the current one (the current month is
# billed only after it ends).
PERIODS = 4
# The numbers of the accounts load_demo returns, so a later call can return them again.
META_KEY = "demo_accounts"
_FIRST_PROVIDER_ID = 101

# Labels for the accounts in the order load_demo returns them.
PROFILES = (
    "долги нескольким поставщикам / debts to several providers",
    "переплата (аванс) одному поставщику / overpaid one provider",
    "всё оплачено / paid up",
)


@dataclass(frozen=True)
class DemoAccount:
    number: str
    receipt_code: str
    address: str
    holder: str


@dataclass(frozen=True)
class _Provider:
    id: int
    name: str
    inn: str
    kind: str


@dataclass(frozen=True)
class _House:
    address: str
    providers: tuple[_Provider, ...]


@dataclass(frozen=True)
class _Home:
    area: float  # square metres
    residents: int
    internet_price: float
    phone_price: float


@dataclass(frozen=True)
class _Plan:
    providers: list[_Provider]
    accounts: list[DemoAccount]
    charges: list[tuple[str, int, str, str, int]]
    payments: list[tuple[str, int, int, str, str]]
    chosen: list[DemoAccount]


_PROVIDERS: tuple[tuple[str, str], ...] = (
    ('АО "Алтайэнергосбыт"', "electricity"),
    ('АО "Барнаульская горэлектросеть"', "electricity"),
    ('ООО "Энергосбытовая компания Алтая"', "electricity"),
    ("Водоканал Барнаула", "water"),
    ('ООО "Барнаульская сетевая компания"', "heating"),
    ("ТГК-11", "heating"),
    ('АО "Барнаульская генерация"', "heating"),
    ('ООО "Газпром межрегионгаз Барнаул"', "gas"),
    ('АО "Алтайкрайгазсервис"', "gas"),
    ('ООО "Региональный оператор по обращению с ТКО Алтайского края"', "waste"),
    ('АО "Спецавтохозяйство г. Барнаула"', "waste"),
    ("Фонд капитального ремонта Алтайского края", "capital_repair"),
    ("Ростелеком", "internet"),
    ("МТС Интернет", "internet"),
    ("Билайн Домашний интернет", "internet"),
    ("Дом.ру", "internet"),
    ('ООО "Сибирские сети"', "internet"),
    ('ООО "ТелеСеть Барнаул"', "internet"),
    ("Ростелеком: домашний телефон", "phone"),
    ('ООО "Барнаульская городская телефонная сеть"', "phone"),
    ('ООО "Домофон-Сервис"', "intercom"),
    ('ООО УК "Жилищная инициатива"', "rent"),
    ('ООО УК "Доверие"', "rent"),
    ('ООО УК "Центральная"', "rent"),
    ('ООО УК "Октябрьская"', "rent"),
    ('ООО УК "Индустриальная"', "rent"),
    ('ООО УК "Ленинская"', "rent"),
    ('ООО УК "Железнодорожная"', "rent"),
    ('ООО УК "Новый дом"', "rent"),
    ('ООО УК "Содружество"', "rent"),
    ('ООО УК "Алтайский дом"', "rent"),
    ('ООО УК "Паритет"', "rent"),
    ('ООО УК "Сервис-Центр"', "rent"),
    ('ООО УК "Комфорт"', "rent"),
    ('ООО УК "Уют"', "rent"),
    ('ООО УК "Приоритет"', "rent"),
    ('ООО УК "Гарант"', "rent"),
    ('ООО "Жилкомсервис"', "rent"),
    ('ООО "ЖЭУ-14"', "rent"),
    ('ООО "ЖЭУ-22"', "rent"),
    ('ООО "Домоуправление-7"', "rent"),
    ('ТСЖ "Лазурный"', "rent"),
    ('ТСЖ "Пионер"', "rent"),
    ('ТСЖ "Строитель-5"', "rent"),
    ('ТСЖ "Взлётный"', "rent"),
    ('ТСЖ "Малахова, 177"', "rent"),
    ('ТСЖ "Островского, 30"', "rent"),
    ('ТСН "Радуга"', "rent"),
    ('ТСН "Парковый"', "rent"),
    ('ЖСК "Молодёжный"', "rent"),
    ('ЖСК "Учитель"', "rent"),
)

_SERVICES: dict[str, tuple[str, ...]] = {
    "electricity": ("Электроэнергия",),
    "water": ("Холодное водоснабжение", "Водоотведение"),
    "heating": ("Отопление", "Горячее водоснабжение"),
    "gas": ("Газоснабжение",),
    "rent": ("Содержание жилья", "Текущий ремонт"),
    "internet": ("Интернет",),
    "phone": ("Местная телефонная связь",),
    "waste": ("Обращение с ТКО",),
    "capital_repair": ("Взнос на капитальный ремонт",),
    "intercom": ("Обслуживание домофона",),
}

# Chance that an account uses a provider of this kind, beyond the three every flat has
# (rent, electricity, water).
_OPTIONAL_KINDS = (
    ("heating", 0.9),
    ("capital_repair", 0.8),
    ("waste", 0.85),
    ("internet", 0.55),
    ("gas", 0.3),
    ("intercom", 0.25),
    ("phone", 0.15),
)
_MAX_PROVIDERS = 7

_STREETS = (
    "пр. Ленина",
    "ул. Попова",
    "пр. Строителей",
    "пр. Комсомольский",
    "ул. Малахова",
    "пр. Красноармейский",
    "ул. Взлётная",
    "ул. Антона Петрова",
    "пр. Космонавтов",
    "ул. Партизанская",
    "ул. Юрина",
    "ул. Шумакова",
    "пр. Калинина",
    "ул. Гоголя",
    "ул. Пролетарская",
    "ул. Молодёжная",
    "ул. Советской Армии",
    "ул. Георгиева",
    "ул. Балтийская",
    "ул. Лазурная",
    "пр. Социалистический",
    "ул. Чкалова",
    "ул. Папанинцев",
    "ул. 80-й Гвардейской Дивизии",
    "ул. Северо-Западная",
    "ул. Профинтерна",
    "Павловский тракт",
    "ул. Островского",
    "ул. Матросова",
    "ул. Эмилии Алексеевой",
)

# Surnames that take -а in the feminine, and a few that do not change.
_SURNAMES = (
    "Иванов Петров Смирнов Кузнецов Попов Васильев Соколов Михайлов Новиков Фёдоров Морозов "
    "Волков Алексеев Лебедев Семёнов Егоров Павлов Козлов Степанов Николаев Орлов Андреев "
    "Макаров Никитин Захаров Зайцев Соловьёв Борисов Яковлев Григорьев Романов Воробьёв "
    "Сергеев Кузьмин Фролов Александров Дмитриев Королёв Гусев Киселёв Ильин Максимов "
    "Поляков Сорокин Виноградов Ковалёв Белов Медведев Антонов Тарасов Жуков Баранов "
    "Филиппов Комаров Давыдов Беляев Герасимов Богданов Осипов Сидоров Пономарёв Шубин"
).split()
_INVARIANT_SURNAMES = ("Шевченко", "Коваленко", "Бондаренко", "Ким", "Шмидт", "Миллер", "Вебер")
_INITIALS = "АБВГДЕИКЛМНОПРСТЮЯ"
_CHANNELS = ("Сбербанк Онлайн", "касса РКЦ", "терминал", "Почта России", "сайт РКЦ")
_INN_WEIGHTS = (2, 4, 10, 3, 5, 9, 4, 6, 8)


def _inn(rng: random.Random) -> str:
    """A 10-digit INN of an Altai Krai company, with a valid check digit."""
    digits = [2, 2, 2, rng.choice((1, 2, 4, 5))] + [rng.randrange(10) for _ in range(5)]
    check = sum(d * w for d, w in zip(digits, _INN_WEIGHTS, strict=True)) % 11 % 10
    return "".join(map(str, digits)) + str(check)


def _holder(rng: random.Random) -> str:
    first, patronymic = rng.choice(_INITIALS), rng.choice(_INITIALS)
    if rng.random() < 0.08:
        surname = rng.choice(_INVARIANT_SURNAMES)
    else:
        surname = rng.choice(_SURNAMES)
        if rng.random() < 0.55:
            surname += "а"
    return f"{surname} {first}. {patronymic}."


def _periods(today: date) -> list[date]:
    """First days of the billed months, oldest first."""
    months: list[date] = []
    cursor = today.replace(day=1)
    for _ in range(PERIODS):
        cursor = (cursor - timedelta(days=1)).replace(day=1)
        months.append(cursor)
    return months[::-1]


def _next_month(month: date) -> date:
    return (month + timedelta(days=32)).replace(day=1)


def _monthly(service: str, home: _Home, month: int, rng: random.Random) -> float:
    """Roubles for one service in one month, at tariffs near Barnaul's; 0 when not billed."""
    usage = rng.uniform(0.8, 1.2)
    match service:
        case "Электроэнергия":
            return home.residents * 85 * usage * 5.47
        case "Холодное водоснабжение":
            return home.residents * 3.6 * usage * 38.52
        case "Водоотведение":
            return home.residents * 6.0 * usage * 31.18
        case "Отопление":
            # Billed in the heating season only (October to April in Barnaul).
            return home.area * 0.0207 * 2712.4 if month >= 10 or month <= 4 else 0.0
        case "Горячее водоснабжение":
            return home.residents * 2.4 * usage * 211.65
        case "Газоснабжение":
            return home.residents * 8.0 * usage * 7.53
        case "Содержание жилья":
            return home.area * 28.45
        case "Текущий ремонт":
            return home.area * 4.2
        case "Интернет":
            return home.internet_price
        case "Местная телефонная связь":
            return home.phone_price
        case "Обращение с ТКО":
            return home.residents * 135.4
        case "Взнос на капитальный ремонт":
            return home.area * 9.9
        case "Обслуживание домофона":
            return 45.0
    raise ValueError(f"no tariff for {service}")  # pragma: no cover


def _kopecks(roubles: float) -> int:
    return round(roubles * 100)


def _houses(rng: random.Random, by_kind: dict[str, list[_Provider]]) -> list[_House]:
    """Houses, each with the providers all its flats share (management company, utilities)."""
    houses: list[_House] = []
    seen: set[str] = set()
    while len(houses) < 70:
        number = str(rng.randint(1, 240))
        suffix = rng.random()
        if suffix < 0.12:
            number += rng.choice("аб")
        elif suffix < 0.2:
            number += f", к. {rng.randint(1, 3)}"
        address = f"г. Барнаул, {rng.choice(_STREETS)}, д. {number}"
        if address in seen:
            continue
        seen.add(address)
        shared = [
            rng.choice(by_kind["rent"]),
            rng.choice(by_kind["electricity"]),
            rng.choice(by_kind["water"]),
            rng.choice(by_kind["heating"]),
            rng.choice(by_kind["capital_repair"]),
            rng.choice(by_kind["waste"]),
            rng.choice(by_kind["gas"]),
            rng.choice(by_kind["intercom"]),
        ]
        houses.append(_House(address, tuple(shared)))
    return houses


def _account_providers(
    rng: random.Random, house: _House, by_kind: dict[str, list[_Provider]], rich: bool
) -> list[_Provider]:
    shared = {provider.kind: provider for provider in house.providers}
    chosen = [shared["rent"], shared["electricity"], shared["water"]]
    for kind, chance in _OPTIONAL_KINDS:
        if rich or rng.random() < chance:
            chosen.append(shared[kind] if kind in shared else rng.choice(by_kind[kind]))
    return chosen[:_MAX_PROVIDERS]


def _plan(seed: int, today: date) -> _Plan:
    """Everything load_demo writes, decided by seed (and today, for the billed months)."""
    rng = random.Random(seed)
    providers = [
        _Provider(_FIRST_PROVIDER_ID + index, name, _inn(rng), kind)
        for index, (name, kind) in enumerate(_PROVIDERS)
    ]
    by_kind: dict[str, list[_Provider]] = {}
    for provider in providers:
        by_kind.setdefault(provider.kind, []).append(provider)
    houses = _houses(rng, by_kind)
    periods = _periods(today)

    accounts: list[DemoAccount] = []
    charges: list[tuple[str, int, str, str, int]] = []
    payments: list[tuple[str, int, int, str, str]] = []
    numbers: set[str] = set()
    flats: set[str] = set()
    # The first three accounts are the ones handed out, in PROFILES order.
    forced = ("debt", "advance", "paid")
    while len(accounts) < ACCOUNTS:
        index = len(accounts)
        house = rng.choice(houses)
        address = f"{house.address}, кв. {rng.randint(1, 180)}"
        number = str(rng.randrange(10**9, 10**10))
        if address in flats or number in numbers:
            continue
        flats.add(address)
        numbers.add(number)
        account = DemoAccount(number, f"{rng.randrange(10**6):06d}", address, _holder(rng))
        accounts.append(account)
        home = _Home(
            area=round(rng.uniform(28, 95), 1),
            residents=rng.randint(1, 4),
            internet_price=rng.choice((450.0, 550.0, 650.0, 790.0, 900.0)),
            phone_price=rng.choice((290.0, 350.0)),
        )
        rich = index == 0
        owed: dict[int, list[tuple[date, int]]] = {}
        for provider in _account_providers(rng, house, by_kind, rich):
            services = _SERVICES[provider.kind]
            for month in periods:
                period = f"{month:%Y-%m}"
                total = 0
                for service in services:
                    amount = _kopecks(_monthly(service, home, month.month, rng))
                    if amount:
                        charges.append((number, provider.id, service, period, amount))
                        total += amount
                if provider.kind == "water" and total and rng.random() < 0.05:
                    # A meter reading came in late: the water company corrects the month.
                    correction = -_kopecks(total / 100 * rng.uniform(0.1, 0.3))
                    charges.append((number, provider.id, "Перерасчёт", period, correction))
                    total += correction
                if total > 0:
                    owed.setdefault(provider.id, []).append((month, total))
        profile = forced[index] if index < len(forced) else rng.choices(forced, (35, 20, 45))[0]
        payments.extend(_payments(rng, number, owed, profile, today, rich))

    return _Plan(providers, accounts, charges, payments, accounts[: len(forced)])


def _payments(
    rng: random.Random,
    number: str,
    owed: dict[int, list[tuple[date, int]]],
    profile: str,
    today: date,
    rich: bool,
) -> list[tuple[str, int, int, str, str]]:
    """Payments for one account: every bill paid in the next month, except as profile says."""
    provider_ids = sorted(owed)
    debtors: set[int] = set()
    advanced: int | None = None
    if profile == "debt":
        count = rng.randint(3, 4) if rich else rng.randint(1, 3)
        debtors = set(rng.sample(provider_ids, min(count, len(provider_ids))))
    elif profile == "advance":
        advanced = rng.choice(provider_ids)
    made: list[tuple[str, int, int, str, str]] = []
    for provider_id in provider_ids:
        bills = owed[provider_id]
        unpaid = rng.randint(1, len(bills)) if provider_id in debtors else 0
        for position, (month, total) in enumerate(bills):
            amount = total
            if position >= len(bills) - unpaid:
                # Some debtors pay part of the first unpaid bill, in round roubles.
                partial = total // 2 // 10000 * 10000
                if position != len(bills) - unpaid or partial == 0 or rng.random() < 0.6:
                    continue
                amount = partial
            elif provider_id == advanced and position == len(bills) - 1:
                # Residents round up to the next 500 roubles, leaving 100 to 600 in advance.
                amount = ((total + 10000) // 50000 + 1) * 50000
            paid_at = min(_next_month(month) + timedelta(days=rng.randint(0, 24)), today)
            made.append((number, provider_id, amount, paid_at.isoformat(), rng.choice(_CHANNELS)))
    return made


async def _existing(db: aiosqlite.Connection) -> list[DemoAccount]:
    numbers = await meta.get(db, META_KEY)
    if numbers is None:
        return []
    found: list[DemoAccount] = []
    for number in numbers.split(","):
        account = await accounts.get(db, number)
        if account is not None:
            found.append(DemoAccount(account.number, account.receipt_code, account.address,
                                     account.holder))
    return found


async def load_demo(store: Store, seed: int = 7, *, today: date | None = None) -> list[DemoAccount]:
    """Fill an empty store with demo data; return the three accounts to try, in PROFILES order.

    A store that already has accounts or providers is left alone: the demo accounts an earlier
    call loaded are returned (none, if the data is not the demo's).
    """
    plan = _plan(seed, today or datetime.now(BARNAUL).date())
    async with store.tx() as db:
        if await accounts.any_loaded(db):
            return await _existing(db)
        await accounts.add_providers(db, [(p.id, p.name, p.inn, p.kind) for p in plan.providers])
        await accounts.add(
            db, [(a.number, a.receipt_code, a.address, a.holder) for a in plan.accounts]
        )
        await debts.add_charges(db, plan.charges)
        await debts.add_payments(db, plan.payments)
        await meta.put(db, META_KEY, ",".join(account.number for account in plan.chosen))
    return plan.chosen


def format_demo_accounts(accounts: Sequence[DemoAccount]) -> str:
    """The accounts load_demo returned, as lines to print for someone trying the demo."""
    if not accounts:
        return "Демо-счетов нет / no demo accounts"
    lines = ["Демо-счета / demo accounts (лицевой счёт / account, код с квитанции / receipt code):"]
    for account, profile in zip(accounts, PROFILES, strict=False):
        lines.append(
            f"  {account.number}  код/code {account.receipt_code}  {account.holder}, "
            f"{account.address}: {profile}"
        )
    return "\n".join(lines)
