"""The commands a new user types: `smsgate sms` and `smsgate phone` against a running simulator."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from smsgate import texts
from tests.harness import Harness

PHONE = "+79031234567"


async def smsgate(config: Path, *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "smsgate", "--config", str(config), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


async def test_sms_and_phone_commands(tmp_path: Path) -> None:
    gate = await Harness(tmp_path).start()
    try:
        control = await gate.simulator.start_control()
        config = tmp_path / "cli.toml"
        config.write_text(f"[simulator]\ncontrol_port = {control}\n", encoding="utf-8")
        account = gate.demo[0]
        code, out, err = await smsgate(config, "sms", "8 903 123-45-67", "РЕГ", account.number,
                                       account.receipt_code)
        assert code == 0, err
        assert out.startswith(f"{PHONE} > РЕГ {account.number} {account.receipt_code}\n< Счёт ")
        code, out, err = await smsgate(config, "sms", PHONE, "Помощь")
        assert (code, out) == (0, f"{PHONE} > Помощь\n< {texts.HELP}\n"), err
        code, out, err = await smsgate(config, "phone", PHONE, "--last", "1")
        assert (code, out) == (0, f"< {texts.HELP}\n"), err
        code, _out, err = await smsgate(config, "sms", "+1 202 555 0100", "Помощь")
        assert code == 2 and "not a Russian phone number" in err
    finally:
        await gate.close()


async def test_sms_command_when_nothing_runs(tmp_path: Path) -> None:
    config = tmp_path / "cli.toml"
    config.write_text("[simulator]\ncontrol_port = 1\n", encoding="utf-8")
    code, _out, err = await smsgate(config, "sms", PHONE, "Помощь")
    assert code == 1 and "Is `make run` running?" in err
