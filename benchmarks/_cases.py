"""The cases of issue 8, each a setup that returns how to measure it.

A case whose feature has not landed yet raises :class:`NotLandedError` from its
setup; the runner keeps its row in the table with the reason. Cases are
detected, not configured: when ``ConfigDAL.get_many``, a read cache or
``AsyncConfigDAL`` appears, its case starts measuring with no edit here.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

import amira_data_access
from amira_data_access import ConfigDAL

from ._pgbench import Pgbench
from ._server import Target, pgbench_database, str_keys
from ._timing import Budget, Sample, run_ops, sample_from_latencies

__all__ = ["CASES", "Case", "Context", "NotLandedError"]

Measure = Callable[[Budget], Sample]

GET_SQL = "SELECT value, data_type FROM amira_config.configurations WHERE key = %s"
GET_MANY_SQL = "SELECT key, value, data_type FROM amira_config.configurations WHERE key = ANY(%s)"
UPSERT_SQL = (
    "INSERT INTO amira_config.configurations (key, value, data_type, updated_by)"
    " VALUES (%s, %s, 'str', 'benchmarks')"
    " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"
)
BATCH_SIZES = (100, 1000)
ASYNC_TASKS = (1, 8, 32)
PROPAGATION_TIMEOUT_S = 5.0


class NotLandedError(Exception):
    """The feature a case measures has not landed yet (the reason is the message)."""


@dataclass
class Context:
    """What every case may use: the server, the loaded keys, shared connections."""

    target: Target
    keys: list[str]
    seed: int
    stack: ExitStack
    pgbench_command: str | None = None
    _dal: ConfigDAL | None = field(default=None, repr=False)
    _raw: psycopg.Connection[Any] | None = field(default=None, repr=False)

    @property
    def dsn(self) -> str:
        """The configuration database."""
        return self.target.dsn

    def dal(self) -> ConfigDAL:
        """One ConfigDAL with default settings, shared by the sync cases (as a service has one)."""
        if self._dal is None:
            self._dal = self.stack.enter_context(ConfigDAL(self.dsn))
        return self._dal

    def raw(self) -> psycopg.Connection[Any]:
        """One autocommit psycopg connection, shared by the raw baselines."""
        if self._raw is None:
            self._raw = self.stack.enter_context(psycopg.connect(self.dsn, autocommit=True))
        return self._raw

    def key_stream(self) -> Iterator[str]:
        """Random keys of the loaded set; the same seeded sequence for every case."""
        rng = random.Random(self.seed)
        return itertools.cycle([rng.choice(self.keys) for _ in range(1 << 16)])

    def batch_stream(self, size: int) -> Iterator[list[str]]:
        """Random distinct-key batches of ``size``; the same seeded sequence for every case."""
        rng = random.Random(self.seed + size)
        return itertools.cycle([rng.sample(self.keys, size) for _ in range(64)])


@dataclass(frozen=True)
class Case:
    """One row of the results: what is measured and how to set it up."""

    number: int  # the case's number in issue 8
    key: str
    label: str
    setup: Callable[[Context], Measure]
    batch: int = 1  # keys per operation (per-key cost = time per op / batch)
    warmup: bool = True
    throughput: bool = True  # False: the figure is a delay, not a rate
    client_cpu: bool = True  # False: another process does the work (pgbench)


def _ops(op: Callable[[], object]) -> Measure:
    def measure(budget: Budget) -> Sample:
        return run_ops(op, budget)

    return measure


# -- 1. get vs raw psycopg, 2. connect per call ---------------------------------------


def _dal_get(ctx: Context) -> Measure:
    get, keys = ctx.dal().get, ctx.key_stream()

    def op() -> object:
        return get(next(keys))

    return _ops(op)


def _raw_get(ctx: Context) -> Measure:
    conn, keys = ctx.raw(), ctx.key_stream()

    def op() -> object:
        # prepare=True: a server-side prepared statement from the first call on.
        return conn.execute(GET_SQL, (next(keys),), prepare=True).fetchone()

    return _ops(op)


def _connect_per_call(ctx: Context) -> Measure:
    dsn, keys = ctx.dsn, ctx.key_stream()

    def op() -> object:
        # The seed's pattern: a new connection (TCP + SCRAM authentication) per read.
        conn = psycopg.connect(dsn)
        try:
            return conn.execute(GET_SQL, (next(keys),)).fetchone()
        finally:
            conn.close()

    return _ops(op)


# -- 3. get_many ----------------------------------------------------------------------


def _dal_get_many(size: int) -> Callable[[Context], Measure]:
    def setup(ctx: Context) -> Measure:
        if not hasattr(ConfigDAL, "get_many"):
            raise NotLandedError("ConfigDAL.get_many (issue 4)")
        get_many: Callable[[list[str]], object] = ctx.dal().get_many  # type: ignore[attr-defined,unused-ignore]  # it may not exist yet
        batches = ctx.batch_stream(size)

        def op() -> object:
            return get_many(next(batches))

        return _ops(op)

    return setup


def _raw_get_many(size: int) -> Callable[[Context], Measure]:
    def setup(ctx: Context) -> Measure:
        conn, batches = ctx.raw(), ctx.batch_stream(size)

        def op() -> object:
            return conn.execute(GET_MANY_SQL, (next(batches),), prepare=True).fetchall()

        return _ops(op)

    return setup


# -- 4. set ---------------------------------------------------------------------------


def _write_keys(ctx: Context) -> Iterator[str]:
    # Only keys loaded with a str value: a str write keeps their type, so reads stay valid.
    rng = random.Random(ctx.seed)
    candidates = str_keys(ctx.keys)
    return itertools.cycle([rng.choice(candidates) for _ in range(1 << 14)])


def _dal_set(ctx: Context) -> Measure:
    dal, keys, counter = ctx.dal(), _write_keys(ctx), itertools.count()

    def op() -> object:
        return dal.set(
            next(keys),
            f"value-{next(counter)}",
            description="benchmark write",
            updated_by="benchmarks",
        )

    return _ops(op)


def _raw_upsert(ctx: Context) -> Measure:
    conn, keys, counter = ctx.raw(), _write_keys(ctx), itertools.count()

    def op() -> object:
        return conn.execute(
            UPSERT_SQL, (next(keys), Jsonb(f"value-{next(counter)}")), prepare=True
        ).rowcount

    return _ops(op)


# -- 5. cache -------------------------------------------------------------------------


def _cached_dal(ctx: Context) -> Any:
    """A DAL with the read cache of issue 5, in whichever form it landed."""
    cached_class = getattr(amira_data_access, "CachedConfigDAL", None)
    if cached_class is not None:
        dal = cached_class(ctx.dsn)
    elif "cache" in inspect.signature(ConfigDAL).parameters:
        dal = ConfigDAL(ctx.dsn, cache=True)  # type: ignore[call-arg,unused-ignore]  # issue 5
    else:
        raise NotLandedError("read cache (issue 5: ConfigDAL(cache=True) or CachedConfigDAL)")
    return ctx.stack.enter_context(dal)


def _cached_get(ctx: Context) -> Measure:
    dal, keys = _cached_dal(ctx), ctx.key_stream()
    get = dal.get
    # Warm: a service reads the same keys over and over; this case measures hits,
    # not the first read of each key (that is case 1).
    for start in range(0, len(ctx.keys), 1000):
        dal.get_many(ctx.keys[start : start + 1000])

    def op() -> object:
        return get(next(keys))

    return _ops(op)


def _propagation(ctx: Context) -> Measure:
    dal = _cached_dal(ctx)
    writer, keys, counter = ctx.raw(), _write_keys(ctx), itertools.count()

    def measure(budget: Budget) -> Sample:
        clock = time.perf_counter_ns
        delays: list[int] = []
        cpu_start, start = time.process_time(), clock()
        deadline = start + int((budget.seconds or 0) * 1e9)
        while (len(delays) < budget.ops) if budget.ops is not None else (clock() < deadline):
            key, value = next(keys), f"changed-{next(counter)}"
            dal.get(key)  # cached before the change, so the cache has something to invalidate
            # Another connection commits, as another process would.
            writer.execute(UPSERT_SQL, (key, Jsonb(value)), prepare=True)
            committed = clock()
            give_up = committed + int(PROPAGATION_TIMEOUT_S * 1e9)
            while dal.get(key) != value:
                if clock() > give_up:
                    raise RuntimeError(f"the cache did not see {key!r} change within 5 s")
                time.sleep(20e-6)  # lets the listener thread take the GIL
            delays.append(clock() - committed)
        return sample_from_latencies(
            delays, (clock() - start) / 1e9, time.process_time() - cpu_start
        )

    return measure


# -- 6. async -------------------------------------------------------------------------


async def _maybe_await(result: object) -> None:
    if inspect.isawaitable(result):
        await result


def _async_gets(tasks: int) -> Callable[[Context], Measure]:
    def setup(ctx: Context) -> Measure:
        async_class = getattr(amira_data_access, "AsyncConfigDAL", None)
        if async_class is None:
            raise NotLandedError("amira_data_access.AsyncConfigDAL (issue 7)")
        runner = ctx.stack.enter_context(asyncio.Runner())
        dal = async_class(ctx.dsn, max_size=max(tasks, 2))  # a connection per task
        runner.run(_maybe_await(dal.open() if hasattr(dal, "open") else None))
        ctx.stack.callback(lambda: runner.run(_maybe_await(dal.close())))
        keys = ctx.key_stream()

        def measure(budget: Budget) -> Sample:
            return runner.run(_concurrently(dal.get, keys, tasks, budget))

        return measure

    return setup


async def _concurrently(
    get: Callable[[str], Awaitable[object]], keys: Iterator[str], tasks: int, budget: Budget
) -> Sample:
    """``tasks`` tasks calling ``get`` back to back until the budget is spent."""
    clock = time.perf_counter_ns
    latencies: list[int] = []
    remaining = budget.ops if budget.ops is not None else -1
    cpu_start, start = time.process_time(), clock()
    deadline = start + int((budget.seconds or 0) * 1e9)

    async def worker() -> None:
        nonlocal remaining
        while True:
            if budget.ops is not None:
                if remaining <= 0:
                    return
                remaining -= 1
            elif clock() >= deadline:
                return
            before = clock()
            await get(next(keys))
            latencies.append(clock() - before)

    await asyncio.gather(*(worker() for _ in range(tasks)))
    return sample_from_latencies(
        latencies, (clock() - start) / 1e9, time.process_time() - cpu_start
    )


# -- 7. pgbench -----------------------------------------------------------------------


def _pgbench(ctx: Context) -> Measure:
    if ctx.target.pgbench is None:
        raise NotLandedError("no pgbench binary found next to the PostgreSQL binaries")
    database = ctx.stack.enter_context(pgbench_database(ctx.dsn))
    pgbench = Pgbench(ctx.target.pgbench, ctx.target.pgbench_env, database)
    pgbench.initialize(scale=1)

    def measure(budget: Budget) -> Sample:
        ctx.pgbench_command = pgbench.command(budget)
        return pgbench.select_only(budget)

    return measure


CASES: tuple[Case, ...] = (
    Case(1, "get.dal", "`ConfigDAL.get`", _dal_get),
    Case(1, "get.raw", "raw psycopg `SELECT … WHERE key = %s` (prepared)", _raw_get),
    Case(2, "get.connect", "connect per call: `psycopg.connect`, SELECT, close", _connect_per_call),
    *(
        case
        for size in BATCH_SIZES
        for case in (
            Case(3, f"get_many.{size}.dal", f"`ConfigDAL.get_many` ({size} keys)",
                 _dal_get_many(size), batch=size),
            Case(3, f"get_many.{size}.raw", f"raw psycopg `WHERE key = ANY(%s)` ({size} keys)",
                 _raw_get_many(size), batch=size),
        )
    ),
    Case(4, "set.dal", "`ConfigDAL.set` (str value, description, updated_by)", _dal_set),
    Case(4, "set.raw", "bare `INSERT … ON CONFLICT (key) DO UPDATE` (prepared)", _raw_upsert),
    Case(5, "get.cached", "cached `ConfigDAL.get`", _cached_get),
    Case(5, "cache.propagation", "change → cache delay (commit on another connection)",
         _propagation, throughput=False),
    *(
        Case(6, f"async.{tasks}", f"`AsyncConfigDAL.get`, {tasks} concurrent task"
             + ("s" if tasks > 1 else ""), _async_gets(tasks))
        for tasks in ASYNC_TASKS
    ),
    Case(7, "pgbench", "`pgbench -S -c1 -M prepared` (physical reference)", _pgbench,
         warmup=False, client_cpu=False),
)  # fmt: skip
