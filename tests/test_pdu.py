"""PDUs, text and receipts; each aiosmpplib defect we work around (smsgate/smpp/workarounds.py) on
real PDU bytes: the library's result, then ours."""

from __future__ import annotations

import struct
from datetime import datetime
from typing import Any

import pytest
from aiosmpplib import NPI, TON, DeliverSm, DeliverSmResp, SmppMessage, SubmitSm
from aiosmpplib.codec import GSM7BitCodec
from aiosmpplib.state import PhoneNumber

from smsgate import smpp
from smsgate.smpp.receipts import _RECEIPT_FIELD, _receipt_date
from smsgate.smpp.text import _GSM_AS_ASCII
from store import keys


def deliver_sm_bytes(
    user_data: bytes, *, data_coding: int = 0, esm_class: int = 0, tlvs: bytes = b"",
    source: bytes = b"79031234567", sequence: int = 7,
) -> bytes:
    """A deliver_sm as an SMSC writes it, field by field (SMPP 3.4 section 4.6.1)."""
    body = (
        b"\x00"  # service_type
        + b"\x01\x01" + source + b"\x00"  # source TON 1, NPI 1
        + b"\x03\x00" + b"7377\x00"  # destination short code
        + bytes([esm_class, 0, 0])  # esm_class, protocol_id, priority_flag
        + b"\x00\x00"  # schedule_delivery_time, validity_period
        + bytes([0, 0, data_coding, 0, len(user_data)])
        + user_data
        + tlvs
    )
    return struct.pack("!IIII", 16 + len(body), 0x00000005, 0, sequence) + body


def library_decode(raw: bytes) -> SmppMessage:
    header = SmppMessage.parse_header(raw[:16])
    return DeliverSm.from_pdu(raw, header, "gsm0338")


# A real capture: deliver_sm from 79031234567 to 7377, "Баланс" in UCS-2.
BALANCE_HEX = (
    "0000003c000000050000000000000007000101373930333132333435363700030037333737"
    "000000000000000008000c04110430043b0430043d0441"
)


def test_real_deliver_sm_capture_decodes() -> None:
    message = smpp.decode_sm(bytes.fromhex(BALANCE_HEX))
    assert message.text == "Баланс"
    assert message.source == "79031234567"
    assert message.destination == "7377"
    assert message.data_coding == 8
    assert deliver_sm_bytes("Баланс".encode("utf-16-be"), data_coding=8).hex() == BALANCE_HEX


def test_unknown_data_coding_is_kept_not_lost() -> None:
    raw = deliver_sm_bytes(b"Balance", data_coding=0x0F)
    with pytest.raises(ValueError):
        library_decode(raw)  # the library answers generic_nack and the text is gone
    message = smpp.decode_sm(raw)
    assert message.is_text and message.text == "Balance" and message.data_coding == 0x0F


def test_binary_data_coding_keeps_the_raw_bytes() -> None:
    message = smpp.decode_sm(deliver_sm_bytes(b"\x00\xff\x10\x80", data_coding=0xF6))
    assert not message.is_text
    assert message.text == ""
    assert message.payload == b"\x00\xff\x10\x80"


def test_udh_16bit_reference_is_read_from_two_octets() -> None:
    udh = bytes([6, 0x08, 4, 0x12, 0x34, 2, 1])
    raw = deliver_sm_bytes(udh + "Бала".encode("utf-16-be"), data_coding=8, esm_class=0x40)
    library = library_decode(raw)
    library_ref = next(p.value for p in library.optional_params if p.tag == smpp.TAG_SAR_MSG_REF_NUM)
    assert library_ref != 0x1234  # reads four octets: parts of one text never meet
    message = smpp.decode_sm(raw)
    assert message.concat == smpp.Concat(reference=0x1234, total=2, number=1)
    assert message.text == "Бала"


