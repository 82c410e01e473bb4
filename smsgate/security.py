"""Passwords and one-time codes: generated with `secrets`, hashed with argon2id off the event loop."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import hmac
import os
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from passlib.hash import argon2

from smsgate import logs

log = logs.get("security")
RAN_OUT_LOG_SECONDS = 10.0  # at most one passwords_ready_empty event this often

# No look-alike characters (0/O/o, 1/l/I/i, 5/S, 2/Z, 8/B): passwords are read off a phone screen.
PASSWORD_ALPHABET = "abcdefghjkmnpqrstuvwxyzACDEFGHJKLMNPQRTUVWXY34679"
PASSWORD_LENGTH = 10

# OWASP's minimum for argon2id is m=19 MiB, t=2, p=1; we stay above it while keeping a hash at a
# few tens of milliseconds on two cores, so a burst of ПАРОЛЬ requests cannot stall the gateway.
ARGON2 = argon2.using(type="ID", memory_cost=19456, rounds=2, parallelism=1)

# How much nicer than the process the hashing threads run (Linux: per thread). At saturation,
# once the ready passwords are gone, hashes made on demand would take the CPU the loop and the
# БАЛАНС reader need: a text that costs a fraction of a millisecond then waits behind hashes of
# tens. Nicer, ПАРОЛЬ and logins take longer under such a flood and every other text does not
# (docs/performance.md).
HASH_NICENESS = 5


def _nicer() -> None:
    with contextlib.suppress(AttributeError, OSError, PermissionError):
        thread = threading.get_native_id()
        current = os.getpriority(os.PRIO_PROCESS, thread)
        os.setpriority(os.PRIO_PROCESS, thread, min(19, current + HASH_NICENESS))


_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="argon2", initializer=_nicer)


def new_password() -> str:
    while True:
        candidate = "".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(PASSWORD_LENGTH))
        # At least one digit and one letter, so residents recognise it as a password.
        if any(c.isdigit() for c in candidate) and any(c.isalpha() for c in candidate):
            return candidate


def new_code(digits: int = 6) -> str:
    return "".join(secrets.choice("0123456789") for _ in range(digits))


def new_card_number() -> str:
    """A 10-digit card number (9 random digits and a Luhn check digit), not starting with 0."""
    body = str(secrets.randbelow(9) + 1) + "".join(secrets.choice("0123456789") for _ in range(8))
    return body + _luhn_digit(body)


def _luhn_digit(body: str) -> str:
    total = 0
    for index, char in enumerate(reversed(body)):
        value = int(char)
        if index % 2 == 0:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return str((10 - total % 10) % 10)


def is_card_number(text: str) -> bool:
    return len(text) == 10 and text.isdigit() and _luhn_digit(text[:9]) == text[9]


class ReadyPasswords:
    """Passwords hashed ahead of need, in CPU time that nothing else wants.

    An argon2id hash costs tens of milliseconds of CPU. Made when ПАРОЛЬ comes, it takes a core
    from every other text at that moment, and a burst of ПАРОЛЬ queues behind the hashing
    threads (and each phone's later texts behind its ПАРОЛЬ). So one thread at the lowest CPU
    priority (SCHED_IDLE, else nice 19) keeps up to `size` (password, hash) pairs ready. They
    live in this process's memory only, never on disk or in a log, and each is handed out once;
    a restart starts with none. When none is ready (a burst longer than the stock, or a machine
    with no idle CPU), `issue_password` makes and hashes one on demand.
    """

    def __init__(self) -> None:
        self._pairs: collections.deque[tuple[str, str]] = collections.deque()
        self._size = 0
        self._wanted = threading.Event()
        self._thread: threading.Thread | None = None
        self.native_id = 0  # the filling thread's, once it runs
        self.ran_out = 0  # times a password was asked for with none ready (stock kept > 0)
        self._ran_out_logged = -RAN_OUT_LOG_SECONDS

    def keep(self, size: int) -> None:
        """Keep `size` pairs ready from now on (0: none; what is ready is still handed out)."""
        self._size = max(0, size)
        while len(self._pairs) > self._size:
            self._pairs.pop()
        if self._size and self._thread is None:
            self._thread = threading.Thread(target=self._fill, name="argon2-ahead", daemon=True)
            self._thread.start()
        self._wanted.set()

    @property
    def ready(self) -> int:
        return len(self._pairs)

    def take(self) -> tuple[str, str] | None:
        """A ready (password, hash), or None; the stock is topped up behind it."""
        try:
            pair = self._pairs.popleft()
        except IndexError:
            pair = None
            if self._size:
                self.ran_out += 1
                at = time.monotonic()
                if at - self._ran_out_logged >= RAN_OUT_LOG_SECONDS:
                    self._ran_out_logged = at
                    # More ПАРОЛЬ/РЕГ than idle CPU could hash ahead: they wait for a hash now.
                    log.warning("passwords_ready_empty", extra={"kept": self._size,
                                                               "ran_out": self.ran_out})
        self._wanted.set()
        return pair

    def _fill(self) -> None:
        _lowest_priority()
        self.native_id = threading.get_native_id()  # once its priority is set (a test reads it)
        while True:
            self._wanted.wait()
            self._wanted.clear()  # before counting: a take() from here on wakes the next round
            while len(self._pairs) < self._size:
                password = new_password()
                try:
                    self._pairs.append((password, ARGON2.hash(password)))
                except Exception:
                    # Never the end of the stock: issue_password hashes on demand meanwhile.
                    log.exception("passwords_ready_failed")
                    time.sleep(1.0)


def _lowest_priority() -> None:
    """This thread runs only when a core is otherwise idle (Linux), or as nicely as it may."""
    with contextlib.suppress(AttributeError, OSError, PermissionError):
        os.sched_setscheduler(threading.get_native_id(), os.SCHED_IDLE, os.sched_param(0))
        return
    with contextlib.suppress(AttributeError, OSError, PermissionError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)


READY = ReadyPasswords()


async def issue_password() -> tuple[str, str]:
    """A new password and its argon2id hash: a ready-made pair when there is one, else made now
    (hashed off the event loop)."""
    pair = READY.take()
    if pair is not None:
        return pair
    password = new_password()
    return password, await hash_password(password)


async def hash_password(password: str) -> str:
    loop = asyncio.get_running_loop()
    return str(await loop.run_in_executor(_POOL, ARGON2.hash, password))


async def verify_password(password: str, password_hash: str | None) -> bool:
    """Constant-ish time whether or not a hash exists, so timing does not reveal residents."""
    loop = asyncio.get_running_loop()
    target = password_hash or _DUMMY_HASH
    try:
        ok = bool(await loop.run_in_executor(_POOL, ARGON2.verify, password, target))
    except ValueError:
        ok = False
    return ok and password_hash is not None


def hash_code(code: str, salt: str) -> str:
    """Codes are short-lived and attempt-limited; a keyed hash is enough and costs nothing."""
    return hashlib.blake2b(code.encode(), key=salt.encode()[:64], digest_size=32).hexdigest()


def codes_equal(code: str, salt: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_code(code, salt), stored_hash)


def receipt_codes_equal(given: str, stored: str) -> bool:
    return hmac.compare_digest(given.strip().encode(), stored.strip().encode())


_DUMMY_HASH = ARGON2.hash(secrets.token_hex(8))
