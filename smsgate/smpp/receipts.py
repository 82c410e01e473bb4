"""Delivery receipts, however the SMSC wrote them: TLVs first, then the text's name: value fields."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from smsgate.smpp.codec import ShortMessage
from smsgate.smpp.constants import (
    MESSAGE_STATES,
    TAG_MESSAGE_STATE,
    TAG_NETWORK_ERROR_CODE,
    TAG_RECEIPTED_MESSAGE_ID,
)


@dataclass(slots=True)
class Receipt:
    """A delivery receipt, however the SMSC wrote it."""

    message_id: str
    stat: str
    err: str
    fields: dict[str, str]

    # Read when asked: the gateway never needs them, and parsing them costs a third of a receipt.
    @property
    def submit_date(self) -> datetime | None:
        return _receipt_date(self.fields.get("submit date", ""))

    @property
    def done_date(self) -> datetime | None:
        return _receipt_date(self.fields.get("done date", ""))


_RECEIPT_NAMES = r"id|sub|dlvrd|submit date|done date|stat|err|text"
_RECEIPT_FIELD = re.compile(
    rf"(?i)\b({_RECEIPT_NAMES})\s*:\s*(.*?)(?=\s+(?:{_RECEIPT_NAMES})\s*:|$)", re.S
)


def _receipt_date(value: str) -> datetime | None:
    """YYMMDDhhmm[ss], years as strptime's %y reads them (69-99 are 19xx); None if not a date."""
    digits = re.sub(r"\D", "", value)
    if len(digits) not in (10, 12):
        return None
    # By hand: strptime would take a third of the time spent reading a receipt.
    year, month, day, hour, minute, second = (int(digits[i : i + 2] or 0) for i in range(0, 12, 2))
    try:
        return datetime(year + (1900 if year >= 69 else 2000), month, day, hour, minute, second)
    except ValueError:
        return None


# The form of SMPP 3.4 Appendix B, as most SMSCs write it: read in one match. Anything else
# (other spacing, letter case, order, missing fields) goes through _RECEIPT_FIELD.
_STANDARD_RECEIPT = re.compile(
    r"id:(\S*) sub:(\S*) dlvrd:(\S*) submit date:(\S*) done date:(\S*) stat:(\S*) err:(\S*)"
    r"(?: text:(.*))?\Z", re.S
)
_STANDARD_NAMES = ("id", "sub", "dlvrd", "submit date", "done date", "stat", "err")


def receipt_fields(text: str) -> dict[str, str]:
    """The name: value fields of a receipt's text, names in lower case."""
    standard = _STANDARD_RECEIPT.match(text)
    if standard is not None:
        fields = dict(zip(_STANDARD_NAMES, standard.groups(), strict=False))
        if standard.group(8) is not None:
            fields["text"] = standard.group(8).strip()
        return fields
    fields = {}
    for match in _RECEIPT_FIELD.finditer(text):
        fields.setdefault(match.group(1).lower(), match.group(2).strip())
    return fields


def parse_receipt(message: ShortMessage) -> Receipt:
    """Read a receipt from its TLVs first, then its text; never raises."""
    fields = receipt_fields(message.text)
    message_id = fields.get("id", "")
    tlv_id = message.tlvs.get(TAG_RECEIPTED_MESSAGE_ID)
    if tlv_id:
        message_id = tlv_id.rstrip(b"\x00").decode("latin-1").strip()
    stat = fields.get("stat", "").upper()
    tlv_state = message.tlvs.get(TAG_MESSAGE_STATE)
    if tlv_state:
        stat = MESSAGE_STATES.get(tlv_state[0], stat or "UNKNOWN")
    err = fields.get("err", "")
    tlv_error = message.tlvs.get(TAG_NETWORK_ERROR_CODE)
    if tlv_error and not err:
        err = tlv_error.hex()
    return Receipt(message_id=message_id, stat=stat, err=err, fields=fields)
