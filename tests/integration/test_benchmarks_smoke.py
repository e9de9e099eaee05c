"""The benchmark runner runs end to end on a tiny size and writes its tables; its method
alternates the cases as documented. Never a timing check."""

from __future__ import annotations

import ast
import asyncio
import importlib
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from psycopg.conninfo import conninfo_to_dict

ROOT = Path(__file__).resolve().parents[2]


def test_benchmark_runner_writes_a_results_table(empty_dsn: str, tmp_path: Path) -> None:
    """`python -m benchmarks --quick --scale` migrates an empty database, measures, and writes
    Markdown.

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
            "--scale",  # tiny sizes with --quick: its cases run too, and must not fail
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
    assert "### `list` paging through" in report  # the scaling section ran
    assert "**Load average (1 / 5 / 15 min)**" in report
    # A comparison may be skipped (no redis-server here), with its reason; none may fail.
    assert "Not measured: error" not in report, report
    assert "| error:" not in report, report
    assert report in result.stdout  # the same report is printed
    # The command line is quoted in the report, the DSN by its host and database only.
    password = conninfo_to_dict(empty_dsn).get("password")
    assert password, "the test server's DSN carries a password: the check below needs one"
    assert str(password) not in report
    assert str(password) not in result.stdout + result.stderr


def _timing_module(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.syspath_prepend(str(ROOT))
    return importlib.import_module("benchmarks._timing")


def test_cases_take_turns_op_by_op_with_the_order_rotated_each_round(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The method itself (no database, no timing): ABC ABC, then BCA BCA, then CAB CAB."""
    timing = _timing_module(monkeypatch)
    calls: list[str] = []

    def op(name: str) -> Any:
        return lambda: calls.append(name)

    comparison = timing.Comparison(
        "t",
        "t",
        [
            timing.Contender("a", "A", op("a")),
            timing.Contender("b", "B", op("b"), anchor="a"),
            timing.Contender("c", "C", op("c"), anchor="a", also_vs=("b",)),
        ],
        ops=2,
        warmup_ops=0,
    )
    result = timing.run_comparison(comparison, 3)
    assert "".join(calls) == "abcabc" + "bcabca" + "cabcab"
    assert result.rounds == 3
    assert [r.ops for r in result.results["a"].rounds] == [2, 2, 2]
    # A ratio per round, to each anchor measured in that same round.
    assert len(result.results["b"].ratios["a"]) == 3
    assert set(result.results["c"].ratios) == {"a", "b"}
    assert result.results["a"].ratio() is None  # an anchor has no ratio of its own


def test_async_cases_take_turns_inside_one_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """Async contenders interleave on the comparison's loop exactly as sync ones do."""
    timing = _timing_module(monkeypatch)
    calls: list[tuple[str, int]] = []

    def op(name: str) -> Any:
        async def run() -> None:
            calls.append((name, id(asyncio.get_running_loop())))

        return run

    with asyncio.Runner() as runner:
        comparison = timing.Comparison(
            "t",
            "t",
            [timing.Contender("a", "A", op("a")), timing.Contender("b", "B", op("b"), anchor="a")],
            ops=2,
            warmup_ops=0,
            runner=runner,
        )
        timing.run_comparison(comparison, 2)
    assert "".join(name for name, _ in calls) == "abab" + "baba"
    assert len({loop for _, loop in calls}) == 1


def test_cpus_split_in_halves_the_client_taking_the_odd_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.syspath_prepend(str(ROOT))
    cpus = importlib.import_module("benchmarks._cpus")
    assert cpus.plan_split({3}) is None  # nothing to split: left to the scheduler
    two = cpus.plan_split({0, 1})
    assert (two.client, two.server) == ({0}, {1})
    five = cpus.plan_split({0, 2, 4, 6, 8})
    assert (five.client, five.server) == ({0, 2, 4}, {6, 8})


@pytest.mark.skipif(
    not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="needs 2 CPUs this process may run on, and Linux's affinity calls",
)
def test_servers_started_here_run_on_the_server_cpus_and_the_client_stays_on_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What the pinning is for: a process started inside servers_started_here (as the
    postmaster is) runs on the servers' CPUs; what starts afterwards, on the client's."""
    monkeypatch.syspath_prepend(str(ROOT))
    cpus = importlib.import_module("benchmarks._cpus")
    original = os.sched_getaffinity(0)
    split = cpus.plan_split(original)
    probe = [sys.executable, "-c", "import os; print(sorted(os.sched_getaffinity(0)))"]

    def child_cpus() -> set[int]:
        out = subprocess.run(probe, capture_output=True, text=True, check=True).stdout
        return set(ast.literal_eval(out))

    try:
        cpus.pin_client(split)
        with cpus.servers_started_here():
            assert child_cpus() == split.server
        assert child_cpus() == split.client
        assert os.sched_getaffinity(0) == split.client
    finally:
        cpus.pin_client(None)
        os.sched_setaffinity(0, original)
