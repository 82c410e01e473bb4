"""Passwords hashed ahead of need: real argon2id pairs, each handed out once, topped up in idle time."""

from __future__ import annotations

import asyncio
import os
import re
import threading
from pathlib import Path

import pytest

from smsgate import security, texts
from store import residents
from tests.harness import Harness

PHONE = "+79031112233"


async def _until(check: object, seconds: float = 20.0) -> None:
    assert callable(check)
    deadline = asyncio.get_running_loop().time() + seconds
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_ready_pairs_verify_are_handed_out_once_and_are_topped_up() -> None:
    ready = security.ReadyPasswords()
    ready.keep(3)
    await _until(lambda: ready.ready == 3)
    pairs = [ready.take() for _ in range(3)]
    assert all(pair is not None for pair in pairs)
    passwords = [pair[0] for pair in pairs if pair is not None]
    assert len(set(passwords)) == 3
    for password, password_hash in (pair for pair in pairs if pair is not None):
        assert re.fullmatch(f"[{security.PASSWORD_ALPHABET}]{{{security.PASSWORD_LENGTH}}}", password)
        assert password_hash.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
        assert await security.verify_password(password, password_hash)
        assert not await security.verify_password(password + "x", password_hash)
    await _until(lambda: ready.ready == 3)
    assert ready.ran_out == 0
    ready.keep(1)  # a smaller stock drops the rest
    assert ready.ready == 1


async def test_the_stock_is_hashed_at_idle_cpu_priority() -> None:
    ready = security.ReadyPasswords()
    ready.keep(1)
    await _until(lambda: ready.native_id != 0)
    idle = os.sched_getscheduler(ready.native_id) == os.SCHED_IDLE
    assert idle or os.getpriority(os.PRIO_PROCESS, ready.native_id) == 19


async def test_hashes_on_demand_run_nicer_than_the_event_loop() -> None:
    def niceness() -> tuple[int, str]:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id()), security.ARGON2.hash("x")

    loop = asyncio.get_running_loop()
    mine = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    found, password_hash = await loop.run_in_executor(security._POOL, niceness)
    assert found == min(19, mine + security.HASH_NICENESS) > mine or mine == 19
    assert security.ARGON2.verify("x", password_hash)


async def test_with_none_ready_a_password_is_hashed_on_demand() -> None:
    ready = security.ReadyPasswords()
    assert ready.take() is None and ready.ran_out == 0  # no stock kept: nothing ran out
    ready.keep(1)
    assert ready.take() is None  # asked for before the first hash could be done
    assert ready.ran_out == 1
    password, password_hash = await security.issue_password()  # the shared stock may be empty
    assert await security.verify_password(password, password_hash)


async def test_password_by_sms_comes_from_the_stock(tmp_path: Path) -> None:
    gate = Harness(tmp_path, passwords={"ready": 3})
    await gate.start()
    try:
        account = gate.demo[0]
        await gate.sms(PHONE, f"рег {account.number} {account.receipt_code}")
        await _until(lambda: security.READY.ready == 3)
        stocked = {password for password, _hash in list(security.READY._pairs)}
        [reply] = await gate.sms(PHONE, "пароль")
        found = texts.find_secret(reply)
        assert found in stocked
        resident = await residents.by_phone(gate.store.db, PHONE)
        assert resident is not None
        assert await security.verify_password(found, resident.password_hash)
    finally:
        await gate.close()


async def test_a_failing_hash_does_not_end_the_stock(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real_hash = security.ARGON2.hash

    def flaky(password: str) -> str:
        calls.append(password)
        if len(calls) == 1:
            raise MemoryError("no memory for the hash")  # an Exception: the thread logs it
        return str(real_hash(password))

    monkeypatch.setattr(security, "ARGON2", security.ARGON2.using())
    monkeypatch.setattr(security.ARGON2, "hash", staticmethod(flaky))
    monkeypatch.setattr(security.time, "sleep", lambda _seconds: None)
    ready = security.ReadyPasswords()
    ready.keep(2)
    await _until(lambda: ready.ready == 2)
    assert len(calls) >= 3  # the first raised; the thread went on
