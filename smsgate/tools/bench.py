"""`make bench`: the gateway against the raw SMPP link, measured in one run; writes BENCHMARKS.md.

The gateway runs as `smsgate run` in a process of its own; the SMSC (`smsgate.tools.loadgen.LoadSmsc`)
and the load run in this one, so on two cores each side has one. The raw link is an echo ESME
from `smsgate.tools.loadgen` (also a process of its own) bound to an SMSC of its own in this process:
aiosmpplib's ESME, the reference of the ratio target, and the lean one for comparison.
Gateway and echoes stay bound all along and their rounds alternate, so all see the same machine.

`python -m smsgate.tools.bench --quick` runs every scenario at small sizes in well under a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import platform
import pstats
import random
import shutil
import signal
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from smsgate.tools.loadgen import LoadSmsc, RunResult, Text

# The texts residents send: the command to measure, and the slow one mixed in.
TEXTS = {"balance": "Баланс", "password": "Пароль"}
PERIOD_MONTHS = 2


@dataclass(frozen=True)
class Sizes:
    accounts: int = 100_000
    phones: int = 10_000
    texts: int = 20_000
    warmup: int = 2_000
    rate: float = 500.0
    rate_seconds: float = 10.0
    mixed_texts: int = 10_000
    password_share: float = 0.05
    growth_small: int = 10_000
    growth_large: int = 1_000_000
    import_rows: int = 1_000_000
    memory_texts: int = 100_000
    profile_texts: int = 10_000
    repeats: int = 5
    throttle_seconds: float = 20.0


QUICK = Sizes(accounts=3_000, phones=1_000, texts=2_000, warmup=300, rate_seconds=2.0,
              mixed_texts=1_000, growth_small=1_000, growth_large=20_000, import_rows=50_000,
              memory_texts=6_000, repeats=1, throttle_seconds=3.0)
# Every scenario at toy sizes: proves the tool works (tests/test_bench.py), measures nothing.
SMOKE = Sizes(accounts=300, phones=100, texts=200, warmup=50, rate=200.0, rate_seconds=0.5,
              mixed_texts=100, password_share=0.1, growth_small=100, growth_large=1_000,
              import_rows=2_000, memory_texts=300, repeats=1, throttle_seconds=0.3)


# ---- the machine --------------------------------------------------------------------------------


def machine() -> str:
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return (f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"SQLite {sqlite3.sqlite_version}, {platform.system()} {platform.release()}")


def cpu_ticks() -> tuple[int, int]:
    """(stolen, total) CPU ticks of the machine so far, from /proc/stat; (0, 0) where there is none.

    Steal is time the hypervisor gave this virtual machine's cores to someone else: on a shared
    host it is the noise in every number here.
    """
    with contextlib.suppress(OSError, ValueError, IndexError):
        fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return fields[7], sum(fields[:8])
    return 0, 0


# ---- stores -------------------------------------------------------------------------------------

PROVIDERS = (
    ("Водоканал Барнаула", "water"), ("ТГК-11", "heating"), ('АО "Алтайэнергосбыт"', "electricity"),
    ("Спецавтохозяйство", "waste"), ('ООО УК "Центральная"', "housing"), ("Фонд капремонта", "repair"),
    ("Газпром межрегионгаз", "gas"), ("Барнаульская горэлектросеть", "electricity"),
)


def phone_of(index: int) -> str:
    return f"+7913{index:07d}"


def _months(count: int) -> list[str]:
    month = dt.date.today().replace(day=1)
    periods = []
    for _ in range(count):
        month = (month - dt.timedelta(days=1)).replace(day=1)
        periods.append(month.strftime("%Y-%m"))
    return sorted(periods)


async def build_store(path: Path, accounts: int, phones: int, charges: bool = True) -> None:
    """A store of `accounts` accounts with charges and payments, `phones` registered residents.

    Written with executemany in one transaction: the point is the gateway, not the loading.
    """
    from smsgate import security
    from store.db import Store

    store = await Store.open(path, synchronous="OFF")  # the schema, through the migrations
    await store.close()
    password_hash = security.ARGON2.hash("bench-password-1")  # one hash for everyone: a benchmark
    await asyncio.to_thread(_fill_store, path, accounts, phones, charges, password_hash)


def _account(index: int) -> str:
    return str(1_000_000_000 + index)


def _fill_store(path: Path, accounts: int, phones: int, charges: bool, password_hash: str) -> None:
    periods = _months(PERIOD_MONTHS)
    count = len(PROVIDERS)
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA synchronous = OFF")
        db.execute("BEGIN")
        db.executemany("INSERT INTO providers (id, name, inn, service_kind) VALUES (?, ?, ?, ?)",
                       [(101 + i, name, f"22{i:08d}", kind) for i, (name, kind) in enumerate(PROVIDERS)])
        db.executemany(
            "INSERT INTO accounts (number, receipt_code, address, holder) VALUES (?, ?, ?, ?)",
            ((_account(i), f"{i * 7919 % 1_000_000:06d}", f"г. Барнаул, ул. Ленина, д. {i % 300 + 1},"
              f" кв. {i % 97 + 1}", "") for i in range(accounts)),
        )
        if charges:

            def charge_rows() -> Iterator[tuple[str, int, str, str, int]]:
                for i in range(accounts):
                    number = _account(i)
                    for provider in sorted({i % count, (i * 7 + 3) % count}):
                        for period in periods:
                            yield number, 101 + provider, PROVIDERS[provider][1], period, \
                                50_000 + (i * 131 + provider * 977) % 400_000

            db.executemany("INSERT INTO charges (account, provider_id, service, period, amount)"
                           " VALUES (?, ?, ?, ?, ?)", charge_rows())
            paid = periods[-1] + "-15"
            db.executemany(
                "INSERT INTO payments (account, provider_id, amount, paid_at, channel)"
                " VALUES (?, ?, ?, ?, ?)",
                ((_account(i), 101 + i % count, 40_000 + i % 1000, paid, "bank")
                 for i in range(0, accounts, 4)),
            )
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        db.executemany(
            "INSERT INTO residents (id, phone, card_number, password_hash, must_change_password,"
            " verified_at, reminders, created_at) VALUES (?, ?, ?, ?, 0, ?, 1, ?)",
            ((i + 1, phone_of(i), str(2_000_000_000 + i), password_hash, now, now)
             for i in range(phones)),
        )
        stride = max(1, accounts // max(phones, 1))
        db.executemany(
            "INSERT INTO resident_accounts (resident_id, account, linked_at) VALUES (?, ?, ?)",
            ((i + 1, _account(i * stride % accounts), now) for i in range(phones)),
        )
        db.execute("COMMIT")
        db.execute("ANALYZE")
    finally:
        db.close()


@dataclass(frozen=True)
class Throttle:
    """How a plain loop ran on this VM: spells below 30% of its median speed (5 ms windows)."""

    seconds: float
    spells: list[tuple[float, float, float]]  # (start s, length s, slowest speed) each

    @property
    def share(self) -> float:
        return sum(length for _start, length, _speed in self.spells) / self.seconds if self.seconds else 0.0

    def describe(self) -> str:
        if not self.spells:
            return f"none in {self.seconds:g} s"
        lengths = sorted(length for _start, length, _speed in self.spells)
        every = self.seconds / len(self.spells)
        return (f"{len(self.spells)} in {self.seconds:g} s (one every {every:.1f} s), median"
                f" {lengths[len(lengths) // 2] * 1000:.0f} ms, longest {lengths[-1] * 1000:.0f} ms, at"
                f" {min(speed for *_rest, speed in self.spells):.0%} of normal speed at worst;"
                f" {self.share:.1%} of the time")


def spells(
    rates: list[tuple[float, int]], window: float, below: float = 0.3
) -> list[tuple[float, float, float]]:
    """Runs of windows whose count is under `below` of the median, joined across gaps of 50 ms."""
    counts = sorted(count for _at, count in rates)
    if not counts or counts[len(counts) // 2] == 0:
        return []
    median = counts[len(counts) // 2]
    found: list[list[float]] = []
    for at, count in rates:
        if count >= below * median:
            continue
        speed = count / median
        if found and at - (found[-1][0] + found[-1][1]) < 0.05:
            found[-1][1] = at + window - found[-1][0]
            found[-1][2] = min(found[-1][2], speed)
        else:
            found.append([at, window, speed])
    return [(start, length, speed) for start, length, speed in found]


def host_throttle(seconds: float, window: float = 0.005) -> Throttle:
    """Run a plain Python loop for `seconds` and find when it ran far slower than usual.

    A host can take this VM's CPU without the guest counting it as steal (a quota on the VM):
    on this project's machine a loop on an otherwise idle VM fell to a few percent of its speed
    for about 100 ms every 1.5-2 s, on both cores at once. Whatever runs then, the gateway too,
    runs that much slower, which decides latency tails. Measured before the rounds, alone.
    """
    rates: list[tuple[float, int]] = []
    started = time.perf_counter()
    while (begun := time.perf_counter()) - started < seconds:
        count = 0
        while time.perf_counter() - begun < window:
            for _ in range(100):
                pass
            count += 1
        rates.append((begun - started, count))
    return Throttle(seconds, spells(rates, window))


# ---- processes ----------------------------------------------------------------------------------


def write_config(folder: Path, name: str, smsc_port: int, store: Path, long_text: str = "udh") -> Path:
    path = folder / f"{name}.toml"
    path.write_text(
        f"""
