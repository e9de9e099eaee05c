"""The Markdown report: headline ratios against the targets, every case, the setup, the profile."""

from __future__ import annotations

import math
import os
import platform
import statistics
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import psycopg

from ._breakdown import LADDER, Breakdown
from ._cases import Case
from ._timing import Sample, Summary

__all__ = ["CaseResult", "Run", "render"]


@dataclass
class CaseResult:
    """A case's samples (one per repeat), or why it has none."""

    case: Case
    samples: list[Sample]
    status: str | None = None  # "not available yet: …" or "error: …"

    @property
    def summary(self) -> Summary | None:
        """Medians over the repeats, when the case ran."""
        return Summary.of(self.samples) if self.samples and self.status is None else None


@dataclass
class Run:
    """Everything the report needs."""

    command: str
    date: str
    results: dict[str, CaseResult]
    facts: dict[str, str]
    settings: dict[str, str]
    repeats: int
    budget_text: str
    breakdown: Breakdown | None
    breakdown_error: str | None


# -- figures ----------------------------------------------------------------------------


def _paired(run: Run, a: str, b: str, fn: Callable[[Sample, Sample], float]) -> float | None:
    """Median over repeats of ``fn(sample_a, sample_b)``: cases ran in turn in each repeat, so
    pairing them cancels slow drift of the machine (other load, CPU frequency)."""
    ra, rb = run.results.get(a), run.results.get(b)
    if ra is None or rb is None or ra.summary is None or rb.summary is None:
        return None
    values = [fn(x, y) for x, y in zip(ra.samples, rb.samples, strict=False)]
    return statistics.median(values) if values else None


def _time_ratio(run: Run, slow: str, fast: str) -> float | None:
    """How many times longer an operation of ``slow`` takes than one of ``fast``."""
    return _paired(run, slow, fast, lambda s, f: f.ops_per_s / s.ops_per_s)


def _per_key_ratio(run: Run, batch: str, single: str, size: int) -> float | None:
    """Per-key time of a batched read over the time of one single read."""
    return _paired(run, batch, single, lambda b, s: s.ops_per_s / (b.ops_per_s * size))


def _why_missing(run: Run, *keys: str) -> str | None:
    for key in keys:
        result = run.results.get(key)
        if result is None:
            return "not measured"
        if result.status is not None:
            return result.status
    return None


def _fmt_int(value: float) -> str:
    return "—" if math.isnan(value) else f"{value:,.0f}"


def _fmt_us(value: float) -> str:
    if math.isnan(value):
        return "—"
    return f"{value:,.0f}" if value >= 1000 else f"{value:,.1f}" if value >= 10 else f"{value:.2f}"


# -- sections ---------------------------------------------------------------------------


