"""The comparisons of the performance issue: each case next to its anchor, in the same run.

Each setup returns a :class:`~benchmarks._timing.Comparison` (its cases are
measured alternating, see :mod:`benchmarks._timing`) or raises
:class:`~benchmarks._context.CaseUnavailableError` with the reason. A contender that cannot
run here (asyncpg not installed, no redis-server) is left out of its comparison
and listed under it with the reason.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import json
import os
import shutil
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.types.json import Jsonb

from amira_data_access import AsyncConfigDAL, CachedConfigDAL

from . import _internals
from ._context import CaseUnavailableError, Context, load_queries
from ._kvstores import (
    EtcdClient,
    EtcdWatch,
    MissingServerError,
    etcd_server,
    redis_server,
)
from ._pgbench import Pgbench
from ._server import KEY_PREFIX, bench_keys, json_keys, pgbench_database, str_keys
from ._timing import BlockSample, Comparison, Contender

__all__ = ["COMPARISONS", "MemoryResult", "measure_cache_memory"]

GET_SQL = "SELECT value, data_type FROM amira_config.configurations WHERE key = %s"
GET_MANY_SQL = "SELECT key, value, data_type FROM amira_config.configurations WHERE key = ANY(%s)"
UPSERT_SQL = (
    "INSERT INTO amira_config.configurations (key, value, data_type, updated_by)"
    " VALUES (%s, %s, 'str', 'benchmarks')"
    " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"
)
UNNEST_UPSERT_SQL = (
    "INSERT INTO amira_config.configurations (key, value, data_type, updated_by)"
    " SELECT k, v, 'str', 'benchmarks' FROM unnest(%s::text[], %s::jsonb[]) AS item(k, v)"
    " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"
)
GET_MANY_SIZE = 1000
SET_MANY_SIZE = 1000
PROPAGATION_TIMEOUT_S = 5.0


def _write_keys(ctx: Context, salt: int = 0) -> Iterator[str]:
    """Random keys loaded with a ``str`` value: a str write keeps their type valid."""
    return ctx.key_stream(str_keys(ctx.keys), salt)


def _value_of(key: str) -> object:
    """The value the loader gave ``key`` (benchmarks._server._LOAD_SQL), in Python."""
    i = int(key.rsplit("setting", 1)[1])
    kind = i % 5
    if kind == 0:
        return f"value-{i}"
    if kind == 1:
        return i
    if kind == 2:
        return i + 0.5
    if kind == 3:
        return i % 2 == 0
    return {"n": i, "tags": ["a", "b"], "enabled": True}


# -- get vs raw psycopg (the headline) ---------------------------------------------------


def get_vs_raw(ctx: Context) -> Comparison:
    """Uncached ``ConfigDAL.get`` against the same SELECT, prepared, on one raw connection."""
    dal, conn = ctx.dal(), ctx.raw()
    get, keys_a, keys_b = dal.get, ctx.key_stream(), ctx.key_stream()

    def raw() -> object:
        # prepare=True: a server-side prepared statement from the first call on.
        return conn.execute(GET_SQL, (next(keys_b),), prepare=True).fetchone()

    return Comparison(
        "get",
        "Uncached `ConfigDAL.get` vs raw psycopg",
        [
            Contender("get.raw", "raw psycopg `SELECT … WHERE key = %s` (prepared)", raw),
            Contender("get.dal", "`ConfigDAL.get`", lambda: get(next(keys_a)), anchor="get.raw"),
        ],
        ops=ctx.ops(2000, 50),
        note="Both read random keys of the same seeded sequence; the DAL with its default "
        "pool (1–10) and logging, the raw side on one autocommit connection.",
    )


def get_ladder(ctx: Context) -> Comparison:
    """Where the time of one get goes: each rung adds one layer, all rungs alternating."""
    dal, conn = ctx.dal(), ctx.raw()
    queries = load_queries("configurations.sql")
    named_sql: str = queries.get_configuration_value.sql
    pool = _internals.pool_of(dal)
    streams = [ctx.key_stream() for _ in range(6)]

    def raw() -> object:
        return conn.execute(GET_SQL, (next(streams[0]),), prepare=True).fetchone()

    def as_aiosql_does() -> object:
        # What aiosql's psycopg adapter runs: a cursor, named parameters in a dict,
        # psycopg's automatic preparation (after 5 executions), close.
        cur = conn.cursor()
        try:
            cur.execute(named_sql, {"key": next(streams[1])})
            return cur.fetchone()
        finally:
            cur.close()

    def via_aiosql() -> object:
        return queries.get_configuration_value(conn, key=next(streams[2]))

    def pooled() -> object:
        with pool.connection() as pooled_conn:
            return queries.get_configuration_value(pooled_conn, key=next(streams[3]))

    get, general = dal.get, _internals.general_get(dal)
    # (key, label, the operation, the rung it is compared with)
    rungs: list[tuple[str, str, Callable[[], object], str | None]] = [
        ("ladder.raw", "raw `conn.execute(sql, (key,), prepare=True).fetchone()`", raw, None),
        ("ladder.cursor", "+ as aiosql runs it: `cursor()`, named params, auto-prepare",
         as_aiosql_does, "ladder.raw"),
        ("ladder.aiosql", "+ aiosql method `get_configuration_value(conn, key=…)`", via_aiosql,
         "ladder.cursor"),
        ("ladder.pool", "+ checkout from the DAL's own pool (`with pool.connection()`)", pooled,
         "ladder.aiosql"),
        ("ladder.dal", "`ConfigDAL.get(key)`: its leased connection, validation, log check, "
         "decode (named SQL sent as in the cursor rung)", lambda: get(next(streams[4])),
         "ladder.cursor"),
        ("ladder.general", "the same `get` on its general path (as with a log level on; one "
         "that finds the lease busy also pays rung 4's checkout): + operation, statement, "
         "retry loop", lambda: general(next(streams[5])),
         "ladder.dal"),
    ]  # fmt: skip
    contenders = [
        Contender(key, label, op, anchor=anchor, also_vs=("ladder.raw",) if i > 1 else ())
        for i, (key, label, op, anchor) in enumerate(rungs)
    ]
    return Comparison(
        "ladder",
        "Where the time of one `ConfigDAL.get` goes (each rung adds one layer)",
        contenders,
        ops=ctx.ops(1000, 30),
        note="Ratio and ΔCPU are to the rung named: what that layer costs per call, in situ "
        "(caches as cold as between real round trips). The last column pair is to raw. "
        "`ConfigDAL.get` keeps one pooled connection leased for reads and runs the "
        "operation's general path only when an event would be logged, the lease is busy "
        "or something fails: the pool and general rungs are what it pays then.",
    )


def connect_per_call(ctx: Context) -> Comparison:
    """The seed's pattern (a new connection per read) against the pooled get."""
    dal, dsn = ctx.dal(), ctx.dsn
    keys_a, keys_b = ctx.key_stream(), ctx.key_stream()

    def per_call() -> object:
        conn = psycopg.connect(dsn)  # TCP + SCRAM authentication, every time
        try:
            return conn.execute(GET_SQL, (next(keys_b),)).fetchone()
        finally:
            conn.close()

    return Comparison(
        "connect",
        "Connect per call vs the pooled `ConfigDAL.get`",
        [
            Contender("connect.dal", "`ConfigDAL.get` (pooled)", lambda: dal.get(next(keys_a))),
            Contender(
                "connect.per_call",
                "`psycopg.connect`, SELECT, close",
                per_call,
                anchor="connect.dal",
            ),
        ],
        ops=ctx.ops(100, 5),
    )


