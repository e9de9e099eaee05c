"""The benchmark runner runs end to end on a tiny size and writes its tables (no timing checks)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_benchmark_runner_writes_a_results_table(empty_dsn: str, tmp_path: Path) -> None:
    """`python -m benchmarks --quick` migrates an empty database, measures, and writes Markdown.

    Structure only: every comparison either ran (a table with ratios to its anchor)
    or says why it was skipped; none failed. Never a timing.
    """
    output = tmp_path / "RESULTS.md"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--quick",
            "--rounds=1",
            f"--dsn={empty_dsn}",
            f"--output={output}",
        ],
        cwd=ROOT,  # benchmarks/ is a folder of the repository, not an installed package
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = output.read_text()
    for heading in ("## Method", "## Machine", "## Headline: targets", "## Comparisons"):
        assert heading in report
    assert "| target | measured: median (min–max over rounds) | goal | status |" in report
    assert "### Uncached `ConfigDAL.get` vs raw psycopg" in report
    assert "| # | case | p50 µs | p99 µs | ops/s | client CPU µs/op | p50 ratio to | ΔCPU µs |" in (
        report
    )
    # The headline case ran against its anchor, measured in the same run.
    assert re.search(r"\| \(2\) \| `ConfigDAL\.get` \| .* vs \(1\) \|", report)
    assert "### Cache memory per key" in report
    assert "**Load average (1 / 5 / 15 min)**" in report
    # A comparison may be skipped (no redis-server here), with its reason; none may fail.
    assert "Not measured: error" not in report, report
    assert "| error:" not in report, report
    assert report in result.stdout  # the same report is printed
