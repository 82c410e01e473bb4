"""Importing the settlement center's CSV exports: providers, accounts, charges and payments.

A file is imported whole or not at all: every row is checked, and all rows are written in one
transaction that is rolled back at the first bad row.
"""

from __future__ import annotations

import asyncio
import csv
import operator
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import BinaryIO

import aiosqlite
from tqdm import tqdm

from store.db import Store, StoreError

# Rows per executemany call: large enough to amortise the trip to aiosqlite's thread, small
# enough that parsing the next batch overlaps with writing this one.
BATCH_ROWS = 10_000
# A physical line longer than this is garbage, not an export; refusing it early bounds memory.
MAX_LINE_BYTES = 1 << 20
# Caches of already-checked values (services, periods, dates, provider ids) stop growing here,
# so a file of all-distinct values costs checks, not memory.
_CACHE_LIMIT = 50_000

_BOM = b"\xef\xbb\xbf"
# Spaces, dashes and the number sign people type into account numbers; Excel adds the
# Unicode variants.
_ACCOUNT_NOISE = str.maketrans("", "", " \t\u00a0\u202f-\u2010\u2011\u2012\u2013\u2014\u2212№")
_PROVIDER_ID = re.compile(r"\s*([0-9]{1,18})\s*", re.ASCII)
_INN = re.compile(r"[0-9]{10}|[0-9]{12}", re.ASCII)
_PERIOD = re.compile(r"\s*([0-9]{4})-([0-9]{2})\s*", re.ASCII)
_DATE = re.compile(r"\s*([0-9]{4}-[0-9]{2}-[0-9]{2})\s*", re.ASCII)
# Ten digits of roubles is far beyond any utility bill and keeps kopecks well inside int64.
_AMOUNT = re.compile(r"\s*(-?)([0-9]{1,10})(?:\.([0-9]{1,2}))?\s*", re.ASCII)
# C0/C1 controls, and lone surrogates (undecodable bytes) that slipped past the UTF-8 check.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_UNDECODABLE = re.compile(r"[\udc80-\udcff]")
_YEARS = range(1990, 2100)


class ImportFailed(StoreError):
    """A file that cannot be imported; nothing from it was written.

    `line` is the 1-based line of the file (the header is line 1) where the bad record starts,
    None when the file as a whole is at fault; `column` is the header name, when one is to blame.
    """

    def __init__(self, line: int | None, column: str | None, message: str) -> None:
        self.line = line
        self.column = column
        self.message = message
        where = [f"line {line}"] if line is not None else []
        if column is not None:
            where.append(f"column {column}")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)


@dataclass(frozen=True)
class ImportResult:
    """What one import did, counted in data rows (the header and blank lines are not rows)."""

    read: int
    inserted: int
    # Rows whose key was already present (in the store, or earlier in the same file) and
    # were overwritten with the file's values.
    updated: int
    # Payments already recorded: payments are never overwritten, only added.
    skipped: int

    def describe(self) -> str:
        """One line for the operator: "1,000 rows read: 990 added, 10 updated"."""
        done = [f"{self.inserted:,} added"]
        if self.updated:
            done.append(f"{self.updated:,} updated")
        if self.skipped:
            done.append(f"{self.skipped:,} already recorded")
        return f"{self.read:,} rows read: {', '.join(done)}"


@dataclass(frozen=True)
class _Kind:
    columns: tuple[str, ...]
    write: str
    count: str
    # Columns a file may leave out; rows of such a file get "" for them.
    optional: tuple[str, ...] = ()


KINDS: dict[str, _Kind] = {
    "providers": _Kind(
        ("provider_id", "name", "inn", "service_kind"),
        "INSERT INTO providers (id, name, inn, service_kind) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (id) DO UPDATE SET name = excluded.name, inn = excluded.inn,"
        " service_kind = excluded.service_kind",
        "SELECT count(*) FROM providers",
    ),
    "accounts": _Kind(
        ("account", "receipt_code", "address", "holder"),
        "INSERT INTO accounts (number, receipt_code, address, holder) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (number) DO UPDATE SET receipt_code = excluded.receipt_code,"
        " address = excluded.address, holder = excluded.holder",
        "SELECT count(*) FROM accounts",
    ),
    "charges": _Kind(
        ("account", "provider_id", "service", "period", "amount"),
        "INSERT INTO charges (account, provider_id, service, period, amount)"
        " VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (account, provider_id, service, period)"
        " DO UPDATE SET amount = excluded.amount",
        "SELECT count(*) FROM charges",
    ),
    "payments": _Kind(
        ("account", "provider_id", "amount", "paid_at", "channel"),
        # A payment with the center's own id (payment_id) is recorded once per id; one without
        # is one payment with every other payment alike in account, provider, day, amount and
        # channel. Either way a file imported again adds nothing.
        "INSERT INTO payments (account, provider_id, amount, paid_at, channel, reference)"
        " VALUES (?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (reference) WHERE reference != '' DO NOTHING"
        " ON CONFLICT (account, provider_id, paid_at, amount, channel) WHERE reference = ''"
        " DO NOTHING",
        "SELECT count(*) FROM payments",
        optional=("payment_id",),
    ),
}

