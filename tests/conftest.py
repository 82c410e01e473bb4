"""Fixtures shared by the test modules: a config built in code on tmp_path, a store with demo data."""

from __future__ import annotations

import asyncio
import shutil
import socket
import threading
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any

import pytest

from smsgate.config import Config, from_dict
from smsgate.tools.demo import DemoAccount, load_demo
from store.db import Store


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