def get_many(ctx: Context) -> Comparison:
    """``get_many`` of 1000 keys against the same ``= ANY(%s)`` SELECT on a raw connection."""
    size = min(GET_MANY_SIZE, len(ctx.keys))
    dal, conn = ctx.dal(), ctx.raw()
    batches_a, batches_b = ctx.batch_stream(ctx.keys, size), ctx.batch_stream(ctx.keys, size)
    return Comparison(
        "get_many",
        f"`ConfigDAL.get_many` ({size} keys) vs raw `= ANY(%s)`",
        [
            Contender(
                "get_many.raw",
                f"raw `WHERE key = ANY(%s)` ({size} keys, prepared)",
                lambda: conn.execute(GET_MANY_SQL, (next(batches_b),), prepare=True).fetchall(),
                items=size,
            ),
            Contender(
                "get_many.dal",
                f"`ConfigDAL.get_many` ({size} keys)",
                lambda: dal.get_many(next(batches_a)),
                anchor="get_many.raw",
                items=size,
            ),
        ],
        ops=ctx.ops(30, 3),
    )


# -- async --------------------------------------------------------------------------------


def _asyncpg_kwargs(dsn: str) -> dict[str, Any]:
    params = conninfo_to_dict(dsn)
    return {
        "host": params.get("host"),
        "port": int(params.get("port") or 5432),
        "user": params.get("user"),
        "password": params.get("password"),
        "database": params.get("dbname"),
    }