@pytest.mark.parametrize(("total", "number"), [(2, 5), (2, 0), (0, 0), (3, 4)])
def test_a_part_number_outside_its_total_is_read_as_a_text_on_its_own(total: int, number: int) -> None:
    # Else "part 5 of 2" would complete a two-part text with part 1 and be joined to it.
    udh = bytes([5, 0x00, 3, 0x2A, total, number])
    raw = deliver_sm_bytes(udh + "Бала".encode("utf-16-be"), data_coding=8, esm_class=0x40)
    message = smpp.decode_sm(raw)
    assert message.concat is None and message.text == "Бала"


def test_receipt_with_12_digit_dates_and_odd_err() -> None:
    text = (
        b"id:0A1B2C sub:001 dlvrd:001 submit date:261122101530 done date:261122101545"
        b" stat:DELIVRD err:X1F text:"
    )
    raw = deliver_sm_bytes(text, esm_class=0x04)
    library = library_decode(raw)
    assert isinstance(library, DeliverSm)
    with pytest.raises(ValueError):
        library.parse_receipt()  # inside the ESME this ends the session
    receipt = smpp.parse_receipt(smpp.decode_sm(raw))
    assert receipt.message_id == "0A1B2C"
    assert receipt.stat == "DELIVRD"
    assert receipt.err == "X1F"
    assert receipt.done_date is not None and receipt.done_date.second == 45


def test_receipt_from_tlvs_only() -> None:
    tlvs = smpp.tlv(0x001E, b"123456\x00") + smpp.tlv(0x0427, b"\x05") + smpp.tlv(0x0423, b"\x03\x00\x01")
    receipt = smpp.parse_receipt(smpp.decode_sm(deliver_sm_bytes(b"", esm_class=0x04, tlvs=tlvs)))
    assert receipt.message_id == "123456"
    assert receipt.stat == "UNDELIV"
    assert receipt.err == "030001"


def test_garbage_receipt_never_raises() -> None:
    receipt = smpp.parse_receipt(smpp.decode_sm(deliver_sm_bytes(b"\x01\x02 stat:: id", esm_class=0x04)))
    assert receipt.message_id == ""


def test_ussd_tlvs_keep_their_octets() -> None:
    tlvs = smpp.tlv(smpp.TAG_USSD_SERVICE_OP, b"\x00") + smpp.tlv(smpp.TAG_ITS_SESSION_INFO, b"\x2a\x01")
    library = library_decode(deliver_sm_bytes(b"*100#", tlvs=tlvs))
    values = {p.tag: p.value for p in library.optional_params}
    assert values[smpp.TAG_USSD_SERVICE_OP] == ""  # operation 0 (PSSD) vanishes
    assert values[smpp.TAG_ITS_SESSION_INFO] == "*\x01"  # carried as text, not octets
    tlvs = smpp.tlv(smpp.TAG_USSD_SERVICE_OP, b"\x00") + smpp.tlv(smpp.TAG_ITS_SESSION_INFO, b"\x2a\x81")
    raw = deliver_sm_bytes(b"*100#", tlvs=tlvs)
    with pytest.raises(UnicodeDecodeError):
        library_decode(raw)  # an end-of-session bit (>= 0x80) cannot be read at all
    message = smpp.decode_sm(raw)
    assert message.ussd_service_op == 0
    assert message.its_session_info == b"\x2a\x81"


def test_submit_sends_ussd_tlvs_as_octets() -> None:
    tlvs = smpp.tlv(smpp.TAG_USSD_SERVICE_OP, b"\x11") + smpp.tlv(smpp.TAG_ITS_SESSION_INFO, b"\x2a\x81")
    raw = smpp.build_submit_sm(9, ("7377", 3, 0), ("79031234567", 1, 1), 8, "Меню".encode("utf-16-be"),
                              tlvs=tlvs)
    assert raw.endswith(bytes.fromhex("0501000111" "13830002" "2a81"))
    assert struct.unpack("!I", raw[:4])[0] == len(raw)
    back = smpp.decode_sm(raw)
    assert back.text == "Меню" and back.ussd_service_op == 0x11 and back.its_session_info == b"\x2a\x81"


