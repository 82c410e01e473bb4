"""SMPP 3.4 PDUs on the wire, and every workaround for aiosmpplib 0.7.4 in one place.

aiosmpplib builds our rarer outgoing PDUs (bind, enquire_link, unbind, submit_sm_resp) and gives us
its GSM 03.38 and UCS-2 codecs; submit_sm, deliver_sm and deliver_sm_resp, sent for every message,
are written here field by field, byte for byte as the library writes them (tests/test_pdu.py), at a
fraction of its cost. Where it mishandles what the network sends, this module does the work
itself; each case is pinned by a test of real PDU bytes in tests/test_pdu.py:

- header: SmppCommand()/SmppCommandStatus() raise on unknown ids or vendor status codes, which
  would end the session; `parse_header` keeps them as plain integers.
- deliver_sm: a data_coding outside its enum (0x0F, 0xF4, ...) raises, the library answers
  generic_nack and the message is lost; UDH IE 0x08 reads the 16-bit reference from 4 octets;
  TLV values >= 0x80 fail to decode as ASCII; ussd_service_op 0 decodes to ''; its_session_info
  is shortened to one character. `decode_sm` parses the body itself and keeps TLVs as bytes.
- receipts: parse_receipt raises on 12-digit dates and non-decimal err; `parse_receipt` here never
  raises, and prefers the receipted_message_id / message_state / network_error_code TLVs.
- submit_sm: optional parameters are carried as text (ussd_service_op must be a one-character
  string, two-octet values cannot be sent); `build_submit_sm` appends raw TLV bytes instead.
  auto_message_payload sends texts of up to 254 octets as one short_message even when longer than
  one SMS and its UDH splitter counts GSM characters instead of septets; `split_text` does real
  UDH concatenation (IE 0x00, or IE 0x08 for references above 255) itself, and
  `build_submit_sm(message_payload=...)` the whole text in one TLV where the SMSC takes it.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from datetime import datetime

from aiosmpplib import (
    NPI,
    TON,
    BindTransceiver,
    EnquireLink,
    EnquireLinkResp,
    SmppCommandStatus,
    SubmitSmResp,
    Unbind,
    UnbindResp,
)
from aiosmpplib.codec import GSM7BitCodec

HEADER = struct.Struct("!IIII")
HEADER_LENGTH = 16
MAX_PDU_LENGTH = 2**16 + 1024

# Command ids (SMPP 3.4 section 5.1.2).
BIND_RECEIVER = 0x00000001
BIND_TRANSMITTER = 0x00000002
SUBMIT_SM = 0x00000004
DELIVER_SM = 0x00000005
UNBIND = 0x00000006
BIND_TRANSCEIVER = 0x00000009
ENQUIRE_LINK = 0x00000015
GENERIC_NACK = 0x80000000
RESPONSE_BIT = 0x80000000

# Command status values we act on.
ESME_ROK = 0x00
ESME_RINVCMDLEN = 0x02
ESME_RINVCMDID = 0x03
ESME_RINVBNDSTS = 0x04
ESME_RALYBND = 0x05
ESME_RSYSERR = 0x08
ESME_RBINDFAIL = 0x0D
ESME_RINVPASWD = 0x0E
ESME_RMSGQFUL = 0x14
ESME_RTHROTTLED = 0x58
ESME_RX_T_APPN = 0x64
ESME_RINVMSGLEN = 0x01
ESME_RINVOPTPARSTREAM = 0xC0
ESME_ROPTPARNOTALLWD = 0xC1
ESME_RINVPARLEN = 0xC2
ESME_RMISSINGOPTPARAM = 0xC3
ESME_RINVOPTPARAMVAL = 0xC4
# What an SMSC that does not take message_payload answers a submit_sm carrying it.
PAYLOAD_REFUSALS = frozenset((
    ESME_RINVMSGLEN, ESME_RINVOPTPARSTREAM, ESME_ROPTPARNOTALLWD, ESME_RINVPARLEN,
    ESME_RMISSINGOPTPARAM, ESME_RINVOPTPARAMVAL,
))

# TLV tags.
TAG_USER_MESSAGE_REFERENCE = 0x0204
TAG_SAR_MSG_REF_NUM = 0x020C
TAG_SAR_TOTAL_SEGMENTS = 0x020E
TAG_SAR_SEGMENT_SEQNUM = 0x020F
TAG_RECEIPTED_MESSAGE_ID = 0x001E
TAG_NETWORK_ERROR_CODE = 0x0423
TAG_MESSAGE_PAYLOAD = 0x0424
TAG_MESSAGE_STATE = 0x0427
TAG_USSD_SERVICE_OP = 0x0501
TAG_ITS_SESSION_INFO = 0x1383

UDHI = 0x40
GSM_SINGLE_LIMIT = 160
GSM_PART_LIMIT = 153  # with a 6-octet UDH (IE 0x00)
UCS2_SINGLE_LIMIT = 70  # characters; 140 octets
UCS2_PART_OCTETS = 134  # 140 - 6 octet UDH: 67 characters
USSD_GSM_LIMIT = 182  # characters of one USSD screen
USSD_UCS2_LIMIT = 80

MESSAGE_STATES = {
    1: "ENROUTE", 2: "DELIVRD", 3: "EXPIRED", 4: "DELETED",
    5: "UNDELIV", 6: "ACCEPTD", 7: "UNKNOWN", 8: "REJECTD",
}

_GSM = GSM7BitCodec()
# Octets that mean the same character in GSM 03.38 (unpacked) and in ASCII: letters, digits, space,
# CR, LF and most punctuation ('@', '$', '_' and a few others differ).
_GSM_AS_ASCII = re.compile(rb"[\n\r !\"#%&'()*+,\-./0-9:;<=>?A-Za-z]*")


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


def status_name(status: int) -> str:
    try:
        return str(SmppCommandStatus(status).name)
    except ValueError:
        return f"0x{status:08X}"


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
    return concat, user_data[end:]


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
                return _GSM.decode(payload, "replace")[0], True
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


@dataclass(slots=True)
class Receipt:
    """A delivery receipt, however the SMSC wrote it."""

    message_id: str
    stat: str
    err: str
    fields: dict[str, str]

    # Read when asked: the gateway never needs them, and parsing them cost a third of a receipt.
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
    # By hand: strptime took a third of the time spent reading a receipt.
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


# ---- Outgoing -------------------------------------------------------------------------------


def is_gsm(text: str) -> bool:
    return bool(GSM7BitCodec.is_gsm_text(text))


def gsm_septets(text: str) -> int:
    return len(_GSM.encode(text)[0])


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
        encoded = _GSM.encode(text)[0]
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
        encoded = _GSM.encode(text)[0]
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
        coding, encoded = 0, _GSM.encode(text)[0]
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
    whose construction checks every field at a cost the send path felt; tests/test_pdu.py shows
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
    for value, kind in ((source_ton, TON), (source_npi, NPI), (ton, TON), (npi, NPI)):
        kind(value)  # ValueError for a value SMPP does not name
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


def bind_transceiver(sequence: int, system_id: str, password: str, system_type: str = "") -> bytes:
    message = BindTransceiver(
        sequence_num=sequence, system_id=system_id, password=password, system_type=system_type
    )
    return bytes(message.pdu())


def response(command_id: int, sequence: int, status: int = ESME_ROK, body: bytes = b"") -> bytes:
    """Any response PDU (command_id | 0x80000000) with an optional raw body."""
    return HEADER.pack(HEADER_LENGTH + len(body), command_id | RESPONSE_BIT, status, sequence) + body


def submit_sm_resp(sequence: int, message_id: str, status: int = ESME_ROK) -> bytes:
    if status != ESME_ROK:
        return response(SUBMIT_SM, sequence, status)
    return bytes(SubmitSmResp(sequence_num=sequence, message_id=message_id).pdu())


def deliver_sm_resp(sequence: int, status: int = ESME_ROK) -> bytes:
    if status != ESME_ROK:
        return response(DELIVER_SM, sequence, status)
    # Built by hand, one per text received: the bytes of aiosmpplib's DeliverSmResp (an empty
    # message_id), as tests/test_pdu.py shows.
    return response(DELIVER_SM, sequence, ESME_ROK, b"\x00")


def enquire_link(sequence: int) -> bytes:
    return bytes(EnquireLink(sequence_num=sequence).pdu())


def enquire_link_resp(sequence: int) -> bytes:
    return bytes(EnquireLinkResp(sequence_num=sequence).pdu())


def unbind(sequence: int) -> bytes:
    return bytes(Unbind(sequence_num=sequence).pdu())


def unbind_resp(sequence: int) -> bytes:
    return bytes(UnbindResp(sequence_num=sequence).pdu())


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
