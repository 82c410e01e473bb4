"""Receipts wait a few milliseconds for a text, so that the store commits them together.

Each batch of deliver_sm is a store transaction with an fsync, and at a few hundred texts a
second every receipt comes alone: waiting up to `SmscConfig.receipt_linger` for the next text
stores them with it, one transaction instead of three for a text with a 2-part reply. Only
receipts wait: they settle what was sent, and nobody waits for their answer. The SMPP session
asks this policy (its `batching`) before each batch goes to the store.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from smsgate import smpp

# Receipts that linger stop waiting once this many have come.
LINGER_BATCH = 64
# After a linger in which nothing else came, none for this long: an SMSC that sends nothing more
# until its deliver_sm are answered (a small window) would only wait with us every time.
LINGER_PAUSE = 1.0


class ReceiptLinger:
    """A batch of receipts alone waits for a text, LINGER_BATCH receipts, or `seconds` to pass."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._after = 0.0  # no linger before this (time.monotonic())

    def wait(self, batch: Sequence[smpp.Received], unanswered: int, most_unanswered: int) -> float:
        """`seconds` for a batch of receipts alone, else 0.

        Receipts do not wait while the SMSC may be holding back what it has for us until these
        are answered: this batch and those being stored are half or more of the most the link
        has had unanswered at once, or a linger lately in which nothing else came.
        """
        if self.seconds <= 0 or len(batch) >= LINGER_BATCH:
            return 0.0
        if unanswered * 2 > most_unanswered or time.monotonic() < self._after:
            return 0.0
        if all(not isinstance(item, bytes) and item.is_receipt for _sequence, item in batch):
            return self.seconds
        return 0.0

    def enough(self, item: smpp.Inbound, waiting: int) -> bool:
        return isinstance(item, bytes) or not item.is_receipt or waiting >= LINGER_BATCH

    def waited(self, alone: bool) -> None:
        if alone:
            self._after = time.monotonic() + LINGER_PAUSE
