"""One outgoing message as the submit_sm PDUs that carry it: SMS parts (UDH), whole, or a USSD screen.

The sender decides what to send and when; this module decides how it looks on the wire: the
parts a text is split into (or one submit_sm with the text whole in message_payload), their data
coding and UDH, registered_delivery and the extra TLVs. Each part builds its PDU for the sequence
number the session gives it.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal

from smsgate.smpp.codec import build_submit_sm
from smsgate.smpp.text import count_parts, decode_text, encode_ussd, encode_whole, split_text

# The number of the one submit of a message sent whole (message_payload): its one SMSC id and one
# receipt stand for every SMS part the SMSC makes of it.
WHOLE = 0
# At most this many parts: a UDH numbers them in one octet.
MAX_PARTS = 255


@dataclass(slots=True)
class _Envelope:
    """What every submit_sm of one message shares."""

    source: tuple[str, int, int]  # (address, TON, NPI)
    destination: tuple[str, int, int]
    registered_delivery: int
    tlvs: bytes


@dataclass(slots=True)
class OutgoingPart:
    """One submit_sm of a message: an SMS part (its UDH in data), the whole text, or a screen."""

    number: int  # 1, 2, ... in the UDH; WHOLE for a message sent whole
    coding: int  # data_coding
    data: bytes  # short_message, or message_payload's value when sent whole
    udh: bool
    _envelope: _Envelope

    def build(self, sequence: int) -> bytes:
        """The submit_sm PDU under this sequence number."""
        envelope = self._envelope
        if self.number == WHOLE:
            return build_submit_sm(sequence, envelope.source, envelope.destination, self.coding, b"",
                                   registered_delivery=envelope.registered_delivery,
                                   tlvs=envelope.tlvs, message_payload=self.data)
        return build_submit_sm(sequence, envelope.source, envelope.destination, self.coding,
                               self.data, udh=self.udh,
                               registered_delivery=envelope.registered_delivery, tlvs=envelope.tlvs)

    def text(self) -> str:
        """The text this submit carries, as a receipt's text field quotes its beginning."""
        payload = self.data[self.data[0] + 1:] if self.udh else self.data
        return decode_text(self.coding, payload)[0]


@dataclass(slots=True)
class OutgoingMessage:
    parts: list[OutgoingPart]  # the submits still to make, in order
    count: int  # SMS parts the text makes
    whole: bool  # one submit_sm with the text in message_payload

    @property
    def weight(self) -> int:
        """SMS parts each submit carries, for the submit rate."""
        return self.count if self.whole else 1


def outgoing_message(
    text: str,
    *,
    kind: Literal["sms", "ussd"],
    source: tuple[str, int, int],
    destination: tuple[str, int, int],
    receipts: bool,
    tlvs: bytes = b"",
    long_text: str = "udh",
    reference: int,
    done: Collection[int] = (),
) -> OutgoingMessage:
    """The submits of one message, leaving out the parts in `done` (accepted before a restart).

    long_text is "udh" or "payload" (`[smsc] long_text`). A USSD screen is one message, never
    split, and asks for no receipt (a screen is not delivered later or apart: there is nothing
    for a receipt to tell). A long SMS goes whole (long_text "payload") when nothing of it was
    sent as parts before, else as UDH parts under `reference` (the same on every attempt, so
    parts sent again still join); a message accepted whole (WHOLE in done) has nothing left to
    send. ValueError for a text that cannot be sent.
    """
    whole = False
    if kind == "ussd":
        coded = [encode_ussd(text)]  # a screen is one message, never split
        count = 1
    else:
        count = count_parts(text)
        if count > MAX_PARTS:
            raise ValueError(f"text needs more than {MAX_PARTS} SMS parts")
        # Whole only when nothing of it went as parts before a restart.
        whole = count > 1 and long_text == "payload" and not done
        coded = [] if whole else split_text(text, reference=reference)
    registered = 1 if receipts and kind != "ussd" else 0
    envelope = _Envelope(source, destination, registered, tlvs)
    if whole:
        coding, encoded = encode_whole(text)
        return OutgoingMessage([OutgoingPart(WHOLE, coding, encoded, False, envelope)], count, True)
    if WHOLE in done:
        return OutgoingMessage([], count, False)
    udh = count > 1
    parts = [OutgoingPart(number, coding, data, udh, envelope)
             for number, (coding, data) in enumerate(coded, start=1) if number not in done]
    return OutgoingMessage(parts, count, False)
