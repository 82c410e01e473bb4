"""aiosmpplib 0.7.4 in one place: what smsgate/smpp takes from it, and the defects it works around.

Taken from the library (and only imported here): the PDUs sent rarely (bind_transceiver,
enquire_link and unbind with their responses, an accepting submit_sm_resp), its GSM 03.38 codec,
its names of command statuses, and its TON and NPI values.

Its defects, each pinned by a test of real PDU bytes in tests/test_pdu.py (the library's result,
then ours), and the module of this package that does the work instead:

- A vendor command status or unknown command id raises in SmppCommandStatus() / SmppCommand(),
  which ends the library's session: codec.parse_header keeps them as integers, status_name
  names what the library does not (test_unknown_command_status_does_not_raise).
- A data_coding outside its enum (0x0F, 0xF4, ...) raises: the library answers generic_nack and
  the text is lost. codec.decode_sm parses the body itself and text.decode_text reads any data
  coding (test_unknown_data_coding_is_kept_not_lost, test_binary_data_coding_keeps_the_raw_bytes).
- Inbound UDH IE 0x08 reads the 16-bit reference from four octets, so parts never meet: codec
  reads two (test_udh_16bit_reference_is_read_from_two_octets).
- Optional parameters are carried as text: ussd_service_op 0 decodes to '', its_session_info
  loses its second octet's meaning, values >= 0x80 fail to decode; codec.ShortMessage keeps TLVs
  as bytes (test_ussd_tlvs_keep_their_octets), and codec.build_submit_sm appends raw TLV octets
  (test_submit_sends_ussd_tlvs_as_octets).
- parse_receipt raises ValueError on 12-digit dates and non-decimal err: receipts.parse_receipt
  never raises and prefers the TLVs (test_receipt_with_12_digit_dates_and_odd_err,
  test_receipt_from_tlvs_only, test_garbage_receipt_never_raises).
- auto_message_payload sends a text of up to 254 octets as one short_message longer than one SMS,
  and its UDH splitter counts characters instead of septets: text.split_text concatenates with
  UDH itself (test_long_cyrillic_reply_is_concatenated_not_one_oversized_sms,
  test_gsm_extension_characters_count_as_two_septets).
- generic_nack takes no status outside its enum: codec.generic_nack writes it
  (test_generic_nack_takes_any_status).

submit_sm, deliver_sm and deliver_sm_resp, sent or answered for every message, are written by
codec field by field at a fraction of the library's cost; tests/test_pdu.py shows the bytes are
the library's (test_submit_sm_written_by_hand_is_the_librarys,
test_a_text_whole_in_message_payload_is_the_librarys,
test_deliver_sm_and_its_response_written_by_hand_are_the_librarys).
"""

from __future__ import annotations

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

from smsgate.smpp.constants import ESME_ROK, HEADER, HEADER_LENGTH, RESPONSE_BIT, SUBMIT_SM

_GSM = GSM7BitCodec()


def status_name(status: int) -> str:
    try:
        return str(SmppCommandStatus(status).name)
    except ValueError:
        return f"0x{status:08X}"


def check_numbering(ton: int, npi: int) -> None:
    """ValueError for a type of number or numbering plan SMPP does not name."""
    TON(ton)
    NPI(npi)


# ---- GSM 03.38 ------------------------------------------------------------------------------


def is_gsm(text: str) -> bool:
    return bool(GSM7BitCodec.is_gsm_text(text))


def gsm_encode(text: str) -> bytes:
    """GSM 03.38 unpacked, one septet an octet (escaped characters take two)."""
    return bytes(_GSM.encode(text)[0])


def gsm_decode(payload: bytes) -> str:
    return str(_GSM.decode(payload, "replace")[0])


# ---- PDUs sent rarely ---------------------------------------------------------------------------


def bind_transceiver(sequence: int, system_id: str, password: str, system_type: str = "") -> bytes:
    message = BindTransceiver(
        sequence_num=sequence, system_id=system_id, password=password, system_type=system_type
    )
    return bytes(message.pdu())


def submit_sm_resp(sequence: int, message_id: str, status: int = ESME_ROK) -> bytes:
    if status != ESME_ROK:
        return HEADER.pack(HEADER_LENGTH, SUBMIT_SM | RESPONSE_BIT, status, sequence)
    return bytes(SubmitSmResp(sequence_num=sequence, message_id=message_id).pdu())


def enquire_link(sequence: int) -> bytes:
    return bytes(EnquireLink(sequence_num=sequence).pdu())


def enquire_link_resp(sequence: int) -> bytes:
    return bytes(EnquireLinkResp(sequence_num=sequence).pdu())


def unbind(sequence: int) -> bytes:
    return bytes(Unbind(sequence_num=sequence).pdu())


def unbind_resp(sequence: int) -> bytes:
    return bytes(UnbindResp(sequence_num=sequence).pdu())