def _headline(run: Run) -> list[str]:
    lines = [
        "| target (issue 8) | measured | goal | status |",
        "|---|---|---|---|",
    ]

    def row(
        what: str, value: float | None, text: str, goal: str, ok: bool | None, *keys: str
    ) -> None:
        if value is None:
            why = _why_missing(run, *keys) or "not measured"
            short = "not available yet" if why.startswith("not available") else why
            lines.append(f"| {what} | {why} | {goal} | {short} |")
        else:
            status = "—" if ok is None else ("met" if ok else "**MISSED**")
            lines.append(f"| {what} | {text} | {goal} | {status} |")

    overhead = _time_ratio(run, "get.dal", "get.raw")
    row(
        "uncached `get` time / raw psycopg prepared SELECT",
        overhead,
        f"{overhead:.2f}×" if overhead else "",
        "≤ 1.25×",
        overhead is not None and overhead <= 1.25,
        "get.dal",
        "get.raw",
    )
    speedup = _time_ratio(run, "get.connect", "get.dal")
    row(
        "`get` speed-up over connect-per-call",
        speedup,
        f"{speedup:.1f}×" if speedup else "",
        "≥ 20×",
        speedup is not None and speedup >= 20,
        "get.connect",
        "get.dal",
    )
    many = _per_key_ratio(run, "get_many.1000.dal", "get.dal", 1000)
    row(
        "`get_many(1000)` per-key time / one `get`",
        many,
        f"{many:.3f} (1/{1 / many:.0f})" if many else "",
        "≤ 0.10",
        many is not None and many <= 0.10,
        "get_many.1000.dal",
        "get.dal",
    )
    floor = _per_key_ratio(run, "get_many.1000.raw", "get.raw", 1000)
    row(
        "↳ physical floor now: raw `ANY(1000 keys)` per key / raw single SELECT",
        floor,
        f"{floor:.3f} (1/{1 / floor:.0f})" if floor else "",
        "context",
        None,
        "get_many.1000.raw",
        "get.raw",
    )
    writes = _time_ratio(run, "set.dal", "set.raw")
    row(
        "`set` time / bare upsert",
        writes,
        f"{writes:.2f}×" if writes else "",
        "≤ 1.5×",
        writes is not None and writes <= 1.5,
        "set.dal",
        "set.raw",
    )
    cached = run.results.get("get.cached")
    cached_rate = cached.summary.ops_per_s if cached and cached.summary else None
    row(
        "cached `get` throughput, one process",
        cached_rate,
        f"{cached_rate:,.0f} ops/s" if cached_rate else "",
        "≥ 500,000 ops/s",
        cached_rate is not None and cached_rate >= 500_000,
        "get.cached",
    )
    propagation = run.results.get("cache.propagation")
    prop = propagation.summary if propagation else None
    row(
        "change → cache delay p50 / p99",
        prop.p50_us if prop else None,
        f"{prop.p50_us / 1000:.2f} ms / {prop.p99_us / 1000:.2f} ms" if prop else "",
        "context",
        None,
        "cache.propagation",
    )
    for tasks in (1, 8, 32):
        key = f"async.{tasks}"
        gain = _paired(run, key, "get.dal", lambda a, s: a.ops_per_s / s.ops_per_s)
        row(
            f"`AsyncConfigDAL.get` ×{tasks} tasks, throughput / sync `get`",
            gain,
            f"{gain:.2f}×" if gain else "",
            "context",
            None,
            key,
            "get.dal",
        )
    for key, name in (("get.dal", "`ConfigDAL.get`"), ("get.raw", "raw psycopg")):
        versus = _paired(run, key, "pgbench", lambda g, p: g.ops_per_s / p.ops_per_s)
        row(
            f"{name} ops/s / `pgbench -S` tps",
            versus,
            f"{versus:.2f}" if versus else "",
            "context",
            None,
            key,
            "pgbench",
        )
    return lines


def _cases_table(run: Run) -> list[str]:
    lines = [
        "| # | case | ops/s | ops/s min–max | p50 µs | p99 µs | µs per key | client CPU µs/op |",
        "|---|---|--:|--:|--:|--:|--:|--:|",
    ]
    for result in run.results.values():
        case, summary = result.case, result.summary
        if summary is None:
            lines.append(f"| {case.number} | {case.label} | {result.status} | | | | | |")
            continue
        rate = _fmt_int(summary.ops_per_s) if case.throughput else "—"
        spread = (
            f"{_fmt_int(summary.ops_per_s_min)}–{_fmt_int(summary.ops_per_s_max)}"
            if case.throughput
            else "—"
        )
        per_key = _fmt_us(summary.mean_us / case.batch) if case.throughput else "—"
        cpu = _fmt_us(summary.cpu_us_per_op) if case.client_cpu else "— (pgbench)"
        lines.append(
            f"| {case.number} | {case.label} | {rate} | {spread} | {_fmt_us(summary.p50_us)} "
            f"| {_fmt_us(summary.p99_us)} | {per_key} | {cpu} |"
        )
    return lines


