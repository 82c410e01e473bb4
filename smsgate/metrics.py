"""Prometheus metrics, counted from the same one-line events the logs carry.

Every event the gateway logs has a stable name (`sms_in`, `sms_out`, `dlr`, `throttled`, ...), so
the counters are derived from those events in one place instead of being incremented all over the
code; gauges (bind state, queue depth, oldest unsent message) are read at scrape time. Counting
happens before the configured log level is applied, so metrics do not depend on it.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from smsgate import logs
from smsgate.smpp import MESSAGE_STATES

# Submit latency buckets (seconds): operators' SMSCs answer in milliseconds to a second.
LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass
class Recent:
    """Per-minute counts of one event over the last hour, for `smsgate status`."""

    minutes: deque[tuple[int, int]] = field(default_factory=lambda: deque(maxlen=61))

    def add(self, at: float) -> None:
        minute = int(at // 60)
        if self.minutes and self.minutes[-1][0] == minute:
            self.minutes[-1] = (minute, self.minutes[-1][1] + 1)
        else:
            self.minutes.append((minute, 1))

    def since(self, seconds: float, now: float) -> int:
        first = int((now - seconds) // 60)
        return sum(count for minute, count in self.minutes if minute > first)


@dataclass(frozen=True)
class Gauges:
    """What the scrape reads from the running gateway."""

    bound: bool
    queue_depth: int
    oldest_unsent_age: float
    inbox_pending: int
    uptime: float
    passwords_ready: int = 0


class Metrics(logging.Handler):
    """A logging handler that turns events into Prometheus series in its own registry."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.registry = CollectorRegistry(auto_describe=True)
        self.messages_in = Counter(
            "smsgate_messages_in", "Texts received from residents", ["channel"],
            registry=self.registry,
        )
        self.commands = Counter(
            "smsgate_commands", "Texts handled, by command and outcome", ["command", "outcome"],
            registry=self.registry,
        )
        self.messages_out = Counter(
            "smsgate_messages_out", "Messages sent to the SMSC, by kind and status", ["kind", "status"],
            registry=self.registry,
        )
        self.parts_out = Counter(
            "smsgate_sms_parts_out", "SMS parts accepted by the SMSC", registry=self.registry
        )
        self.submit_latency = Histogram(
            "smsgate_submit_latency_seconds", "From first submit_sm to the last part's response",
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.receipts = Counter(
            "smsgate_receipts", "Delivery receipts, by final state", ["stat"], registry=self.registry
        )
        self.throttled = Counter(
            "smsgate_throttled", "ESME_RTHROTTLED / ESME_RMSGQFUL answers that paused the bind",
            registry=self.registry,
        )
        self.bind_events = Counter(
            "smsgate_bind_events", "Bind attempts and losses", ["event"], registry=self.registry
        )
        self.logins = Counter(
            "smsgate_logins", "Web logins, by result", ["result"], registry=self.registry
        )
        self.redeliveries = Counter(
            "smsgate_redeliveries", "Inbound texts the SMSC delivered again (answered once)",
            registry=self.registry,
        )
        self._children: dict[tuple[int, tuple[str, ...]], Counter] = {}
        self.recent_in = Recent()
        self.recent_out = Recent()
        self.last_problem: tuple[float, str, str] | None = None
        # Refreshed by the /metrics view right before each scrape (reading it needs the store).
        self.snapshot: Gauges | None = None
        self.registry.register(_GaugeCollector(self))
        self._dispatch: dict[str, Callable[[logging.LogRecord], None]] = {
            "sms_in": self._sms_in,
            "sms_handled": lambda r: self._child(self.commands, _field(r, "handler"), "ok").inc(),
            "handler_error": lambda r: self._child(self.commands, _field(r, "handler"), "error").inc(),
            "sms_out": self._sms_out,
            "sms_failed": lambda r: self._child(self.messages_out, _field(r, "kind"), "failed").inc(),
            "dlr": lambda r: self._child(self.receipts, _stat(r)).inc(),
            "dlr_unmatched": lambda r: self._child(self.receipts, "unmatched").inc(),
            "throttled": lambda r: self.throttled.inc(),
            "bind_ok": lambda r: self._child(self.bind_events, "bind_ok").inc(),
            "bind_lost": lambda r: self._child(self.bind_events, "bind_lost").inc(),
            "bind_failed": lambda r: self._child(self.bind_events, "bind_failed").inc(),
            "login_ok": lambda r: self._child(self.logins, "ok").inc(),
            "login_failed": lambda r: self._child(self.logins, "failed").inc(),
            "sms_redelivered": lambda r: self.redeliveries.inc(),
        }

    def _child(self, counter: Counter, *labels: str) -> Counter:
        """counter.labels(*labels), kept: labels() costs a lock and a few lookups each time."""
        key = (id(counter), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = counter.labels(*labels)
        return child

    def emit(self, record: logging.LogRecord) -> None:
        event = record.msg if isinstance(record.msg, str) else ""
        action = self._dispatch.get(event)
        try:
            if action is not None:
                action(record)
            if record.levelno >= logging.WARNING:
                detail = str(getattr(record, "error", "") or getattr(record, "reason", "") or "")
                self.last_problem = (record.created, event, detail[:200])
        except Exception:  # a metric must never break logging
            self.handleError(record)

    def _sms_in(self, record: logging.LogRecord) -> None:
        self._child(self.messages_in, _field(record, "channel", "sms")).inc()
        self.recent_in.add(record.created)

    def _sms_out(self, record: logging.LogRecord) -> None:
        self._child(self.messages_out, _field(record, "kind"), "submitted").inc()
        self.parts_out.inc(int(getattr(record, "parts", 1) or 1))
        self.submit_latency.observe(float(getattr(record, "ms", 0.0) or 0.0) / 1000.0)
        self.recent_out.add(record.created)

    def attach(self) -> Metrics:
        # Events the level writes reach this as a handler; info events below the level come
        # straight from logs.EventLogger (so metrics do not depend on the level).
        logging.getLogger("smsgate").addHandler(self)
        logs.add_counter(self)
        return self

    def detach(self) -> None:
        logging.getLogger("smsgate").removeHandler(self)
        logs.remove_counter(self)


_STATES = frozenset(MESSAGE_STATES.values())


def _stat(record: logging.LogRecord) -> str:
    """A receipt's state as a label: one of SMPP's, else OTHER (an SMSC's text cannot add series)."""
    stat = _field(record, "stat")
    return stat if stat in _STATES else "OTHER"


def _field(record: logging.LogRecord, name: str, default: str = "unknown") -> str:
    value = getattr(record, name, default)
    return str(value) if value not in (None, "") else default


class _GaugeCollector(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterable[Metric]:
        gauges = self.metrics.snapshot
        if gauges is None:
            return []
        return [
            GaugeMetricFamily("smsgate_bound", "1 while bound to the SMSC", value=int(gauges.bound)),
            GaugeMetricFamily("smsgate_queue_depth", "Messages queued, not yet submitted",
                              value=gauges.queue_depth),
            GaugeMetricFamily("smsgate_oldest_unsent_seconds", "Age of the oldest queued message",
                              value=gauges.oldest_unsent_age),
            GaugeMetricFamily("smsgate_inbox_pending", "Texts stored, not yet answered",
                              value=gauges.inbox_pending),
            GaugeMetricFamily("smsgate_uptime_seconds", "Seconds since the gateway started",
                              value=gauges.uptime),
            GaugeMetricFamily("smsgate_passwords_ready",
                              "Passwords hashed ahead, ready for ПАРОЛЬ and РЕГ",
                              value=gauges.passwords_ready),
        ]

