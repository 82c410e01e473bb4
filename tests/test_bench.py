"""The benchmark tool at toy sizes: every scenario runs and the report says what it measured.

Only that the tool works; the speed itself is in BENCHMARKS.md (`make bench`), never a test.
"""

from __future__ import annotations

import re
from pathlib import Path

from smsgate import bench


def test_smoke_run_writes_a_report_with_every_scenario(tmp_path: Path) -> None:
    out = tmp_path / "BENCHMARKS.md"
    assert bench.main(["--smoke", "--out", str(out)]) == 0
    report = out.read_text(encoding="utf-8")
    for heading in ("## Throughput and latency", "## Store size", "## Import", "## Memory"):
        assert heading in report
    rates = [float(value.replace(",", "")) for value in re.findall(r"([\d,]+) replies/s", report)]
    assert rates and all(rate > 0 for rate in rates)
    assert "Ratio gateway / raw link | 0.00" not in report
    assert "Replies that did not match their text, and deliver_sm refused: 0." in report
    assert re.search(r"Import of 2,000 charge rows .* \| [\d.]+ s", report)
