"""The keys a submitted part is stored under, and those a receipt looks it up by.

SMSCs give a message id in hex in submit_sm_resp and in decimal in the receipt (or the reverse),
with or without leading zeros, in any letter case; a part is stored under one key and a receipt
names every key its id could have been stored under. A store may also hold parts under all
their readings at once (`s:` and `n:` keys, `reading_keys`): receipts find those too.
"""

from __future__ import annotations


def normalise_message_id(message_id: str) -> set[str]:
    """Keys under which an SMSC message id may be matched: hex and decimal readings, no zeros."""
    cleaned = message_id.strip().lower()
    if not cleaned:
        return set()
    return reading_keys(cleaned, *_numbers(cleaned))


def reading_keys(cleaned: str, decimal: int | None, hexadecimal: int | None) -> set[str]:
    """An id under all its readings: the digits without leading zeros, its decimal and hex values."""
    keys = {"s:" + cleaned.lstrip("0")}
    keys.update(f"n:{number}" for number in (decimal, hexadecimal) if number is not None)
    return keys


_HEX_DIGITS = "0123456789abcdef"


def _numbers(cleaned: str) -> tuple[int | None, int | None]:
    """An id's value read as decimal (a bare number) and read as hex (its digits, 0x or not)."""
    decimal = int(cleaned) if cleaned.isascii() and cleaned.isdigit() else None
    digits = cleaned.removeprefix("0x")
    hexadecimal = int(digits, 16) if digits and not digits.strip(_HEX_DIGITS) else None
    return decimal, hexadecimal


def message_id_key(message_id: str) -> str | None:
    """The one key a submitted part is stored under: its SMSC id trimmed, in lower case, without
    leading zeros ("k:"), or an id marked hex (0x...) by its value ("v:"). A receipt looks it up
    under every reading of its own id (`receipt_keys`), so one key a part is enough: one indexed
    row a part sent, not one a reading."""
    cleaned = message_id.strip().lower()
    if not cleaned:
        return None
    return _key(cleaned, _numbers(cleaned)[1])


def _key(cleaned: str, hexadecimal: int | None) -> str:
    """`message_id_key` of an id already cleaned and read."""
    if cleaned.startswith("0x") and hexadecimal is not None:
        return f"v:{hexadecimal}"
    return "k:" + cleaned.lstrip("0")


def receipt_keys(message_id: str) -> set[str]:
    """Every key a receipt's id may name its part under: the id as `message_id_key` writes it,
    and the part's id as the other radix would write it (SMSCs give it in hex in submit_sm_resp
    and in decimal in the receipt, or the reverse): a receipt's decimal id names a part whose
    id is that number in hex digits or marked 0x; its hex digits name a part whose id is that
    number in decimal, the same digits, or marked 0x. Also the id's own readings
    (`reading_keys`), for parts stored under all of theirs."""
    cleaned = message_id.strip().lower()
    if not cleaned:
        return set()
    decimal, hexadecimal = _numbers(cleaned)  # once: a receipt is read for every part sent
    keys = reading_keys(cleaned, decimal, hexadecimal)
    keys.add(_key(cleaned, hexadecimal))
    if decimal is not None:
        keys.update(("k:" + format(decimal, "x").lstrip("0"), f"v:{decimal}"))
    if hexadecimal is not None:
        digits = cleaned.removeprefix("0x")
        keys.update(("k:" + str(hexadecimal).lstrip("0"), "k:" + digits.lstrip("0"),
                     f"v:{hexadecimal}"))
    return keys
