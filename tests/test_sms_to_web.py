"""One system: a password that came by SMS through the simulator logs in on the website at once."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestClient

from smsgate.web import create_app
from tests.harness import Harness

Client = TestClient[web.Request, web.Application]
TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')
PHONE = "+79031234567"


async def form_token(client: Client, path: str) -> str:
    response = await client.get(path)
    match = TOKEN.search(await response.text())
    assert match, path
    return match.group(1)


async def test_sms_password_logs_in_on_the_site(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    gate = await Harness(tmp_path).start()
    try:
        account = gate.demo[0]
        await gate.sms(PHONE, f"РЕГ {account.number} {account.receipt_code}")
        [reply] = await gate.sms(PHONE, "ПАРОЛЬ")
        password = reply.removeprefix("Ваш новый пароль: ").split(".")[0]
        assert gate.gateway is not None
        client = await aiohttp_client(create_app(gate.config, gate.gateway.services))

        # The phone written the way people write it, and the password straight from the SMS.
        token = await form_token(client, "/login")
        response = await client.post("/login", data={
            "login": "8 (903) 123-45-67", "password": password, "csrf_token": token,
        }, allow_redirects=False)
        assert response.status == 303
        # A password that came by SMS must be replaced before anything else is shown.
        response = await client.get("/account", allow_redirects=False)
        assert response.status in (302, 303) and response.headers["Location"].startswith("/password")
        token = await form_token(client, "/password")
        response = await client.post("/password", data={
            "password": password, "new_password": "Zheltyi-podsolnuh-42",
            "new_password_confirm": "Zheltyi-podsolnuh-42", "csrf_token": token,
        }, allow_redirects=False)
        assert response.status == 303
        page = await (await client.get("/account")).text()
        assert account.number in page

        # The SMS side sees the same resident: a web change does not disturb БАЛАНС.
        [balance] = await gate.sms(PHONE, "Баланс")
        assert account.number in balance
    finally:
        await gate.close()
