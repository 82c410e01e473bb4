"""Passwords and one-time codes: generated with `secrets`, hashed with argon2id off the event loop."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from concurrent.futures import ThreadPoolExecutor

from passlib.hash import argon2

# No look-alike characters (0/O/o, 1/l/I/i, 5/S, 2/Z, 8/B): passwords are read off a phone screen.
PASSWORD_ALPHABET = "abcdefghjkmnpqrstuvwxyzACDEFGHJKLMNPQRTUVWXY34679"
PASSWORD_LENGTH = 10

# OWASP's minimum for argon2id is m=19 MiB, t=2, p=1; we stay above it while keeping a hash at a
# few tens of milliseconds on two cores, so a burst of ПАРОЛЬ requests cannot stall the gateway.
ARGON2 = argon2.using(type="ID", memory_cost=19456, rounds=2, parallelism=1)

_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="argon2")


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
