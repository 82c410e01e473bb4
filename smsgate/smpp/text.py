"""SMS text: GSM 03.38 and UCS-2, decoding what arrives, counting and splitting what is sent."""

from __future__ import annotations

import re

from smsgate.smpp.constants import (
    GSM_PART_LIMIT,
    GSM_SINGLE_LIMIT,
    UCS2_PART_OCTETS,
    UCS2_SINGLE_LIMIT,
    USSD_GSM_LIMIT,
    USSD_UCS2_LIMIT,
)
from smsgate.smpp.workarounds import gsm_decode, gsm_encode, is_gsm

# Octets that mean the same character in GSM 03.38 (unpacked) and in ASCII: letters, digits, space,
# CR, LF and most punctuation ('@', '$', '_' and a few others differ).
_GSM_AS_ASCII = re.compile(rb"[\n\r !\"#%&'()*+,\-./0-9:;<=>?A-Za-z]*")


def _alphabet(data_coding: int) -> str:
    """Which alphabet a data_coding means: 'gsm', 'ascii', 'latin-1', 'ucs2', 'cyrillic' or 'binary'."""
    smpp = {0: "gsm", 1: "ascii", 2: "binary", 3: "latin-1", 4: "binary", 6: "cyrillic", 8: "ucs2"}
    if data_coding in smpp:
        return smpp[data_coding]
    # Values outside SMPP's table are GSM 03.38 data coding schemes in practice.
    if data_coding & 0xF0 == 0xF0:
        return "binary" if data_coding & 0x04 else "gsm"
    if data_coding & 0xC0 == 0x00:
        return {0: "gsm", 1: "binary", 2: "ucs2"}.get((data_coding >> 2) & 0x03, "unknown")
    if data_coding & 0xF0 == 0xE0:
        return "ucs2"
    if data_coding & 0xF0 in (0xC0, 0xD0):
        return "gsm"
    return "unknown"


def decode_text(data_coding: int, payload: bytes) -> tuple[str, bool]:
    """Text of a payload and whether it is text at all; never raises."""
    alphabet = _alphabet(data_coding)
    if alphabet == "gsm":
        if _GSM_AS_ASCII.fullmatch(payload):
            # Receipts and most Latin texts: the codec's loop over each character costs more
            # than everything else about a receipt.
            return payload.decode("ascii"), True
        if all(byte < 0x80 for byte in payload):
            try:
                return gsm_decode(payload), True
            except (UnicodeDecodeError, ValueError, IndexError):
                pass
        # Some SMSCs announce the default alphabet and send Latin-1 or UTF-8.
        try:
            return payload.decode("utf-8"), True
        except UnicodeDecodeError:
            return payload.decode("latin-1"), True
    if alphabet == "ucs2":
        if len(payload) % 2:
            payload = payload[:-1]
        return payload.decode("utf-16-be", "replace"), True
    if alphabet == "ascii":
        return payload.decode("ascii", "replace"), True
    if alphabet == "latin-1":
        return payload.decode("latin-1"), True
    if alphabet == "cyrillic":
        return payload.decode("iso8859-5", "replace"), True
    if alphabet == "unknown" and payload and all(32 <= byte < 127 or byte in (10, 13) for byte in payload):
        return payload.decode("ascii"), True
    return "", False


def gsm_septets(text: str) -> int:
    return len(gsm_encode(text))


def count_parts(text: str) -> int:
    """How many SMS parts a text costs (what split_text would make of it)."""
    if not is_gsm(text):
        octets = len(text.encode("utf-16-be"))
        if octets <= UCS2_SINGLE_LIMIT * 2:
            return 1
        if octets == 2 * len(text):  # no surrogate pairs, so no part is cut short
            return -(-octets // UCS2_PART_OCTETS)
    return len(split_text(text, reference=0))


def encode_ussd(text: str) -> tuple[int, bytes]:
    """A USSD screen as one short_message (data_coding, user data); never split into parts.

    A screen holds 182 GSM characters or 80 UCS-2 ones (160 octets: more than one SMS holds, so
    `split_text` would cut it in two). Raises ValueError for a longer text.
    """
    if is_gsm(text):
        encoded = gsm_encode(text)
        if len(encoded) > USSD_GSM_LIMIT:
            raise ValueError(f"USSD screen longer than {USSD_GSM_LIMIT} GSM characters")
        return 0, encoded
    encoded = text.encode("utf-16-be")
    if len(encoded) > USSD_UCS2_LIMIT * 2:
        raise ValueError(f"USSD screen longer than {USSD_UCS2_LIMIT} UCS-2 characters")
    return 8, encoded


def split_text(text: str, reference: int) -> list[tuple[int, bytes]]:
    """Encode text into SMS parts: [(data_coding, user_data)], with UDH when more than one."""
    if is_gsm(text):
        encoded = gsm_encode(text)
        if len(encoded) <= GSM_SINGLE_LIMIT:
            return [(0, encoded)]
        chunks = _split_septets(encoded, GSM_PART_LIMIT - (1 if reference > 0xFF else 0))
        coding = 0
    else:
        encoded = text.encode("utf-16-be")
        if len(encoded) <= UCS2_SINGLE_LIMIT * 2:
            return [(8, encoded)]
        chunks = _split_ucs2(encoded, UCS2_PART_OCTETS - (2 if reference > 0xFF else 0))
        coding = 8
    total = len(chunks)
    if total > 255:
        raise ValueError("text needs more than 255 SMS parts")
    parts: list[tuple[int, bytes]] = []
    for number, chunk in enumerate(chunks, start=1):
        if reference > 0xFF:
            udh = bytes([6, 0x08, 4, (reference >> 8) & 0xFF, reference & 0xFF, total, number])
        else:
            udh = bytes([5, 0x00, 3, reference, total, number])
        parts.append((coding, udh + chunk))
    return parts


def encode_whole(text: str) -> tuple[int, bytes]:
    """A text in one piece for message_payload (data_coding, octets): the SMSC splits it.

    GSM 03.38 unpacked (one septet an octet, as in short_message) when every character has one,
    else UCS-2; at most 64 KiB, the TLV's limit.
    """
    if is_gsm(text):
        coding, encoded = 0, gsm_encode(text)
    else:
        coding, encoded = 8, text.encode("utf-16-be")
    if len(encoded) > 0xFFFF:
        raise ValueError(f"text too long for message_payload ({len(encoded)} octets)")
    return coding, encoded


def _split_septets(encoded: bytes, size: int) -> list[bytes]:
    chunks: list[bytes] = []
    start = 0
    while start < len(encoded):
        end = min(start + size, len(encoded))
        if end < len(encoded) and encoded[end - 1] == 0x1B:
            end -= 1  # never split an escape from the character it extends
        chunks.append(encoded[start:end])
        start = end
    return chunks


def _split_ucs2(encoded: bytes, size: int) -> list[bytes]:
    chunks: list[bytes] = []
    start = 0
    while start < len(encoded):
        end = min(start + size, len(encoded))
        if end < len(encoded) and 0xD8 <= encoded[end - 2] <= 0xDB:
            end -= 2  # never split a surrogate pair
        chunks.append(encoded[start:end])
        start = end
    return chunks

