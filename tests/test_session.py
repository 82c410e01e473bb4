"""The SMPP session against a raw SMSC on loopback that sends PDU bytes when the test says so."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import struct
import time
from collections.abc import AsyncIterator

import pytest

from smsgate import smpp
from smsgate.config import SmscConfig
from smsgate.linger import LINGER_PAUSE, ReceiptLinger
from smsgate.smpp import SINK_BATCHES, Inbound, LinkDown, SmppSession

SOURCE = ("79130000001", 1, 1)
SERVICE = ("7377", 3, 0)


def _receipt(sequence: int, message_id: str) -> bytes:
    text = (f"id:{message_id} sub:001 dlvrd:001 submit date:2612012200 done date:2612012200"
            " stat:DELIVRD err:000 text:")
    return smpp.build_deliver_sm(sequence, SOURCE, SERVICE, 0, text.encode(), esm_class=0x04)


def _text(sequence: int, text: str) -> bytes:
    return smpp.build_deliver_sm(sequence, SOURCE, SERVICE, 0, text.encode())


class RawSmsc:
    """Accepts one bind, then writes whatever the test hands it; records the answers it reads."""

    def __init__(self) -> None:
        self.answered: dict[int, float] = {}  # deliver_sm sequence -> when its resp was read
        self.got_answer = asyncio.Event()
        self.submits: list[tuple[int, str]] = []  # (sequence, text) as they came
        self.unanswered: set[int] = set()  # submit_sm sequences not answered yet
        self.most_unanswered = 0
        self.got_submit = asyncio.Event()
        self.binds = 0
        self.got_bind = asyncio.Event()
        self.commands: list[int] = []  # command_id of every PDU read, in order
        self._writer: asyncio.StreamWriter | None = None
        self._bound = asyncio.Event()
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def bound(self) -> None:
        await asyncio.wait_for(self._bound.wait(), 5.0)

    def send(self, *pdus: bytes) -> None:
        assert self._writer is not None
        self._writer.write(b"".join(pdus))

    def answer_submit(self, sequence: int, status: int = smpp.ESME_ROK) -> None:
        self.unanswered.discard(sequence)
        self.send(smpp.submit_sm_resp(sequence, f"id{sequence}", status))

    def drop(self) -> None:
        assert self._writer is not None
        self._writer.close()
        self._bound.clear()

    async def wait_submits(self, count: int, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        async with asyncio.timeout(timeout):
            while len(self.submits) < count:
                self.got_submit.clear()
                await self.got_submit.wait()

    async def wait_binds(self, count: int, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        async with asyncio.timeout(timeout):
            while self.binds < count:
                self.got_bind.clear()
                await self.got_bind.wait()

    async def wait_answered(self, sequences: set[int], timeout: float = 5.0) -> None:  # noqa: ASYNC109
        async with asyncio.timeout(timeout):
            while not sequences <= self.answered.keys():
                self.got_answer.clear()
                await self.got_answer.wait()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                head = await reader.readexactly(smpp.HEADER_LENGTH)
                header = smpp.parse_header(head)
                body = await reader.readexactly(header.length - smpp.HEADER_LENGTH)
            except (asyncio.IncompleteReadError, ConnectionError):
                writer.close()
                return
            self.commands.append(header.command_id)
            if header.command_id == smpp.BIND_TRANSCEIVER:
                writer.write(smpp.response(header.command_id, header.sequence, body=b"smsc\x00"))
                self._writer = writer
                self.binds += 1
                self.got_bind.set()
                self.unanswered.clear()  # a new link: what the old one had is gone
                self._bound.set()
            elif header.command_id == smpp.SUBMIT_SM:
                self.submits.append((header.sequence, smpp.decode_sm(head + body).text))
                self.unanswered.add(header.sequence)
                self.most_unanswered = max(self.most_unanswered, len(self.unanswered))
                self.got_submit.set()
            elif header.command_id == smpp.UNBIND:
                writer.write(smpp.unbind_resp(header.sequence))
            elif header.command_id == smpp.DELIVER_SM | smpp.RESPONSE_BIT:
                self.answered[header.sequence] = time.monotonic()
                self.got_answer.set()


@dataclasses.dataclass
class Lab:
    smsc: RawSmsc
    session: SmppSession
    batches: list[list[str]]  # what each call of the sink got: "receipt", "text" or "bytes"


async def _lab(linger: float) -> AsyncIterator[Lab]:
    smsc = RawSmsc()
    port = await smsc.start()
    batches: list[list[str]] = []

    async def sink(batch: list[Inbound]) -> None:
        batches.append(["bytes" if isinstance(item, bytes) else
                        "receipt" if item.is_receipt else "text" for item in batch])

    config = SmscConfig(port=port, embedded_simulator=False, receipt_linger=linger)
    session = SmppSession(config, sink, batching=ReceiptLinger(config.receipt_linger))
    async with _serving(smsc, session):
        yield Lab(smsc, session, batches)


@contextlib.asynccontextmanager
async def _serving(smsc: RawSmsc, session: SmppSession) -> AsyncIterator[None]:
    """The session running and bound to the raw SMSC; both stopped after."""
    running = asyncio.create_task(session.run())
    try:
        await smsc.bound()
        await asyncio.wait_for(session.bound.wait(), 5.0)
        yield
    finally:
        await session.stop()
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
        await smsc.stop()


@pytest.fixture
async def lab() -> AsyncIterator[Lab]:
    async for made in _lab(linger=0.2):  # long, so that timing on a busy machine cannot flake
        yield made


@pytest.fixture
async def eager() -> AsyncIterator[Lab]:
    async for made in _lab(linger=0.0):
        yield made


async def test_a_receipt_alone_waits_for_the_next_text_and_is_stored_with_it(lab: Lab) -> None:
    # Two at once first: the link has had two unanswered, so one alone may wait.
    lab.smsc.send(_receipt(1, "a1"), _receipt(2, "a2"))
    await lab.smsc.wait_answered({1, 2})
    lab.smsc.send(_receipt(3, "a3"))
    await asyncio.sleep(0.01)
    assert 3 not in lab.smsc.answered  # waiting for company
    lab.smsc.send(_text(4, "balans"))
    await lab.smsc.wait_answered({3, 4})
    assert lab.batches == [["receipt", "receipt"], ["receipt", "text"]]
    assert lab.session.stats.lingered == 1 and lab.session.stats.lingered_alone == 0


async def test_undecodable_pdu_ends_the_wait_like_a_text(lab: Lab) -> None:
    lab.smsc.send(_receipt(1, "a1"), _receipt(2, "a2"))
    await lab.smsc.wait_answered({1, 2})
    lab.smsc.send(_receipt(3, "a3"))
    await asyncio.sleep(0.01)
    broken = bytearray(_text(4, "balans"))
    broken[-len("balans") - 1] = 0xFF  # sm_length runs past the end of the PDU
    lab.smsc.send(bytes(broken))
    await lab.smsc.wait_answered({3, 4})
    assert lab.batches[-1] == ["receipt", "bytes"]


async def test_receipts_alone_are_answered_after_the_linger_then_stop_waiting(lab: Lab) -> None:
    lab.smsc.send(_receipt(1, "a1"), _receipt(2, "a2"))
    await lab.smsc.wait_answered({1, 2})
    sent = time.monotonic()
    lab.smsc.send(_receipt(3, "a3"))
    await lab.smsc.wait_answered({3})
    assert lab.smsc.answered[3] - sent >= 0.2  # waited the whole linger, for nothing
    assert lab.session.stats.lingered_alone == 1
    # Nothing came meanwhile: an SMSC that waits for answers would wait with us every time, so
    # for LINGER_PAUSE receipts go at once.
    sent = time.monotonic()
    lab.smsc.send(_receipt(4, "a4"))
    await lab.smsc.wait_answered({4})
    assert lab.smsc.answered[4] - sent < 0.1 < LINGER_PAUSE
    assert lab.session.stats.lingered == 1
    assert lab.batches == [["receipt", "receipt"], ["receipt"], ["receipt"]]


async def test_a_batch_half_the_links_most_does_not_wait(lab: Lab) -> None:
    # The most this link has had unanswered is one: an SMSC with a window of one, say. Nothing
    # else can come until this is answered, so it never waits.
    for sequence in range(1, 6):
        lab.smsc.send(_receipt(sequence, f"b{sequence}"))
        await lab.smsc.wait_answered({sequence}, timeout=0.1)
    assert lab.session.stats.lingered == 0
    assert lab.batches == [["receipt"]] * 5


async def test_many_receipts_stop_the_wait(lab: Lab) -> None:
    lab.smsc.send(*[_receipt(sequence, f"c{sequence}") for sequence in range(1, 201)])
    await lab.smsc.wait_answered(set(range(1, 201)))
    lab.smsc.send(_receipt(201, "c201"))
    await asyncio.sleep(0.01)
    assert 201 not in lab.smsc.answered
    lab.smsc.send(*[_receipt(sequence, f"c{sequence}") for sequence in range(202, 266)])
    await lab.smsc.wait_answered(set(range(201, 266)), timeout=0.1)
    assert sum(len(batch) for batch in lab.batches) == 265
    assert lab.session.stats.lingered_alone == 0


async def test_without_linger_every_batch_goes_at_once(eager: Lab) -> None:
    eager.smsc.send(_receipt(1, "a1"), _receipt(2, "a2"))
    await eager.smsc.wait_answered({1, 2})
    eager.smsc.send(_receipt(3, "a3"))
    await eager.smsc.wait_answered({3}, timeout=0.1)
    assert eager.session.stats.lingered == 0
    assert eager.batches == [["receipt", "receipt"], ["receipt"]]



@dataclasses.dataclass
class HeldLab:
    smsc: RawSmsc
    session: SmppSession
    batches: list[list[str]]  # each sink call: the texts it got ("r" for a receipt)
    release: dict[str, asyncio.Event]  # per text: set to let the sink call holding it return
    called: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)  # the sink got one

    def let_go(self, *texts: str) -> None:
        for text in texts:
            self.release.setdefault(text, asyncio.Event()).set()

    async def sink_calls(self, count: int) -> None:
        async with asyncio.timeout(5.0):
            while len(self.batches) < count:
                self.called.clear()
                await self.called.wait()


async def _held_lab(linger: float) -> AsyncIterator[HeldLab]:
    """A session whose sink returns a batch only once the test lets each of its texts go."""
    smsc = RawSmsc()
    port = await smsc.start()
    batches: list[list[str]] = []
    release: dict[str, asyncio.Event] = {}

    async def sink(batch: list[Inbound]) -> None:
        texts = ["?" if isinstance(item, bytes) else "r" if item.is_receipt else item.text
                 for item in batch]
        batches.append(texts)
        lab.called.set()
        held = [text for text in texts if text != "r"]
        await asyncio.gather(*(release.setdefault(text, asyncio.Event()).wait() for text in held))

    config = SmscConfig(port=port, embedded_simulator=False, receipt_linger=linger)
    session = SmppSession(config, sink, batching=ReceiptLinger(config.receipt_linger))
    lab = HeldLab(smsc, session, batches, release)
    async with _serving(smsc, lab.session):
        try:
            yield lab
        finally:
            lab.let_go(*list(lab.release))  # no sink call left waiting while the session stops


@pytest.fixture
async def held() -> AsyncIterator[HeldLab]:
    async for made in _held_lab(linger=0.0):
        yield made


@pytest.fixture
async def held_lingering() -> AsyncIterator[HeldLab]:
    async for made in _held_lab(linger=0.2):
        yield made


async def test_a_batch_goes_to_the_sink_while_the_one_before_is_being_stored(held: HeldLab) -> None:
    held.smsc.send(_text(1, "1"))
    await held.sink_calls(1)
    held.smsc.send(_text(2, "2"))
    await held.sink_calls(2)  # not behind the first one's answer
    assert held.batches == [["1"], ["2"]] and not held.smsc.answered
    # Each batch is answered when its own sink call returns, whatever the order.
    held.let_go("2")
    await held.smsc.wait_answered({2})
    assert 1 not in held.smsc.answered
    held.let_go("1")
    await held.smsc.wait_answered({1})


async def test_at_most_sink_batches_are_stored_at_once(held: HeldLab) -> None:
    for number in range(1, SINK_BATCHES + 1):
        held.smsc.send(_text(number, str(number)))
        await held.sink_calls(number)
    # Every slot is taken: what comes now waits, and goes in one batch once a slot is free.
    extra = range(SINK_BATCHES + 1, SINK_BATCHES + 4)
    held.smsc.send(*[_text(number, str(number)) for number in extra])
    await asyncio.sleep(0.05)
    assert len(held.batches) == SINK_BATCHES
    held.let_go("1")
    await held.sink_calls(SINK_BATCHES + 1)
    assert held.batches[-1] == [str(number) for number in extra]
    held.let_go(*[str(number) for number in range(1, SINK_BATCHES + 4)])
    await held.smsc.wait_answered(set(range(1, SINK_BATCHES + 4)))


async def test_batches_in_the_sink_count_as_unanswered_for_the_linger(held_lingering: HeldLab) -> None:
    lab = held_lingering
    lab.smsc.send(_receipt(1, "a1"), _receipt(2, "a2"))  # the most unanswered at once: two
    await lab.smsc.wait_answered({1, 2})
    lab.smsc.send(_text(3, "3"))
    await lab.sink_calls(2)
    # One text still in the sink and this receipt: two unanswered again, so the SMSC may be
    # holding the rest back until they are answered. The receipt does not wait.
    lab.smsc.send(_receipt(4, "a4"))
    await lab.smsc.wait_answered({4}, timeout=0.1)
    assert lab.session.stats.lingered == 0
    assert lab.batches == [["r", "r"], ["3"], ["r"]]
    lab.let_go("3")
    await lab.smsc.wait_answered({3})


# ---- the submit window -------------------------------------------------------------------------


@dataclasses.dataclass
class WindowLab:
    smsc: RawSmsc
    session: SmppSession

    def submit(self, text: str) -> asyncio.Task[tuple[int, bytes]]:
        def build(sequence: int) -> bytes:
            return smpp.build_submit_sm(sequence, SERVICE, SOURCE, 0, text.encode())
        return asyncio.create_task(self.session.submit(build))

    def texts(self) -> list[str]:
        return [text for _sequence, text in self.smsc.submits]

    def sequence_of(self, text: str) -> int:
        return next(sequence for sequence, sent in self.smsc.submits if sent == text)


@pytest.fixture
async def window() -> AsyncIterator[WindowLab]:
    smsc = RawSmsc()
    port = await smsc.start()

    async def sink(_batch: list[Inbound]) -> None:
        return None

    config = SmscConfig(port=port, embedded_simulator=False, window=3, submit_rate=100000.0,
                        throttle_pause=0.3, reconnect_min=0.05, reconnect_max=0.1)
    session = SmppSession(config, sink)
    async with _serving(smsc, session):
        yield WindowLab(smsc, session)


async def _quiet(seconds: float = 0.2) -> None:
    """Long enough for anything the session would write to have arrived."""
    await asyncio.sleep(seconds)


async def test_a_full_window_holds_submits_until_an_answer_makes_room(window: WindowLab) -> None:
    tasks = [window.submit(f"t{n}") for n in range(6)]
    await window.smsc.wait_submits(3)
    await _quiet()
    assert window.texts() == ["t0", "t1", "t2"]  # the window is 3
    window.smsc.answer_submit(window.sequence_of("t1"))
    await window.smsc.wait_submits(4)
    await _quiet()
    assert window.texts() == ["t0", "t1", "t2", "t3"]  # one answer, one more out, in order
    status, raw = await asyncio.wait_for(tasks[1], 5.0)
    assert status == smpp.ESME_ROK
    assert smpp.response_message_id(raw) == f"id{window.sequence_of('t1')}"
    for text in ["t0", "t2", "t3"]:
        window.smsc.answer_submit(window.sequence_of(text))
    await window.smsc.wait_submits(6)
    for text in ["t4", "t5"]:
        window.smsc.answer_submit(window.sequence_of(text))
    results = await asyncio.wait_for(asyncio.gather(*tasks), 5.0)
    assert [smpp.response_message_id(raw) for _status, raw in results] == [
        f"id{window.sequence_of(f't{n}')}" for n in range(6)
    ]
    assert window.smsc.most_unanswered == 3
    assert window.session.stats.submits == 6


async def test_a_throttled_answer_pauses_the_window_and_that_submit_goes_again_first(
    window: WindowLab,
) -> None:
    tasks = [window.submit(f"t{n}") for n in range(4)]
    await window.smsc.wait_submits(3)
    window.smsc.answer_submit(window.sequence_of("t0"), smpp.ESME_RTHROTTLED)
    await _quiet(0.15)  # within the pause of 0.3 s
    assert window.texts() == ["t0", "t1", "t2"]  # room was made, but the bind is paused
    assert window.session.state == "throttled"
    await window.smsc.wait_submits(4)
    await _quiet()
    assert window.texts()[3:] == ["t0"]  # the throttled one first, once the pause is over
    window.smsc.answer_submit(window.sequence_of("t1"))
    await window.smsc.wait_submits(5)
    assert window.texts()[4:] == ["t3"]
    for sequence, _text in window.smsc.submits[2:]:
        window.smsc.answer_submit(sequence)
    results = await asyncio.wait_for(asyncio.gather(*tasks), 5.0)
    assert [status for status, _raw in results] == [smpp.ESME_ROK] * 4
    assert window.session.stats.throttled == 1
    assert window.session.state == "bound"


async def test_a_cancelled_submit_leaves_the_line_but_keeps_its_slot_until_answered(
    window: WindowLab,
) -> None:
    tasks = [window.submit(f"t{n}") for n in range(5)]
    await window.smsc.wait_submits(3)
    tasks[0].cancel()  # on the wire: the SMSC still has it
    tasks[3].cancel()  # waiting: never sent
    await _quiet()
    assert window.texts() == ["t0", "t1", "t2"]
    window.smsc.answer_submit(window.sequence_of("t0"))
    await window.smsc.wait_submits(4)
    await _quiet()
    assert window.texts() == ["t0", "t1", "t2", "t4"]
    for text in ["t1", "t2", "t4"]:
        window.smsc.answer_submit(window.sequence_of(text))
    results = await asyncio.wait_for(asyncio.gather(tasks[1], tasks[2], tasks[4]), 5.0)
    assert [status for status, _raw in results] == [smpp.ESME_ROK] * 3
    assert window.smsc.most_unanswered == 3


async def test_a_dropped_link_fails_what_is_on_the_wire_and_sends_the_rest_after_the_bind(
    window: WindowLab,
) -> None:
    tasks = [window.submit(f"t{n}") for n in range(5)]
    await window.smsc.wait_submits(3)
    window.smsc.drop()
    for task in tasks[:3]:
        with pytest.raises(LinkDown):
            await asyncio.wait_for(task, 5.0)
    await window.smsc.bound()
    await window.smsc.wait_submits(5)
    assert window.smsc.binds == 2
    assert window.texts()[3:] == ["t3", "t4"]
    for sequence, _text in window.smsc.submits[3:]:
        window.smsc.answer_submit(sequence)
    results = await asyncio.wait_for(asyncio.gather(tasks[3], tasks[4]), 5.0)
    assert [status for status, _raw in results] == [smpp.ESME_ROK] * 2


async def test_stopping_unbinds_without_a_bind_lost_warning(caplog: pytest.LogCaptureFixture) -> None:
    # An operator tailing the log should see a dropped link as a warning, and a shutdown not.
    caplog.set_level(logging.INFO, logger="smsgate")
    smsc = RawSmsc()
    port = await smsc.start()
    session = SmppSession(SmscConfig(port=port, embedded_simulator=False), _ignore)
    async with _serving(smsc, session):
        smsc.drop()  # first a dropped link: that one is a warning
        await smsc.bound()
        await asyncio.wait_for(session.bound.wait(), 5.0)
    events = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "smsgate.smpp"]
    assert [event for event in events if event[1] in ("bind_lost", "unbound")] == [
        ("WARNING", "bind_lost"), ("INFO", "unbound"),
    ]
    assert session.stats.binds == 2 and not session.bound.is_set()


async def test_every_bind_that_succeeds_starts_the_backoff_again(caplog: pytest.LogCaptureFixture) -> None:
    # An SMSC that drops the link right after each bind, with the operator's reconnect_max (30 s):
    # it is there, so every reconnect waits reconnect_min at most instead of doubling each time.
    caplog.set_level(logging.INFO, logger="smsgate")
    smsc = RawSmsc()
    port = await smsc.start()
    config = SmscConfig(port=port, embedded_simulator=False, reconnect_min=0.05)
    assert config.reconnect_max == 30.0
    session = SmppSession(config, _ignore)
    async with _serving(smsc, session):
        for binds in range(1, 7):
            await smsc.wait_binds(binds)
            await asyncio.wait_for(session.bound.wait(), 5.0)
            smsc.drop()
        await smsc.wait_binds(7)
    pauses = [float(getattr(r, "seconds", -1)) for r in caplog.records if r.getMessage() == "reconnect_wait"]
    assert len(pauses) >= 6 and all(0 < pause <= 0.05 for pause in pauses), pauses


async def test_a_bad_command_length_resets_the_link_without_an_answer(
    window: WindowLab, caplog: pytest.LogCaptureFixture
) -> None:
    # Nothing tells where the next PDU would begin: the session neither answers nor guesses, it
    # drops the link and binds again.
    caplog.set_level(logging.INFO, logger="smsgate")
    window.smsc.send(struct.pack("!IIII", 0, smpp.DELIVER_SM, 0, 6) + bytes(40))
    await window.smsc.wait_binds(2)
    await asyncio.wait_for(window.session.bound.wait(), 5.0)
    assert window.smsc.commands == [smpp.BIND_TRANSCEIVER] * 2  # no generic_nack, no deliver_sm_resp
    errors = [getattr(r, "error", "") for r in caplog.records if r.getMessage() == "bind_failed"]
    assert errors == ["PduError: bad command_length 0"]


async def _ignore(batch: list[Inbound]) -> None:
    del batch
