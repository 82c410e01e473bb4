"""The benchmark tool at toy sizes: every scenario runs and the report says what it measured.

Only that the tool works; the speed itself is in BENCHMARKS.md (`make bench`), never a test.
"""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path

import pytest

from smsgate import smpp
from smsgate.tools import bench
from smsgate.tools.loadgen import LoadSmsc, Text


@pytest.mark.full  # runs the bench: gateway processes against a load SMSC
def test_smoke_run_writes_a_report_with_every_scenario(tmp_path: Path) -> None:
    out = tmp_path / "BENCHMARKS.md"
    assert bench.main(["--smoke", "--out", str(out)]) == 0
    report = out.read_text(encoding="utf-8")
    for heading in ("## Throughput and latency", "## Store size", "## Import", "## Memory"):
        assert heading in report
    rates = [float(value.replace(",", "")) for value in re.findall(r"([\d,]+) replies/s", report)]
    assert rates and all(rate > 0 for rate in rates)
    assert "| 0.00 |" not in report
    if Path("/proc/stat").exists():
        assert re.search(r"CPU time stolen by the hypervisor during the run .*: \d+%", report)
    # The raw link (aiosmpplib's ESME, the ratio target's reference), like for like with and
    # without receipts, and the lean echo's rows.
    number = r"[\d,]+ replies/s; p50 [\d.]+ ms, p95 [\d.]+ ms, p99 [\d.]+ ms"
    for row in (r"Баланс at saturation, gateway \(SMSC sends a receipt for every part\)",
                r"Raw link: aiosmpplib echo ESME, 1-part replies, same SMSC \(receipts\)",
                r"Баланс at saturation, gateway, SMSC sending no receipts",
                r"Raw link: aiosmpplib echo ESME, 1-part replies, no receipts"):
        assert re.search(rf"\| {row} \| {number} \|", report), row
    for receipts in ("SMSC sending receipts", "SMSC sending no receipts"):
        assert re.search(rf"\| Ratio gateway / raw link, {receipts} \| [\d.]+ \| >= 0.6 \|", report)
    # The same with each long reply sent whole (message_payload), receipts and none.
    for row in (r" \(receipts\)", r", no receipts"):
        assert re.search(rf'\| Баланс at saturation, gateway with `long_text = "payload"`{row} \|'
                         rf" {number} \|", report), row
    for row in ("SMSC sending receipts", "no receipts"):
        assert re.search(rf'\| Ratio gateway with `long_text = "payload"` / raw link, {row} \|'
                         r" [\d.]+ \| >= 0.6 \|", report), row
    for row in (r"Lean echo ESME \(prebuilt PDUs, receipts\), 1-part replies",
                r"Lean echo ESME with \d+-part replies, as the gateway's"):
        assert re.search(rf"\| {row} \| {number}; gateway / this = [\d.]+ \|", report), row
    for label in (r"raw link: aiosmpplib echo, 1-part replies, receipts", r"gateway, Баланс, receipts",
                  r"raw link: aiosmpplib echo, 1-part replies, no receipts",
                  r"gateway, Баланс, no receipts", r"lean echo, 1-part replies, receipts",
                  r'gateway with `long_text = "payload"`, Баланс, receipts',
                  r'gateway with `long_text = "payload"`, Баланс, no receipts',
                  r"lean echo, \d+-part replies, receipts", r"raw link \(aiosmpplib echo\), \d+/s"):
        found = re.search(rf"\| {label} \| ([\d,]+) \| [\d.]+ ms \| [\d.]+ ms \| [\d.]+ ms \| [\d.]+ \|",
                          report)
        assert found and int(found[1].replace(",", "")) > 0, label
    assert "Replies that did not match their text, and deliver_sm refused: 0." in report
    assert re.search(r"Import of 2,000 charge rows .* \| [\d.]+ s", report)