def test_long_cyrillic_reply_is_concatenated_not_one_oversized_sms() -> None:
    text = "Долг по счёту 1234567890: " + "Водоканал 1 234,56; " * 4
    library = SubmitSm(short_message=text, source=PhoneNumber("7377"), destination=PhoneNumber("79031234567"))
    library.set_encoding_info("gsm0338", None)
    library_pdu = library.pdu()
    sm_length = library_pdu[library_pdu.index(b"\x00\x08\x00") + 3]
    assert sm_length > 140  # one short_message longer than one SMS can carry
    parts = smpp.split_text(text, reference=0x42)
    assert len(parts) == 2
    assert all(len(data) <= 140 for _coding, data in parts)
    assert b"".join(data[6:] for _coding, data in parts).decode("utf-16-be") == text
    assert [data[:6] for _coding, data in parts] == [bytes([5, 0, 3, 0x42, 2, n]) for n in (1, 2)]


def test_gsm_extension_characters_count_as_two_septets() -> None:
    assert smpp.count_parts("€" * 80) == 1
    assert smpp.count_parts("€" * 81) == 2
    parts = smpp.split_text("[" * 200, reference=1)
    assert all(len(data) - 6 <= 153 and data[-1] != 0x1B for _coding, data in parts[:-1])


def test_unknown_command_status_does_not_raise() -> None:
    raw = struct.pack("!IIII", 16, 0x80000004, 0x00000400, 5)
    with pytest.raises(ValueError):
        SmppMessage.parse_header(raw)  # a vendor status code ends the library's session
    header = smpp.parse_header(raw)
    assert header.status == 0x400 and header.command_id == 0x80000004
    assert smpp.status_name(0x400) == "0x00000400"


@pytest.mark.parametrize(
    "raw",
    [
        b"\x00\x00\x00\x14\x00\x00\x00\x05\x00\x00\x00\x00\x00\x00\x00\x01abcd",  # no terminators
        deliver_sm_bytes(b"hello")[:-3],  # short_message runs past the end
        deliver_sm_bytes(b"\x09\x00\x03\x01", esm_class=0x40),  # UDH longer than user data
        deliver_sm_bytes(b"hi", tlvs=b"\x05\x01\x00\x09\x01"),  # TLV runs past the end
    ],
)
def test_malformed_pdus_raise_pdu_error(raw: bytes) -> None:
    with pytest.raises(smpp.PduError):
        smpp.decode_sm(raw)


def test_message_ids_match_across_hex_and_decimal() -> None:
    assert keys.normalise_message_id("0A1F") & keys.normalise_message_id("2591")
    assert keys.normalise_message_id("000123") & keys.normalise_message_id("123")
    assert keys.normalise_message_id("abc") & keys.normalise_message_id("ABC")
    assert not keys.normalise_message_id("") and not (
        keys.normalise_message_id("11") & keys.normalise_message_id("12")
    )


# Ids as SMSCs write them (decimal, hex in either case, zero-padded, 0x-marked) and ids that
# differ from them only in radix, padding or case.
_IDS = ["0A1F", "2591", "000123", "123", "abc", "ABC", "0x1A", "0X1A", "26", "1a", "11", "12", "0",
        "00", "0x0", "7B", "0x7b", "0x123", "291", "123456789012", "1CBE991A14", "FFFFFFFF",
        "4294967295", " 42 ", "2A", "1e", "30", "0xg1", "g1", "", "5f3759df", "1597463007"]