def async_get(ctx: Context) -> Comparison:
    """``AsyncConfigDAL.get`` (one task) vs psycopg's AsyncConnection vs asyncpg, one loop."""
    runner = ctx.stack.enter_context(asyncio.Runner())
    dal = AsyncConfigDAL(ctx.dsn)
    runner.run(dal.open())
    ctx.stack.callback(lambda: runner.run(dal.close()))
    conn = runner.run(psycopg.AsyncConnection.connect(ctx.dsn, autocommit=True))
    ctx.stack.callback(lambda: runner.run(conn.close()))
    streams = [ctx.key_stream() for _ in range(3)]

    async def dal_get() -> object:
        return await dal.get(next(streams[0]))

    async def psycopg_get() -> object:
        cur = await conn.execute(GET_SQL, (next(streams[1]),), prepare=True)
        return await cur.fetchone()

    contenders = [
        Contender("async.psycopg", "psycopg `AsyncConnection.execute` (prepared)", psycopg_get),
        Contender("async.dal", "`AsyncConfigDAL.get`, 1 task", dal_get, anchor="async.psycopg"),
    ]
    missing: dict[str, str] = {}
    try:
        import asyncpg  # type: ignore[import-untyped,import-not-found,unused-ignore]
    except ImportError:
        missing["asyncpg `fetchrow`"] = (
            "asyncpg is not installed (pip install -e '.[bench]'; `just bench` does)"
        )
    else:
        apg = runner.run(asyncpg.connect(**_asyncpg_kwargs(ctx.dsn)))
        ctx.stack.callback(lambda: runner.run(apg.close()))
        statement = runner.run(apg.prepare(GET_SQL.replace("%s", "$1")))

        async def asyncpg_get() -> object:
            return await statement.fetchrow(next(streams[2]))

        contenders.append(
            Contender("async.asyncpg", "asyncpg prepared statement `fetchrow`", asyncpg_get,
                      anchor="async.psycopg")
        )  # fmt: skip
        contenders[1] = Contender(
            "async.dal", "`AsyncConfigDAL.get`, 1 task", dal_get, anchor="async.psycopg",
            also_vs=("async.asyncpg",),
        )  # fmt: skip
    return Comparison(
        "async",
        "`AsyncConfigDAL.get` vs raw async drivers (one task, one event loop)",
        contenders,
        ops=ctx.ops(2000, 50),
        runner=runner,
        missing=missing,
        note="All three in one event loop, taking turns one awaited call at a time.",
    )


# -- the cache ---------------------------------------------------------------------------

_FEED_DEADLINE = 30.0  # seconds


def wait_for_feed(dal: CachedConfigDAL) -> None:
    """Return once the cache's feed listens: open() waits only 5 s for it, and until it
    does reads go to the server (then its first sync empties the cache)."""
    if not dal._change_feed().wait_connected(_FEED_DEADLINE):
        raise RuntimeError(f"the cache's change feed did not connect within {_FEED_DEADLINE:g} s")


def _cached_dal(ctx: Context, dsn: str | None = None) -> CachedConfigDAL:
    dal = ctx.stack.enter_context(CachedConfigDAL(dsn or ctx.dsn))
    wait_for_feed(dal)  # hits are what is measured
    return dal


def _warm(dal: CachedConfigDAL, keys: list[str]) -> None:
    for start in range(0, len(keys), 1000):
        dal.get_many(keys[start : start + 1000])
    size = dal.health().cache_size or 0
    if size < len(set(keys)):
        raise RuntimeError(f"the cache holds {size} keys after warming {len(keys)}")


