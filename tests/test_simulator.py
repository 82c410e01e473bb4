"""The SMSC simulator over real TCP on loopback, driven by a bare ESME built from smsgate.pdu."""

from __future__ import annotations

import asyncio
import logging
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from smsgate import smpp
from smsgate.tools.simclient import SimulatorUnavailable, send_sms
from smsgate.tools.simulator import RECEIPT_FORMATS, Simulator
from store import keys

SYSTEM_ID = "smsgate"
PASSWORD = "secret12"
PHONE = "+79031234567"
PHONE_WIRE = "79031234567"
SERVICE = ("7377", 3, 0)
DELIVER_SM_RESP = smpp.DELIVER_SM | smpp.RESPONSE_BIT
SUBMIT_SM_RESP = smpp.SUBMIT_SM | smpp.RESPONSE_BIT
# 190 Cyrillic characters: three UCS-2 parts with an 8-bit (67 each) or 16-bit (66 each) reference.
LONG_CYRILLIC = ("Задолженность по лицевому счёту 1234567 на 01.11.2024 составляет 1520,40 руб. " * 3)[:190]


def bind_pdu(command_id: int, sequence: int, system_id: str, password: str) -> bytes:
    body = b"\x00".join([system_id.encode(), password.encode(), b""]) + b"\x00\x34\x00\x00\x00"
    return smpp.HEADER.pack(smpp.HEADER_LENGTH + len(body), command_id, 0, sequence) + body


def command_of(data: bytes) -> int:
    return smpp.parse_header(data).command_id