def test_one_key_a_part_matches_the_receipts_the_three_readings_matched() -> None:
    """A part is stored under one key and a receipt looks it up under every reading of its own
    id: for every pair of ids this matches exactly when the two ids share a reading."""
    for submitted in _IDS:
        for receipted in _IDS:
            share = bool(keys.normalise_message_id(submitted) & keys.normalise_message_id(receipted))
            key = keys.message_id_key(submitted)
            assert (key is not None and key in keys.receipt_keys(receipted)) == share, (
                submitted, receipted)
    assert keys.message_id_key("0A1F") in keys.receipt_keys("2591")  # hex, then decimal
    assert keys.message_id_key("2591") in keys.receipt_keys("a1f")  # decimal, then hex
    assert keys.message_id_key("0x123") not in keys.receipt_keys("7B")  # 0x123 is 291, not 123
    assert keys.message_id_key("   ") is None and not keys.receipt_keys("")


def test_a_part_stored_under_any_reading_is_found_by_a_receipt() -> None:
    for submitted, receipted in (("0A1F", "2591"), ("2591", "A1F"), ("ABC", "abc"), ("000123", "123")):
        assert keys.normalise_message_id(submitted) & keys.receipt_keys(receipted)


def test_empty_user_data_is_sent_empty() -> None:
    raw = smpp.build_submit_sm(1, ("7377", 3, 0), ("79031234567", 1, 1), 0, b"")
    message = smpp.decode_sm(raw)
    assert message.payload == b"" and message.text == ""
    assert struct.unpack("!I", raw[:4])[0] == len(raw)
    with_tlv = smpp.build_submit_sm(
        1, ("7377", 3, 0), ("79031234567", 1, 1), 8, b"", tlvs=smpp.tlv(0x0501, b"\x11")
    )
    assert smpp.decode_sm(with_tlv).ussd_service_op == 0x11


def test_generic_nack_takes_any_status() -> None:
    assert smpp.parse_header(smpp.generic_nack(9, 0x400)) == smpp.Header(16, smpp.GENERIC_NACK, 0x400, 9)


def test_a_ussd_screen_is_one_short_message_never_split() -> None:
    screen = "Д" * smpp.USSD_UCS2_LIMIT  # 160 octets: more than one SMS holds
    assert smpp.count_parts(screen) == 2
    assert smpp.encode_ussd(screen) == (8, screen.encode("utf-16-be"))
    assert smpp.encode_ussd("1 Balance\n0 Back") == (0, b"1 Balance\n0 Back")
    assert smpp.encode_ussd("x" * smpp.USSD_GSM_LIMIT)[1] == b"x" * smpp.USSD_GSM_LIMIT
    with pytest.raises(ValueError, match="80 UCS-2"):
        smpp.encode_ussd(screen + "Д")
    with pytest.raises(ValueError, match="182 GSM"):
        smpp.encode_ussd("x" * (smpp.USSD_GSM_LIMIT + 1))
    coding, data = smpp.encode_ussd(screen)
    raw = smpp.build_submit_sm(1, ("7377", 3, 0), ("79031234567", 1, 1), coding, data,
                              tlvs=smpp.tlv(smpp.TAG_USSD_SERVICE_OP, b"\x02"))
    back = smpp.decode_sm(raw)
    assert back.text == screen and back.concat is None and not back.esm_class & smpp.UDHI


def library_submit_sm(
    sequence: int, source: tuple[str, int, int], destination: tuple[str, int, int],
    data_coding: int, user_data: bytes, *, udh: bool = False, registered_delivery: int = 1,
    tlvs: bytes = b"", command: type[SubmitSm] = SubmitSm, esm_class: int = 0,
) -> bytes:
    """The PDU aiosmpplib builds from the same fields: what smpp.build_submit_sm must write."""
    message = command(
        sequence_num=sequence, short_message="-",
        source=PhoneNumber(source[0], TON(source[1]), NPI(source[2])),
        destination=PhoneNumber(destination[0], TON(destination[1]), NPI(destination[2])),
        esm_class=esm_class or (smpp.UDHI if udh else 0), registered_delivery=registered_delivery,
        encoding="ucs2" if data_coding == 8 else None, auto_message_payload=False,
    )
    message.set_encoded_message(user_data or b"\x00")
    raw = bytes(message.pdu())
    index = 16
    for skip in (0, 2, 2):  # service_type; TON, NPI and source; TON, NPI and destination
        index = raw.index(b"\x00", index + skip) + 1
    index = raw.index(b"\x00", index + 3) + 1  # esm_class, protocol_id, priority; schedule time
    offset = raw.index(b"\x00", index) + 1 + 2  # validity period; registered_delivery, replace
    raw = raw[:offset] + bytes([data_coding]) + raw[offset + 1 :]  # the library names 0 and 8 only
    if not user_data:  # it re-encodes its placeholder when given nothing: one octet, cut out
        raw = raw[: offset + 2] + b"\x00" + raw[offset + 4 :]
    raw += tlvs
    return struct.pack("!I", len(raw)) + raw[4:]