def test_take_pdus_keeps_a_partial_pdu_for_the_next_read() -> None:
    from smsgate import smpp
    from smsgate.tools import loadgen

    first, second = smpp.enquire_link_resp(1), smpp.deliver_sm_resp(2)
    buffer = bytearray()
    assert loadgen.take_pdus(buffer, first + second[:5]) == [first]
    assert bytes(buffer) == second[:5]
    assert loadgen.take_pdus(buffer, second[5:]) == [second]
    assert buffer == bytearray()


def test_a_wrong_reply_is_reported_with_the_gateways_errors(tmp_path: Path) -> None:
    log = tmp_path / "gateway.log"
    error = '{"ts": "t", "level": "error", "event": "handler_error", "exc": "Traceback: boom"}'
    log.write_text('{"ts": "t", "level": "warning", "event": "bind_lost"}\n' + error + "\n",
                   encoding="utf-8")
    link = bench.Link("gateway", None, None, log)  # type: ignore[arg-type]
    assert link.errors() == [error]
    assert bench.Link("echo", None, None).errors() == []  # type: ignore[arg-type]


def test_hash_cost_is_measured_not_written_in() -> None:
    # The Пароль note quotes it; a CPU time of a real argon2id hash, not a constant.
    cost = bench.hash_cost()
    assert 0.001 < cost < 5


def test_slow_spells_of_the_host_are_runs_of_slow_windows() -> None:
    window = 0.005
    rates = [(i * window, 100) for i in range(400)]
    for i in (100, 101, 102, 110, 300):  # 100-110 one spell (gaps under 50 ms), 300 another
        rates[i] = (i * window, 5 if i != 110 else 20)
    found = bench.spells(rates, window)
    assert [(round(start, 3), round(length, 3), speed) for start, length, speed in found] == [
        (0.5, 0.055, 0.05), (1.5, 0.005, 0.05)]
    throttle = bench.Throttle(2.0, found)
    assert round(throttle.share, 3) == 0.03
    assert "2 in 2 s" in throttle.describe() and "5% of normal speed" in throttle.describe()
    assert bench.spells([(0.0, 100), (0.005, 90)], window) == []
    assert bench.Throttle(1.0, []).describe() == "none in 1 s"


async def test_the_load_smsc_stops_sending_to_an_esme_that_unbinds(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A gateway stopped mid-run unbinds and goes on answering in the same write; the SMSC used
    # to keep writing to the closed socket, and asyncio warned "socket.send() raised exception."
    # for every PDU (the bench printed dozens of them after a run).
    smsc = LoadSmsc(receipts=True)
    port = await smsc.start()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(smpp.bind_transceiver(1, "smsgate", "secret12"))
        await reader.read(100)
        texts = [Text(f"+7913{n:07d}", "balance", "Баланс") for n in range(5000)]
        run = asyncio.create_task(smsc.run(texts, timeout=5))
        await asyncio.sleep(0.2)
        with caplog.at_level(logging.WARNING, logger="asyncio"):
            writer.write(smpp.unbind(99) + b"".join(smpp.deliver_sm_resp(n) for n in range(1, 200)))
            with pytest.raises(ConnectionError, match="went away"):
                await run
            await asyncio.sleep(0.2)
        assert not [r for r in caplog.records if "socket.send() raised" in r.getMessage()]
    finally:
        writer.close()
        await smsc.stop()


def test_a_ratio_just_under_its_line_does_not_read_as_on_it() -> None:
    assert bench.near(0.598, 0.6) == "0.598"  # "0.60" next to ">= 0.6, no" would read as a slip
    assert bench.near(0.6, 0.6) == "0.60" and bench.near(0.603, 0.6) == "0.603"
    assert bench.near(0.41, 0.6) == "0.41" and bench.near(0.6449, 0.6) == "0.64"


def test_every_profile_part_names_a_function_that_exists() -> None:
    # A part whose function was renamed or moved reads 0% in BENCHMARKS.md without a word.
    root = Path(__file__).resolve().parent.parent
    for label, path, name in bench.PROFILE_PARTS:
        if path == "~":
            continue  # a built-in: named by cProfile, not by a file
        source = (root / path).read_text(encoding="utf-8")
        assert re.search(rf"\bdef {re.escape(name)}\(", source), (label, path, name)
