"""The resident's phone a deliver_sm comes from."""

from __future__ import annotations

import functools

from smsgate import phone, smpp


@functools.lru_cache(maxsize=65536)
def _normalised(source: str) -> str:
    """A sender's address in E.164, or as it came; cached: parsing costs more than the rest of a text."""
    if len(source) == 11 and source.startswith("79") and source.isascii() and source.isdigit():
        return "+" + source  # a Russian mobile number as SMPP carries it: every one is valid
    try:
        return phone.normalise(source)
    except phone.BadPhone:
        return source


def phone_of(message: smpp.ShortMessage) -> str:
    return _normalised(message.source)
