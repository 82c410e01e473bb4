"""One line per event: JSON (default) or text; phones masked and secrets dropped on the way out."""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from collections.abc import Mapping
from typing import Any, TextIO

from smsgate.phone import mask

# Fields that must never reach a log line, whatever a caller passes.
SECRET_FIELDS = frozenset({"password", "new_password", "code", "text", "body", "reply", "secret"})
_PHONE = re.compile(r"\+?7\d{10}\b")
_RESERVED = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}


def _mask_match(match: re.Match[str]) -> str:
    found = match.group(0)
    return mask(found if found.startswith("+") else "+" + found)


def _scrub(value: Any) -> Any:
    """Phone numbers inside free text are masked too (an error message may quote one)."""
    if isinstance(value, str):
        return _PHONE.sub(_mask_match, value)
    return value


def event_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The record as a flat dict: event name, level, time, and the extra fields, cleaned."""
    fields: dict[str, Any] = {
        "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        + f".{int(record.msecs):03d}Z",
        "level": record.levelname.lower(),
        "event": record.getMessage(),
        "logger": record.name,
    }
    for key, value in vars(record).items():
        if key in _RESERVED or key.startswith("_"):
            continue
        if key in SECRET_FIELDS:
            continue
        if key in ("msisdn", "phone") and isinstance(value, str):
            fields["msisdn"] = mask(value) if value.startswith("+") else _scrub(value)
            continue
        fields[key] = _scrub(value)
    if record.exc_info and record.exc_info[0] is not None:
        fields["error"] = record.exc_info[0].__name__
        fields["error_detail"] = _scrub(str(record.exc_info[1]))[:300]
    return fields


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(event_fields(record), ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = event_fields(record)
        head = f"{fields.pop('ts')} {fields.pop('level').upper():7} {fields.pop('event')}"
        fields.pop("logger", None)
        rest = " ".join(f"{key}={value}" for key, value in fields.items())
        return f"{head} {rest}".rstrip()


class ReopenableFileHandler(logging.StreamHandler[TextIO]):
    """Appends to a file and reopens it on SIGHUP, so logrotate can move it away."""

    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(self._open())

    def _open(self) -> TextIO:
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        return open(self.path, "a", encoding="utf-8", buffering=1)

    def close(self) -> None:
        # StreamHandler leaves its stream open; this one opened the file, so it closes it.
        self.acquire()
        try:
            self.stream.close()
        finally:
            self.release()
        super().close()

    def reopen(self) -> None:
        self.acquire()
        try:
            old = self.stream
            self.stream = self._open()
            old.close()
        finally:
            self.release()


class _Counted(logging.LogRecord):
    """An info event no handler writes, as the counters (metrics) read it: name, time, fields.

    LogRecord.__init__ is skipped on purpose: it is most of the cost of an event, and a text
    makes several.
    """

    def __init__(self, name: str, msg: str, extra: Mapping[str, object] | None) -> None:
        if extra:
            self.__dict__.update(extra)
        self.name = name
        self.msg = msg
        self.args = ()
        self.levelno = logging.INFO
        self.levelname = "INFO"
        self.created = time.time()
        self.exc_info = None


# Handlers that count events whatever the level written (metrics); see EventLogger.
_counters: list[logging.Handler] = []


def add_counter(handler: logging.Handler) -> None:
    if handler not in _counters:
        _counters.append(handler)


def remove_counter(handler: logging.Handler) -> None:
    if handler in _counters:
        _counters.remove(handler)


class EventLogger(logging.Logger):
    """A logger whose info events still reach the counters when the level does not write them.

    Metrics are counted from info events (sms_in, sms_out, dlr, ...). With the log level at
    warning, making a full LogRecord for each only for metrics to read cost more than any other
    single step of a text; such an event goes to the counters as a bare `_Counted` instead.
    """

    def info(self, msg: object, *args: object, **kwargs: Any) -> None:
        if self.isEnabledFor(logging.INFO):
            super().info(msg, *args, **kwargs)
        elif _counters and isinstance(msg, str) and not args:
            event = _Counted(self.name, msg, kwargs.get("extra"))
            for counter in _counters:
                counter.emit(event)  # not handle(): no filters on counters, and no lock needed


def setup(path: str = "", fmt: str = "json", level: str = "info") -> logging.Handler:
    """Route every smsgate logger to one handler; returns it (file handlers can be reopened)."""
    handler: logging.Handler
    handler = ReopenableFileHandler(path) if path else logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.setLevel(level.upper())
    root = logging.getLogger("smsgate")
    for old in list(root.handlers):
        if not isinstance(old, logging.StreamHandler):
            continue  # other handlers (metrics) stay
        root.removeHandler(old)
        if isinstance(old, ReopenableFileHandler):
            old.close()
    root.addHandler(handler)
    # Info events below the level are not made at all; EventLogger still counts them.
    root.setLevel(level.upper())
    root.propagate = False
    # Every text makes several events; finding the caller (a stack walk) and naming the thread
    # and process cost more than the rest of a record, and no line shows them. These are the
    # switches the logging HOWTO's "Optimization" section names.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    return handler


def get(name: str) -> logging.Logger:
    previous = logging.getLoggerClass()
    logging.setLoggerClass(EventLogger)
    try:
        return logging.getLogger(f"smsgate.{name}")
    finally:
        logging.setLoggerClass(previous)
