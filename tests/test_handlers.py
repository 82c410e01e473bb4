"""Handlers called directly, with real Services over a real store: the pattern for a new command.

A handler is a decision: text in, replies out. Its test needs no gateway, no SMSC and no router:
build a Context (as the router would), call `handle`, read the replies. The `store` fixture is a
copy of the demo store and `demo` its three accounts (tests/conftest.py), so the data is real
and each test has its own. These tests run in the fast tier (`make test-fast`).
"""

from __future__ import annotations

import pytest

from handlers import Context, Reply
from handlers.balance import BalanceHandler
from handlers.help import HelpHandler
from smsgate import texts
from smsgate.config import Config
from smsgate.services import Services
from smsgate.tools.demo import DemoAccount
from store.db import Store

PHONE = "+79031234567"


@pytest.fixture
def services(config: Config, store: Store) -> Services:
    """What the gateway gives every handler: the flows shared with the website, on this store."""
    return Services(store, config)


def context(services: Services, text: str, phone: str = PHONE) -> Context:
    """A text as the router hands it over: the keyword matched, the words after it as typed."""
    keyword, *args = text.lower().split()
    return Context(phone=phone, text=text, keyword=keyword, args=tuple(args), services=services)


async def test_help_lists_the_commands(services: Services) -> None:
    replies = await HelpHandler().handle(context(services, "Помощь"))
    assert replies == [Reply(texts.HELP)]
    assert len(replies[0].text) <= 70  # one UCS-2 SMS


async def test_balance_of_an_unregistered_phone_says_how_to_register(services: Services) -> None:
    assert await BalanceHandler().handle(context(services, "Баланс")) == [Reply(texts.NOT_REGISTERED)]


async def test_balance_lists_the_debts_of_every_linked_account(
    services: Services, store: Store, demo: list[DemoAccount]
) -> None:
    # Arrange through the services, as a resident would (РЕГ), not by writing rows by hand.
    account = demo[0]  # the demo account with debts
    registered = await services.register(PHONE, account.number, account.receipt_code)
    assert registered.password  # a new resident gets a password
    ctx = context(services, "Баланс")

    [reply] = await BalanceHandler().handle(ctx)

    assert not reply.secret  # may be logged and shown in the history
    lines = reply.text.splitlines()
    assert lines[0].startswith("Долг на ")
    assert lines[1] == f"Счёт {account.number}:"
    assert lines[-1].startswith("Итого к оплате: ") and lines[-1].endswith(" руб.")
    # A handler that can also answer inside the gateway's transaction (`handle_now`, reading
    # through the connection it is given) must say the same as `handle`.
    assert await store.read(lambda db: BalanceHandler().handle_now(ctx, db)) == [reply]