[smsc]
port = {smsc_port}
embedded_simulator = false
submit_rate = 1000000.0
window = 100
long_text = "{long_text}"
reconnect_min = 0.1
reconnect_max = 1.0

[web]
port = 0

[operator]
port = 0

[store]
path = "{store}"

[log]
path = "{folder / (name + '.log')}"
level = "warning"
""",
        encoding="utf-8",
    )
    return path


class Process:
    """A child process (gateway or echo ESME) we started, and its memory."""

    def __init__(self, name: str, process: asyncio.subprocess.Process) -> None:
        self.name = name
        self.process = process
        # Read as it comes (the tail kept): a child that logs a line a message would otherwise fill
        # the pipe and stall mid-run.
        self._stderr = bytearray()
        self._reader = asyncio.create_task(self._read_stderr())

    async def _read_stderr(self) -> None:
        if self.process.stderr is None:
            return
        while chunk := await self.process.stderr.read(65536):
            self._stderr += chunk
            del self._stderr[:-4000]

    @classmethod
    async def start(cls, name: str, *args: str) -> Process:
        process = await asyncio.create_subprocess_exec(
            sys.executable, *args, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        return cls(name, process)

    def cpu_seconds(self, main_thread: bool = False) -> float:
        """CPU time (user + system) of the process so far: all its threads, or the main one's."""
        pid = self.process.pid
        path = f"/proc/{pid}/task/{pid}/stat" if main_thread else f"/proc/{pid}/stat"
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(path).read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return 0.0

    async def settle(self, timeout: float = 60.0, busy: float = 0.05) -> float:  # noqa: ASYNC109
        """Wait until the process uses less than `busy` of a core over half a second; seconds waited.

        A gateway that has just started fills its stock of ready passwords (about 30 ms of a core
        each, at idle priority): measured before that is done, its first round shares the machine
        with argon2 and starts with fewer passwords ready than a gateway that has been up a while.
        """
        started = time.monotonic()
        before = self.cpu_seconds()
        while time.monotonic() - started < timeout:
            await asyncio.sleep(0.5)
            now = self.cpu_seconds()
            if now - before < busy * 0.5:
                break
            before = now
        return time.monotonic() - started

    def rss_mib(self) -> float:
        """Resident set size of the process and its children (the gateway's БАЛАНС reader)."""
        pid = self.process.pid
        pids = [pid]
        with contextlib.suppress(OSError):
            pids += [int(child) for child in
                     Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        total = 0.0
        for one in pids:
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{one}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) / 1024
        return total

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), 15)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        await self._reader
        error = self._stderr.decode(errors="replace").strip()
        if error and self.process.returncode not in (0, -signal.SIGTERM):
            print(f"{self.name} stderr:\n{error[-2000:]}", file=sys.stderr)


@dataclass
class Link:
    """An SMSC in this process and the ESME (gateway or echo) bound to it."""

    name: str
    smsc: LoadSmsc
    process: Process
    log: Path | None = None  # the gateway's log (an echo has none)

    async def run(self, texts: list[Text], rate: float | None = None,
                  classify: Callable[[str], str] | None = None) -> RunResult:
        result = await self.smsc.run(texts, rate, classify=classify)
        if result.refused or result.mismatched:
            print(f"  {self.name}: {result.refused} refused, {result.mismatched} mismatched"
                  f" {result.examples}", file=sys.stderr)
            for line in self.errors():
                print(f"  {self.name} logged: {line}", file=sys.stderr)
        return result

    def events(self, name: str) -> int:
        """How many times the gateway logged this event (at the bench's log level, warning)."""
        if self.log is None or not self.log.exists():
            return 0
        text = self.log.read_text(encoding="utf-8", errors="replace")
        return text.count(f'"event": "{name}"')

    def errors(self, last: int = 5) -> list[str]:
        """The gateway's last error events (with their tracebacks), to say why a reply was wrong."""
        if self.log is None or not self.log.exists():
            return []
        lines = self.log.read_text(encoding="utf-8", errors="replace").splitlines()
        return [line[:4000] for line in lines if '"level": "error"' in line][-last:]

    async def close(self) -> None:
        await self.process.stop()
        await self.smsc.stop()


