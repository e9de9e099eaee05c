"""The benchmark runner runs end to end on a tiny size and writes its table (no timing checks)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_benchmark_runner_writes_a_results_table(empty_dsn: str, tmp_path: Path) -> None:
    """`python -m benchmarks --quick` migrates an empty database, measures, and writes Markdown."""
    output = tmp_path / "RESULTS.md"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--quick",
            "--repeats=1",
            "--seconds=0.1",
            "--no-profile",
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
    assert "| target (issue 8) | measured | goal | status |" in report
    assert "| `ConfigDAL.get` |" in report
    assert report in result.stdout  # the same table is printed
