"""The submit window: submits from their call to their answer, spaced by the rate, paused by throttling.

Submits wait in line while the window is full, the link is down or the bind is paused. A slot
that an answer frees goes to the next one waiting in the same turn of the loop (SubmitWindow.pump),
so the window never stands partly empty while a submit waits for its caller's task to wake up.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from smsgate import logs
from smsgate.config import SmscConfig
from smsgate.smpp.constants import ESME_RMSGQFUL, ESME_RTHROTTLED
from smsgate.smpp.stats import LinkStats
from smsgate.smpp.workarounds import status_name

log = logs.get("smpp")

# Answers that pause the whole bind; the submit that got one is sent again first.
THROTTLING = (ESME_RTHROTTLED, ESME_RMSGQFUL)


class RateLimiter:
    """Spaces sends at `rate` per second, allowing a small burst."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self._next = 0.0

    def delay(self, weight: int = 1) -> float:
        """Take `weight` slots (SMS parts); the seconds to wait for them (0 when it is now)."""
        now = time.monotonic()
        slot = max(self._next, now - self.interval * 4)  # up to a 5-part burst after idling
        self._next = slot + self.interval * weight
        return slot - now


class Throttle:
    """The pause of the whole bind after ESME_RTHROTTLED or ESME_RMSGQFUL, longer while they go on."""

    def __init__(self, pause: float, pause_max: float, on_resume: Callable[[], None]) -> None:
        self.resumed = asyncio.Event()
        self.resumed.set()
        self._first = pause
        self._most = pause_max
        self._next = pause  # the next pause: doubles up to pause_max, back to the first on success
        self._on_resume = on_resume

    @property
    def paused(self) -> bool:
        return not self.resumed.is_set()

    def pause(self, status: int) -> None:
        if self.paused:
            return
        delay = self._next
        self._next = min(delay * 2, self._most)
        log.warning("throttled", extra={"status": status_name(status), "pause_s": delay})
        self.resumed.clear()
        asyncio.get_running_loop().call_later(delay, self._resume)

    def succeeded(self) -> None:
        """A submit went through: the next pause is the first one again."""
        self._next = self._first

    def _resume(self) -> None:
        self.resumed.set()
        self._on_resume()


@dataclass(slots=True, eq=False)
class Submit:
    """One submit_sm from its call to its answer: waiting for room in the window, or on the wire."""

    build: Callable[[int], bytes]
    parts: int  # SMS parts it carries, for the submit rate
    answer: asyncio.Future[tuple[int, bytes]]
    sequence: int = 0  # once written
    sent_at: float = 0.0
    deadline: float = 0.0
    holds_slot: bool = False


class Wire(Protocol):
    """What the window needs of the link."""

    @property
    def up(self) -> bool: ...

    def next_sequence(self) -> int: ...

    def send(self, data: bytes) -> None: ...


class SubmitWindow:
    """Submits waiting for room, and those on the wire until answered, at most `config.window`."""

    def __init__(self, config: SmscConfig, wire: Wire, stats: LinkStats) -> None:
        self.config = config
        self.wire = wire
        self.stats = stats
        self.rate = RateLimiter(config.submit_rate)
        self.throttle = Throttle(config.throttle_pause, config.throttle_pause_max, self.pump)
        self.queued: deque[Submit] = deque()
        self.on_wire: dict[int, Submit] = {}  # by sequence number
        self.used = 0  # slots held: submits on the wire or waiting out the submit rate

    def add(self, item: Submit, *, first: bool = False) -> None:
        """Put a submit in line (first: ahead of the others, for one sent again) and pump."""
        if first:
            self.queued.appendleft(item)
        else:
            self.queued.append(item)
        self.pump()

    def pump(self) -> None:
        """Write waiting submits while the window has room, the link is up and not paused.

        Called where room is made (an answer read, a bind, the end of a pause) and for each new
        submit: a slot freed by an answer is taken in the same turn of the loop, and the submit
        goes out with that turn's other writes, instead of waking its caller's task to write it
        a turn or two later while the window stands partly empty.
        """
        while (self.queued and self.used < self.config.window and self.wire.up
               and not self.throttle.paused):
            item = self.queued.popleft()
            if item.answer.done():
                continue  # its caller was cancelled while it waited
            self.used += 1
            item.holds_slot = True
            delay = self.rate.delay(item.parts)
            if delay > 0:
                asyncio.get_running_loop().call_later(delay, self._write, item)
            else:
                self._write(item)

    def answered(self, sequence: int, status: int, raw: bytes) -> bool:
        """Settle the submit a response answers; False when it answers none of them."""
        item = self.on_wire.pop(sequence, None)
        if item is None:
            return False
        self._free(item)
        if status in THROTTLING:
            self.stats.throttled += 1
            self.throttle.pause(status)  # paused before the freed slot can be taken
        if not item.answer.done():
            item.answer.set_result((status, raw))
        if self.queued:
            self.pump()
        return True

    def expire(self) -> None:
        """Fail submits past their deadline with TimeoutError (checked often, not a timer each)."""
        now = time.monotonic()
        for sequence in [sequence for sequence, item in self.on_wire.items() if item.deadline <= now]:
            item = self.on_wire.pop(sequence)
            self._free(item)
            if not item.answer.done():
                item.answer.set_exception(TimeoutError())

    def take_all(self) -> list[Submit]:
        """Every submit on the wire, out of the window: the link is gone, none will be answered."""
        items = list(self.on_wire.values())
        for item in items:
            self._free(item)
        self.on_wire.clear()
        return items

    def _write(self, item: Submit) -> None:
        if item.answer.done():  # its caller was cancelled during the rate's wait
            self._free(item)
            self.pump()
            return
        if not self.wire.up:
            # The link dropped during the rate's wait: first in line for the next bind.
            self._free(item)
            self.queued.appendleft(item)
            return
        item.sequence = self.wire.next_sequence()
        item.sent_at = time.monotonic()
        item.deadline = item.sent_at + self.config.response_timeout
        self.on_wire[item.sequence] = item
        self.wire.send(item.build(item.sequence))

    def _free(self, item: Submit) -> None:
        if item.holds_slot:
            item.holds_slot = False
            self.used -= 1