async def start_gateway(
    folder: Path, name: str, store: Path, receipts: bool = True, long_text: str = "udh"
) -> Link:
    smsc = LoadSmsc(receipts=receipts)
    port = await smsc.start()
    config = write_config(folder, name, port, store, long_text)
    process = await Process.start(name, "-m", "smsgate", "--config", str(config), "run")
    await smsc.wait_bound(60)
    await process.settle()
    return Link(name, smsc, process, folder / f"{name}.log")


async def start_echo(name: str, parts: int = 1, client: str = "lean", receipts: bool = True) -> Link:
    """An echo ESME (`python -m smsgate.tools.loadgen echo --client ...`) bound to an SMSC of its own."""
    smsc = LoadSmsc(receipts=receipts)
    port = await smsc.start()
    process = await Process.start(name, "-m", "smsgate.tools.loadgen", "echo", "--port", str(port),
                                  "--client", client, "--parts", str(parts))
    await smsc.wait_bound(30)
    return Link(name, smsc, process)


# ---- texts --------------------------------------------------------------------------------------


def classify(reply: str) -> str:
    if reply.startswith("Долг на"):
        return "balance"
    if reply.startswith("Ваш новый пароль"):
        return "password"
    return "other"


def any_kind(_reply: str) -> str:
    return "balance"


