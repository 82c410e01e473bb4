"""A whole gateway against the SMSC simulator over real TCP, on a real SQLite file."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from smsgate.config import Config, OperatorConfig, from_dict
from smsgate.gateway import Gateway
from smsgate.tools.demo import DemoAccount, load_demo
from smsgate.tools.simulator import Simulator
from store.db import Store


def make_config(tmp_path: Path, smsc_port: int, **sections: dict[str, Any]) -> Config:
    data: dict[str, dict[str, Any]] = {
        "smsc": {
            "port": smsc_port, "embedded_simulator": False, "reconnect_min": 0.05,
            "reconnect_max": 0.5, "enquire_link_interval": 5.0, "throttle_pause": 0.05,
            "submit_rate": 5000.0, "indoubt_grace": 3.0,
        },
        "store": {"path": str(tmp_path / "smsgate.db")},
        "log": {"level": "debug"},
        "passwords": {"ready": 2},  # a small stock: both ways of issuing a password get used
    }
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return from_dict(data, base_dir=str(tmp_path))


class Harness:
    """Simulator + gateway + store; `sms()` plays a resident and returns the replies."""

    def __init__(self, tmp_path: Path, **sections: dict[str, Any]) -> None:
        self.tmp_path = tmp_path
        self.sections = sections
        self.simulator = Simulator(system_id="smsgate", password="secret12", service_number="7377",
                                   **sections.pop("simulator_options", {}))
        self.config: Config
        self.store: Store
        self.gateway: Gateway | None = None
        self.demo: list[DemoAccount] = []
        self._stop_operator: Callable[[], Awaitable[None]] | None = None

    async def start(self, demo: bool = True) -> Harness:
        port = await self.simulator.start()
        self.config = make_config(self.tmp_path, port, **self.sections)
        self.store = await Store.open(self.config.resolve(self.config.store.path))
        if demo:
            self.demo = await load_demo(self.store)
        await self.start_gateway()
        return self

    async def start_gateway(self) -> None:
        self.gateway = Gateway(self.config, self.store)
        await self.gateway.start()
        await self.simulator.wait_bound(5.0, receiving=True)

    async def start_operator(self) -> int:
        """Metrics from this moment's events on, and the operator listener on a free port."""
        from smsgate.metrics import Metrics
        from smsgate.operator import start_operator

        assert self.gateway is not None
        self.metrics = Metrics().attach()
        port, stop = await start_operator(
            dataclasses.replace(self.config, operator=OperatorConfig("127.0.0.1", 0)),
            self.gateway, self.metrics,
        )
        self._stop_operator = stop
        return port

    async def stop_gateway(self) -> None:
        if self._stop_operator is not None:
            await self._stop_operator()
            self._stop_operator = None
            self.metrics.detach()
        if self.gateway is not None:
            await self.gateway.stop()
            self.gateway = None

    async def restart(self) -> None:
        """Stop the gateway and the store, then start both again on the same file."""
        await self.stop_gateway()
        await self.store.close()
        self.store = await Store.open(self.config.resolve(self.config.store.path))
        await self.start_gateway()

    async def sms(
        self, phone: str, text: str, replies: int = 1, timeout: float = 10.0  # noqa: ASYNC109
    ) -> list[str]:
        """Send a text as a resident; wait for exactly `replies` replies and return their texts."""
        start = len(self.simulator.sent_to(phone))
        statuses = await self.simulator.send_mo(phone, text, timeout=timeout)
        assert all(status == 0 for status in statuses), statuses
        if replies == 0:
            await asyncio.sleep(0.5)
            assert self.simulator.sent_to(phone)[start:] == []
            return []
        sent = await self.simulator.wait_sent(phone, start + replies, timeout=timeout)
        return [message.text for message in sent[start:]]

    async def close(self) -> None:
        await self.stop_gateway()
        await self.store.close()
        await self.simulator.stop()
