"""Where the time of one ``ConfigDAL.get`` goes: measured, step by step.

Two kinds of figures, because a round trip drowns small costs:

* a ladder with I/O, interleaved on the same server: the raw prepared query,
  then the same query as aiosql issues it (cursor + named parameters), the
  aiosql method, the aiosql method inside a pool checkout, and the whole
  ``ConfigDAL.get``. Each rung adds one layer; the difference in client CPU per
  call between two rungs is that layer's cost *in situ* (caches cold after
  each round trip), the difference of p50 latencies its cost to the caller;
* each step without I/O in a tight loop (best of several runs): exact, but a
  lower bound, since a hot loop keeps everything in the CPU caches.

It also keeps a cProfile of a few thousand gets (top functions by own time).
Private names of the package are reached on purpose (this is a profile of its
insides); each one is optional where possible, so a refactoring of ``dal.py``
shows ``n/a`` here instead of breaking the run.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import structlog
from psycopg_pool import ConnectionPool

from amira_data_access import ConfigDAL, configure_logging
from amira_data_access.codec import validate_key
from amira_data_access.queries import config_queries

from ._cases import GET_SQL
from ._timing import Sample, sample_from_latencies

__all__ = ["Breakdown", "measure_breakdown"]


@dataclass
class Breakdown:
    """The measured steps of one get, in microseconds, plus a profile listing."""

    with_io: dict[str, Sample] = field(default_factory=dict)
    cpu_steps: dict[str, float | None] = field(default_factory=dict)  # µs per call; None: n/a
    profile_rows: list[tuple[float, float, int, str]] = field(default_factory=list)
    profiled_gets: int = 0


def _per_call_us(fn: Callable[[], object], calls: int, runs: int = 5) -> float:
    """Best-of-``runs`` time of ``fn`` in µs (the minimum is the least disturbed run)."""
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter_ns()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter_ns() - start) / calls / 1000)
    return best


class _NullCursor:
    """A cursor that does nothing: aiosql's own cost, without any psycopg or network."""

    def execute(self, query: str, params: object = None) -> None:
        return None

    def fetchone(self) -> tuple[Any, ...] | None:
        return ({"a": 1}, "json")

    def close(self) -> None:
        return None


class _NullConnection:
    def cursor(self) -> _NullCursor:
        return _NullCursor()


def interleaved(
    variants: dict[str, Callable[[], object]], seconds: float, warmup_ops: int = 200
) -> dict[str, Sample]:
    """Run the variants in turn, one operation each, for ``seconds`` in all.

    Alternating operation by operation (not block by block) gives every variant
    the same share of whatever else the machine is doing, so differences between
    them are not drift. Each operation's client CPU is read too (``process_time_ns``
    costs well under a microsecond, the same for every variant).
    """
    for op in variants.values():  # warm-up: prepared statements, caches
        for _ in range(warmup_ops):
            op()
    clock, cpu_clock = time.perf_counter_ns, time.process_time_ns
    ops = list(variants.values())
    latencies: list[list[int]] = [[] for _ in ops]
    cpu_ns = [0] * len(ops)
    start = clock()
    deadline = start + int(seconds * 1e9)
    while clock() < deadline:
        for index, op in enumerate(ops):
            cpu_before, before = cpu_clock(), clock()
            op()
            latencies[index].append(clock() - before)
            cpu_ns[index] += cpu_clock() - cpu_before
    elapsed = (clock() - start) / 1e9 / len(ops)
    return {
        name: sample_from_latencies(latencies[i], elapsed, cpu_ns[i] / 1e9)
        for i, name in enumerate(variants)
    }


def _cpu_steps(dal: ConfigDAL, key: str, calls: int) -> dict[str, float | None]:
    steps: dict[str, float | None] = {}
    steps["validate_key"] = _per_call_us(lambda: validate_key(key), calls)

    try:
        from amira_data_access._operations import Operation, value_from_row
    except ImportError:
        steps["Operation + log event (library default logging)"] = None
        steps["Operation + log event (configure_logging INFO)"] = None
        steps["value_from_row"] = None
    else:

        def operation() -> None:
            op = Operation("config.get", key)
            with op.validating():
                pass
            op.done("hit")

        steps["Operation + log event (library default logging)"] = _per_call_us(operation, calls)
        # A service that calls configure_logging(level="INFO") drops debug events in
        # structlog's filtering logger instead of the stdlib level check.
        configure_logging(level="INFO", stream=io.StringIO())
        try:
            steps["Operation + log event (configure_logging INFO)"] = _per_call_us(operation, calls)
        finally:
            structlog.reset_defaults()
        row = ("value-0", "str")
        steps["value_from_row"] = _per_call_us(lambda: value_from_row(row, None), calls)

    pool = _pool_of(dal)

    def checkout() -> None:
        with pool.connection():
            pass

    steps["psycopg_pool `connection()` checkout + return (with the DAL's check)"] = _per_call_us(
        checkout, calls
    )

    queries: Any = config_queries()
    null = _NullConnection()
    steps["aiosql method dispatch (no I/O)"] = _per_call_us(
        lambda: queries.get_configuration_value(null, key=key), calls
    )
    return steps


