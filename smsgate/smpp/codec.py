"""SMPP 3.4 PDUs on the wire: framing the byte stream, the header, deliver_sm and submit_sm, responses."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

from smsgate.smpp.constants import (
    DELIVER_SM,
    ESME_RINVCMDID,
    ESME_ROK,
    GENERIC_NACK,
    HEADER,
    HEADER_LENGTH,
    MAX_PDU_LENGTH,
    RESPONSE_BIT,
    SUBMIT_SM,
    TAG_ITS_SESSION_INFO,
    TAG_MESSAGE_PAYLOAD,
    TAG_SAR_MSG_REF_NUM,
    TAG_SAR_SEGMENT_SEQNUM,
    TAG_SAR_TOTAL_SEGMENTS,
    TAG_USER_MESSAGE_REFERENCE,
    TAG_USSD_SERVICE_OP,
    UDHI,
)
from smsgate.smpp.text import decode_text
from smsgate.smpp.workarounds import check_numbering


class PduError(ValueError):
    """A PDU that cannot be parsed; the caller answers it with generic_nack or an error status."""


# Value classes built for every PDU or text are slotted, not frozen: a frozen dataclass sets each
# field through object.__setattr__, several times the cost of a plain one. None is ever changed.
@dataclass(slots=True)
class Header:
    length: int
    command_id: int
    status: int
    sequence: int


def parse_header(data: bytes) -> Header:
    """The 16-octet header, with unknown commands and statuses kept as numbers."""
    if len(data) < HEADER_LENGTH:
        raise PduError("short header")
    length, command_id, status, sequence = HEADER.unpack_from(data)
    return Header(length, command_id, status, sequence)


def frames(buffer: bytearray) -> Iterator[bytes]:
    """Cut the complete PDUs off the front of buffer, in order; a partial one stays for more octets.

    Each PDU leaves the buffer as it is yielded, so a reader may stop after any of them. A
    command_length under 16 or over MAX_PDU_LENGTH raises PduError once the PDUs before it are
    taken: nothing tells where the next PDU begins, so the stream is lost and the link must be reset.
    """
    while len(buffer) >= HEADER_LENGTH:
        length = int.from_bytes(buffer[:4], "big")
        if length < HEADER_LENGTH or length > MAX_PDU_LENGTH:
            raise PduError(f"bad command_length {length}")
        if len(buffer) < length:
            return
        pdu = bytes(buffer[:length])
        del buffer[:length]  # cheap: a bytearray drops its head by moving its start
        yield pdu


@dataclass(slots=True)
class Concat:
    """Position of one part of a concatenated message (from UDH or SAR TLVs)."""

    reference: int
    total: int
    number: int


@dataclass(slots=True)
class ShortMessage:
    """A decoded deliver_sm or submit_sm: what the transport needs, nothing library-specific."""

    command_id: int
    sequence: int
    service_type: str
    source: str
    source_ton: int
    source_npi: int
    destination: str
    dest_ton: int
    dest_npi: int
    esm_class: int
    registered_delivery: int
    data_coding: int
    text: str  # decoded text; '' when the payload is not text
    payload: bytes  # user data without UDH
    concat: Concat | None
    tlvs: dict[int, bytes] = field(default_factory=dict)
    is_text: bool = True

    @property
    def is_receipt(self) -> bool:
        # esm_class bits 5..2 = 0001 (SMSC delivery receipt); 0010/1000 are acknowledgements.
        return (self.esm_class >> 2) & 0x0F in (0x01, 0x02, 0x08)

    @property
    def ussd_service_op(self) -> int | None:
        value = self.tlvs.get(TAG_USSD_SERVICE_OP)
        return value[0] if value else None

    @property
    def its_session_info(self) -> bytes | None:
        return self.tlvs.get(TAG_ITS_SESSION_INFO)

    @property
    def user_message_reference(self) -> int | None:
        value = self.tlvs.get(TAG_USER_MESSAGE_REFERENCE)
        return int.from_bytes(value, "big") if value else None


def _c_string(data: bytes, index: int, limit: int) -> tuple[str, int]:
    end = data.find(b"\x00", index, limit)
    if end < 0:
        raise PduError("unterminated C-octet string")
    return data[index:end].decode("latin-1"), end + 1


def _udh(user_data: bytes) -> tuple[Concat | None, bytes]:
    """Split user data into its concatenation info and the rest; unknown IEs are skipped."""
    if not user_data:
        raise PduError("UDHI set but no user data")
    udh_length = user_data[0]
    if udh_length + 1 > len(user_data):
        raise PduError("UDH longer than user data")
    concat: Concat | None = None
    index = 1
    end = 1 + udh_length
    while index + 2 <= end:
        ie_id, ie_length = user_data[index], user_data[index + 1]
        value = user_data[index + 2 : index + 2 + ie_length]
        if len(value) != ie_length:
            raise PduError("truncated UDH information element")
        if ie_id == 0x00 and ie_length == 3:
            concat = Concat(value[0], value[1], value[2])
        elif ie_id == 0x08 and ie_length == 4:
            concat = Concat(int.from_bytes(value[:2], "big"), value[2], value[3])
        index += 2 + ie_length
    if concat is not None and not 1 <= concat.number <= concat.total:
        # 3GPP TS 23.040 9.2.3.24.1: a receiver ignores a concatenation IE whose part number is 0
        # or above the total; the message is read as a text on its own.
        concat = None
    return concat, user_data[end:]


def decode_sm(pdu: bytes) -> ShortMessage:
    """Parse a deliver_sm or submit_sm body; raises PduError on anything malformed."""
    if len(pdu) < HEADER_LENGTH:
        raise PduError("short header")
    length, command_id, _status, sequence = HEADER.unpack_from(pdu)
    limit = min(length, len(pdu))
    try:
        index = HEADER_LENGTH
        service_type, index = _c_string(pdu, index, limit)
        source_ton, source_npi = pdu[index], pdu[index + 1]
        source, index = _c_string(pdu, index + 2, limit)
        dest_ton, dest_npi = pdu[index], pdu[index + 1]
        destination, index = _c_string(pdu, index + 2, limit)
        esm_class = pdu[index]
        index += 3  # esm_class, protocol_id, priority_flag
        _schedule, index = _c_string(pdu, index, limit)
        _validity, index = _c_string(pdu, index, limit)
        registered_delivery = pdu[index]
        data_coding = pdu[index + 2]
        sm_length = pdu[index + 4]
        index += 5
        user_data = pdu[index : index + sm_length]
        if len(user_data) != sm_length:
            raise PduError("short_message runs past the PDU")
        index += sm_length
        tlvs: dict[int, bytes] = {}
        while index + 4 <= limit:
            tag, length = struct.unpack_from("!HH", pdu, index)
            value = pdu[index + 4 : index + 4 + length]
            if len(value) != length:
                raise PduError(f"TLV 0x{tag:04X} runs past the PDU")
            tlvs[tag] = value
            index += 4 + length
        if index != limit:
            raise PduError("trailing octets after the TLVs")
    except IndexError:
        raise PduError("PDU body is truncated") from None
    if not user_data and TAG_MESSAGE_PAYLOAD in tlvs:
        user_data = tlvs[TAG_MESSAGE_PAYLOAD]
    concat: Concat | None = None
    if esm_class & UDHI:
        concat, payload = _udh(user_data)
    else:
        payload = user_data
        sar = (tlvs.get(TAG_SAR_MSG_REF_NUM), tlvs.get(TAG_SAR_TOTAL_SEGMENTS),
               tlvs.get(TAG_SAR_SEGMENT_SEQNUM))
        if all(sar):
            ref, total, number = (int.from_bytes(v or b"", "big") for v in sar)
            concat = Concat(ref, total, number)
    text, is_text = decode_text(data_coding, payload)
    return ShortMessage(
        command_id=command_id, sequence=sequence, service_type=service_type,
        source=source, source_ton=source_ton, source_npi=source_npi,
        destination=destination, dest_ton=dest_ton, dest_npi=dest_npi,
        esm_class=esm_class, registered_delivery=registered_delivery, data_coding=data_coding,
        text=text, payload=payload, concat=concat, tlvs=tlvs, is_text=is_text,
    )


def tlv(tag: int, value: bytes) -> bytes:
    return struct.pack("!HH", tag, len(value)) + value


def build_submit_sm(
    sequence: int,
    source: tuple[str, int, int],
    destination: tuple[str, int, int],
    data_coding: int,
    user_data: bytes,
    *,
    udh: bool = False,
    registered_delivery: int = 1,
    tlvs: bytes = b"",
    service_type: str = "",
    command_id: int = SUBMIT_SM,
    esm_class: int | None = None,
    message_payload: bytes | None = None,
) -> bytes:
    """A submit_sm (or deliver_sm, by command_id) PDU carrying already encoded user data.

    With message_payload the text travels whole in that TLV (0x0424) and short_message is empty
    (SMPP 3.4 section 5.3.2.32: one or the other); user_data must then be empty.

    Written field by field (SMPP 3.4 section 4.4.1) rather than through aiosmpplib's SubmitSm,
    whose construction checks every field at a cost the send path feels; tests/test_pdu.py shows
    the bytes are the library's, with its checks kept here (address and service type lengths,
    TON and NPI values, 254 octets of user data).
    """
    source_number, source_ton, source_npi = source
    number, ton, npi = destination
    if len(source_number) > 20 or len(number) > 20:
        raise ValueError("an SMPP address has at most 20 characters")
    if len(service_type) > 5:
        raise ValueError("service_type has at most 5 characters")
    if len(user_data) > 254:
        raise ValueError(f"user data too long ({len(user_data)} octets, at most 254)")
    check_numbering(source_ton, source_npi)
    check_numbering(ton, npi)
    if message_payload is not None:
        if user_data:
            raise ValueError("message_payload and short_message exclude each other")
        if len(message_payload) > 0xFFFF:
            raise ValueError(f"message_payload too long ({len(message_payload)} octets)")
        tlvs += tlv(TAG_MESSAGE_PAYLOAD, message_payload)
    if esm_class is None:
        esm_class = UDHI if udh else 0
    body = b"".join((
        service_type.encode("ascii"), b"\x00",
        bytes((source_ton, source_npi)), source_number.encode("ascii"), b"\x00",
        bytes((ton, npi)), number.encode("ascii"), b"\x00",
        # esm_class, protocol_id, priority_flag; empty schedule_delivery_time and validity_period
        bytes((esm_class, 0, 0)), b"\x00\x00",
        # registered_delivery, replace_if_present_flag, data_coding, sm_default_msg_id, sm_length
        bytes((registered_delivery, 0, data_coding, 0, len(user_data))), user_data,
        tlvs,
    ))
    return HEADER.pack(HEADER_LENGTH + len(body), command_id, ESME_ROK, sequence) + body


def build_deliver_sm(
    sequence: int,
    source: tuple[str, int, int],
    destination: tuple[str, int, int],
    data_coding: int,
    user_data: bytes,
    *,
    esm_class: int = 0,
    tlvs: bytes = b"",
) -> bytes:
    """A deliver_sm PDU; esm_class carries UDHI (0x40) or the receipt type (0x04)."""
    return build_submit_sm(
        sequence, source, destination, data_coding, user_data, registered_delivery=0, tlvs=tlvs,
        command_id=DELIVER_SM, esm_class=esm_class,
    )


def response(command_id: int, sequence: int, status: int = ESME_ROK, body: bytes = b"") -> bytes:
    """Any response PDU (command_id | 0x80000000) with an optional raw body."""
    return HEADER.pack(HEADER_LENGTH + len(body), command_id | RESPONSE_BIT, status, sequence) + body


def deliver_sm_resp(sequence: int, status: int = ESME_ROK) -> bytes:
    if status != ESME_ROK:
        return response(DELIVER_SM, sequence, status)
    # Built by hand, one per text received: the bytes of aiosmpplib's DeliverSmResp (an empty
    # message_id), as tests/test_pdu.py shows.
    return response(DELIVER_SM, sequence, ESME_ROK, b"\x00")


def generic_nack(sequence: int, status: int = ESME_RINVCMDID) -> bytes:
    # Built by hand: aiosmpplib refuses statuses outside its enum.
    return HEADER.pack(HEADER_LENGTH, GENERIC_NACK, status, sequence)


def response_message_id(pdu: bytes) -> str:
    """message_id of a submit_sm_resp (may be absent on errors)."""
    body = pdu[HEADER_LENGTH:]
    end = body.find(b"\x00")
    return (body if end < 0 else body[:end]).decode("latin-1")


def c_strings(pdu: bytes, count: int) -> list[str]:
    """The first count C-octet strings of a body (bind: system_id, password, system_type)."""
    values: list[str] = []
    index = HEADER_LENGTH
    for _ in range(count):
        value, index = _c_string(pdu, index, len(pdu))
        values.append(value)
    return values