Row = tuple[object, ...]


class _FieldError(Exception):
    """One field is bad; the reader adds the line number."""

    def __init__(self, column: str, message: str) -> None:
        super().__init__(message)
        self.column = column
        self.message = message


def _show(raw: str) -> str:
    """A bad value, quoted and cut short, for an error message."""
    return repr(raw if len(raw) <= 30 else raw[:30] + "…")


def normalize_account(raw: str) -> str | None:
    """The account number as stored (digits only), or None if raw is not one."""
    number = raw.translate(_ACCOUNT_NOISE)
    if 1 <= len(number) <= 20 and number.isascii() and number.isdigit():
        return number
    return None


def _account(raw: str, known: set[str] | None) -> str:
    if known is not None and raw in known:
        return raw
    number = normalize_account(raw)
    if number is None:
        raise _FieldError("account", f"not an account number (1 to 20 digits): {_show(raw)}")
    if known is not None and number not in known:
        raise _FieldError("account", f"unknown account {number}")
    return number


def _provider_id(raw: str, known: set[int] | None) -> int:
    match = _PROVIDER_ID.fullmatch(raw)
    if match is None:
        raise _FieldError("provider_id", f"not a provider id (digits): {_show(raw)}")
    provider_id = int(match[1])
    if known is not None and provider_id not in known:
        raise _FieldError("provider_id", f"unknown provider {provider_id}")
    return provider_id


def _text(raw: str, column: str, limit: int, required: bool) -> str:
    if len(raw) > 4 * limit:
        raise _FieldError(column, f"longer than {limit} characters ({len(raw)})")
    # Exports wrap long names across lines inside quotes; one line of single spaces is meant.
    value = " ".join(raw.split())
    if len(value) > limit:
        raise _FieldError(column, f"longer than {limit} characters ({len(value)})")
    if required and not value:
        raise _FieldError(column, "is empty")
    if _CONTROL.search(value):
        raise _FieldError(column, "contains control characters or binary data")
    return value


def _period(raw: str) -> str:
    match = _PERIOD.fullmatch(raw)
    if match is None or int(match[1]) not in _YEARS or not 1 <= int(match[2]) <= 12:
        raise _FieldError("period", f"not a period YYYY-MM: {_show(raw)}")
    return f"{match[1]}-{match[2]}"


def _paid_at(raw: str) -> str:
    match = _DATE.fullmatch(raw)
    try:
        day = date.fromisoformat(match[1]) if match else None
    except ValueError:
        day = None
    if day is None or day.year not in _YEARS:
        raise _FieldError("paid_at", f"not a date YYYY-MM-DD: {_show(raw)}")
    return day.isoformat()


def _kopecks(raw: str) -> int:
    match = _AMOUNT.fullmatch(raw)
    if match is None:
        raise _FieldError("amount", f"not an amount in roubles like 1234.56: {_show(raw)}")
    sign, roubles, fraction = match.groups()
    kopecks = int(roubles) * 100 + (int(fraction.ljust(2, "0")) if fraction else 0)
    return -kopecks if sign else kopecks


def _cached(check: Callable[[str], object]) -> Callable[[str], object]:
    """check, remembering its answers for values seen before (most values repeat)."""
    seen: dict[str, object] = {}

    def cached(raw: str) -> object:
        value = seen.get(raw)
        if value is None:
            value = check(raw)
            if len(seen) < _CACHE_LIMIT:
                seen[raw] = value
        return value

    return cached


