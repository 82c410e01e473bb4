"""What operators see: log lines of a scripted session, /metrics, /healthz, /readyz, smsgate status."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from smsgate import logs
from smsgate.tools.simulator import Simulator
from tests.harness import Harness

RESIDENT = "+79031234567"


@pytest.fixture
def log_file(tmp_path: Path) -> Iterator[Path]:
    """Route the smsgate loggers to a JSON file, as `smsgate run` does, then put things back."""
    path = tmp_path / "smsgate.log"
    root = logging.getLogger("smsgate")
    handler = logs.setup(str(path), "json", "info")
    try:
        yield path
    finally:
        root.removeHandler(handler)
        handler.close()
        root.propagate = True
        root.setLevel(logging.NOTSET)


async def scripted_session(gate: Harness) -> list[str]:
    """Every SMS command once; returns the secrets the replies carried."""
    account = gate.demo[0]
    secrets = []
    [registered] = await gate.sms(RESIDENT, f"РЕГ {account.number} {account.receipt_code}")
    secrets.append(registered.split("Пароль: ")[1].split(",")[0])
    [password] = await gate.sms(RESIDENT, "Пароль")
    secrets.append(password.removeprefix("Ваш новый пароль: ").split(".")[0])
    await gate.sms(RESIDENT, "Баланс")
    await gate.sms(RESIDENT, "Стоп")
    await gate.sms(RESIDENT, "Старт")
    await gate.sms(RESIDENT, "Помощь")
    await gate.sms(RESIDENT, f"РЕГ {account.number} 000000")
    assert gate.gateway is not None
    services = gate.gateway.services
    code_result = await services.request_reset(RESIDENT, "127.0.0.1")
    assert code_result.name in ("OK", "LIMITED")
    async with gate.store.db.execute("SELECT text FROM outbox WHERE kind != 'reply'") as cursor:
        for (text,) in await cursor.fetchall():
            secrets.extend(re.findall(r"\b\d{6}\b|\b[A-Za-z0-9]{10}\b", text))
    await asyncio.sleep(0.3)  # receipts
    return [secret for secret in secrets if secret]


async def test_log_lines_are_events_masked_and_free_of_secrets(gate: Harness, log_file: Path) -> None:
    secrets = await scripted_session(gate)
    assert len(secrets) >= 3
    whole = await asyncio.to_thread(log_file.read_text, encoding="utf-8")
    lines = whole.splitlines()
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    events = {record["event"] for record in records}
    assert {"sms_in", "sms_handled", "sms_out", "dlr", "registered", "password_issued"} <= events
    handled = {record.get("handler") for record in records if record["event"] == "sms_handled"}
    assert {"register", "password", "balance", "stop", "start", "help"} <= handled
    # Each text's arrival is logged before its handling, also when it is answered in the very
    # transaction that stores it (БАЛАНС, ПОМОЩЬ).
    flow = [record["event"] for record in records if record["event"] in ("sms_in", "sms_handled")]
    assert len(flow) >= 14 and flow == ["sms_in", "sms_handled"] * (len(flow) // 2)
    out = [record for record in records if record["event"] == "sms_out"]
    assert all(record["msisdn"] == "+7903***4567" and "ms" in record for record in out)
    assert all(re.fullmatch(r"[a-z_]+", record["event"]) for record in records)
    assert "9031234567" not in whole  # the number never appears unmasked
    for secret in secrets:
        assert secret not in whole, "a password or code reached the log"
    assert "Пароль" not in whole and "пароль" not in whole  # no reply bodies


async def test_text_format_reads_by_eye(gate: Harness, tmp_path: Path) -> None:
    path = tmp_path / "text.log"
    handler = logs.setup(str(path), "text", "info")
    try:
        await gate.sms(RESIDENT, "Помощь")
    finally:
        logging.getLogger("smsgate").removeHandler(handler)
        handler.close()
        logging.getLogger("smsgate").propagate = True
    lines = (await asyncio.to_thread(path.read_text, encoding="utf-8")).splitlines()
    line = next(line for line in lines if " sms_in " in line)
    assert re.match(r"\d{4}-\d\d-\d\dT[\d:.]+Z INFO +sms_in msisdn=\+7903\*\*\*4567 ", line)


async def scrape(port: int, path: str = "/metrics") -> tuple[int, str]:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}{path}") as response:
            return response.status, await response.text()


def sample(metrics: str, name: str, **labels: str) -> float:
    for line in metrics.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        series, value = line.rsplit(" ", 1)
        if all(f'{key}="{label}"' in series for key, label in labels.items()):
            if series.split("{")[0] == name:
                return float(value)
    return 0.0


@pytest.mark.parametrize("level", ["info", "warning"])
async def test_metrics_move_with_a_session(gate: Harness, tmp_path: Path, level: str) -> None:
    """Metrics count the info events whether or not the log level writes them."""
    path = tmp_path / "level.log"
    handler = logs.setup(str(path), "json", level)
    try:
        await metrics_of_a_session(gate)
    finally:
        logging.getLogger("smsgate").removeHandler(handler)
        handler.close()
        logging.getLogger("smsgate").propagate = True
        logging.getLogger("smsgate").setLevel(logging.NOTSET)
    written = {json.loads(line)["level"]
               for line in (await asyncio.to_thread(path.read_text, encoding="utf-8")).splitlines()}
    assert ("info" in written) == (level == "info")


async def metrics_of_a_session(gate: Harness) -> None:
    port = await gate.start_operator()
    _, before = await scrape(port)
    await scripted_session(gate)
    status, after = await scrape(port)
    assert status == 200
    assert sample(after, "smsgate_messages_in_total") - sample(before, "smsgate_messages_in_total") == 7
    assert sample(after, "smsgate_commands_total", command="balance", outcome="ok") == 1
    assert sample(after, "smsgate_commands_total", command="register", outcome="ok") == 2
    # The registration and ПАРОЛЬ replies, and the reset code.
    assert sample(after, "smsgate_messages_out_total", kind="secret", status="submitted") == 3
    assert sample(after, "smsgate_receipts_total", stat="DELIVRD") >= 7
    assert sample(after, "smsgate_submit_latency_seconds_count") >= 7
    assert sample(after, "smsgate_bound") == 1
    assert "smsgate_queue_depth" in after and "smsgate_throttled_total" in after
    assert 0 <= sample(after, "smsgate_passwords_ready") <= gate.config.passwords.ready
    assert "# HELP smsgate_passwords_ready " in after
    assert gate.gateway is not None
    await gate.gateway.services.login(RESIDENT, "not-the-password", "127.0.0.1")
    _, after_login = await scrape(port)
    assert sample(after_login, "smsgate_logins_total", result="failed") == 1


async def test_healthz_readyz_follow_the_link(gate: Harness) -> None:
    port = await gate.start_operator()
    assert (await scrape(port, "/healthz"))[0] == 200
    assert (await scrape(port, "/readyz"))[0] == 200
    smsc_port = gate.simulator.port
    await gate.simulator.stop()
    assert gate.gateway is not None
    deadline = time.monotonic() + 10
    while gate.gateway.session.bound.is_set():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    status, body = await scrape(port, "/readyz")
    assert status == 503 and "not bound" in body
    assert (await scrape(port, "/healthz"))[0] == 200  # alive, just not ready

    gate.simulator = Simulator(system_id="smsgate", password="secret12")
    await gate.simulator.start(port=smsc_port)
    await gate.simulator.wait_bound(10.0, receiving=True)
    deadline = time.monotonic() + 10
    while (await scrape(port, "/readyz"))[0] != 200:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    assert await gate.sms(RESIDENT, "Помощь")


async def test_smsgate_status_against_a_live_gateway(gate: Harness, tmp_path: Path) -> None:
    port = await gate.start_operator()
    await gate.sms(RESIDENT, "Помощь")
    config = tmp_path / "status.toml"
    config.write_text(f"[operator]\nport = {port}\n", encoding="utf-8")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "smsgate", "--config", str(config), "status",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
    output = stdout.decode()
    assert process.returncode == 0, stderr.decode()
    assert re.search(r"^bind: +bound \(127\.0\.0\.1:\d+\)", output, re.M)
    assert re.search(r"^texts in: +1 last minute, 1 last hour", output, re.M)
    assert re.search(r"^queue: +0 waiting", output, re.M)


async def test_smsgate_status_says_when_nothing_answers(tmp_path: Path) -> None:
    config = tmp_path / "status.toml"
    config.write_text("[operator]\nport = 1\n", encoding="utf-8")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "smsgate", "--config", str(config), "status",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    _stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 1
    assert "not answering" in stderr.decode()
