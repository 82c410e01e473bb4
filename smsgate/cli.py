"""`smsgate` command line: run, simulator, sms, ussd, phone, import, demo, status.

The one product module that imports `smsgate.tools`, and only inside the commands that ask for
it: the embedded simulator (`run` with `[smsc] embedded_simulator`, `simulator`), its client
(`sms`, `ussd`, `phone`) and the demo data (`demo`, `run --demo-if-empty`). tests/test_layout.py
checks that no other product module does.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import signal
import sys
import threading
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

from smsgate import config as config_module
from smsgate import logs
from smsgate.config import Config, ConfigError

log = logs.get("cli")
GC_YOUNG_THRESHOLD = 10_000  # allocations between collections of the youngest generation (700 by default)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="smsgate", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--config", help="config file (default: $SMSGATE_CONFIG or ./config.toml)")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="start the gateway (and the simulator and website)")
    run.add_argument("--demo-if-empty", action="store_true",
                     help="load demo data into an empty store first")

    commands.add_parser("simulator", help="run the SMSC simulator on its own")

    sms = commands.add_parser("sms", help="text the running simulator as a resident")
    sms.add_argument("phone")
    sms.add_argument("text", nargs="+")
    sms.add_argument("--wait", type=float, default=8.0, help="seconds to wait for replies")

    ussd = commands.add_parser("ussd", help="dial the service's USSD menu on the running simulator")
    ussd.add_argument("phone")

    inbox = commands.add_parser("phone", help="show what the simulator delivered to a phone")
    inbox.add_argument("phone")
    inbox.add_argument("--last", type=int, default=5, help="how many of the latest messages")

    importer = commands.add_parser("import", help="import a CSV export")
    importer.add_argument("kind", choices=["providers", "accounts", "charges", "payments"])
    importer.add_argument("file", type=Path)

    commands.add_parser("demo", help="fill an empty store with demo data")
    commands.add_parser("status", help="bind state, queue and recent traffic of the running gateway")
    return parser


def _on_signal(sig: signal.Signals, callback: Callable[[], object]) -> None:
    """Run callback on a signal; asyncio has no signal handlers on Windows (Ctrl+C still works)."""
    if sys.platform != "win32":
        asyncio.get_running_loop().add_signal_handler(sig, callback)


async def _wait_for_signal() -> None:
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        _on_signal(sig, stop.set)
    await stop.wait()


async def _open_store(config: Config):  # type: ignore[no-untyped-def]
    from store.db import Store

    return await Store.open(config.resolve(config.store.path))


async def cmd_run(config: Config, demo_if_empty: bool, log_handler: logging.Handler) -> int:
    from smsgate import housekeeping
    from smsgate.gateway import Gateway
    from smsgate.metrics import Metrics
    from smsgate.operator import start_operator
    from smsgate.tools.demo import format_demo_accounts, load_demo
    from smsgate.tools.simulator import run_simulator
    from smsgate.web import start_web
    from store import accounts

    metrics = Metrics().attach()
    store = await _open_store(config)
    background: list[asyncio.Task[None]] = []
    stops: list[Callable[[], Awaitable[None]]] = []
    gateway: Gateway | None = None
    try:
        if demo_if_empty and await accounts.count(store.db) == 0:
            demo = await load_demo(store)
            print("Demo data loaded. Accounts to try:\n" + format_demo_accounts(demo), flush=True)
        if config.smsc.embedded_simulator:
            background.append(asyncio.create_task(run_simulator(config), name="simulator"))
            await asyncio.sleep(0.2)
        gateway = Gateway(config, store)
        await gateway.start()
        background.append(asyncio.create_task(housekeeping.run(store, config), name="housekeeping"))
        stops.append(await start_web(config, gateway))
        _port, stop_operator = await start_operator(config, gateway, metrics)
        stops.append(stop_operator)
        _reopen_logs_on_sighup(log_handler)
        _settle_garbage_collector()
        print(_banner(config), flush=True)
        await _wait_for_signal()
    finally:
        for stop in reversed(stops):
            await stop()
        if gateway is not None:
            await gateway.stop()
        for task in background:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await store.close()
        metrics.detach()
    return 0


def _settle_garbage_collector() -> None:
    """After start-up: what exists now lives as long as the process, so full collections skip it.

    Measured here, a full collection over the start-up objects (libraries, templates, phone
    metadata) stopped the event loop for about 30 ms every few seconds under load: a tail of
    every text's latency. gc.freeze() moves those objects out of the collector's sight; the
    youngest generation is collected less often too (texts make many short-lived objects that
    reference counting frees anyway; cycles among them are rare).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


def _reopen_logs_on_sighup(handler: logging.Handler) -> None:
    """logrotate moves the file away and sends SIGHUP: start a new file without a restart."""
    if isinstance(handler, logs.ReopenableFileHandler):
        _on_signal(signal.SIGHUP, handler.reopen)


async def cmd_status(config: Config) -> int:
    """Ask the running gateway's operator listener; say clearly when nothing answers."""
    import aiohttp

    from smsgate.operator import format_status

    url = f"http://{config.operator.host}:{config.operator.port}/status"
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            async with session.get(url) as response:
                data = await response.json()
    except (aiohttp.ClientError, TimeoutError) as exc:
        print(f"smsgate is not answering at {url}: {exc}", file=sys.stderr)
        return 1
    print(format_status(data))
    return 0 if data.get("bind") == "bound" else 3