def cached_get(ctx: Context) -> Comparison:
    """Cache hits for str and for json (dict) values, each next to a plain dict lookup."""
    dal = _cached_dal(ctx)
    strs, jsons = str_keys(ctx.keys), json_keys(ctx.keys)
    _warm(dal, strs + jsons)
    plain = {key: _value_of(key) for key in strs + jsons}
    get, lookup = dal.get, plain.get
    steps = 1000  # gets per timed step: a clock read costs as much as a hit

    def loop(fn: Callable[[str], object], keys: Iterator[str]) -> Callable[[], object]:
        def step() -> object:
            for _ in range(steps):
                fn(next(keys))
            return None

        return step

    return Comparison(
        "cache",
        "Cached `CachedConfigDAL.get` (hits) vs a plain `dict` lookup",
        [
            Contender(
                "cache.dict_str",
                "`dict.get`, str values",
                loop(lookup, ctx.key_stream(strs)),
                per_op=steps,
            ),
            Contender(
                "cache.str",
                "`CachedConfigDAL.get`, str values",
                loop(get, ctx.key_stream(strs)),
                anchor="cache.dict_str",
                per_op=steps,
            ),
            Contender(
                "cache.dict_json",
                "`dict.get`, json (dict) values",
                loop(lookup, ctx.key_stream(jsons)),
                per_op=steps,
            ),
            Contender(
                "cache.json",
                "`CachedConfigDAL.get`, json (dict) values",
                loop(get, ctx.key_stream(jsons)),
                anchor="cache.dict_json",
                per_op=steps,
            ),
        ],
        ops=ctx.ops(200, 10),
        warmup_ops=20,
        note=f"Each timed step is {steps} gets in a loop (per-op clock reads would cost more "
        "than a hit); latency is the step's time / 1000 and CPU is read around each step. The "
        "dict returns its stored object; the cache returns a fresh copy of a json value. "
        "Absolute ops/s follow this shared machine's speed of the moment (the dict's own "
        "ops/s shows it); the ratio to the dict is the steadier figure.",
    )


@dataclass(frozen=True)
class MemoryResult:
    """Retained bytes per key: the cache's and a plain dict's, measured with tracemalloc."""

    keys: int
    cache_bytes: int
    dict_bytes: int

    @property
    def ratio(self) -> float:
        """Cache bytes / dict bytes."""
        return self.cache_bytes / self.dict_bytes if self.dict_bytes else float("nan")