@pytest.mark.parametrize(("coding", "data", "options"), [
    (8, "Долг на 22.11".encode("utf-16-be"), {}),
    (0, b"Hello", {"registered_delivery": 0}),
    (0, b"", {}),
    (0xF4, b"\x01\x02", {}),
    (8, bytes([5, 0, 3, 7, 2, 1]) + "Долг".encode("utf-16-be"), {"udh": True}),
    (0, b"x" * 254, {"tlvs": smpp.tlv(smpp.TAG_USSD_SERVICE_OP, b"\x11")}),
])
def test_submit_sm_written_by_hand_is_the_librarys(
    coding: int, data: bytes, options: dict[str, Any]
) -> None:
    # Built field by field for speed: the bytes must stay what aiosmpplib writes.
    for sequence in (1, 0x7FFFFFFF):
        ours = smpp.build_submit_sm(sequence, ("7377", 3, 0), ("79031234567", 1, 1), coding, data,
                                   **options)
        assert ours == library_submit_sm(sequence, ("7377", 3, 0), ("79031234567", 1, 1), coding,
                                         data, **options)


@pytest.mark.parametrize("text", [
    "Долг на 02.12.2026\nСчёт 1000000123:\nВодоканал Барнаула: 2 345,67\nИтого: 2 345,67 руб.",
    "Balance " * 40,  # GSM 03.38, 320 septets: more than short_message's 254 octets
])
def test_a_text_whole_in_message_payload_is_the_librarys(text: str) -> None:
    coding, encoded = smpp.encode_whole(text)
    ours = smpp.build_submit_sm(7, ("7377", 3, 0), ("79031234567", 1, 1), coding, b"",
                               message_payload=encoded)
    library = SubmitSm(sequence_num=7, message_payload=text, source=PhoneNumber("7377", TON(3), NPI(0)),
                       destination=PhoneNumber("79031234567", TON(1), NPI(1)), registered_delivery=1,
                       encoding="ucs2" if coding == 8 else None)
    assert ours == bytes(library.pdu())
    back = smpp.decode_sm(ours)  # as an SMSC reads it: the whole text, no parts
    assert back.text == text and back.concat is None and back.tlvs[smpp.TAG_MESSAGE_PAYLOAD] == encoded
    assert smpp.count_parts(text) > 1
    with pytest.raises(ValueError):
        smpp.build_submit_sm(1, ("7377", 3, 0), ("79031234567", 1, 1), 8, b"x", message_payload=b"y")
    with pytest.raises(ValueError):
        smpp.build_submit_sm(1, ("7377", 3, 0), ("79031234567", 1, 1), 8, b"", message_payload=bytes(70_000))


def test_deliver_sm_and_its_response_written_by_hand_are_the_librarys() -> None:
    for esm_class, data in ((0, "Баланс".encode("utf-16-be")), (0x04, b"id:1 stat:DELIVRD")):
        ours = smpp.build_deliver_sm(3, ("79031234567", 1, 1), ("7377", 3, 0), 8 if esm_class == 0
                                    else 0, data, esm_class=esm_class)
        theirs = library_submit_sm(3, ("79031234567", 1, 1), ("7377", 3, 0), 8 if esm_class == 0
                                   else 0, data, registered_delivery=0, command=DeliverSm,
                                   esm_class=esm_class)
        assert ours == theirs
    assert smpp.deliver_sm_resp(42) == bytes(DeliverSmResp(sequence_num=42).pdu())
    with pytest.raises(ValueError):
        smpp.build_submit_sm(1, ("7377", 3, 0), ("79031234567", 1, 1), 0, b"x" * 255)
    with pytest.raises(ValueError):
        smpp.build_submit_sm(1, ("7377", 3, 0), ("79031234567", 9, 1), 0, b"x")