def _banner(config: Config) -> str:
    lines = [
        f"smsgate is running: SMSC {config.smsc.host}:{config.smsc.port}"
        + (" (built-in simulator)" if config.smsc.embedded_simulator else ""),
        f"  website:  http://{config.web.host}:{config.web.port}/",
        f"  operator: http://{config.operator.host}:{config.operator.port}/metrics  (and smsgate status)",
        '  try:      smsgate sms +79031234567 "Помощь"   (in another terminal)',
        "  stop:     Ctrl+C",
    ]
    return "\n".join(lines)


async def cmd_simulator(config: Config) -> int:
    from smsgate.tools.simulator import run_simulator

    task = asyncio.create_task(run_simulator(config))
    print(f"SMSC simulator on {config.smsc.host}:{config.smsc.port}, control on "
          f"{config.simulator.control_host}:{config.simulator.control_port}", flush=True)
    await _wait_for_signal()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return 0


def _resident_number(who: str) -> str | None:
    """The E.164 form of a number typed on the command line; None (and a message) if it is not one."""
    from smsgate import phone

    try:
        return phone.normalise(who)
    except phone.BadPhone:
        print(f"not a Russian phone number: {who}", file=sys.stderr)
        return None


def _control_url(config: Config) -> str:
    return f"http://{config.simulator.control_host}:{config.simulator.control_port}"


def _show(text: str) -> None:
    """A message as the resident's phone shows it: indented continuation lines."""
    print("< " + text.replace("\n", "\n  "))


async def cmd_sms(config: Config, who: str, text: str, wait: float) -> int:
    from smsgate.tools.simclient import SimulatorError, send_sms

    number = _resident_number(who)
    if number is None:
        return 2
    url = _control_url(config)
    print(f"{number} > {text}")
    try:
        replies = await send_sms(url, number, text, wait=wait)
    except SimulatorError as exc:
        print(f"cannot reach the simulator at {url}: {exc}\nIs `make run` running?", file=sys.stderr)
        return 1
    if not replies:
        print("(no reply)")
    for reply in replies:
        _show(reply)
    return 0


async def cmd_ussd(config: Config, who: str) -> int:
    """A USSD session in the terminal: type digits, see screens; Ctrl+D aborts it."""
    from smsgate.tools.simclient import SimulatorError, ussd_session

    number = _resident_number(who)
    if number is None:
        return 2
    url = _control_url(config)
    dial = f"*{config.smsc.source_addr}#"
    print(f"{number} > {dial}")
    try:
        await ussd_session(url, number, dial, config.ussd, _ask, _show)
    except SimulatorError as exc:
        print(f"cannot reach the simulator at {url}: {exc}\nIs `make run` running?", file=sys.stderr)
        return 1
    return 0


async def _ask(prompt: str) -> str | None:
    """A line typed in the terminal, None at its end; read in a daemon thread so Ctrl+C still quits."""
    loop = asyncio.get_running_loop()
    typed: asyncio.Future[str | None] = loop.create_future()

    def read() -> None:
        try:
            line: str | None = input(prompt)
        except EOFError:
            line = None
        loop.call_soon_threadsafe(typed.set_result, line)

    threading.Thread(target=read, daemon=True).start()
    return await typed


async def cmd_phone(config: Config, who: str, last: int) -> int:
    """A resident's phone screen: e.g. the password the website sent while registering."""
    from smsgate.tools.simclient import SimulatorError, sent_to

    number = _resident_number(who)
    if number is None:
        return 2
    url = _control_url(config)
    try:
        messages = await sent_to(url, number)
    except SimulatorError as exc:
        print(f"cannot reach the simulator at {url}: {exc}", file=sys.stderr)
        return 1
    if not messages:
        print(f"{number}: no messages")
    for text in messages[-last:]:
        _show(text)
    return 0


async def cmd_import(config: Config, kind: str, file: Path) -> int:
    from store.importer import ImportFailed, import_csv

    store = await _open_store(config)
    try:
        result = await import_csv(store, kind, file, progress=sys.stderr.isatty())
    except ImportFailed as exc:
        print(f"import failed, nothing imported: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"cannot read {file}: {exc}", file=sys.stderr)
        return 1
    finally:
        await store.close()
    print(f"{kind}: {result.describe()}")
    return 0


async def cmd_demo(config: Config) -> int:
    from smsgate.tools.demo import format_demo_accounts, load_demo

    store = await _open_store(config)
    try:
        demo = await load_demo(store)
    finally:
        await store.close()
    print(format_demo_accounts(demo))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = config_module.load(args.config)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    log_path = str(config.resolve(config.log.path)) if config.log.path else ""
    log_handler = logs.setup(log_path, config.log.format, config.log.level)
    handlers: dict[str, Callable[[], Coroutine[Any, Any, int]]] = {
        "run": lambda: cmd_run(config, args.demo_if_empty, log_handler),
        "status": lambda: cmd_status(config),
        "simulator": lambda: cmd_simulator(config),
        "sms": lambda: cmd_sms(config, args.phone, " ".join(args.text), args.wait),
        "ussd": lambda: cmd_ussd(config, args.phone),
        "import": lambda: cmd_import(config, args.kind, args.file),
        "phone": lambda: cmd_phone(config, args.phone, args.last),
        "demo": lambda: cmd_demo(config),
    }
    try:
        return asyncio.run(handlers[args.command]())
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