def _traced(fill: Callable[[], object]) -> tuple[int, object]:
    """Bytes still allocated after ``fill()`` (what it keeps), and what it returned."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = fill()
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before, kept
    finally:
        tracemalloc.stop()


def measure_cache_memory(ctx: Context) -> MemoryResult:
    """A CachedConfigDAL holding N keys vs a dict of the same keys and values (N = 100k)."""
    count = 2000 if ctx.quick else 100_000
    dsn, _keys = ctx.dataset(count)
    with psycopg.connect(dsn, autocommit=True) as conn:

        def fill_dict() -> object:
            rows = conn.execute(
                "SELECT key, value FROM amira_config.configurations WHERE starts_with(key, %s)",
                (KEY_PREFIX,),
            ).fetchall()
            return dict(rows)

        dict_bytes, plain = _traced(fill_dict)
        assert isinstance(plain, dict)
        assert len(plain) == count
        del plain
    with CachedConfigDAL(dsn) as dal:
        wait_for_feed(dal)

        def fill_cache() -> object:
            keys = bench_keys(count)  # new str objects: the cache keeps them, count them
            for start in range(0, count, 1000):
                dal.get_many(keys[start : start + 1000])
            return None

        cache_bytes, _ = _traced(fill_cache)
        if (dal.health().cache_size or 0) < count:
            raise RuntimeError("the cache did not keep every key")
    return MemoryResult(count, cache_bytes, dict_bytes)


def propagation(ctx: Context) -> Comparison:
    """A commit on another connection, until a CachedConfigDAL (and an etcd watch) sees it."""
    dal = _cached_dal(ctx)
    writer = ctx.connect()
    keys, counter = _write_keys(ctx, salt=7), itertools.count()
    clock = time.perf_counter_ns

    def cache_delay() -> int:
        key, value = next(keys), f"changed-{next(counter)}"
        dal.get(key)  # cached before the change, so there is something to invalidate
        writer.execute(UPSERT_SQL, (key, Jsonb(value)), prepare=True)
        committed = clock()
        give_up = committed + int(PROPAGATION_TIMEOUT_S * 1e9)
        while dal.get(key) != value:
            if clock() > give_up:
                raise RuntimeError(f"the cache did not see {key!r} change within 5 s")
            time.sleep(20e-6)  # lets the listener thread take the GIL
        return clock() - committed

    contenders = [
        Contender("propagation.cache", "commit → `CachedConfigDAL.get` sees it", cache_delay,
                  self_timed=True),
    ]  # fmt: skip
    missing: dict[str, str] = {}
    try:
        host, port = ctx.stack.enter_context(etcd_server())
    except MissingServerError as exc:
        missing["etcd put → watch event"] = str(exc)
    else:
        client = EtcdClient(host, port)
        ctx.stack.callback(client.close)
        watch = EtcdWatch(host, port, KEY_PREFIX)
        ctx.stack.callback(watch.close)
        etcd_keys, etcd_counter = _write_keys(ctx, salt=8), itertools.count()

        def etcd_delay() -> int:
            key, value = next(etcd_keys), json.dumps(f"changed-{next(etcd_counter)}")
            client.put(key, value)
            committed = clock()
            while (key, value) not in watch.next_values():
                if clock() > committed + int(PROPAGATION_TIMEOUT_S * 1e9):
                    raise RuntimeError("etcd watch did not deliver within 5 s")
            return clock() - committed

        contenders.append(
            Contender("propagation.etcd", "etcd put → watch event (HTTP gateway stream)",
                      etcd_delay, anchor="propagation.cache", self_timed=True)
        )  # fmt: skip
    return Comparison(
        "propagation",
        "Change propagation: committed elsewhere → visible here",
        contenders,
        ops=ctx.ops(100, 5),
        missing=missing,
        note="Latency is from the writer's commit (its call returned) to the reader seeing the "
        "new value: the cache polls `get` every 20 µs (after the feed drops the key, the next "
        "`get` reads it from the database: that round trip is part of the delay, as for a "
        "service); the etcd watch blocks on its stream and carries the value. CPU includes "
        "the write.",
    )


# -- writes ------------------------------------------------------------------------------


def set_vs_upsert(ctx: Context) -> Comparison:
    """``ConfigDAL.set`` against a bare prepared upsert of the same key and value."""
    dal, conn = ctx.dal(), ctx.raw()
    keys_a, keys_b, counter = _write_keys(ctx, 1), _write_keys(ctx, 2), itertools.count()

    def dal_set() -> object:
        return dal.set(next(keys_a), f"value-{next(counter)}", description="benchmark write",
                       updated_by="benchmarks")  # fmt: skip

    def upsert() -> object:
        value = Jsonb(f"value-{next(counter)}")
        return conn.execute(UPSERT_SQL, (next(keys_b), value), prepare=True).rowcount

    return Comparison(
        "set",
        "`ConfigDAL.set` vs a bare upsert (durable commits, history triggers on both)",
        [
            Contender("set.raw", "bare `INSERT … ON CONFLICT (key) DO UPDATE` (prepared)", upsert),
            Contender(
                "set.dal",
                "`ConfigDAL.set` (str value, description, updated_by)",
                dal_set,
                anchor="set.raw",
            ),
        ],
        ops=ctx.ops(300, 20),
    )


def set_many(ctx: Context) -> Comparison:
    """``set_many`` of 1000 keys vs psycopg ``executemany`` vs one raw ``unnest`` upsert."""
    candidates = str_keys(ctx.keys)
    size = min(SET_MANY_SIZE, len(candidates))
    dal, conn = ctx.dal(), ctx.raw()
    batches = [ctx.batch_stream(candidates, size) for _ in range(3)]
    counter = itertools.count()

    def dal_set_many() -> object:
        n = next(counter)
        return dal.set_many(dict.fromkeys(next(batches[0]), f"v{n}"), updated_by="benchmarks")

    def executemany() -> object:
        n = next(counter)
        # One transaction, as set_many's all-or-nothing; psycopg pipelines executemany.
        with conn.transaction(), conn.cursor() as cur:
            cur.executemany(UPSERT_SQL, [(key, Jsonb(f"v{n}")) for key in next(batches[1])])
        return None

    def unnest() -> object:
        n = next(counter)
        keys = next(batches[2])
        return conn.execute(
            UNNEST_UPSERT_SQL, (keys, [Jsonb(f"v{n}")] * len(keys)), prepare=True
        ).rowcount

    return Comparison(
        "set_many",
        f"`ConfigDAL.set_many` ({size} keys) vs `executemany` vs one `unnest` upsert",
        [
            Contender(
                "set_many.unnest",
                "raw single `INSERT … SELECT FROM unnest(…)` upsert",
                unnest,
                items=size,
            ),
            Contender(
                "set_many.executemany",
                f"psycopg `executemany` of {size} upserts (one transaction, pipelined)",
                executemany,
                anchor="set_many.unnest",
                items=size,
            ),
            Contender(
                "set_many.dal",
                f"`ConfigDAL.set_many` ({size} keys)",
                dal_set_many,
                anchor="set_many.unnest",
                also_vs=("set_many.executemany",),
                items=size,
            ),
        ],
        ops=ctx.ops(5, 1),
        warmup_ops=1,
    )


# -- Redis and etcd ----------------------------------------------------------------------


@dataclass
class _Stores:
    """The comparison stores that could be started, and why the others could not."""

    redis: Any = None  # redis.Redis (an optional dependency: untyped here)
    redis_fsync: Any = None
    etcd: EtcdClient | None = None
    missing: dict[str, str] = field(default_factory=dict)


def _kv_stores(ctx: Context, *, durable_redis: bool) -> _Stores:
    """Start redis (and a durable one) and etcd, loaded with the same keys and JSON values."""
    stores = _Stores()
    items = {key: json.dumps(_value_of(key)) for key in ctx.keys}
    try:
        import redis
    except ImportError:
        stores.missing["Redis"] = "redis-py is not installed (pip install -e '.[bench]')"
    else:
        try:
            settings = [False, True] if durable_redis else [False]
            for fsync_always in settings:
                host, port = ctx.stack.enter_context(redis_server(fsync_always=fsync_always))
                client = redis.Redis(host=host, port=port)
                ctx.stack.callback(client.close)
                pipe = client.pipeline(transaction=False)
                for start in range(0, len(ctx.keys), 1000):
                    pipe.mset({k: items[k] for k in ctx.keys[start : start + 1000]})
                pipe.execute()
                if fsync_always:
                    stores.redis_fsync = client
                else:
                    stores.redis = client
        except MissingServerError as exc:
            stores.missing["Redis"] = str(exc)
    try:
        host, port = ctx.stack.enter_context(etcd_server())
    except MissingServerError as exc:
        stores.missing["etcd"] = str(exc)
    else:
        stores.etcd = EtcdClient(host, port)
        ctx.stack.callback(stores.etcd.close)
        stores.etcd.put_many(items)
    return stores


def kv_get(ctx: Context) -> Comparison:
    """``ConfigDAL.get`` next to Redis GET and etcd range on the same keys and values."""
    stores = _kv_stores(ctx, durable_redis=False)
    if stores.redis is None and stores.etcd is None:
        raise CaseUnavailableError("; ".join(f"{k}: {v}" for k, v in stores.missing.items()))
    dal = ctx.dal()
    streams = [ctx.key_stream(salt=3) for _ in range(3)]
    contenders = [
        Contender("kv.get.dal", "`ConfigDAL.get` (PostgreSQL)", lambda: dal.get(next(streams[0]))),
    ]
    if stores.redis is not None:
        rget = stores.redis.get
        contenders.append(
            Contender("kv.get.redis", "Redis `GET` (redis-py)", lambda: rget(next(streams[1])),
                      anchor="kv.get.dal")
        )  # fmt: skip
    if stores.etcd is not None:
        eget = stores.etcd.get
        contenders.append(
            Contender("kv.get.etcd", "etcd range (v3 JSON gateway, http.client keep-alive)",
                      lambda: eget(next(streams[2])), anchor="kv.get.dal")
        )  # fmt: skip
    return Comparison(
        "kv_get",
        "Reads: `ConfigDAL.get` vs Redis GET vs etcd get (same keys, same JSON values)",
        contenders,
        ops=ctx.ops(1000, 30),
        missing=stores.missing,
        note="Ratios are to `ConfigDAL.get` (below 1: faster than ours). Redis and etcd return "
        "the JSON text; the DAL returns the decoded, typed value.",
    )


def kv_set(ctx: Context) -> Comparison:
    """``ConfigDAL.set`` next to Redis SET (in memory, and fsync'd) and etcd put."""
    stores = _kv_stores(ctx, durable_redis=True)
    if stores.redis is None and stores.etcd is None:
        raise CaseUnavailableError("; ".join(f"{k}: {v}" for k, v in stores.missing.items()))
    dal = ctx.dal()
    streams = [_write_keys(ctx, salt=10 + i) for i in range(4)]
    counter = itertools.count()

    def value() -> str:
        return f"value-{next(counter)}"

    contenders = [
        Contender("kv.set.dal", "`ConfigDAL.set` (durable commit + history)",
                  lambda: dal.set(next(streams[0]), value(), updated_by="benchmarks")),
    ]  # fmt: skip
    if stores.redis is not None:
        rset, dset = stores.redis.set, stores.redis_fsync.set
        contenders += [
            Contender("kv.set.redis", "Redis `SET`, no persistence",
                      lambda: rset(next(streams[1]), json.dumps(value())), anchor="kv.set.dal"),
            Contender("kv.set.redis_fsync", "Redis `SET`, `appendfsync always`",
                      lambda: dset(next(streams[2]), json.dumps(value())), anchor="kv.set.dal"),
        ]  # fmt: skip
    if stores.etcd is not None:
        eput = stores.etcd.put
        contenders.append(
            Contender("kv.set.etcd", "etcd put (fsync'd raft log, JSON gateway)",
                      lambda: eput(next(streams[3]), json.dumps(value())), anchor="kv.set.dal")
        )  # fmt: skip
    return Comparison(
        "kv_set",
        "Writes: `ConfigDAL.set` vs Redis SET vs etcd put",
        contenders,
        ops=ctx.ops(200, 10),
        missing=stores.missing,
        note="PostgreSQL and etcd fsync every write before answering; Redis only with "
        "`appendfsync always`. Ratios are to `ConfigDAL.set`.",
    )


# -- the C client limit ------------------------------------------------------------------


def pgbench_limit(ctx: Context) -> Comparison:
    """``pgbench -S -M prepared`` (C, libpq) as the limit of a one-client single-row read."""
    if ctx.target.pgbench is None:
        raise CaseUnavailableError("no pgbench binary next to the PostgreSQL binaries")
    database = ctx.stack.enter_context(pgbench_database(ctx.dsn))
    pgbench = Pgbench(ctx.target.pgbench, ctx.target.program_env, database)
    pgbench.initialize(scale=1)
    dal, conn = ctx.dal(), ctx.raw()
    keys_a, keys_b = ctx.key_stream(), ctx.key_stream()
    ops = ctx.ops(2000, 50)
    ctx.facts["pgbench"] = (
        f"`{pgbench.command(ops)}` after `pgbench -i -s 1` into a separate database on the "
        "same server"
    )

    def run_pgbench(n: int) -> BlockSample:
        return pgbench.select_only(n)

    return Comparison(
        "pgbench",
        "The C-client limit: `pgbench -S -M prepared`, one client",
        [
            Contender(
                "pgbench.pgbench",
                "`pgbench -S -c1 -M prepared` (C, libpq)",
                block=run_pgbench,
                cpu="none",
            ),
            Contender(
                "pgbench.raw",
                "raw psycopg prepared SELECT",
                lambda: conn.execute(GET_SQL, (next(keys_b),), prepare=True).fetchone(),
                anchor="pgbench.pgbench",
            ),
            Contender(
                "pgbench.dal",
                "`ConfigDAL.get`",
                lambda: dal.get(next(keys_a)),
                anchor="pgbench.pgbench",
            ),
        ],
        ops=ops,
        warmup_ops=min(ops, 200),
        note="pgbench is a separate program, so here whole blocks of the round's operations "
        "alternate (ABC, rotated each round) instead of single operations. Its latencies "
        "come from its per-transaction log (µs resolution), its busy time from its tps "
        "(connection time excluded); its CPU is not ours to count.",
    )


# -- the command line --------------------------------------------------------------------


def _cli_argv() -> list[str]:
    script = Path(sys.executable).with_name("amira-config")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "amira_data_access.cli"]