def _converter(
    kind: str, accounts: set[str] | None, providers: set[int] | None
) -> Callable[[tuple[str, ...]], Row]:
    """A function from a row (in KINDS order) to the values written, raising _FieldError."""
    if kind == "providers":

        def provider(row: tuple[str, ...]) -> Row:
            provider_id, name, inn, service_kind = row
            inn = inn.strip()
            if inn and not _INN.fullmatch(inn):
                raise _FieldError("inn", f"not an INN (10 or 12 digits): {_show(inn)}")
            return (
                _provider_id(provider_id, None),
                _text(name, "name", 300, required=True),
                inn,
                _text(service_kind, "service_kind", 64, required=False),
            )

        return provider

    if kind == "accounts":

        def account(row: tuple[str, ...]) -> Row:
            number, receipt_code, address, holder = row
            return (
                _account(number, None),
                # An empty code would let anyone claim the account, so it is required.
                _text(receipt_code, "receipt_code", 32, required=True),
                _text(address, "address", 500, required=False),
                _text(holder, "holder", 200, required=False),
            )

        return account

    provider_of = _cached(lambda raw: _provider_id(raw, providers))
    if kind == "charges":
        service_of = _cached(lambda raw: _text(raw, "service", 200, required=True))
        period_of = _cached(_period)

        def charge(row: tuple[str, ...]) -> Row:
            number, provider_id, service, period, amount = row
            return (
                _account(number, accounts),
                provider_of(provider_id),
                service_of(service),
                period_of(period),
                _kopecks(amount),
            )

        return charge

    channel_of = _cached(lambda raw: _text(raw, "channel", 64, required=False))
    paid_at_of = _cached(_paid_at)

    def payment(row: tuple[str, ...]) -> Row:
        number, provider_id, amount, paid_at, channel, payment_id = row
        kopecks = _kopecks(amount)
        if kopecks <= 0:
            raise _FieldError("amount", f"a payment must be positive: {_show(amount)}")
        return (
            _account(number, accounts),
            provider_of(provider_id),
            kopecks,
            paid_at_of(paid_at),
            channel_of(channel),
            _text(payment_id, "payment_id", 64, required=False),
        )

    return payment


class _Reader:
    """Reads one CSV file in batches of checked rows; used from one thread at a time."""

    def __init__(self, kind: str, path: Path) -> None:
        self.kind = kind
        self.size = path.stat().st_size
        self.bytes_read = 0
        self.rows_read = 0
        self._line = 0
        self._undecodable = False
        self._header: list[str] = []
        self._file: BinaryIO = path.open("rb")
        try:
            self._records = csv.reader(self._lines(), strict=True)
            self._header = self._read_header()
        except BaseException:
            self._file.close()
            raise
        # An optional column the file leaves out is read from a "" added after its fields.
        width = len(self._header)
        order = [self._header.index(column) if column in self._header else width
                 for column in (*self.spec.columns, *self.spec.optional)]
        # itemgetter of one index returns a bare value, not a tuple; every kind has several.
        self._pick = operator.itemgetter(*order)
        self._pad = [""] if width in order else []
        self._convert: Callable[[tuple[str, ...]], Row] | None = None

    @property
    def spec(self) -> _Kind:
        return KINDS[self.kind]

    def close(self) -> None:
        self._file.close()

    def _lines(self) -> Iterator[str]:
        """The file's lines as text; undecodable bytes become surrogates, flagged for the row."""
        readline = self._file.readline
        while True:
            raw = readline(MAX_LINE_BYTES + 1)
            if not raw:
                return
            self._line += 1
            self.bytes_read += len(raw)
            if len(raw) > MAX_LINE_BYTES:
                raise ImportFailed(self._line, None, f"longer than {MAX_LINE_BYTES} bytes")
            if self._line == 1 and raw.startswith(_BOM):
                raw = raw[len(_BOM) :]
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                self._undecodable = True
                text = raw.decode("utf-8", "surrogateescape")
            yield text

    def _next(self) -> tuple[int, list[str]] | None:
        """The next non-blank record and the line it starts on; None at the end of the file."""
        while True:
            start = self._line + 1
            try:
                record = next(self._records)
            except StopIteration:
                return None
            except csv.Error as exc:
                raise ImportFailed(start, None, f"malformed CSV: {exc}") from None
            if self._undecodable:
                self._undecodable = False
                for name, value in zip(self._header, record, strict=False):
                    if _UNDECODABLE.search(value):
                        raise ImportFailed(start, name, "not UTF-8 text")
                raise ImportFailed(start, None, "not UTF-8 text")
            if record and (len(record) > 1 or record[0].strip()):
                return start, record

    def _read_header(self) -> list[str]:
        expected = ",".join(self.spec.columns) + "".join(f"[,{column}]" for column in self.spec.optional)
        first = self._next()
        if first is None:
            raise ImportFailed(1, None, f"the file is empty; expected the header {expected}")
        line, record = first
        names = [name.strip().lower() for name in record]
        missing = [column for column in self.spec.columns if column not in names]
        unknown = [name for name in names if name not in (*self.spec.columns, *self.spec.optional)]
        repeated = sorted({name for name in names if names.count(name) > 1})
        problems = []
        if missing:
            problems.append(f"missing columns: {', '.join(missing)}")
        if unknown:
            problems.append(f"unknown columns: {', '.join(_show(name) for name in unknown)}")
        if repeated:
            problems.append(f"repeated columns: {', '.join(repeated)}")
        if problems:
            raise ImportFailed(line, None, f"{'; '.join(problems)} (expected {expected})")
        return names

    def prepare(self, accounts: set[str] | None, providers: set[int] | None) -> None:
        """Set the accounts and providers rows may refer to (None: not checked)."""
        self._convert = _converter(self.kind, accounts, providers)

    def read_batch(self) -> list[Row]:
        """Up to BATCH_ROWS checked rows; an empty list at the end of the file."""
        convert = self._convert
        assert convert is not None, "prepare() first"
        pick, pad = self._pick, self._pad
        width = len(self._header)
        batch: list[Row] = []
        while len(batch) < BATCH_ROWS:
            found = self._next()
            if found is None:
                break
            line, record = found
            if len(record) != width:
                raise ImportFailed(line, None, f"{len(record)} fields, expected {width}")
            try:
                batch.append(convert(pick(record + pad if pad else record)))
            except _FieldError as exc:
                raise ImportFailed(line, exc.column, exc.message) from None
        self.rows_read += len(batch)
        return batch


