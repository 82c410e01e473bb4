"""The gateway process killed with SIGKILL in the middle of 500 texts: every text answered once."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import signal
import sys
import time
from pathlib import Path

from smsgate.tools.simulator import Simulator

TEXTS = 500
PHONES = [f"+7913{n:07d}" for n in range(TEXTS)]


def write_config(tmp_path: Path, smsc_port: int) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        f"""
[smsc]
port = {smsc_port}
embedded_simulator = false
reconnect_min = 0.05
reconnect_max = 0.3
submit_rate = 5000.0
indoubt_grace = 5.0

[web]
port = 0

[operator]
port = 0

[store]
path = "gateway.db"

[log]
path = "gateway.log"
""",
        encoding="utf-8",
    )
    return path


async def start_gateway(config: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "smsgate", "--config", str(config), "run",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


async def test_sigkill_mid_burst_loses_nothing_and_answers_once(tmp_path: Path) -> None:
    simulator = Simulator(system_id="smsgate", password="secret12", mo_window=50)
    port = await simulator.start()
    config = write_config(tmp_path, port)
    gateway = await start_gateway(config)
    try:
        await simulator.wait_bound(20.0, receiving=True)
        sends = [
            asyncio.create_task(simulator.send_mo(phone, "Помощь", timeout=90.0)) for phone in PHONES
        ]
        deadline = time.monotonic() + 60
        while len(simulator.acknowledged) < TEXTS // 3:
            assert time.monotonic() < deadline, "the gateway did not acknowledge texts"
            await asyncio.sleep(0.005)
        gateway.send_signal(signal.SIGKILL)
        await gateway.wait()
        acknowledged_at_kill = len(simulator.acknowledged)
        replies_at_kill = len(simulator.sent)
        assert acknowledged_at_kill < TEXTS  # killed in the middle, not after

        gateway = await start_gateway(config)
        statuses = await asyncio.gather(*sends)
        assert all(status == [0] for status in statuses)
        await simulator.wait_sent(None, TEXTS, timeout=60.0)
        await asyncio.sleep(2.0)  # anything sent twice would arrive in this time

        acknowledged = collections.Counter(ack.phone for ack in simulator.acknowledged)
        replies = collections.Counter(sent.phone for sent in simulator.sent)
        assert set(acknowledged) == set(PHONES)
        assert replies == collections.Counter(PHONES), {
            phone: count for phone, count in replies.items() if count != 1
        }
        assert replies_at_kill < TEXTS
    finally:
        if gateway.returncode is None:
            gateway.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(gateway.wait(), 10)
            except TimeoutError:
                gateway.kill()
                await gateway.wait()
        with contextlib.suppress(Exception):
            await simulator.stop()
    assert gateway.returncode is not None
