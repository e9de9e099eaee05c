"""The measurement core: cases compared operation by operation, alternating, over rounds.

Why this shape: on a shared 2-core machine the speed of everything drifts by 2-3x
over seconds (other processes, CPU frequency, the page cache). Timing case A for
a few seconds and then case B compares two different machines. Here every case
of a :class:`Comparison` runs in the *same* stretch of time: in each round the
cases take turns one operation at a time (A, B, C, A, B, C, ...), the order
rotated every round (B, C, A, ... next) so no case always runs first after the
others warmed the caches. A case's ratio to its anchor is computed per round
(both measured in those same seconds) and the median of those per-round ratios
is reported with its min-max, next to the median and min-max of the absolute
figures. Nothing here asserts on a timing.

Time per operation is ``perf_counter_ns`` around each call. CPU is this
process's CPU time (``process_time_ns``, all threads: the listener thread of a
cache counts) read around each call too, so it is per operation as well; a
contender whose operation is too short for that (an in-process cache hit: the
clock reads would cost more than the hit) runs ``per_op`` operations per timed
step, and its latency is the step's time divided by ``per_op``. A contender
whose work happens in child processes (a CLI, ``psql``) reads the children's
CPU from ``getrusage(RUSAGE_CHILDREN)`` instead. A contender that cannot be
interleaved one operation at a time (``pgbench``, a separate process) runs as a
``block`` of the round's operations; a comparison holding one alternates whole
blocks (ABAB, rotated) instead, and says so in the report.

Dependency-free: the standard library only.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import resource
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "BlockSample",
    "Comparison",
    "ComparisonResult",
    "Contender",
    "ContenderResult",
    "RoundStats",
    "Spread",
    "percentile",
    "run_comparison",
]

SyncOp = Callable[[], object]
AsyncOp = Callable[[], Awaitable[object]]
CpuSource = Literal["process", "children", "none"]


@dataclass(frozen=True, slots=True)
class BlockSample:
    """What a block contender reports for one round: latencies, wall and CPU time."""

    latencies_ns: list[int]
    wall_ns: int
    cpu_ns: int | None  # None: not measured (another program did the work)


@dataclass(frozen=True)
class Contender:
    """One case of a comparison.

    ``op`` is called once per operation (sync or async). With ``self_timed`` it
    returns the latency it measured itself in ns (a propagation delay is not the
    time the call took). ``block(n)`` instead runs n operations on its own.
    ``anchor`` names the contender of the same comparison this one is compared
    to (None: it is an anchor, or stands alone); ``also_vs`` adds ratios to more.
    """

    key: str
    label: str
    op: SyncOp | AsyncOp | None = None
    block: Callable[[int], BlockSample] | None = None
    anchor: str | None = None
    also_vs: tuple[str, ...] = ()
    per_op: int = 1  # operations per timed step
    items: int = 1  # keys per operation (a batch write of 1000 keys: 1000)
    cpu: CpuSource = "process"
    self_timed: bool = False

    def __post_init__(self) -> None:
        if (self.op is None) == (self.block is None):
            raise ValueError(f"{self.key}: give exactly one of op or block")


@dataclass
class Comparison:
    """Cases measured together, alternating; ``ops`` operations per case per round."""

    key: str
    title: str
    contenders: list[Contender]
    ops: int
    note: str = ""
    warmup_ops: int | None = None  # default: min(ops, 200)
    runner: asyncio.Runner | None = None  # the loop async contenders were set up on
    missing: dict[str, str] = field(default_factory=dict)  # contender left out -> why
    describe: Callable[[ComparisonResult], list[str]] | None = None  # extra report lines
    details: list[str] = field(default_factory=list)  # e.g. EXPLAIN output, for the report

    @property
    def blockwise(self) -> bool:
        """Whether whole blocks alternate (a block contender is present) instead of ops."""
        return any(c.block is not None for c in self.contenders)


@dataclass(frozen=True, slots=True)
class RoundStats:
    """One contender in one round."""

    ops: int
    p50_ns: float
    p99_ns: float
    busy_ns: int  # the sum of its timed operations
    cpu_ns: int | None

    @property
    def ops_per_s(self) -> float:
        """Operations per second of its own time (the others' turns excluded)."""
        return self.ops / self.busy_ns * 1e9 if self.busy_ns > 0 else math.nan

    @property
    def cpu_us_per_op(self) -> float:
        """Client CPU µs per operation."""
        return self.cpu_ns / self.ops / 1000 if self.cpu_ns is not None and self.ops else math.nan


@dataclass(frozen=True, slots=True)
class Spread:
    """The median over rounds and the min-max of one figure."""

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        """Median, min and max of the values that are numbers (NaN when none)."""
        numbers = [v for v in values if not math.isnan(v)]
        if not numbers:
            return cls(math.nan, math.nan, math.nan)
        return cls(statistics.median(numbers), min(numbers), max(numbers))


@dataclass
class ContenderResult:
    """A contender's rounds and its ratios to its anchors (per round, then summarised)."""

    contender: Contender
    rounds: list[RoundStats] = field(default_factory=list)
    ratios: dict[str, list[float]] = field(default_factory=dict)  # anchor -> p50 ratio per round
    cpu_deltas: dict[str, list[float]] = field(default_factory=dict)  # anchor -> CPU µs diff

    @property
    def p50_us(self) -> Spread:
        """Median latency in µs: per round, then median and min-max over rounds."""
        return Spread.of([r.p50_ns / 1000 for r in self.rounds])

    @property
    def p99_us(self) -> Spread:
        """99th percentile in µs, per round then summarised."""
        return Spread.of([r.p99_ns / 1000 for r in self.rounds])

    @property
    def ops_per_s(self) -> Spread:
        """Throughput per round, summarised."""
        return Spread.of([r.ops_per_s for r in self.rounds])

    @property
    def cpu_us(self) -> Spread:
        """Client CPU µs per operation per round, summarised."""
        return Spread.of([r.cpu_us_per_op for r in self.rounds])

    def ratio(self, anchor: str | None = None) -> Spread | None:
        """p50 time of this contender / its anchor's, per round, summarised."""
        name = anchor or self.contender.anchor
        values = self.ratios.get(name) if name else None
        return Spread.of(values) if values else None

    def cpu_delta(self, anchor: str | None = None) -> Spread | None:
        """CPU µs per op more than the anchor, per round, summarised."""
        name = anchor or self.contender.anchor
        values = self.cpu_deltas.get(name) if name else None
        return Spread.of(values) if values else None


@dataclass
class ComparisonResult:
    """A comparison's outcome: per contender, or why it did not run."""

    comparison: Comparison
    results: dict[str, ContenderResult] = field(default_factory=dict)
    rounds: int = 0
    status: str | None = None  # "skipped: …" or "error: …"

    def get(self, key: str) -> ContenderResult | None:
        """The result of contender ``key``, if it ran."""
        return self.results.get(key) if self.status is None else None


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted values (no interpolation, as pgbench does)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def _children_cpu_ns() -> int:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return int((usage.ru_utime + usage.ru_stime) * 1e9)


def _cpu_clock(source: CpuSource) -> Callable[[], int]:
    if source == "process":
        return time.process_time_ns
    if source == "children":
        return _children_cpu_ns
    return lambda: 0


class _Tally:
    """One contender's measurements within one round."""

    __slots__ = ("busy", "cpu", "latencies", "ops")

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.busy = 0
        self.cpu = 0
        self.ops = 0

    def stats(self, cpu_measured: bool) -> RoundStats:
        self.latencies.sort()
        return RoundStats(
            ops=self.ops,
            p50_ns=percentile(self.latencies, 0.50),
            p99_ns=percentile(self.latencies, 0.99),
            busy_ns=self.busy,
            cpu_ns=self.cpu if cpu_measured else None,
        )


def _record(tally: _Tally, contender: Contender, elapsed: int, cpu: int, result: object) -> None:
    if contender.self_timed:
        if not isinstance(result, int):
            raise TypeError(f"{contender.key}: a self-timed op must return its latency in ns")
        elapsed = result
    tally.latencies.append(elapsed / contender.per_op)
    tally.busy += elapsed
    tally.cpu += cpu
    tally.ops += contender.per_op


def _sync_step(contender: Contender, tally: _Tally) -> None:
    op = contender.op
    assert op is not None
    cpu_clock, clock = _cpu_clock(contender.cpu), time.perf_counter_ns
    cpu_before = cpu_clock()
    before = clock()
    result = op()
    elapsed = clock() - before
    _record(tally, contender, elapsed, cpu_clock() - cpu_before, result)


async def _async_step(contender: Contender, tally: _Tally) -> None:
    op = contender.op
    assert op is not None
    cpu_clock, clock = _cpu_clock(contender.cpu), time.perf_counter_ns
    cpu_before = cpu_clock()
    before = clock()
    result = op()
    if inspect.isawaitable(result):
        result = await result
    elapsed = clock() - before
    _record(tally, contender, elapsed, cpu_clock() - cpu_before, result)


def _block(contender: Contender, tally: _Tally, ops: int) -> bool:
    """Run a block contender's round; returns whether its CPU was measured."""
    assert contender.block is not None
    sample = contender.block(ops)
    tally.latencies.extend(sample.latencies_ns)
    tally.busy += sample.wall_ns
    tally.ops += len(sample.latencies_ns)
    tally.cpu += sample.cpu_ns or 0
    return sample.cpu_ns is not None


def rotated(items: Sequence[Contender], round_index: int) -> list[Contender]:
    """The contenders in round ``round_index``'s order: shifted by one each round."""
    shift = round_index % len(items)
    return [*items[shift:], *items[:shift]]


def _one_round(comparison: Comparison, order: list[Contender], ops: int) -> dict[str, RoundStats]:
    tallies = {c.key: _Tally() for c in order}
    cpu_measured = {c.key: c.cpu != "none" for c in order}
    is_async = any(c.op is not None and inspect.iscoroutinefunction(c.op) for c in order)
    if comparison.blockwise:
        # A separate program cannot take turns with us op by op: whole blocks alternate.
        for contender in order:
            tally = tallies[contender.key]
            if contender.block is not None:
                cpu_measured[contender.key] = _block(contender, tally, ops)
            elif is_async:
                runner = comparison.runner
                assert runner is not None
                runner.run(_async_block(contender, tally, ops))
            else:
                for _ in range(ops):
                    _sync_step(contender, tally)
    elif is_async:
        if comparison.runner is None:
            raise RuntimeError(f"{comparison.key}: async contenders need the comparison's runner")
        comparison.runner.run(_async_interleaved(order, tallies, ops))
    else:
        for _ in range(ops):
            for contender in order:
                _sync_step(contender, tallies[contender.key])
    return {key: tally.stats(cpu_measured[key]) for key, tally in tallies.items()}


async def _async_interleaved(order: list[Contender], tallies: dict[str, _Tally], ops: int) -> None:
    # One event loop, one task: the cases take turns exactly as the sync ones do.
    for _ in range(ops):
        for contender in order:
            await _async_step(contender, tallies[contender.key])


async def _async_block(contender: Contender, tally: _Tally, ops: int) -> None:
    for _ in range(ops):
        await _async_step(contender, tally)


def run_comparison(
    comparison: Comparison,
    rounds: int,
    *,
    progress: Callable[[str], None] | None = None,
) -> ComparisonResult:
    """Warm up, then run ``rounds`` rounds of ``comparison``; ratios per round to the anchors."""
    result = ComparisonResult(
        comparison, {c.key: ContenderResult(c) for c in comparison.contenders}
    )
    contenders = comparison.contenders
    warmup = (
        comparison.warmup_ops if comparison.warmup_ops is not None else min(comparison.ops, 200)
    )
    if warmup > 0:
        _one_round(comparison, list(contenders), warmup)  # prepared statements, caches, JIT-free
    for index in range(rounds):
        if progress is not None:
            progress(f"{comparison.key}: round {index + 1}/{rounds}")
        stats = _one_round(comparison, rotated(contenders, index), comparison.ops)
        for key, round_stats in stats.items():
            result.results[key].rounds.append(round_stats)
        for contender in contenders:
            own = stats[contender.key]
            mine = result.results[contender.key]
            for anchor in filter(None, (contender.anchor, *contender.also_vs)):
                base = stats[anchor]
                ratio = own.p50_ns / base.p50_ns if base.p50_ns > 0 else math.nan
                mine.ratios.setdefault(anchor, []).append(ratio)
                mine.cpu_deltas.setdefault(anchor, []).append(
                    own.cpu_us_per_op - base.cpu_us_per_op
                )
        result.rounds = index + 1
    return result