def test_gsm_text_read_as_ascii_where_the_alphabets_agree() -> None:
    codec = GSM7BitCodec()
    for octet in range(0x80):
        if _GSM_AS_ASCII.fullmatch(bytes([octet])):
            assert codec.decode(bytes([octet]), "replace")[0] == chr(octet)
    assert smpp.decode_text(0, b"@$_")[0] == codec.decode(b"@$_", "replace")[0]  # not ASCII there


def test_receipt_dates_read_as_strptime_read_them() -> None:
    for digits in ("2611220807", "261122080745", "9912312359", "6801010000", "6901010000"):
        pattern = "%y%m%d%H%M%S" if len(digits) == 12 else "%y%m%d%H%M"
        assert _receipt_date(digits) == datetime.strptime(digits, pattern)
    assert _receipt_date("2613010101") is None
    assert _receipt_date("26112208") is None


@pytest.mark.parametrize("text", [
    "id:0A1B2C sub:001 dlvrd:001 submit date:2611221015 done date:2611221016 stat:DELIVRD err:000"
    " text:Долг на 22.11",
    "id:123456789 sub:001 dlvrd:000 submit date:261122101530 done date:261122101531 stat:UNDELIV"
    " err:0x1F text:",
    "id:42 sub:001 dlvrd:001 submit date:2611221015 done date:2611221016 stat:EXPIRED err:000",
    # Not the standard form: read field by field.
    "ID:42 Sub:001 dlvrd:001 Submit Date:2611221015 Done Date:2611221016 Stat:DELIVRD Err:000",
    "id: 42  sub:001 stat:DELIVRD err:000",
    "stat:DELIVRD id:42",
])
def test_standard_receipts_read_in_one_match_as_field_by_field(text: str) -> None:
    by_field: dict[str, str] = {}
    for match in _RECEIPT_FIELD.finditer(text):
        by_field.setdefault(match.group(1).lower(), match.group(2).strip())
    assert smpp.receipt_fields(text) == by_field
    assert by_field["id"] == "42" or len(by_field["id"]) > 2


@pytest.mark.parametrize("text", [
    "Д" * 70, "Д" * 71, "Д" * 134, "Д" * 135, "Д" * 2000, "Долг: 1 234,56 руб.\n" * 9,
    "A" * 160, "A" * 161, "€" * 80, "😀" * 40, "Д" * 66 + "😀" * 3,
])
def test_count_parts_is_what_split_text_makes(text: str) -> None:
    assert smpp.count_parts(text) == len(smpp.split_text(text, reference=0))


def test_frames_cuts_whole_pdus_and_keeps_a_partial_one_for_the_next_read() -> None:
    first, second = smpp.enquire_link_resp(1), smpp.deliver_sm_resp(2)
    buffer = bytearray(first + second[:5])
    assert list(smpp.frames(buffer)) == [first]
    assert bytes(buffer) == second[:5]
    buffer += second[5:12]  # not even a whole header yet
    assert list(smpp.frames(buffer)) == []
    buffer += second[12:]
    assert list(smpp.frames(buffer)) == [second]
    assert buffer == bytearray()
    # A reader that stops after one PDU finds the others still in the buffer.
    buffer = bytearray(first + second)
    assert next(smpp.frames(buffer)) == first
    assert bytes(buffer) == second


