"""Phone numbers: parsed for region RU, stored as E.164, masked in logs."""

from __future__ import annotations

import re

import phonenumbers

_MOBILE_RU = re.compile(r"^\+79\d{9}$")


class BadPhone(ValueError):
    """Not a phone number we can send to."""


def normalise(raw: str) -> str:
    """E.164 form of a Russian number written any common way; raises BadPhone otherwise."""
    text = (raw or "").strip()
    if not text or len(text) > 32:
        raise BadPhone("empty or too long")
    # SMPP addresses arrive as 79031234567 (international, no plus).
    digits = re.sub(r"\D", "", text)
    if not text.startswith("+") and len(digits) == 11 and digits[0] == "7":
        text = "+" + digits
    try:
        parsed = phonenumbers.parse(text, "RU")
    except phonenumbers.NumberParseException:
        raise BadPhone("unparseable") from None
    if not phonenumbers.is_valid_number_for_region(parsed, "RU"):
        raise BadPhone("not a Russian number")
    return str(phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164))


def is_russian_mobile(e164: str) -> bool:
    """Only +7 9xx numbers get SMS (anti-pumping: no premium, foreign or landline destinations)."""
    return bool(_MOBILE_RU.match(e164))


def mask(phone: str) -> str:
    """+79037672024 -> +7903***2024, for logs."""
    if len(phone) <= 8:
        return "***"
    return phone[:5] + "***" + phone[-4:]


def prefix(e164: str) -> str:
    """The number without its last 4 digits: the unit of per-prefix rate limits."""
    return e164[:-4]


def smpp_address(e164: str) -> str:
    """International number as SMPP carries it (TON 1, NPI 1): no plus."""
    return e164.lstrip("+")