def _breakdown_section(run: Run) -> list[str]:
    lines = ["## Where the time of one `ConfigDAL.get` goes", ""]
    if run.breakdown is None:
        return [*lines, f"Not measured: {run.breakdown_error or 'skipped'}.", ""]
    b = run.breakdown
    io_ = b.with_io
    lines += [
        "A ladder measured with I/O, the rungs alternating operation by operation: each rung "
        "adds one layer "
        "to the rung above; Δ is what that layer costs per call, in client CPU (this process, "
        "in situ) and in p50 latency (what the caller waits).",
        "",
        "| rung | p50 µs | Δ p50 | client CPU µs/op | Δ CPU | p99 µs |",
        "|---|--:|--:|--:|--:|--:|",
    ]
    previous: Sample | None = None
    for name, label in LADDER.items():
        s = io_.get(name)
        if s is None:
            continue
        dp = "" if previous is None else f"{s.p50_us - previous.p50_us:+.1f}"
        dc = "" if previous is None else f"{s.cpu_us_per_op - previous.cpu_us_per_op:+.1f}"
        lines.append(
            f"| {label} | {_fmt_us(s.p50_us)} | {dp} | {_fmt_us(s.cpu_us_per_op)} | {dc} "
            f"| {_fmt_us(s.p99_us)} |"
        )
        previous = s
    if "raw" in io_ and "dal" in io_:
        raw, dal = io_["raw"], io_["dal"]
        lines += [
            "",
            f"In all, `ConfigDAL.get` costs {dal.cpu_us_per_op - raw.cpu_us_per_op:.1f} µs more "
            f"client CPU and {dal.p50_us - raw.p50_us:.1f} µs more p50 latency per call than the "
            f"raw prepared query ({dal.p50_us / raw.p50_us:.2f}× at p50).",
        ]
    lines += [
        "",
        "Each step without I/O (best of 5 tight loops, µs per call; hot-cache lower bounds: "
        "the same code costs more between round trips, see Δ CPU above):",
        "",
        "| step | µs per call |",
        "|---|--:|",
    ]
    for step, value in b.cpu_steps.items():
        lines.append(f"| {step} | {'n/a' if value is None else _fmt_us(value)} |")
    if b.profile_rows:
        lines += [
            "",
            f"cProfile of {b.profiled_gets:,} gets, top functions by own time (cProfile "
            "inflates Python call costs several-fold: read the proportions, not the absolutes):",
            "",
            "| own µs/get | cumulative µs/get | calls | function |",
            "|--:|--:|--:|---|",
        ]
        for own, cumulative, calls, where in b.profile_rows:
            lines.append(
                f"| {own:.2f} | {cumulative:.2f} | {calls:,} | `{where.replace('|', '/')}` |"
            )
    return [*lines, ""]