async def _references(db: aiosqlite.Connection, kind: str) -> tuple[set[str] | None, set[int] | None]:
    if kind not in ("charges", "payments"):
        return None, None
    accounts = {str(row[0]) for row in await db.execute_fetchall("SELECT number FROM accounts")}
    providers = {int(row[0]) for row in await db.execute_fetchall("SELECT id FROM providers")}
    return accounts, providers


async def _count(db: aiosqlite.Connection, sql: str) -> int:
    rows = list(await db.execute_fetchall(sql))
    return int(rows[0][0])


async def _write(db: aiosqlite.Connection, sql: str, batch: list[Row]) -> None:
    cursor = await db.executemany(sql, batch)
    await cursor.close()


async def import_csv(store: Store, kind: str, path: Path, progress: bool = False) -> ImportResult:
    """Import one CSV file of KIND into the store, all rows or none; raises ImportFailed."""
    if kind not in KINDS:
        raise ValueError(f"unknown import kind {kind!r}; one of {', '.join(KINDS)}")
    spec = KINDS[kind]
    try:
        reader = await asyncio.to_thread(_Reader, kind, Path(path))
    except OSError as exc:
        raise ImportFailed(None, None, f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        with tqdm(
            total=reader.size,
            unit="B",
            unit_scale=True,
            desc=f"import {kind}",
            file=sys.stderr,
            disable=not progress,
        ) as bar:
            async with store.tx() as db:
                accounts, providers = await _references(db, kind)
                reader.prepare(accounts, providers)
                before = await _count(db, spec.count)
                batch = await asyncio.to_thread(reader.read_batch)
                while batch:
                    # Parse the next batch while SQLite writes this one (sqlite3 releases the
                    # GIL while it works); both finish before either error is raised, so no
                    # thread is left running when the transaction rolls back.
                    written, upcoming = await asyncio.gather(
                        _write(db, spec.write, batch),
                        asyncio.to_thread(reader.read_batch),
                        return_exceptions=True,
                    )
                    if isinstance(written, BaseException):
                        raise written
                    if isinstance(upcoming, BaseException):
                        raise upcoming
                    bar.update(reader.bytes_read - bar.n)
                    batch = upcoming
                after = await _count(db, spec.count)
            bar.update(reader.size - bar.n)
    finally:
        reader.close()
    inserted = after - before
    rest = reader.rows_read - inserted
    if kind == "payments":
        return ImportResult(reader.rows_read, inserted, updated=0, skipped=rest)
    return ImportResult(reader.rows_read, inserted, updated=rest, skipped=0)