def _profile(dal: ConfigDAL, keys: Iterator[str], gets: int) -> list[tuple[float, float, int, str]]:
    """cProfile of ``gets`` calls: (own µs per get, cumulative µs per get, calls, function)."""
    profiler = cProfile.Profile()
    get = dal.get
    profiler.enable()
    for _ in range(gets):
        get(next(keys))
    profiler.disable()
    stats = pstats.Stats(profiler)
    rows: list[tuple[float, float, int, str]] = []
    raw_stats: dict[tuple[str, int, str], tuple[int, int, float, float, Any]] = stats.stats  # type: ignore[attr-defined]  # pstats keeps it untyped
    for (filename, line, name), (_cc, calls, own, cumulative, _callers) in raw_stats.items():
        where = f"{_short(filename)}:{line}({name})" if line else name
        rows.append((own / gets * 1e6, cumulative / gets * 1e6, calls, where))
    rows.sort(reverse=True)
    return rows[:18]


def _short(filename: str) -> str:
    path = Path(filename)
    for marker in ("site-packages", "src"):
        if marker in path.parts:
            return "/".join(path.parts[path.parts.index(marker) + 1 :])
    return path.name


def _pool_of(dal: ConfigDAL) -> ConnectionPool[Any]:
    """The DAL's own pool (private; a refactoring may rename it: then the pool case fails)."""
    pool = getattr(dal, "_pool", None)
    if not isinstance(pool, ConnectionPool):
        raise RuntimeError("ConfigDAL has no _pool attribute any more: update benchmarks")
    return pool


# The ladder: each rung adds one layer of ConfigDAL.get to the one before.
LADDER = {
    "raw": "raw `conn.execute(sql, (key,), prepare=True).fetchone()`",
    "as_aiosql_does": "+ as aiosql runs it: `conn.cursor()`, named params dict, auto-prepare",
    "aiosql": "+ aiosql method `get_configuration_value(conn, key=…)`",
    "pooled": "+ checkout from the DAL's pool (`with pool.connection()`)",
    "dal": "`ConfigDAL.get(key)`: + validation, operation object, log event, decode, retry loop",
}


def measure_breakdown(
    dsn: str, keys: Iterator[str], *, seconds: float, calls: int, gets: int
) -> Breakdown:
    """Measure the steps of ``ConfigDAL.get`` (see the module docstring)."""
    result = Breakdown(profiled_gets=gets)
    queries: Any = config_queries()
    named_sql: str = getattr(queries.get_configuration_value, "sql", GET_SQL)
    with ConfigDAL(dsn) as dal, psycopg.connect(dsn, autocommit=True) as conn:
        pool = _pool_of(dal)

        def raw() -> object:
            return conn.execute(GET_SQL, (next(keys),), prepare=True).fetchone()

        def as_aiosql_does() -> object:
            # What aiosql's psycopg adapter runs: a cursor, named parameters in a dict,
            # psycopg's automatic preparation (after 5 executions), close.
            cur = conn.cursor()
            try:
                cur.execute(named_sql, {"key": next(keys)})
                return cur.fetchone()
            finally:
                cur.close()

        def via_aiosql() -> object:
            return queries.get_configuration_value(conn, key=next(keys))

        def pooled() -> object:
            with pool.connection() as pooled_conn:
                return queries.get_configuration_value(pooled_conn, key=next(keys))

        def dal_get() -> object:
            return dal.get(next(keys))

        result.with_io = interleaved(
            {
                "raw": raw,
                "as_aiosql_does": as_aiosql_does,
                "aiosql": via_aiosql,
                "pooled": pooled,
                "dal": dal_get,
            },
            seconds,
        )
        result.cpu_steps = _cpu_steps(dal, next(keys), calls)
        result.profile_rows = _profile(dal, keys, gets)
    return result
