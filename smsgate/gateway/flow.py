"""Backpressure: how far routing and replies may run ahead, and the phones whose texts wait their turn.

Memory and latency stay bounded when texts come faster than replies can be submitted. Replies
queued and not yet settled by the SMSC (`unsent_replies`) stop the processor from taking texts
past `unsent_limit`; texts taken for routing and not yet committed (the processor's backlog) stop
the sink from storing more past PROCESS_BATCH, and so from acknowledging them: the SMSC holds
them meanwhile. Receipts never wait: they settle what was sent.
"""

from __future__ import annotations

import asyncio

PROCESS_BATCH = 256  # texts the processor takes at once, and its backlog's limit


class FlowControl:
    def __init__(self, window: int) -> None:
        # Replies queued (by the processor or the inbound transaction) and not yet settled: the
        # SMSC accepted or refused them, or they were found sent before a restart.
        self.unsent_limit = max(window, 16)
        self.unsent_replies: set[int] = set()
        # Texts stored and not yet answered, per phone: while a phone has one, its next texts wait
        # their turn in the processor even when they could be answered at once (replies in order).
        self.held: dict[str, int] = {}
        # Set whenever a stage makes room; whoever waits for room looks again.
        self._room = asyncio.Event()

    # ---- replies ---------------------------------------------------------------------------------

    def reply_queued(self, outbox_id: int) -> None:
        self.unsent_replies.add(outbox_id)

    def reply_settled(self, outbox_id: int) -> None:
        if outbox_id in self.unsent_replies:
            self.unsent_replies.discard(outbox_id)
            self._room.set()

    def room_for_replies_now(self) -> int:
        """How many replies the inbound transaction may queue: what the processor lets through."""
        return self.unsent_limit + PROCESS_BATCH - len(self.unsent_replies)

    async def wait_for_unsent_room(self) -> None:
        """The processor's turn: wait while `unsent_limit` replies or more are unsent."""
        while len(self.unsent_replies) >= self.unsent_limit:
            await self.room_made()

    # ---- waiting ---------------------------------------------------------------------------------

    def make_room(self) -> None:
        self._room.set()

    async def room_made(self) -> None:
        """Wait until some stage makes room (then the caller looks at its own limit again)."""
        self._room.clear()
        await self._room.wait()

    # ---- phones held -----------------------------------------------------------------------------

    def hold(self, phone: str) -> None:
        self.held[phone] = self.held.get(phone, 0) + 1

    def release(self, phone: str) -> None:
        left = self.held.get(phone, 0) - 1
        if left > 0:
            self.held[phone] = left
        else:
            self.held.pop(phone, None)
