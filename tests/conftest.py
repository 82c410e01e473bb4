"""Fixtures shared by the test modules, and the split of the tests into a fast and a full tier.

Fixtures: a config built in code on tmp_path, a store with demo data, and a whole gateway
(`gate`, `make_gate`: simulator + gateway + store over real TCP).

Tiers: `make test-fast` runs the tests not marked `full`; `make test` runs them all. A test is
marked `full` here, by what it uses, so a new test lands in its tier by itself: it is full when
it asks, directly or through its fixtures, for one of FULL_FIXTURES, or when its module imports
one of FULL_NAMES (the module starts a gateway, an SMSC simulator, a load SMSC, a browser or a
process of its own somewhere). A test that is slow for another reason says so with
`@pytest.mark.full`.
"""

from __future__ import annotations

import asyncio
import copy
import shutil
import socket
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from smsgate.config import Config, from_dict
from smsgate.tools.demo import DemoAccount, load_demo
from store.db import Store
from tests.harness import Harness

# Fixtures that serve over real sockets: a whole gateway, a website on aiohttp's test server, a browser.
FULL_FIXTURES = frozenset({"gate", "make_gate", "aiohttp_client", "browser", "page"})
# Names a module imports when it starts a gateway, a simulator, a load SMSC, a browser or a process.
FULL_NAMES = frozenset({
    "Harness", "Gateway", "Simulator", "LoadSmsc", "async_playwright", "subprocess", "loadgen",
})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if isinstance(item, pytest.Function) and _is_full(item):
            item.add_marker(pytest.mark.full)


def pytest_report_header(config: pytest.Config) -> str:
    return "tiers: tests marked `full` start a gateway, a simulator, a browser or a process (conftest.py)"


def _is_full(item: pytest.Function) -> bool:
    return (item.get_closest_marker("full") is not None
            or not FULL_FIXTURES.isdisjoint(item.fixturenames)
            or not FULL_NAMES.isdisjoint(vars(item.module)))


def free_port() -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def config(tmp_path: Path) -> Config:
    """Everything on loopback ports of its own, the store in tmp_path, no embedded simulator."""
    return from_dict(
        {
            "smsc": {"port": free_port(), "embedded_simulator": False},
            "simulator": {"control_port": free_port()},
            "web": {"port": free_port()},
            "operator": {"port": free_port()},
            "store": {"path": str(tmp_path / "smsgate.db")},
        },
        base_dir=str(tmp_path),
    )


@pytest.fixture(scope="session")
def demo_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with the demo data, made once per run: each test gets a copy (0.3 s saved a test)."""
    path = tmp_path_factory.mktemp("demo") / "demo.db"

    async def build() -> None:
        made = await Store.open(path, synchronous="OFF")
        try:
            await load_demo(made, seed=7)
        finally:
            await made.close()

    # Its own thread and loop: the tests' event loops are pytest-asyncio's to manage.
    failures: list[BaseException] = []
    worker = threading.Thread(target=lambda: _run(build(), failures))
    worker.start()
    worker.join()
    if failures:
        raise failures[0]
    return path


def _run(coroutine: Coroutine[Any, Any, None], failures: list[BaseException]) -> None:
    try:
        asyncio.run(coroutine)
    except BaseException as exc:
        failures.append(exc)


@pytest.fixture
async def store(config: Config, demo_file: Path) -> AsyncIterator[Store]:
    """The store of `config`, filled with the demo data (seed 7)."""
    path = config.resolve(config.store.path)
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(demo_file, path)
    # Durability is not under test; skipping fsync keeps the suite fast.
    opened = await Store.open(path, synchronous="OFF")
    yield opened
    await opened.close()


@pytest.fixture
async def empty_store(tmp_path: Path) -> AsyncIterator[Store]:
    """A store with the schema only, at the default `synchronous = FULL` (the gateway's writes)."""
    opened = await Store.open(tmp_path / "empty.db")
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def demo(store: Store) -> list[DemoAccount]:
    """The three demo accounts: with debts, with an overpayment, paid up."""
    # A second call returns the accounts the first one loaded.
    return await load_demo(store, seed=7)


@pytest.fixture
async def make_gate(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Harness]]]:
    """Start a whole gateway with config sections of the test's own: `await make_gate(smsc={...})`.

    `simulator_options={...}` goes to the Simulator. Every gateway started is closed after the test.
    """
    started: list[Harness] = []

    async def make(**sections: dict[str, Any]) -> Harness:
        harness = await Harness(tmp_path, **copy.deepcopy(sections)).start()
        started.append(harness)
        return harness

    try:
        yield make
    finally:
        for harness in reversed(started):
            await harness.close()


@pytest.fixture
def gate_sections() -> dict[str, dict[str, Any]]:
    """Config sections of `gate`: a module overrides this fixture, a test parametrizes it."""
    return {}


@pytest.fixture
async def gate(
    make_gate: Callable[..., Awaitable[Harness]], gate_sections: dict[str, dict[str, Any]]
) -> Harness:
    """A started Harness (simulator + gateway + store with the demo data), closed after the test."""
    return await make_gate(**gate_sections)
