"""What the session counts, for the operator's status page and the metrics."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class LinkStats:
    binds: int = 0
    bind_failures: int = 0
    submits: int = 0
    throttled: int = 0
    inbound: int = 0
    malformed: int = 0
    last_error: str = ""
    bound_since: float | None = None
    submit_latency: list[float] = field(default_factory=list)
    lingered: int = 0  # batches of deliver_sm that waited for company (inbound.Batching)
    lingered_alone: int = 0  # of those, the ones that waited while nothing else came