def cli_get(ctx: Context) -> Comparison:
    """``amira-config get KEY`` as a fresh process vs ``psql -c "SELECT …"``."""
    psql = ctx.target.psql or (Path(found) if (found := shutil.which("psql")) else None)
    if psql is None:
        raise CaseUnavailableError("no psql binary (PostgreSQL's client programs)")
    params = conninfo_to_dict(ctx.dsn)
    password = params.pop("password", None)
    conninfo = make_conninfo("", **{k: v for k, v in params.items() if v is not None})
    psql_env = dict(ctx.target.program_env)
    if password:
        psql_env["PGPASSWORD"] = str(password)
    # The DSN goes by environment, not argv, where any `ps` would show its password.
    cli_env = {k: v for k, v in os.environ.items() if not k.startswith(("AMIRA_", "DB_"))}
    cli_env["AMIRA_CONFIG_DSN"] = ctx.dsn
    # With PYTHONDONTWRITEBYTECODE set (some sandboxes and CI images set it), every start
    # compiles every module of ours again, as no installed copy does: the case runs with
    # bytecode caching, as a user's install has (the warm-up run writes the caches).
    bytecode_env = cli_env.pop("PYTHONDONTWRITEBYTECODE", None)
    cli = _cli_argv()
    keys_a, keys_b = ctx.key_stream(salt=5), ctx.key_stream(salt=5)

    def run(argv: list[str], env: dict[str, str]) -> object:
        result = subprocess.run(argv, env=env, capture_output=True, timeout=60, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed: {result.stderr.decode()[-300:]}")
        return result.stdout

    def amira_config() -> object:
        return run([*cli, "get", next(keys_a)], cli_env)

    def psql_select() -> object:
        key = next(keys_b).replace("'", "''")
        query = (
            "SELECT key, value, data_type, description, version, created_at, updated_at,"
            f" updated_by FROM amira_config.configurations WHERE key = '{key}'"
        )
        return run([str(psql), "-X", "-q", "-A", "-t", "-c", query, conninfo], psql_env)

    return Comparison(
        "cli",
        "The command line: `amira-config get KEY` (a fresh process) vs `psql -c`",
        [
            Contender("cli.psql", '`psql -X -A -t -c "SELECT …"`', psql_select, cpu="children"),
            Contender(
                "cli.amira_config",
                "`amira-config get KEY` (server running, DSN by env, bytecode cached)",
                amira_config,
                anchor="cli.psql",
                cpu="children",
            ),
        ],
        ops=ctx.ops(3, 1),
        warmup_ops=1,
        note="End to end: process start, imports, connect, query, print, exit. CPU is the "
        "child process's (`getrusage(RUSAGE_CHILDREN)`), user + system. The command runs with "
        "Python's bytecode cache, as an installed copy does"
        + (
            f" (this environment's PYTHONDONTWRITEBYTECODE={bytecode_env} is not passed on: "
            "with it every start compiles the library again)."
            if bytecode_env is not None
            else "."
        ),
    )


COMPARISONS: tuple[tuple[str, Callable[[Context], Comparison]], ...] = (
    ("get", get_vs_raw),
    ("ladder", get_ladder),
    ("connect", connect_per_call),
    ("get_many", get_many),
    ("async", async_get),
    ("cache", cached_get),
    ("propagation", propagation),
    ("set", set_vs_upsert),
    ("set_many", set_many),
    ("kv_get", kv_get),
    ("kv_set", kv_set),
    ("pgbench", pgbench_limit),
    ("cli", cli_get),
)