def machine_facts(server: dict[str, str]) -> dict[str, str]:
    """Cores, CPU model, versions of everything in the path, and the code's commit."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass

    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "not installed"

    try:
        commit = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            check=False,
            timeout=10,
            cwd=Path(__file__).parent,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    libpq = psycopg.pq.version()
    return {
        "CPU": f"{model}, {os.cpu_count()} cores (os.cpu_count)",
        "OS": f"{platform.system()} {platform.release()}",
        "PostgreSQL": server.get("server_version", "?"),
        "Python": platform.python_version(),
        "psycopg": f"{psycopg.__version__} ({psycopg.pq.__impl__} implementation, libpq "
        f"{libpq // 10000}.{libpq % 100})",
        "psycopg-pool / aiosql / structlog": (
            f"{version('psycopg-pool')} / {version('aiosql')} / {version('structlog')}"
        ),
        "amira-data-access": f"{version('amira-data-access')} (git {commit or 'unknown'})",
    }


# What profiling this runner's first results changed in src/, and what it gained.
# History, not this run's measurement: the figures are from the runs named.
_CHANGES_FROM_PROFILING = [
    "## What profiling changed",
    "",
    "The first full run (issue 8, 2026-11-23 ~10:00 UTC, machine shared with other test "
    "runs) measured `get` at 1.41x raw psycopg and `set` at 1.56x the bare upsert, both "
    "missing their targets. Measured per layer by alternating variants one operation at a "
    "time (see the breakdown above), then changed:",
    "",
    "- **Log events nobody would see cost nothing now.** `Operation.done` asks "
    "`amira_data_access.logging.is_enabled(level)` first (the stdlib level check while "
    "structlog is not configured). Before, structlog bound and ran its processor chain for "
    "every read only to drop the event: 33-38 µs CPU and ~37 µs p50 per `get`, the largest "
    "single cost.",
    "- **The idle-check timestamp lives on the connection.** The pool's check kept it in a "
    "`WeakKeyDictionary`, which made a weakref with a callback on every checkout: "
    "8-14 µs CPU per call.",
    "- Earlier, before this runner existed: pinging every connection at checkout "
    "(`ConnectionPool.check_connection`) halved `get` throughput (2.1k vs 5.2k gets/s in a "
    "quick loop); the DAL pings only connections idle for `check_after_idle` (1 s).",
    "",
    "With both changes the run above (and a quick run before it) met every target. Not done: "
    "`getconn()/putconn()` instead of `with pool.connection()` (~9 µs CPU per call in an A/B "
    "test) was left for later, as the target is met and the context manager is the pool's "
    "safe default.",
    "",
]


def render(run: Run) -> str:
    """The whole report as Markdown."""
    lines = [
        "# amira-data-access benchmarks",
        "",
        f"Generated {run.date} by `{run.command}` (`just bench` runs `python -m benchmarks`). "
        "Single process; every figure is the median of "
        f"{run.repeats} repeat{'s' if run.repeats != 1 else ''} ({run.budget_text}). The cases "
        "run in turn inside each repeat, and a ratio is the median of the per-repeat ratios.",
        "",
        "## Headline: ratios against the targets",
        "",
        *_headline(run),
        "",
        "## Every case (absolute numbers, for context)",
        "",
        "Rows from the same issue-8 case (#) are compared with each other in the headline. "
        "`µs per key` is the mean time per operation divided by the keys it reads. "
        "`client CPU` is this process's CPU time per operation (the rest of a round trip is "
        "the server and the kernel).",
        "",
        *_cases_table(run),
        "",
        "## Setup",
        "",
        *(f"- **{name}**: {value}" for name, value in run.facts.items()),
        "- **Durability**: "
        + ", ".join(f"`{k} = {v}`" for k, v in run.settings.items() if k != "server_version")
        + ". Every write is a durable commit (fsync'd WAL), for `ConfigDAL.set`, the bare "
        "upsert and pgbench alike.",
        "",
        *_breakdown_section(run),
        *_CHANGES_FROM_PROFILING,
        "## Method",
        "",
        "- Reads pick random keys of the loaded set (seeded RNG; the same key sequence for every "
        "read case). Writes update random keys loaded with a `str` value. Keys are loaded once "
        "with raw SQL in one transaction, then `VACUUM ANALYZE`.",
        "- `ConfigDAL` is used with its default settings (pool of 1–10, idle check after 1 s) "
        "and the library's default logging (structlog not configured: debug events stop at the "
        "stdlib level check). Raw baselines use one autocommit psycopg connection with "
        "`prepare=True`; connect-per-call opens a new connection (TCP + SCRAM) for each read.",
        "- Latency is timed per operation with `perf_counter_ns`; ops/s is operations over the "
        "whole measurement. pgbench's tps excludes its connection time; its p50/p99 come from "
        "its per-transaction log (`-l`).",
        "- A case whose feature has not landed (get_many, cache, async) keeps its row as "
        "`not available yet`; it is measured as soon as the feature exists.",
        "",
    ]
    return "\n".join(lines)


def format_budget(seconds: float | None, ops: int | None, warmup: str) -> str:
    """How long each measurement lasted, for the report."""
    length = f"{ops:,} operations" if ops is not None else f"{seconds:g} s"
    return f"{length} per case per repeat, after a {warmup} warm-up"