class Esme:
    """A bare SMPP client: just enough to drive the simulator PDU by PDU."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.sequence = 0
        self.backlog: list[bytes] = []  # PDUs read while looking for another kind

    def next_sequence(self) -> int:
        self.sequence += 1
        return self.sequence

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def _read_wire(self, within: float) -> bytes:
        async with asyncio.timeout(within):
            head = await self.reader.readexactly(smpp.HEADER_LENGTH)
            length = int.from_bytes(head[:4], "big")
            return head + await self.reader.readexactly(length - smpp.HEADER_LENGTH)

    async def expect(self, command_id: int, within: float = 2.0) -> bytes:
        """The next PDU with this command id; others met on the way are kept for later."""
        for index, data in enumerate(self.backlog):
            if command_of(data) == command_id:
                return self.backlog.pop(index)
        while True:
            data = await self._read_wire(within)
            if command_of(data) == command_id:
                return data
            self.backlog.append(data)

    async def bind(
        self,
        command_id: int = smpp.BIND_TRANSCEIVER,
        system_id: str = SYSTEM_ID,
        password: str = PASSWORD,
    ) -> tuple[smpp.Header, bytes]:
        self.send(bind_pdu(command_id, self.next_sequence(), system_id, password))
        data = await self.expect(command_id | smpp.RESPONSE_BIT)
        return smpp.parse_header(data), data[smpp.HEADER_LENGTH :]

    async def submit(
        self,
        user_data: bytes,
        data_coding: int = 0,
        *,
        udh: bool = False,
        registered_delivery: int = 0,
        tlvs: bytes = b"",
        to: str = PHONE_WIRE,
    ) -> tuple[smpp.Header, str]:
        sequence = self.next_sequence()
        self.send(smpp.build_submit_sm(
            sequence, SERVICE, (to, 1, 1), data_coding, user_data,
            udh=udh, registered_delivery=registered_delivery, tlvs=tlvs,
        ))
        data = await self.expect(SUBMIT_SM_RESP)
        header = smpp.parse_header(data)
        assert header.sequence == sequence
        return header, smpp.response_message_id(data)

    async def submit_text(self, text: str, **options: Any) -> list[str]:
        """Submit a text as the gateway would (UDH parts when long); the message ids."""
        ids = []
        parts = smpp.split_text(text, 77)
        for coding, user_data in parts:
            header, message_id = await self.submit(user_data, coding, udh=len(parts) > 1, **options)
            assert header.status == smpp.ESME_ROK
            ids.append(message_id)
        return ids

    async def answer(self, data: bytes, status: int = smpp.ESME_ROK) -> None:
        self.send(smpp.deliver_sm_resp(smpp.parse_header(data).sequence, status))
        await self.writer.drain()

    async def closed_by_peer(self, within: float = 2.0) -> bool:
        """True when the simulator closes the connection cleanly (FIN; a reset raises)."""
        try:
            async with asyncio.timeout(within):
                while await self.reader.read(65536):
                    pass
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except ConnectionError:
            pass


class Lab:
    """Simulators and ESMEs made by a test, torn down in the right order."""

    def __init__(self) -> None:
        self.simulators: list[Simulator] = []
        self.esmes: list[Esme] = []

    async def simulator(self, **settings: Any) -> Simulator:
        simulator = Simulator(system_id=SYSTEM_ID, password=PASSWORD, **settings)
        await simulator.start()
        self.simulators.append(simulator)
        return simulator

    async def esme(self, simulator: Simulator, bind: int | None = smpp.BIND_TRANSCEIVER) -> Esme:
        reader, writer = await asyncio.open_connection("127.0.0.1", simulator.port)
        esme = Esme(reader, writer)
        self.esmes.append(esme)
        if bind is not None:
            header, _body = await esme.bind(bind)
            assert header.status == smpp.ESME_ROK
        return esme


@pytest.fixture
async def lab() -> AsyncIterator[Lab]:
    lab = Lab()
    yield lab
    # ESMEs first: a simulator stopping with ESMEs bound waits for their unbind_resp.
    for esme in lab.esmes:
        await esme.close()
    for simulator in lab.simulators:
        await simulator.stop()


async def eventually(predicate: Callable[[], bool], attempts: int = 200) -> None:
    """For counters the simulator updates after the PDU a test can see has gone out."""
    for _ in range(attempts):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"condition still false after {attempts * 0.01:g} s")


def reassemble(deliveries: list[smpp.ShortMessage]) -> str:
    ordered = sorted(deliveries, key=lambda message: message.concat.number if message.concat else 0)
    joined = b"".join(message.payload for message in ordered)
    return smpp.decode_text(ordered[0].data_coding, joined)[0]


# ---- Sessions ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command_id", "mode"),
    [
        (smpp.BIND_TRANSCEIVER, "transceiver"),
        (smpp.BIND_TRANSMITTER, "transmitter"),
        (smpp.BIND_RECEIVER, "receiver"),
    ],
)
async def test_bind_accepted(lab: Lab, command_id: int, mode: str) -> None:
    simulator = await lab.simulator()
    esme = await lab.esme(simulator, bind=None)

    header, body = await esme.bind(command_id)

    assert header.command_id == command_id | smpp.RESPONSE_BIT
    assert header.status == smpp.ESME_ROK
    assert body == b"smsgate-sim\x00"
    await simulator.wait_bound(1.0)
    assert simulator.bound_modes == [mode]
    assert simulator.binds == 1


@pytest.mark.parametrize(
    ("system_id", "password", "status"),
    [("smsgate", "wrong", smpp.ESME_RINVPASWD), ("intruder", PASSWORD, 0x0F)],
)
async def test_bad_credentials_refused_and_closed(
    lab: Lab, system_id: str, password: str, status: int
) -> None:
    simulator = await lab.simulator()
    esme = await lab.esme(simulator, bind=None)

    header, body = await esme.bind(smpp.BIND_TRANSCEIVER, system_id, password)

    assert header.status == status
    assert body == b""
    assert await esme.closed_by_peer()
    assert simulator.binds == 0
    assert simulator.bound_modes == []


async def test_second_bind_is_already_bound(lab: Lab) -> None:
    simulator = await lab.simulator()
    esme = await lab.esme(simulator)

    header, _body = await esme.bind(smpp.BIND_TRANSCEIVER)

    assert header.status == smpp.ESME_RALYBND
    assert simulator.bound_modes == ["transceiver"]
    assert simulator.binds == 1


async def test_enquire_link(lab: Lab) -> None:
    simulator = await lab.simulator()
    esme = await lab.esme(simulator)

    esme.send(smpp.enquire_link(41))
    header = smpp.parse_header(await esme.expect(smpp.ENQUIRE_LINK | smpp.RESPONSE_BIT))

    assert (header.status, header.sequence) == (smpp.ESME_ROK, 41)


async def test_simulator_enquire_link_matched_by_sequence(lab: Lab) -> None:
    simulator = await lab.simulator()
    esme = await lab.esme(simulator)

    asking = asyncio.create_task(simulator.enquire_link(timeout=2.0))
    request = smpp.parse_header(await esme.expect(smpp.ENQUIRE_LINK))
    esme.send(smpp.response(smpp.ENQUIRE_LINK, request.sequence, smpp.ESME_RSYSERR))

    assert await asking == [smpp.ESME_RSYSERR]


async def test_unbind(lab: Lab) -> None:
    simulator = await lab.simulator()
    esme = await lab.esme(simulator)

    esme.send(smpp.unbind(7))
    header = smpp.parse_header(await esme.expect(smpp.UNBIND | smpp.RESPONSE_BIT))

    assert (header.status, header.sequence) == (smpp.ESME_ROK, 7)
    assert await esme.closed_by_peer()
    await eventually(lambda: simulator.bound_modes == [])


async def test_stop_cuts_a_connection_lingering_after_a_drop(lab: Lab) -> None:
    simulator = await lab.simulator(drop_after=1)
    esme = await lab.esme(simulator)
    await esme.submit(b"One")
    assert await esme.closed_by_peer()  # FIN came; this ESME never closes its side

    async with asyncio.timeout(0.5):
        await simulator.stop()


async def test_stop_unbinds_bound_esmes(lab: Lab) -> None:
    simulator = await lab.simulator()
    esme = await lab.esme(simulator)

    stopping = asyncio.create_task(simulator.stop())
    request = smpp.parse_header(await esme.expect(smpp.UNBIND))
    esme.send(smpp.unbind_resp(request.sequence))

    assert await esme.closed_by_peer()
    await stopping


async def test_request_before_bind_is_nacked(lab: Lab) -> None:
    simulator = await lab.simulator()
    esme = await lab.esme(simulator, bind=None)

    esme.send(smpp.build_submit_sm(5, SERVICE, (PHONE_WIRE, 1, 1), 0, b"Hi"))
    header = smpp.parse_header(await esme.expect(smpp.GENERIC_NACK))

    assert (header.status, header.sequence) == (smpp.ESME_RINVBNDSTS, 5)
    bound, _body = await esme.bind()
    assert bound.status == smpp.ESME_ROK
    assert simulator.sent == []


async def test_receiver_may_not_submit(lab: Lab) -> None:
    simulator = await lab.simulator()
    esme = await lab.esme(simulator, bind=smpp.BIND_RECEIVER)

    esme.send(smpp.build_submit_sm(9, SERVICE, (PHONE_WIRE, 1, 1), 0, b"Hi"))
    header = smpp.parse_header(await esme.expect(smpp.GENERIC_NACK))

    assert (header.status, header.sequence) == (smpp.ESME_RINVBNDSTS, 9)


@pytest.mark.parametrize("command_id", [0x00000103, 0x0000ABCD])
async def test_unknown_command_is_nacked(lab: Lab, command_id: int) -> None:
    simulator = await lab.simulator()
    esme = await lab.esme(simulator)

    esme.send(smpp.HEADER.pack(20, command_id, 0, 12) + b"\x00\x00\x00\x00")
    header = smpp.parse_header(await esme.expect(smpp.GENERIC_NACK))

    assert (header.status, header.sequence) == (smpp.ESME_RINVCMDID, 12)
    assert (await esme.submit(b"Still here"))[0].status == smpp.ESME_ROK


async def test_malformed_submit_is_nacked_and_the_session_goes_on(lab: Lab) -> None:
    simulator = await lab.simulator()
    esme = await lab.esme(simulator)
    valid = smpp.build_submit_sm(30, SERVICE, (PHONE_WIRE, 1, 1), 0, b"Hello")
    # short_message announces 5 octets; only 2 are left in the PDU.
    truncated = valid[:-3]
    truncated = smpp.HEADER.pack(len(truncated), smpp.SUBMIT_SM, 0, 30) + truncated[16:]

    esme.send(truncated)
    header = smpp.parse_header(await esme.expect(smpp.GENERIC_NACK))

    assert (header.status, header.sequence) == (smpp.ESME_RINVCMDLEN, 30)
    esme.send(smpp.enquire_link(31))
    assert smpp.parse_header(await esme.expect(smpp.ENQUIRE_LINK | smpp.RESPONSE_BIT)).sequence == 31
    assert (await esme.submit(b"Hello"))[0].status == smpp.ESME_ROK
    assert [sent.text for sent in await simulator.wait_sent(PHONE, timeout=1)] == ["Hello"]


async def test_malformed_bind_is_nacked(lab: Lab) -> None:
    simulator = await lab.simulator()
    esme = await lab.esme(simulator, bind=None)

    esme.send(smpp.HEADER.pack(20, smpp.BIND_TRANSCEIVER, 0, 3) + b"abcd")  # no terminators
    header = smpp.parse_header(await esme.expect(smpp.GENERIC_NACK))

    assert (header.status, header.sequence) == (smpp.ESME_RINVCMDLEN, 3)
    assert (await esme.bind())[0].status == smpp.ESME_ROK


@pytest.mark.parametrize("length", [8, 0x7FFFFFFF])
async def test_impossible_command_length_closes_the_connection(lab: Lab, length: int) -> None:
    simulator = await lab.simulator()
    esme = await lab.esme(simulator)

    esme.send(smpp.HEADER.pack(length, smpp.ENQUIRE_LINK, 0, 1))

    assert await esme.closed_by_peer()
    other = await lab.esme(simulator)
    assert (await other.submit(b"Server still up"))[0].status == smpp.ESME_ROK


# ---- submit_sm --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reference", "order"),
    [(42, [1, 2, 3]), (42, [3, 1, 2]), (300, [1, 2, 3]), (300, [2, 3, 1])],
)
async def test_concatenated_cyrillic_is_reassembled(
    lab: Lab, reference: int, order: list[int]
) -> None:
    simulator = await lab.simulator()
    esme = await lab.esme(simulator)
    parts = smpp.split_text(LONG_CYRILLIC, reference)
    assert len(parts) == 3
    assert parts[0][1][1] == (0x08 if reference > 0xFF else 0x00)  # the IE under test

    ids: dict[int, str] = {}
    for number in order:
        coding, user_data = parts[number - 1]
        header, ids[number] = await esme.submit(user_data, coding, udh=True)
        assert header.status == smpp.ESME_ROK
        if len(ids) < 3:
            assert simulator.sent == []

    [sent] = await simulator.wait_sent(PHONE, timeout=1)
    assert sent.text == LONG_CYRILLIC
    assert sent.parts == 3
    assert sent.message_ids == (ids[1], ids[2], ids[3])
    assert sent.data_coding == 8
    assert sent.phone == PHONE
    assert sent.source == "7377"
    assert simulator.submits == 3


async def test_sar_parts_are_reassembled(lab: Lab) -> None:
    simulator = await lab.simulator()
    esme = await lab.esme(simulator)
    encoded = LONG_CYRILLIC.encode("utf-16-be")
    chunks = [encoded[0:134], encoded[134:268], encoded[268:]]

    for number in (2, 1, 3):
        tlvs = (
            smpp.tlv(smpp.TAG_SAR_MSG_REF_NUM, (5000).to_bytes(2, "big"))
            + smpp.tlv(smpp.TAG_SAR_TOTAL_SEGMENTS, bytes([3]))
            + smpp.tlv(smpp.TAG_SAR_SEGMENT_SEQNUM, bytes([number]))
        )
        await esme.submit(chunks[number - 1], 8, tlvs=tlvs)

    [sent] = await simulator.wait_sent(PHONE, timeout=1)
    assert (sent.text, sent.parts) == (LONG_CYRILLIC, 3)
    assert sent.tlvs[smpp.TAG_SAR_SEGMENT_SEQNUM] == b"\x01"


async def test_tlvs_of_the_first_part_are_kept(lab: Lab) -> None:
    simulator = await lab.simulator()
    esme = await lab.esme(simulator)

    await esme.submit(b"Menu", tlvs=smpp.tlv(smpp.TAG_USSD_SERVICE_OP, b"\x02"))

    [sent] = await simulator.wait_sent(PHONE, timeout=1)
    assert sent.tlvs == {smpp.TAG_USSD_SERVICE_OP: b"\x02"}


async def test_wait_sent_times_out(lab: Lab) -> None:
    simulator = await lab.simulator()

    with pytest.raises(TimeoutError, match="0 of 1"):
        await simulator.wait_sent(PHONE, timeout=0.05)


@pytest.mark.parametrize("receipt_format", RECEIPT_FORMATS)
async def test_receipt_formats(lab: Lab, receipt_format: str) -> None:
    simulator = await lab.simulator(receipt_format=receipt_format)
    esme = await lab.esme(simulator)

    [message_id] = await esme.submit_text("Vash kod 1234", registered_delivery=1)
    data = await esme.expect(smpp.DELIVER_SM)
    await esme.answer(data)

    receipt = smpp.decode_sm(data)
    parsed = smpp.parse_receipt(receipt)
    assert receipt.is_receipt
    assert receipt.esm_class == 0x04
    assert (receipt.source, receipt.source_ton) == (PHONE_WIRE, 1)
    assert receipt.destination == "7377"
    matches = keys.normalise_message_id(parsed.message_id) & keys.normalise_message_id(message_id)
    if receipt_format == "garbage":
        assert parsed.message_id == ""
        assert not matches
    else:
        assert matches
        assert parsed.stat == "DELIVRD"
    if receipt_format in ("text", "text12"):
        assert parsed.message_id == message_id
        digits = 12 if receipt_format == "text12" else 10
        assert re.fullmatch(rf"\d{{{digits}}}", parsed.fields["submit date"])
        assert re.fullmatch(rf"\d{{{digits}}}", parsed.fields["done date"])
        assert parsed.done_date is not None
    if receipt_format == "tlv":
        assert receipt.tlvs[smpp.TAG_RECEIPTED_MESSAGE_ID] == message_id.encode() + b"\x00"
        assert receipt.tlvs[smpp.TAG_MESSAGE_STATE] == b"\x02"
        assert len(receipt.tlvs[smpp.TAG_NETWORK_ERROR_CODE]) == 3
        assert receipt.payload == b""
    if receipt_format == "decimal":
        assert re.fullmatch(r"[0-9A-F]+", message_id)
        assert parsed.message_id == str(int(message_id, 16))
    await eventually(lambda: simulator.receipts_sent == 1)


async def test_one_receipt_per_part_with_decimal_ids(lab: Lab) -> None:
    simulator = await lab.simulator(message_id_format="decimal")
    esme = await lab.esme(simulator)

    ids = await esme.submit_text(LONG_CYRILLIC, registered_delivery=1)
    receipts = [smpp.decode_sm(await esme.expect(smpp.DELIVER_SM)) for _ in ids]

    assert all(message_id.isdigit() for message_id in ids)
    assert sorted(smpp.parse_receipt(r).message_id for r in receipts) == sorted(ids)


@pytest.mark.parametrize(("receipts", "registered_delivery"), [(True, 0), (False, 1)])
async def test_no_receipt_unless_asked_and_enabled(
    lab: Lab, receipts: bool, registered_delivery: int
) -> None:
    simulator = await lab.simulator(receipts=receipts)
    esme = await lab.esme(simulator)

    await esme.submit_text("Hello", registered_delivery=registered_delivery)

    with pytest.raises(TimeoutError):
        await esme.expect(smpp.DELIVER_SM, within=0.2)
    assert len(simulator.sent) == 1


async def test_throttle_every(lab: Lab) -> None:
    simulator = await lab.simulator(throttle_every=3)
    esme = await lab.esme(simulator)

    statuses = [(await esme.submit(f"Message {n}".encode()))[0].status for n in range(6)]

    assert statuses == [0, 0, smpp.ESME_RTHROTTLED, 0, 0, smpp.ESME_RTHROTTLED]
    assert [sent.text for sent in simulator.sent] == [
        "Message 0", "Message 1", "Message 3", "Message 4",
    ]
    assert (simulator.throttled, simulator.submits) == (2, 4)


async def test_drop_after(lab: Lab) -> None:
    simulator = await lab.simulator(drop_after=2)
    esme = await lab.esme(simulator)

    first, _ = await esme.submit(b"One")
    second, _ = await esme.submit(b"Two")

    assert (first.status, second.status) == (smpp.ESME_ROK, smpp.ESME_ROK)
    assert await esme.closed_by_peer()
    assert simulator.drops == 1
    assert [sent.text for sent in simulator.sent] == ["One", "Two"]
    again = await lab.esme(simulator)
    assert (await again.submit(b"Three"))[0].status == smpp.ESME_ROK
    assert simulator.binds == 2


async def test_drop_delivers_every_response_before_closing(lab: Lab) -> None:
    simulator = await lab.simulator(drop_after=3)
    esme = await lab.esme(simulator)
    # More than one read's worth, so input is still unread when the simulator drops the link:
    # a plain close would then send RST, which can destroy the three responses on the way.
    esme.send(b"".join(
        smpp.build_submit_sm(100 + n, SERVICE, (PHONE_WIRE, 1, 1), 0, b"x" * 100)
        for n in range(1000)
    ))

    responses = [smpp.parse_header(await esme.expect(SUBMIT_SM_RESP)) for _ in range(3)]

    assert [(r.status, r.sequence) for r in responses] == [(0, 100), (0, 101), (0, 102)]
    assert await esme.closed_by_peer()
    assert esme.backlog == []
    assert (simulator.submits, simulator.drops, len(simulator.sent)) == (3, 1, 3)


# ---- MO traffic -------------------------------------------------------------------------------


@pytest.mark.parametrize("udh_reference", [None, 300])
async def test_send_mo_long_cyrillic_arrives_in_udh_parts(
    lab: Lab, udh_reference: int | None
) -> None:
    simulator = await lab.simulator()
    esme = await lab.esme(simulator)

    sending = asyncio.create_task(
        simulator.send_mo(PHONE, LONG_CYRILLIC, udh_reference=udh_reference, timeout=2)
    )
    deliveries = [await esme.expect(smpp.DELIVER_SM) for _ in range(3)]
    for data in deliveries:
        await esme.answer(data)

    assert await sending == [0, 0, 0]
    messages = [smpp.decode_sm(data) for data in deliveries]
    for message in messages:
        assert (message.source, message.source_ton, message.source_npi) == (PHONE_WIRE, 1, 1)
        assert (message.destination, message.dest_ton, message.dest_npi) == SERVICE
        assert message.esm_class & smpp.UDHI
        assert message.data_coding == 8
        assert message.concat is not None and message.concat.total == 3
    references = {message.concat.reference for message in messages if message.concat}
    assert len(references) == 1
    if udh_reference is not None:
        assert references == {udh_reference}
    assert reassemble(messages) == LONG_CYRILLIC
    assert [(a.phone, a.text, a.part) for a in simulator.acknowledged] == [
        (PHONE, LONG_CYRILLIC, 1), (PHONE, LONG_CYRILLIC, 2), (PHONE, LONG_CYRILLIC, 3),
    ]


async def test_send_mo_raw_payload_and_tlvs(lab: Lab) -> None:
    simulator = await lab.simulator()
    esme = await lab.esme(simulator)
    ussd = smpp.tlv(smpp.TAG_USSD_SERVICE_OP, b"\x01") + smpp.tlv(smpp.TAG_ITS_SESSION_INFO, b"\x07\x00")

    sending = asyncio.create_task(
        simulator.send_mo(PHONE, payload=b"\x00\xff\x10", data_coding=0xF5, tlvs=ussd, timeout=2)
    )
    data = await esme.expect(smpp.DELIVER_SM)
    await esme.answer(data, smpp.ESME_RX_T_APPN)

    assert await sending == [smpp.ESME_RX_T_APPN]
    message = smpp.decode_sm(data)
    assert (message.data_coding, message.payload, message.esm_class) == (0xF5, b"\x00\xff\x10", 0)
    assert message.ussd_service_op == 1
    assert message.its_session_info == b"\x07\x00"


async def test_send_mo_empty_text_arrives_empty(lab: Lab) -> None:
    simulator = await lab.simulator()
    esme = await lab.esme(simulator)

    sending = asyncio.create_task(simulator.send_mo(PHONE, "", timeout=2))
    data = await esme.expect(smpp.DELIVER_SM)
    await esme.answer(data)

    assert await sending == [0]
    assert smpp.decode_sm(data).payload == b""


async def test_send_mo_rejects_bad_arguments(lab: Lab) -> None:
    simulator = await lab.simulator()

    with pytest.raises(ValueError, match="international"):
        await simulator.send_mo("not a phone", "Hi")
    with pytest.raises(ValueError, match="text or payload"):
        await simulator.send_mo(PHONE)
    with pytest.raises(ValueError, match="data_coding"):
        await simulator.send_mo(PHONE, payload=b"\x01")


async def test_send_mo_without_a_receiver_times_out(lab: Lab) -> None:
    simulator = await lab.simulator()
    await lab.esme(simulator, bind=smpp.BIND_TRANSMITTER)

    with pytest.raises(TimeoutError, match="no ESME bound"):
        await simulator.send_mo(PHONE, "Hi", timeout=0.1)
    assert simulator.pending == 0


async def test_unanswered_mo_is_redelivered_on_the_next_bind(lab: Lab) -> None:
    simulator = await lab.simulator()
    first = await lab.esme(simulator)

    sending = asyncio.create_task(simulator.send_mo(PHONE, "Баланс", timeout=3))
    lost = await first.expect(smpp.DELIVER_SM)
    await first.close()  # the gateway dies before answering
    second = await lab.esme(simulator)
    again = await second.expect(smpp.DELIVER_SM)
    await second.answer(again)

    assert await sending == [0]
    assert again[smpp.HEADER_LENGTH :] == lost[smpp.HEADER_LENGTH :]
    assert smpp.decode_sm(again).text == "Баланс"
    assert [(a.phone, a.text, a.status) for a in simulator.acknowledged] == [(PHONE, "Баланс", 0)]
    assert simulator.pending == 0


async def test_mo_stays_pending_after_send_mo_gives_up(lab: Lab) -> None:
    simulator = await lab.simulator()
    first = await lab.esme(simulator)

    with pytest.raises(TimeoutError, match="unanswered"):
        await simulator.send_mo(PHONE, "Долг", timeout=0.2)
    assert simulator.pending == 1
    await first.expect(smpp.DELIVER_SM)
    await first.close()
    second = await lab.esme(simulator)
    await second.answer(await second.expect(smpp.DELIVER_SM))

    await eventually(lambda: len(simulator.acknowledged) == 1)
    assert simulator.pending == 0


async def test_mo_window_limits_deliver_sm_in_flight(lab: Lab) -> None:
    simulator = await lab.simulator(mo_window=2)
    esme = await lab.esme(simulator)

    sending = [
        asyncio.create_task(simulator.send_mo(PHONE, f"MO {n}", timeout=2)) for n in range(3)
    ]
    first = await esme.expect(smpp.DELIVER_SM)
    second = await esme.expect(smpp.DELIVER_SM)
    with pytest.raises(TimeoutError):
        await esme.expect(smpp.DELIVER_SM, within=0.2)
    await esme.answer(first)
    third = await esme.expect(smpp.DELIVER_SM)
    await esme.answer(second)
    await esme.answer(third)

    assert [await task for task in sending] == [[0], [0], [0]]


# ---- Control API ------------------------------------------------------------------------------


async def fake_gateway(esme: Esme) -> None:
    """Answers every MO with two replies, the second one two parts long."""
    while True:
        data = await esme.expect(smpp.DELIVER_SM, within=10)
        await esme.answer(data)
        message = smpp.decode_sm(data)
        if message.is_receipt:
            continue
        await esme.submit_text("Принято: " + message.text, to=message.source)
        await esme.submit_text("Второй ответ, подлиннее. " * 5, to=message.source)


@pytest.fixture
async def gateway_task(lab: Lab) -> AsyncIterator[Callable[[Esme], Awaitable[None]]]:
    tasks: list[asyncio.Task[None]] = []

    async def start(esme: Esme) -> None:
        tasks.append(asyncio.create_task(fake_gateway(esme)))

    yield start
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_control_mo_returns_the_replies(
    lab: Lab, gateway_task: Callable[[Esme], Awaitable[None]]
) -> None:
    simulator = await lab.simulator()
    control = await simulator.start_control()
    await gateway_task(await lab.esme(simulator))
    url = f"http://127.0.0.1:{control}"

    async with aiohttp.ClientSession() as session:
        async with session.post(url + "/mo", json={"phone": PHONE, "text": "Баланс", "wait": 2}) as r:
            assert r.status == 200
            answer = await r.json()
        async with session.get(url + "/sent", params={"phone": PHONE}) as r:
            sent = await r.json()
        async with session.get(url + "/status") as r:
            status = await r.json()

    assert answer == {
        "status": [0],
        "replies": [
            {"text": "Принято: Баланс", "parts": 1},
            {"text": "Второй ответ, подлиннее. " * 5, "parts": 2},
        ],
    }
    assert [message["text"] for message in sent] == ["Принято: Баланс", "Второй ответ, подлиннее. " * 5]
    assert sent[1]["parts"] == 2 and len(sent[1]["message_ids"]) == 2
    assert status["bound"] == ["transceiver"]
    assert (status["binds"], status["sent"], status["acknowledged"]) == (1, 2, 1)

    replies = await send_sms(url, PHONE, "Помощь", wait=2)
    assert replies == ["Принято: Помощь", "Второй ответ, подлиннее. " * 5]


async def test_control_mo_with_nobody_bound_is_503(lab: Lab) -> None:
    simulator = await lab.simulator()
    url = f"http://127.0.0.1:{await simulator.start_control()}"

    async with aiohttp.ClientSession() as session:
        async with session.post(url + "/mo", json={"phone": PHONE, "text": "Hi", "wait": 0.1}) as r:
            assert r.status == 503
            assert (await r.json())["error"] == "no ESME is bound to the simulator"
    with pytest.raises(SimulatorUnavailable, match="no ESME is bound"):
        await send_sms(url, PHONE, "Hi", wait=0.1)
    assert simulator.pending == 0


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"{not json", "body must be JSON"),
        (b'["list"]', "body must be a JSON object"),
        (b'{"text": "Hi"}', "phone is missing"),
        (b'{"phone": "+79031234567"}', "text is missing"),
        (b'{"phone": "+79031234567", "text": "Hi", "wait": -1}', "wait must be"),
        (b'{"phone": "abc", "text": "Hi"}', "international number"),
    ],
)
async def test_control_mo_bad_requests(lab: Lab, body: bytes, error: str) -> None:
    simulator = await lab.simulator()
    url = f"http://127.0.0.1:{await simulator.start_control()}"

    async with aiohttp.ClientSession() as session, session.post(url + "/mo", data=body) as r:
        assert r.status == 400
        assert error in (await r.json())["error"]


async def test_simclient_with_nobody_listening() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    with pytest.raises(SimulatorUnavailable, match="nobody listens"):
        await send_sms(f"http://127.0.0.1:{port}", PHONE, "Hi", wait=0.1)


# ---- Logs -------------------------------------------------------------------------------------


async def test_logs_carry_no_texts_and_masked_phones(
    lab: Lab, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="smsgate.tools.simulator")
    simulator = await lab.simulator()
    esme = await lab.esme(simulator)

    await esme.submit_text("Ваш новый пароль: Xq7pL2", registered_delivery=1)
    await esme.answer(await esme.expect(smpp.DELIVER_SM))
    sending = asyncio.create_task(simulator.send_mo(PHONE, "Пароль 9fK3", timeout=2))
    await esme.answer(await esme.expect(smpp.DELIVER_SM))
    await sending

    logged = " ".join(str(vars(record)) for record in caplog.records)
    events = [record.getMessage() for record in caplog.records]
    assert "message_recorded" in events and "mo_sent" in events
    assert "Xq7pL2" not in logged and "9fK3" not in logged
    assert PHONE_WIRE not in logged
    assert "+7903***4567" in logged
