"""Timing primitives: one measurement of an operation, and the median of its repeats."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["Budget", "Sample", "Summary", "percentile", "run_ops", "sample_from_latencies"]

Op = Callable[[], object]


@dataclass(frozen=True, slots=True)
class Budget:
    """How long one measurement lasts: ``seconds`` of wall time, or exactly ``ops`` operations."""

    seconds: float | None = None
    ops: int | None = None

    def __post_init__(self) -> None:
        if (self.seconds is None) == (self.ops is None):
            raise ValueError("give exactly one of seconds or ops")


@dataclass(frozen=True, slots=True)
class Sample:
    """One measurement: how many operations, how long, and their latency distribution."""

    ops: int
    seconds: float
    cpu_seconds: float  # this process's CPU time (all threads): the client's own cost
    p50_us: float
    p99_us: float

    @property
    def ops_per_s(self) -> float:
        """Throughput over the whole measurement (timing overhead included)."""
        return self.ops / self.seconds if self.seconds > 0 else math.nan

    @property
    def cpu_us_per_op(self) -> float:
        """Client CPU microseconds per operation (network waits excluded)."""
        return self.cpu_seconds / self.ops * 1e6 if self.ops else math.nan


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted values (no interpolation, as pgbench does)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def sample_from_latencies(
    latencies_ns: list[int], seconds: float, cpu_seconds: float, ops: int | None = None
) -> Sample:
    """A Sample from per-operation latencies in nanoseconds."""
    latencies_ns.sort()
    return Sample(
        ops=len(latencies_ns) if ops is None else ops,
        seconds=seconds,
        cpu_seconds=cpu_seconds,
        p50_us=percentile(latencies_ns, 0.50) / 1000,
        p99_us=percentile(latencies_ns, 0.99) / 1000,
    )


def run_ops(op: Op, budget: Budget) -> Sample:
    """Call ``op`` repeatedly within ``budget``, timing each call.

    Each call is timed with ``perf_counter_ns`` (about 0.1 µs of overhead per
    call, below 0.1 % of a round trip; it would matter only for an in-process
    cache, and is included in its ops/s too, so that figure is conservative).
    """
    clock = time.perf_counter_ns
    latencies: list[int] = []
    append = latencies.append  # bound once: attribute lookups are part of the loop's cost
    cpu_start = time.process_time()
    start = clock()
    if budget.ops is not None:
        for _ in range(budget.ops):
            before = clock()
            op()
            append(clock() - before)
        end = clock()
    else:
        assert budget.seconds is not None
        deadline = start + int(budget.seconds * 1e9)
        end = start
        while end < deadline:
            before = clock()
            op()
            end = clock()
            append(end - before)
    cpu = time.process_time() - cpu_start
    return sample_from_latencies(latencies, (end - start) / 1e9, cpu)


@dataclass(frozen=True, slots=True)
class Summary:
    """The repeats of one case: medians of each figure, and the spread of throughput."""

    repeats: int
    ops: float
    ops_per_s: float
    ops_per_s_min: float
    ops_per_s_max: float
    p50_us: float
    p99_us: float
    cpu_us_per_op: float

    @classmethod
    def of(cls, samples: Sequence[Sample]) -> Summary:
        """Median of every figure over the repeats (each figure on its own)."""
        rates = [s.ops_per_s for s in samples]
        return cls(
            repeats=len(samples),
            ops=statistics.median(s.ops for s in samples),
            ops_per_s=statistics.median(rates),
            ops_per_s_min=min(rates),
            ops_per_s_max=max(rates),
            p50_us=statistics.median(s.p50_us for s in samples),
            p99_us=statistics.median(s.p99_us for s in samples),
            cpu_us_per_op=statistics.median(s.cpu_us_per_op for s in samples),
        )

    @property
    def mean_us(self) -> float:
        """Mean time per operation implied by the median throughput."""
        return 1e6 / self.ops_per_s if self.ops_per_s > 0 else math.nan