@pytest.mark.parametrize("length", [0, 15, 2**20])
def test_frames_refuses_a_command_length_no_pdu_can_have(length: int) -> None:
    # Nothing tells where the next PDU begins after such a length: the caller must reset the link.
    good = smpp.enquire_link(3)
    buffer = bytearray(good + struct.pack("!IIII", length, smpp.DELIVER_SM, 0, 4) + bytes(40))
    pdus = smpp.frames(buffer)
    assert next(pdus) == good  # what came before it is still read
    with pytest.raises(smpp.PduError, match=f"bad command_length {length}$"):
        next(pdus)
    assert 2**20 > smpp.MAX_PDU_LENGTH



# ---- one outgoing message as its submits (smsgate/smpp/outgoing.py) ------------------------------

SERVICE_ADDRESS = ("7377", 3, 0)
RESIDENT = ("79031234567", 1, 1)
LONG_REPLY = "Долг на 08.12.2026: " + "АО «Алтайэнергосбыт» 1 571,40; " * 5  # three UCS-2 parts


def _message(text: str = LONG_REPLY, **options: Any) -> smpp.OutgoingMessage:
    settings: dict[str, Any] = {"kind": "sms", "source": SERVICE_ADDRESS, "destination": RESIDENT,
                                "receipts": True, "reference": 42, **options}
    return smpp.outgoing_message(text, **settings)


def test_a_long_text_goes_as_udh_parts_that_join_under_one_reference() -> None:
    message = _message()
    assert message.count == smpp.count_parts(LONG_REPLY) == 3 and not message.whole and message.weight == 1
    decoded = [smpp.decode_sm(part.build(100 + index)) for index, part in enumerate(message.parts)]
    assert [sm.concat for sm in decoded] == [smpp.Concat(42, 3, number) for number in (1, 2, 3)]
    assert [sm.sequence for sm in decoded] == [100, 101, 102]
    assert all(sm.registered_delivery == 1 and sm.data_coding == 8 for sm in decoded)
    assert {(sm.destination, sm.source) for sm in decoded} == {(RESIDENT[0], SERVICE_ADDRESS[0])}
    assert "".join(sm.text for sm in decoded) == LONG_REPLY
    assert [part.text() for part in message.parts] == [sm.text for sm in decoded]


def test_parts_accepted_before_a_restart_are_left_out_and_the_rest_still_join() -> None:
    message = _message(done={1, 3})
    assert [part.number for part in message.parts] == [2]
    assert smpp.decode_sm(message.parts[0].build(7)).concat == smpp.Concat(42, 3, 2)


def test_payload_mode_sends_the_text_whole_unless_parts_went_before() -> None:
    whole = _message(long_text="payload")
    assert whole.whole and whole.weight == 3 and [part.number for part in whole.parts] == [smpp.WHOLE]
    sm = smpp.decode_sm(whole.parts[0].build(1))
    assert sm.text == LONG_REPLY and sm.concat is None and not sm.esm_class & smpp.UDHI
    assert sm.tlvs[smpp.TAG_MESSAGE_PAYLOAD] == LONG_REPLY.encode("utf-16-be")
    # Part 1 went as UDH before a restart: the rest go as parts too, so the phone can join them.
    assert [part.number for part in _message(long_text="payload", done={1}).parts] == [2, 3]
    # Accepted whole before a restart: nothing is left to send.
    assert _message(long_text="payload", done={smpp.WHOLE}).parts == []


def test_a_ussd_screen_is_one_submit_with_no_receipt_asked() -> None:
    screen = "1 Баланс\n2 Пароль\n3 Помощь"
    message = _message(screen, kind="ussd", tlvs=smpp.tlv(smpp.TAG_USSD_SERVICE_OP, b"\x02"))
    [part] = message.parts
    sm = smpp.decode_sm(part.build(5))
    assert sm.text == screen and sm.registered_delivery == 0 and sm.ussd_service_op == 2


def test_a_text_of_more_than_255_parts_cannot_be_sent() -> None:
    with pytest.raises(ValueError, match="255"):
        _message("Я" * 67 * 256)