class Texts:
    """Texts to send; Пароль goes to a phone not asked before (the limit is 3 an hour)."""

    def __init__(self, phones: int) -> None:
        self.phones = phones
        self._offset = 0
        self._password_phone = phones // 2

    def balance(self, count: int) -> list[Text]:
        start = self._offset
        self._offset += count
        return [Text(phone_of((start + i) % self.phones), "balance", TEXTS["balance"])
                for i in range(count)]

    def mixed(self, count: int, share: float) -> list[Text]:
        texts = self.balance(count)
        every = round(1 / share)
        for i in range(every // 2, count, every):
            self._password_phone = (self._password_phone + 1) % self.phones
            texts[i] = Text(phone_of(self._password_phone), "password", TEXTS["password"])
        return texts


# ---- measuring ----------------------------------------------------------------------------------


@dataclass
class Series:
    """Repeated runs of one scenario; the report shows medians."""

    runs: list[RunResult] = field(default_factory=list)

    def median(self, value: Callable[[RunResult], float]) -> float:
        return statistics.median(value(run) for run in self.runs) if self.runs else 0.0

    @property
    def rate(self) -> float:
        return self.median(lambda run: run.replies_per_second)

    def p(self, quantile: float, kind: str | None = None) -> float:
        return self.median(lambda run: run.percentile(quantile, kind))

    @property
    def parts_per_reply(self) -> float:
        return self.median(lambda run: run.parts / run.replies if run.replies else 0.0)

    @property
    def problems(self) -> int:
        return sum(run.refused + run.mismatched for run in self.runs)


@dataclass
class Report:
    sizes: Sizes
    command: str
    started: dt.datetime
    machine: str = ""
    lines: list[tuple[str, str, str, bool | None]] = field(default_factory=list)
    sections: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # why a target was not met
    stolen: float | None = None  # share of CPU time the hypervisor took during the run
    throttle: Throttle | None = None  # the host's slow spells, measured before the rounds
    seconds: float = 0.0

    def target(self, measure: str, result: str, target: str, met: bool | None) -> None:
        self.lines.append((measure, result, target, met))
        mark = {True: "met", False: "NOT MET", None: ""}[met]
        print(f"{measure}: {result} (target {target}) {mark}", flush=True)

    def render(self) -> str:
        met = {True: "yes", False: "**no**", None: "-"}
        rows = "\n".join(f"| {measure} | {result} | {target} | {met[ok]} |"
                         for measure, result, target, ok in self.lines)
        return "\n".join([
            "# Benchmarks",
            "",
            f"Written by `{self.command}` on {self.started:%Y-%m-%d %H:%M} UTC "
            f"in {self.seconds / 60:.1f} minutes.",
            "",
            f"- Machine: {self.machine}."
            + (f" CPU time stolen by the hypervisor during the run (other guests on the same host):"
               f" {self.stolen:.0%}." if self.stolen is not None else "")
            + (" Slow spells of the host (a plain loop alone on the VM before the rounds, below 30%"
               f" of its median speed): {self.throttle.describe()}."
               if self.throttle is not None else ""),
            f"- Each number is the median of {self.sizes.repeats} runs. The gateway (`smsgate run`,"
            " SQLite with `synchronous = FULL`, log level warning) and the load (a lean SMSC,"
            " `smsgate/tools/loadgen.py`) run in separate processes on the two cores (the gateway with"
            " its БАЛАНС reader, a child process of its own: `[store] reader_min_batch`). Each gateway is"
            " measured once it has settled after its start (under 5% of a core: its stock of ready"
            " passwords full, as in a gateway that has been up a while).",
            "- The raw link, the reference of the ratio target: a minimal echo client on aiosmpplib's own"
            " ESME, broker and SimpleCorrelator, its expiry rescan limited to once a second"
            " (`python -m smsgate.tools.loadgen echo --client aiosmpplib`), answering each text with one"
            " submit_sm, in a process of its own, bound to an SMSC like the gateway's. The ratio is"
            " measured like for like, twice: with an SMSC that sends a receipt for every part (as"
            " operators' do and the gateway asks) and with one that sends none (as the target's"
            " reference measurement has it). A lean echo ESME on asyncio.Protocol with prebuilt"
            " PDUs (`--client lean`) is shown for comparison: what Python carries on this link"
            " doing nothing else."
            " All rounds alternate in the same run; a ratio is the median of the ratios of rounds"
            " run one right after the other.",
            "- Latency: from the deliver_sm written by the SMSC to the last part of the reply read by"
            " the SMSC. The SMSC keeps 100 deliver_sm unanswered at most (texts and receipts); the"
            " gateway and the lean echo keep 100 submit_sm unanswered at most (aiosmpplib's ESME"
            " has no such window).",
            "",
            "| Measure | Result | Target | Met |",
            "| --- | --- | --- | --- |",
            rows,
            "",
            *(["## Targets not met, and why", "", *[f"{note}\n" for note in self.notes]]
              if self.notes else []),
            *self.sections,
        ]) + "\n"


def paired_ratio(numerator: Series, denominator: Series) -> float:
    """The median of round-by-round ratios of two series whose rounds ran in turn."""
    ratios = [a.replies_per_second / b.replies_per_second
              for a, b in zip(numerator.runs, denominator.runs, strict=True) if b.replies_per_second]
    return statistics.median(ratios) if ratios else 0.0


def near(value: float, line: float) -> str:
    """Two decimals, or three where two would hide which side of the target's line it is on."""
    shown = f"{value:.2f}"
    return f"{value:.3f}" if float(shown) == line and value != line else shown


def ms(value: float) -> str:
    return f"{value:.1f} ms"


def describe(series: Series, kind: str | None = None) -> str:
    return (f"{series.rate:,.0f} replies/s; p50 {ms(series.p(0.5, kind))}, p95 {ms(series.p(0.95, kind))},"
            f" p99 {ms(series.p(0.99, kind))}")


# ---- scenarios ----------------------------------------------------------------------------------


def hash_cost() -> float:
    """Seconds of CPU for one password hash with the gateway's parameters (median of five)."""
    from smsgate import security  # argon2 only when a report needs it

    def one() -> float:
        started = time.process_time()
        security.ARGON2.hash("bench-password")
        return time.process_time() - started

    return statistics.median(one() for _ in range(5))


async def throughput(report: Report, folder: Path, sizes: Sizes, texts: Texts) -> dict[str, Series]:
    """Pure Баланс at saturation, gateway vs raw; fixed rate; mixed with Пароль."""
    store = folder / "store-main.db"
    started = time.monotonic()
    await build_store(store, sizes.accounts, sizes.phones)
    build_seconds = time.monotonic() - started
    # A second gateway on a copy of the store, for the runs whose SMSC sends no receipts.
    bare_store = folder / "store-bare.db"
    await asyncio.to_thread(shutil.copyfile, store, bare_store)
    # And two more for the gateways that send long replies whole ([smsc] long_text = "payload").
    whole_stores = [folder / "store-whole.db", folder / "store-whole-bare.db"]
    for copy in whole_stores:
        await asyncio.to_thread(shutil.copyfile, store, copy)
    gateway = await start_gateway(folder, "gateway", store)
    series: dict[str, Series] = {name: Series() for name in (
        "raw", "raw_receipts", "lean", "lean_parts", "gateway", "gateway_bare", "gateway_whole",
        "gateway_whole_bare", "fixed",
        "mixed_fixed", "mixed", "raw_fixed")}
    # CPU of the gateway's main thread (the event loop) a text, per round.
    saturated_cpu: list[float] = []
    fixed_cpu: list[float] = []
    try:
        warm = await gateway.run(texts.balance(sizes.warmup), classify=classify)
        parts = max(1, round(warm.parts / max(1, warm.replies)))
        # The raw link: aiosmpplib's ESME, the target's reference, with an SMSC that sends a
        # receipt for every part (as the gateway's does) and with one that sends none (as the
        # reference measurement's: with receipts its SimpleCorrelator does not collapse); the gateway
        # under both. The lean echo, with 1-part replies and the gateway's parts, for reference.
        links = {
            "raw_receipts": await start_echo("echo-aiosmpplib-receipts", client="aiosmpplib"),
            "raw": await start_echo("echo-aiosmpplib", client="aiosmpplib", receipts=False),
            "gateway_bare": await start_gateway(folder, "gateway-bare", bare_store, receipts=False),
            # The same gateway sending each long reply whole in one submit_sm's message_payload,
            # for an SMSC that takes it (the bench's does): one submit and one receipt a reply.
            "gateway_whole": await start_gateway(folder, "gateway-whole", whole_stores[0],
                                                 long_text="payload"),
            "gateway_whole_bare": await start_gateway(folder, "gateway-whole-bare", whole_stores[1],
                                                      receipts=False, long_text="payload"),
            "lean": await start_echo("echo-lean"),
            "lean_parts": await start_echo("echo-lean-parts", parts),
        }
        try:
            for name, link in links.items():
                await link.run(texts.balance(sizes.warmup),
                               classify=classify if name.startswith("gateway") else any_kind)
            for _ in range(sizes.repeats):
                before_cpu = gateway.process.cpu_seconds(main_thread=True)
                series["gateway"].runs.append(
                    await gateway.run(texts.balance(sizes.texts), classify=classify))
                saturated_cpu.append(
                    (gateway.process.cpu_seconds(main_thread=True) - before_cpu) / sizes.texts)
                for name, link in links.items():
                    series[name].runs.append(await link.run(
                        texts.balance(sizes.texts),
                        classify=classify if name.startswith("gateway") else any_kind))
            count = int(sizes.rate * sizes.rate_seconds)
            series["raw_fixed"].runs.append(await links["raw_receipts"].run(
                texts.balance(count), rate=sizes.rate, classify=any_kind))
        finally:
            for link in links.values():
                await link.close()
        ran_out_at_rate = ran_out = 0  # rounds in which the ready passwords ran out
        for _ in range(sizes.repeats):
            before_cpu = gateway.process.cpu_seconds(main_thread=True)
            series["fixed"].runs.append(
                await gateway.run(texts.balance(count), rate=sizes.rate, classify=classify))
            fixed_cpu.append((gateway.process.cpu_seconds(main_thread=True) - before_cpu) / count)
            before = gateway.events("passwords_ready_empty")
            series["mixed_fixed"].runs.append(await gateway.run(
                texts.mixed(count, sizes.password_share), rate=sizes.rate, classify=classify))
            ran_out_at_rate += gateway.events("passwords_ready_empty") > before
            before = gateway.events("passwords_ready_empty")
            series["mixed"].runs.append(await gateway.run(
                texts.mixed(sizes.mixed_texts, sizes.password_share), classify=classify))
            ran_out += gateway.events("passwords_ready_empty") > before
    finally:
        await gateway.close()

    g, gb = series["gateway"], series["gateway_bare"]
    r, rr = series["raw"], series["raw_receipts"]
    lean, lean_parts = series["lean"], series["lean_parts"]
    # Each ratio from rounds run one right after the other (the host's speed drifts), the median
    # of the rounds' ratios.
    ratio, ratio_bare = paired_ratio(g, rr), paired_ratio(gb, r)
    gw, gwb = series["gateway_whole"], series["gateway_whole_bare"]
    ratio_whole, ratio_whole_bare = paired_ratio(gw, rr), paired_ratio(gwb, r)

    def versus(other: Series) -> str:
        return describe(other) + f"; gateway / this = {g.rate / other.rate if other.rate else 0:.2f}"

    report.target("Баланс at saturation, gateway (SMSC sends a receipt for every part)", describe(g),
                  "-", None)
    report.target("Raw link: aiosmpplib echo ESME, 1-part replies, same SMSC (receipts)",
                  describe(rr), "-", None)
    report.target("Ratio gateway / raw link, SMSC sending receipts", near(ratio, 0.6), ">= 0.6",
                  ratio >= 0.6)
    report.target("Баланс at saturation, gateway, SMSC sending no receipts", describe(gb), "-", None)
    report.target("Raw link: aiosmpplib echo ESME, 1-part replies, no receipts", describe(r), "-", None)
    report.target("Ratio gateway / raw link, SMSC sending no receipts", near(ratio_bare, 0.6),
                  ">= 0.6", ratio_bare >= 0.6)
    report.target('Баланс at saturation, gateway with `long_text = "payload"` (receipts)',
                  describe(gw), "-", None)
    report.target('Ratio gateway with `long_text = "payload"` / raw link, SMSC sending receipts',
                  near(ratio_whole, 0.6), ">= 0.6", ratio_whole >= 0.6)
    report.target('Баланс at saturation, gateway with `long_text = "payload"`, no receipts',
                  describe(gwb), "-", None)
    report.target('Ratio gateway with `long_text = "payload"` / raw link, no receipts',
                  near(ratio_whole_bare, 0.6), ">= 0.6", ratio_whole_bare >= 0.6)
    report.target("Lean echo ESME (prebuilt PDUs, receipts), 1-part replies", versus(lean), "-", None)
    report.target(f"Lean echo ESME with {parts}-part replies, as the gateway's", versus(lean_parts),
                  "-", None)
    fixed = series["fixed"]
    report.target(f"Steady {sizes.rate:.0f} texts/s, p99", ms(fixed.p(0.99)) + f" (p50 {ms(fixed.p(0.5))},"
                  f" p95 {ms(fixed.p(0.95))}; raw link p99 {ms(series['raw_fixed'].p(0.99))};"
                  f" at most {max(run.late for run in fixed.runs)} texts held by a full window)",
                  "< 20 ms", fixed.p(0.99) < 20)
    report.target("Saturation p99", ms(g.p(0.99)), "< 150 ms", g.p(0.99) < 150)
    mixed_fixed, mixed = series["mixed_fixed"], series["mixed"]
    share = f"{sizes.password_share:.0%}"
    if ratio < 0.6 or ratio_bare < 0.6:
        report.notes.append(
            f"**Gateway / raw link: {near(ratio, 0.6)} with receipts, {near(ratio_bare, 0.6)} without (target"
            " 0.6).** The echo answers a text with one 70-character part; the gateway's `Баланс`"
            f" reply is {g.parts_per_reply:.1f} parts, so for each text it writes that many"
            " submit_sm and, with receipts, reads that many receipts, where the echo writes and"
            " reads one. Per text the gateway also stores the text and its reply (with the"
            " balance read) before it acknowledges the one and submits the other, records each part's SMSC"
            " id and matches each receipt to its part (group commits, `synchronous = FULL`): at"
            f" saturation a reply every {1e6 / g.rate:,.0f} µs with receipts"
            f" ({1e6 / gb.rate if gb.rate else 0:,.0f} without), against the aiosmpplib echo's"
            f" {1e6 / rr.rate if rr.rate else 0:,.0f} ({1e6 / r.rate if r.rate else 0:,.0f}). The"
            f" lean echo's {lean.rate:,.0f} replies/s ({lean_parts.rate:,.0f} with"
            f" {parts}-part replies) is what Python carries on this link doing nothing else."
            " Profile below; docs/performance.md says what the profile led to."
        )
    if ratio < 0.6 or ratio_bare < 0.6 or ratio_whole < 0.6 or ratio_whole_bare < 0.6:
        report.notes.append(
            f"**With `[smsc] long_text = \"payload\"`: {near(ratio_whole, 0.6)} with receipts,"
            f" {near(ratio_whole_bare, 0.6)} without.** The gateway then sends each reply whole in"
            " one submit_sm (message_payload, TLV 0x0424) and the SMSC splits it: one submit, one"
            " SMSC id and one receipt a reply, as the echo's, so the window of 100 holds 100"
            f" replies instead of about {100 / max(g.parts_per_reply, 1):.0f}"
            f" ({1e6 / gw.rate if gw.rate else 0:,.0f} µs a reply with receipts,"
            f" {1e6 / gwb.rate if gwb.rate else 0:,.0f} without). It is not the default: not"
            " every SMSC takes message_payload (one that refuses it gets parts from then on, see"
            " docs/performance.md), so the rows above, with UDH parts, are what a gateway set up"
            " as shipped does."
        )
    if fixed.p(0.99) >= 20:
        report.notes.append(
            f"**p99 at {sizes.rate:.0f} texts/s: {ms(fixed.p(0.99))} (target 20 ms; p50"
            f" {ms(fixed.p(0.5))}, p95 {ms(fixed.p(0.95))}).** The tail is not a slow path but"
            " clumps: every so often the gateway's event loop is busy for tens of milliseconds"
            " and the texts that arrive meanwhile wait, then it drains at about 1 ms a text. They"
            " come with the host's slow spells (see Machine above: a plain loop alone on this VM"
            f" runs at a few percent of its speed for about 100 ms at a time): at"
            f" {sizes.rate:.0f} texts/s the gateway's main thread used"
            f" {statistics.median(fixed_cpu) * sizes.rate:.0%} of a core"
            f" ({statistics.median(fixed_cpu) * 1e6:,.0f} µs of CPU a text, against"
            f" {statistics.median(saturated_cpu) * 1e6:,.0f} at saturation, where texts share"
            " transactions and loop turns; and code on this VM runs several times slower right"
            " after the CPU has been idle, as it is between texts at this rate), so a spell"
            " leaves it far behind, while the aiosmpplib echo, doing almost nothing per text, keeps up"
            f" (its p99 at the same rate in the same run: {ms(series['raw_fixed'].p(0.99))})."
            " Inside a clump the same functions run the same number of times as outside, each"
            " about twice as slow (docs/performance.md)."
        )
    if g.p(0.99) >= 150:
        report.notes.append(
            f"**Saturation p99: {ms(g.p(0.99))} (target 150 ms).** At saturation a text's latency"
            " is mostly its wait in line: the SMSC's window of 100 deliver_sm (texts and receipts)"
            " and the gateway's backlog limits hold a fixed number of texts, so latency is that"
            f" number over the rate ({g.rate:,.0f} replies/s here) and grows as the machine slows."
            f" The aiosmpplib echo's own p99 at saturation in the same run was {ms(rr.p(0.99))}."
        )
    at_rate = mixed_fixed.p(0.99, "balance") / max(fixed.p(0.99), 0.001)
    at_saturation = mixed.p(0.99, "balance") / max(g.p(0.99), 0.001)
    if at_rate > 2 or at_saturation > 2:
        report.notes.append(
            f"**{share} Пароль: Баланс p99 {at_rate:.1f}x the pure run at {sizes.rate:.0f} texts/s,"
            f" {at_saturation:.1f}x at saturation (target 2x).** A Пароль takes a password hashed"
            " ahead (argon2id, m=19 MiB, t=2, p=1, OWASP's minimum;"
            f" {ms(hash_cost() * 1000)} of CPU here, measured in this run) from a stock of 256 that"
            " one thread at idle CPU priority tops up; when the stock is empty the hash is made on"
            " demand in a two-thread pool, taking CPU from the loop on a machine whose other core"
            f" runs the load. The stock ran out in {ran_out_at_rate} of {sizes.repeats} rounds at"
            f" {sizes.rate:.0f} texts/s and in {ran_out} of {sizes.repeats} at saturation (where"
            f" the whole run makes {mixed.rate:,.0f} replies/s and Пароль p99 is"
            f" {ms(mixed.p(0.99, 'password'))}); a Баланс from the same phone waits behind its"
            " Пароль (a phone's texts are answered in order). Both are ratios of tails measured"
            " minutes apart on a host whose speed drifts (see the stolen CPU above)."
        )
    report.target(
        f"{share} Пароль at {sizes.rate:.0f} texts/s: Баланс p99",
        f"{ms(mixed_fixed.p(0.99, 'balance'))} vs {ms(fixed.p(0.99))} pure"
        f" ({at_rate:.1f}x); Пароль p99"
        f" {ms(mixed_fixed.p(0.99, 'password'))}; ready passwords ran out in {ran_out_at_rate} of"
        f" {sizes.repeats} rounds",
        "<= 2x pure", mixed_fixed.p(0.99, "balance") <= 2 * fixed.p(0.99))
    report.target(
        f"{share} Пароль at saturation: Баланс p99",
        f"{ms(mixed.p(0.99, 'balance'))} vs {ms(g.p(0.99))} pure"
        f" ({mixed.p(0.99, 'balance') / max(g.p(0.99), 0.001):.1f}x); {mixed.rate:,.0f} replies/s;"
        f" Пароль p99 {ms(mixed.p(0.99, 'password'))}; ready passwords ran out in {ran_out} of"
        f" {sizes.repeats} rounds",
        "<= 2x pure", mixed.p(0.99, "balance") <= 2 * g.p(0.99))
    report.sections.append("\n".join([
        "## Throughput and latency",
        "",
        f"Store: {sizes.accounts:,} accounts with charges for {PERIOD_MONTHS} months from two"
        f" providers each, payments on a quarter of them, {sizes.phones:,} registered phones"
        f" (built in {build_seconds:.1f} s). Each saturation round sends {sizes.texts:,} `Баланс`"
        f" texts as fast as the window allows, after a warm-up of {sizes.warmup:,}. A `Баланс`"
        f" reply here is {g.parts_per_reply:.1f} SMS parts (Cyrillic, UCS-2). The echo ESMEs answer"
        " with one part (70 Cyrillic characters), the lean one also with as many parts as"
        " the gateway. Runs marked \"no receipts\" have an SMSC that sends none, as in the"
        " target's reference measurement; every other run gets one for every submit_sm (a part, or a reply"
        ' sent whole with `long_text = "payload"`, which is one submit_sm of all its parts).',
        "",
        "| Run | Replies/s | p50 | p95 | p99 | Parts/reply |",
        "| --- | --- | --- | --- | --- | --- |",
        *(f"| {label} | {s.rate:,.0f} | {ms(s.p(0.5, kind))} | {ms(s.p(0.95, kind))} |"
          f" {ms(s.p(0.99, kind))} | {s.parts_per_reply:.1f} |"
          for label, s, kind in (
              ("raw link: aiosmpplib echo, 1-part replies, receipts", rr, None),
              ("gateway, Баланс, receipts", g, None),
              ("raw link: aiosmpplib echo, 1-part replies, no receipts", r, None),
              ("gateway, Баланс, no receipts", gb, None),
              ('gateway with `long_text = "payload"`, Баланс, receipts', gw, None),
              ('gateway with `long_text = "payload"`, Баланс, no receipts', gwb, None),
              ("lean echo, 1-part replies, receipts", lean, None),
              (f"lean echo, {parts}-part replies, receipts", lean_parts, None),
              (f"raw link (aiosmpplib echo), {sizes.rate:.0f}/s", series["raw_fixed"], None),
              (f"gateway, Баланс at {sizes.rate:.0f}/s", fixed, None),
              (f"gateway, {share} Пароль at {sizes.rate:.0f}/s: Баланс", mixed_fixed, "balance"),
              (f"gateway, {share} Пароль at {sizes.rate:.0f}/s: Пароль", mixed_fixed, "password"),
              (f"gateway, {share} Пароль at saturation: Баланс", mixed, "balance"),
              (f"gateway, {share} Пароль at saturation: Пароль", mixed, "password"),
          )),
        "",
        "Replies that did not match their text, and deliver_sm refused:"
        f" {sum(s.problems for s in series.values())}.",
        "",
    ]))
    return series


async def growth(report: Report, folder: Path, sizes: Sizes, texts: Texts) -> None:
    """Throughput with a small store and a large one, alternating rounds."""
    stores = {}
    build = {}
    for label, accounts in (("small", sizes.growth_small), ("large", sizes.growth_large)):
        stores[label] = folder / f"store-{label}.db"
        started = time.monotonic()
        await build_store(stores[label], accounts, min(sizes.phones, accounts))
        build[label] = time.monotonic() - started
    phones = min(sizes.phones, sizes.growth_small)
    small_texts = Texts(phones)
    links = {label: await start_gateway(folder, f"gateway-{label}", path) for label, path in stores.items()}
    series = {label: Series() for label in links}
    try:
        for link in links.values():
            await link.run(small_texts.balance(sizes.warmup), classify=classify)
        # Twice the rounds at half the size, in pairs whose order alternates (small-large,
        # large-small, ...): the host's speed drifts within a run, and the change is read pair by
        # pair (the median of each pair's ratio), not from two medians taken apart.
        count = max(1, sizes.texts // 2)
        for pair in range(2 * sizes.repeats):
            for label in ("small", "large") if pair % 2 == 0 else ("large", "small"):
                series[label].runs.append(
                    await links[label].run(small_texts.balance(count), classify=classify))
    finally:
        for link in links.values():
            await link.close()
    small, large = series["small"], series["large"]
    ratios = [big.replies_per_second / little.replies_per_second - 1
              for little, big in zip(small.runs, large.runs, strict=True) if little.replies_per_second]
    change = statistics.median(ratios) if ratios else 0.0
    if change < -0.10:
        report.notes.append(
            f"**Store 10,000 -> 1,000,000 accounts: {change:+.0%} (target within 10%).** The"
            f" rounds' medians were {small.rate:,.0f} and {large.rate:,.0f} replies/s; the pairs'"
            f" changes ranged from {min(ratios):+.0%} to {max(ratios):+.0%}. The bench's 10,000"
            " phones are spread over the large store's accounts (one in a hundred), so each"
            " БАЛАНС reads pages no other phone shares, in larger B-trees (4,000,000 charge rows):"
            " a cost of a few percent, under this host's noise of several percent between rounds"
            " (docs/performance.md)."
        )
    report.target(
        f"Store {sizes.growth_small:,} -> {sizes.growth_large:,} accounts",
        f"{small.rate:,.0f} -> {large.rate:,.0f} replies/s ({change:+.0%})", "within 10%",
        change >= -0.10)
    report.sections.append("\n".join([
        "## Store size",
        "",
        f"The same {phones:,} phones and {max(1, sizes.texts // 2):,} `Баланс` texts a round against a"
        f" store of {sizes.growth_small:,} accounts (built in {build['small']:.1f} s) and one of"
        f" {sizes.growth_large:,} (built in {build['large']:.1f} s), two gateways bound at once,"
        f" {2 * sizes.repeats} pairs of rounds in alternating order; the change is the median of"
        " the pairs' changes, the rates the medians of the rounds.",
        "",
        "| Accounts | Replies/s | p50 | p99 |",
        "| --- | --- | --- | --- |",
        f"| {sizes.growth_small:,} | {small.rate:,.0f} | {ms(small.p(0.5))} | {ms(small.p(0.99))} |",
        f"| {sizes.growth_large:,} | {large.rate:,.0f} | {ms(large.p(0.5))} | {ms(large.p(0.99))} |",
        "",
    ]))
    del texts


async def import_charges(report: Report, folder: Path, sizes: Sizes) -> None:
    """`smsgate import charges` of a generated CSV into a store with its accounts and providers."""
    accounts = max(1, sizes.import_rows // 10)
    store = folder / "store-import.db"
    await build_store(store, accounts, 0, charges=False)
    csv_path = folder / "charges.csv"
    periods = _months(5)
    with csv_path.open("w", encoding="utf-8") as out:
        out.write("account,provider_id,service,period,amount\n")
        written = 0
        for i in range(accounts):
            for provider in (i % 8, (i + 3) % 8):
                for period in periods:
                    if written < sizes.import_rows:
                        out.write(f"{_account(i)},{101 + provider},{PROVIDERS[provider][1]},{period},"
                                  f"{(i * 37 + provider) % 5000}.{i % 100:02d}\n")
                        written += 1
    config = write_config(folder, "import", 1, store)
    seconds: list[float] = []
    for attempt in range(sizes.repeats):
        if attempt:
            with sqlite3.connect(store) as db:
                db.execute("DELETE FROM charges")
        started = time.monotonic()
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "smsgate", "--config", str(config), "import", "charges", str(csv_path),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out_bytes, err_bytes = await process.communicate()
        seconds.append(time.monotonic() - started)
        if process.returncode != 0:
            raise RuntimeError(f"import failed: {err_bytes.decode(errors='replace')[-2000:]}")
    took = statistics.median(seconds)
    report.target(f"Import of {written:,} charge rows (`smsgate import charges`)",
                  f"{took:.1f} s ({written / took:,.0f} rows/s)", "< 30 s", took < 30)
    report.sections.append("\n".join([
        "## Import",
        "",
        f"`smsgate import charges` of a {csv_path.stat().st_size / 2**20:.0f} MiB CSV of {written:,}"
        f" rows ({accounts:,} accounts, two providers, five months), whole process from start to"
        f" exit, into a store that has the accounts and providers: {took:.1f} s"
        f" ({out_bytes.decode().strip()}).",
        "",
    ]))


async def memory(report: Report, folder: Path, sizes: Sizes) -> None:
    """Gateway RSS over one long run at saturation."""
    store = folder / "store-memory.db"
    await build_store(store, sizes.accounts, sizes.phones)
    link = await start_gateway(folder, "gateway-memory", store)
    texts = Texts(sizes.phones)
    samples: list[tuple[float, float]] = []
    try:
        await link.run(texts.balance(sizes.warmup), classify=classify)
        start_rss = link.process.rss_mib()
        began = time.monotonic()

        async def sample() -> None:
            while True:
                samples.append((time.monotonic() - began, link.process.rss_mib()))
                await asyncio.sleep(0.5)

        sampler = asyncio.create_task(sample())
        try:
            result = await link.run(texts.balance(sizes.memory_texts), classify=classify)
        finally:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
        end_rss = link.process.rss_mib()
    finally:
        await link.close()
    peak = max([start_rss, end_rss, *(rss for _t, rss in samples)])
    # Flat: the second half of the run grows no more than a few MiB (SQLite's page cache and
    # allocator pools settle in the first).
    half = [rss for at, rss in samples if at >= result.seconds / 2] or [end_rss]
    tail_growth = max(half) - half[0]
    report.target(
        f"Gateway memory over {sizes.memory_texts:,} texts",
        f"start {start_rss:.1f} MiB, end {end_rss:.1f} MiB, peak {peak:.1f} MiB;"
        f" second half +{tail_growth:.1f} MiB; {result.replies_per_second:,.0f} replies/s",
        "flat", tail_growth <= 5.0)
    report.sections.append("\n".join([
        "## Memory",
        "",
        "Resident set size of the gateway process and its БАЛАНС reader (a child process), sampled"
        f" every 0.5 s over {sizes.memory_texts:,} `Баланс` texts at saturation after the warm-up."
        " The first half includes SQLite's page caches filling up to their bound (32 MiB for the"
        " connection that writes and answers `Баланс`, as much for the read connection and for the"
        " reader's); the verdict is on the second half:",
        "",
        "| Seconds | RSS, MiB |",
        "| --- | --- |",
        *(f"| {at:.0f} | {rss:.1f} |" for at, rss in samples[:: max(1, len(samples) // 12)]),
        "",
    ]))


# ---- main ---------------------------------------------------------------------------------------

# Where the event loop's time goes, as cProfile (deterministic, so slower) counts it; the parts
# overlap: logging is done inside the others, and SQLite statements inside the group commits.
PROFILE_PARTS = (
    ("reading and decoding PDUs", "smsgate/smpp/session.py", "_read_loop"),
    ("storing texts and receipts, acknowledging", "smsgate/smpp/inbound.py", "_store_and_answer"),
    ("answered inside the inbound commit (БАЛАНС reads)", "smsgate/gateway/inbound.py",
     "_route_in_transaction"),
    ("routed by the processor (other commands)", "smsgate/gateway/processor.py", "_route_one"),
    ("submitting replies", "smsgate/gateway/sender.py", "_send_one"),
    ("group commits (SQL on the loop)", "store/db.py", "_write_groups"),
    ("logging (metrics count every event)", "smsgate/logs.py", "info"),
    ("receipt parsing", "smsgate/smpp/receipts.py", "parse_receipt"),
    ("waiting for work (idle)", "~", "<method 'poll' of 'select.epoll' objects>"),
)


async def profile(report: Report, folder: Path, sizes: Sizes) -> None:
    """One saturation round with the gateway under cProfile: what its event loop spends time on."""
    store = folder / "store-profile.db"
    await build_store(store, sizes.accounts, sizes.phones)
    smsc = LoadSmsc()
    port = await smsc.start()
    config = write_config(folder, "gateway-profile", port, store)
    output = folder / "gateway.prof"
    process = await Process.start("gateway-profile", "-m", "cProfile", "-o", str(output),
                                  "-m", "smsgate", "--config", str(config), "run")
    await smsc.wait_bound(60)
    link = Link("gateway-profile", smsc, process)
    texts = Texts(sizes.phones)
    try:
        await link.run(texts.balance(sizes.warmup), classify=classify)
        result = await link.run(texts.balance(sizes.profile_texts), classify=classify)
    finally:
        await link.close()
    stats = pstats.Stats(str(output))
    entries = stats.stats  # type: ignore[attr-defined]
    total = max(value[3] for key, value in entries.items() if key[2] == "run_forever")
    rows = []
    for label, path, name in PROFILE_PARTS:
        seconds = sum(value[3] for key, value in entries.items()
                      if key[0].endswith(path) and key[2] == name)
        rows.append(f"| {label} | {100 * seconds / total:.0f}% |")
    own = sorted(((value[2], key) for key, value in entries.items()), reverse=True)[:12]
    report.sections.append("\n".join([
        "## Profile",
        "",
        f"`python -m cProfile -m smsgate run` through {sizes.profile_texts:,} `Баланс` texts at"
        f" saturation ({result.replies_per_second:,.0f} replies/s under the profiler). Share of the"
        " event loop's time (the parts overlap: logging happens inside the others, SQL inside the"
        " group commits):",
        "",
        "| Part | Share |",
        "| --- | --- |",
        *rows,
        "",
        "Functions with the most time of their own:",
        "",
        "| Function | Seconds | Calls |",
        "| --- | --- | --- |",
        *(f"| `{_where(key[0])}:{key[2]}` | {seconds:.2f} | {entries[key][1]:,} |"
          for seconds, key in own),
        "",
    ]))


def _where(path: str) -> str:
    """A profiled function's file, short: "pdu.py", "logging/__init__.py", "~" for built-ins."""
    file = Path(path)
    return f"{file.parent.name}/{file.name}" if file.name == "__init__.py" else file.name


SCENARIOS = ("throughput", "growth", "import", "memory", "profile")


async def bench(args: argparse.Namespace) -> Report:
    sizes = SMOKE if args.smoke else QUICK if args.quick else Sizes()
    if args.repeats:
        sizes = Sizes(**{**sizes.__dict__, "repeats": args.repeats})
    command = "python -m smsgate.tools.bench " + " ".join(sys.argv[1:]) if args.argv is None else \
        "python -m smsgate.tools.bench " + " ".join(args.argv)
    report = Report(sizes, command.strip(), dt.datetime.now(dt.UTC), machine())
    only = set(args.only.split(",")) if args.only else set(SCENARIOS)
    began = time.monotonic()
    stolen_before, total_before = cpu_ticks()
    report.throttle = host_throttle(sizes.throttle_seconds)
    print(f"host slow spells: {report.throttle.describe()}", flush=True)
    folder = Path(tempfile.mkdtemp(prefix="smsgate-bench-"))
    random.seed(7)
    try:
        texts = Texts(sizes.phones)
        if "throughput" in only:
            await throughput(report, folder, sizes, texts)
        if "growth" in only:
            await growth(report, folder, sizes, texts)
        if "import" in only:
            await import_charges(report, folder, sizes)
        if "memory" in only:
            await memory(report, folder, sizes)
        if "profile" in only and not (args.quick or args.smoke):
            await profile(report, folder, sizes)
    finally:
        if args.keep:
            print(f"kept {folder}", file=sys.stderr)
        else:
            await asyncio.to_thread(shutil.rmtree, folder)
    report.seconds = time.monotonic() - began
    stolen, total = (after - before for after, before in zip(cpu_ticks(), (stolen_before, total_before),
                                                             strict=True))
    report.stolen = stolen / total if total else None
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m smsgate.tools.bench", description=__doc__)
    parser.add_argument("--out", type=Path, help="write the report here (e.g. BENCHMARKS.md)")
    parser.add_argument("--quick", action="store_true", help="small sizes, one round each")
    parser.add_argument("--smoke", action="store_true", help="toy sizes: checks the tool only")
    parser.add_argument("--repeats", type=int, default=0, help="rounds per scenario")
    parser.add_argument("--only", default="", help=f"comma-separated subset of {','.join(SCENARIOS)}")
    parser.add_argument("--keep", action="store_true", help="keep the stores and logs")
    args = parser.parse_args(argv)
    args.argv = argv
    report = asyncio.run(bench(args))
    text = report.render()
    if args.out:
        args.out.write_text(text, encoding="utf-8")
        print(f"wrote {args.out}")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
