"""What the gateway counts, for the operator's status and the tests."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Counters:
    received: int = 0
    redelivered: int = 0
    replies_queued: int = 0
    sent: int = 0
    failed: int = 0
    receipts: int = 0
    receipts_unmatched: int = 0
    receipts_waited: int = 0  # named no recorded part when they came: matched again later
    handler_errors: int = 0
