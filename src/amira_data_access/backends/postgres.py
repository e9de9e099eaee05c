"""The PostgreSQL backend: the named SQL loaded with aiosql, and how pools connect.

Loaded once per process: parsing the SQL per call would cost more than the
query. The configuration queries are checked against
:class:`~amira_data_access.core.statements.Statements` when first loaded, so a
renamed query or parameter fails at start-up. Rows are tuples in the column
order of the SQL.

jsonb is decoded by psycopg, row by row, inside the fetch: a value Python
cannot decode (nested too deeply for the call stack, a number of too many
digits) would raise there, a raw ``RecursionError`` failing the whole result
and naming no key. Every connection of a DAL therefore reads json and jsonb
through :func:`~amira_data_access.codec.read_json` (:data:`STORED_JSON`, the
``context`` of every connection), and so does a caller's connection while our
statements run on it (:func:`our_rows`): such a value becomes a marker that the
operation reports as an error naming its key.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Final

import aiosql
import psycopg
from aiosql.query_loader import QueryLoader
from aiosql.types import QueryDatum
from psycopg import pq
from psycopg.adapt import AdaptersMap
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import tuple_row
from psycopg.types.json import set_json_loads

from .._resources import sql_dir
from ..codec import read_json
from ..core.retry import RetryPolicy
from ..core.statements import checked_queries
from ..settings import parse_dsn

__all__ = [
    "APPLICATION_NAME",
    "STORED_JSON",
    "IdleTracker",
    "PoolSettings",
    "Timeouts",
    "async_queries",
    "load_queries",
    "our_rows",
    "pool_settings",
    "sync_queries",
    "write_slots",
]

APPLICATION_NAME: Final = "amira-data-access"
POOL_NAME: Final = "amira-config"


def _stored_json_adapters() -> AdaptersMap:
    adapters = AdaptersMap(psycopg.adapters)
    set_json_loads(read_json, adapters)
    return adapters


# The adapters of every connection a DAL opens: psycopg's, but json and jsonb read by
# read_json (a marker for what Python cannot decode, instead of an exception mid-fetch).
STORED_JSON: Final = _stored_json_adapters()
_JSON_LOADERS: Final = tuple(
    (oid, loader)
    for oid in (psycopg.adapters.types["json"].oid, psycopg.adapters.types["jsonb"].oid)
    for fmt in (pq.Format.TEXT, pq.Format.BINARY)
    if (loader := STORED_JSON.get_loader(oid, fmt)) is not None
)


# aiosql's name line (``-- name: get-configuration(key)^``), as its loader splits on it.
_QUERY_DEF: Final = re.compile(r"--\s*name\s*:\s*")


class _QueryLoader(QueryLoader):
    """aiosql's loader, without its scan for ``/* … */`` comments in a text that has none.

    That scan (``_remove_ml_comments``) matches once per character: ~30 ms for
    ``queries/``, most of what loading costs, paid by every process at start-up
    (``amira-config get`` included). A text without ``/*`` has nothing for it to
    remove, so it is skipped and the rest is aiosql's own steps; a text with one
    goes through aiosql unchanged.
    """

    def load_query_data_from_sql(
        self, sql: str, ns_parts: list[str], fname: Path | str = "<unknown>"
    ) -> list[QueryDatum]:
        if "/*" in sql:
            return list(super().load_query_data_from_sql(sql, ns_parts, fname))
        definitions = _QUERY_DEF.split(sql)
        lineno = 1 + definitions[0].count("\n")
        data = []
        for definition in definitions[1:]:  # what precedes the first name line is not a query
            data.append(self._make_query_datum(definition, ns_parts, (fname, lineno)))
            lineno += definition.count("\n")
        return data


def load_queries(adapter: str = "psycopg") -> Any:
    """Every named query of ``queries/`` on aiosql's ``adapter`` (``psycopg`` or ``apsycopg``).

    Parsed once per process and adapter: ``load_queries()`` and
    ``load_queries("psycopg")`` are the same object (a cache keyed on the
    arguments as written parsed the files twice).
    """
    return _load_queries(adapter)


@cache
def _load_queries(adapter: str) -> Any:
    return aiosql.from_path(sql_dir("queries"), adapter, loader_cls=_QueryLoader)


def sync_queries() -> Any:
    """The configuration queries for ``psycopg.Connection``, checked against Statements."""
    return _checked("psycopg")


def async_queries() -> Any:
    """The same queries for ``psycopg.AsyncConnection`` (aiosql's ``apsycopg``).

    Each is a coroutine function, except a SELECT without suffix (many rows),
    which is an *async generator* to iterate, like the sync one is a generator.
    """
    return _checked("apsycopg")


@cache
def _checked(adapter: str) -> Any:
    return checked_queries(load_queries(adapter))


@dataclass(frozen=True, slots=True)
class Timeouts:
    """How long the server lets a DAL's statements run and wait, in seconds (0: no limit).

    Applied to every connection the DAL opens (libpq ``options``, so no extra round
    trip). Without them one session holding ``SELECT … FOR UPDATE`` blocked writers
    for as long as it held the lock, and once blocked writers filled the pool,
    reads of other keys failed too.

    * ``statement``: ``statement_timeout``, the longest any one statement may run;
    * ``lock``: ``lock_timeout``, the longest a write waits for a row another
      transaction holds (then ``DatabaseTimeoutError`` naming the key);
    * ``idle_in_transaction``: ``idle_in_transaction_session_timeout``, how long a
      ``transaction()`` block may sit between statements before the server ends it.
    """

    statement: float = 10.0
    lock: float = 2.0
    idle_in_transaction: float = 30.0

    def __post_init__(self) -> None:
        for name in ("statement", "lock", "idle_in_transaction"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ValueError(f"Timeouts.{name} must be a number of seconds >= 0")

    def options(self) -> str:
        """The libpq ``options`` that set them (milliseconds)."""
        settings = {
            "statement_timeout": self.statement,
            "lock_timeout": self.lock,
            "idle_in_transaction_session_timeout": self.idle_in_transaction,
        }
        return " ".join(f"-c {name}={round(seconds * 1000)}" for name, seconds in settings.items())


@dataclass(frozen=True, slots=True)
class PoolSettings:
    """A DAL's validated options: where to connect, how, and the pool's arguments."""

    conninfo: str
    description: str  # for logs: no password
    secrets: tuple[str, ...]
    retry: RetryPolicy
    connect_timeout: float
    check_after_idle: float
    timeouts: Timeouts
    max_size: int
    connect_kwargs: dict[str, Any]  # of every connection, pooled or not
    pool_kwargs: dict[str, Any]  # of ConnectionPool / AsyncConnectionPool, but ``check``


def pool_settings(
    dsn: str,
    *,
    min_size: int,
    max_size: int,
    connect_timeout: float,
    check_after_idle: float,
    retry: RetryPolicy | None,
    application_name: str,
    timeouts: Timeouts | None = None,
    max_idle: float = 600.0,
) -> PoolSettings:
    """Validate a DAL's constructor options (ValueError) and derive its settings."""
    if not 0 <= min_size <= max_size or max_size < 1:
        raise ValueError(
            f"need 0 <= min_size <= max_size and max_size >= 1, got {min_size}, {max_size}"
        )
    if connect_timeout <= 0:
        raise ValueError("connect_timeout must be positive")
    if check_after_idle < 0:
        raise ValueError("check_after_idle must be >= 0 (0 pings at every checkout)")
    if isinstance(max_idle, bool) or not isinstance(max_idle, int | float) or max_idle <= 0:
        raise ValueError("max_idle must be a positive number of seconds")
    if timeouts is not None and not isinstance(timeouts, Timeouts):
        raise ValueError("timeouts must be a Timeouts(...)")
    timeouts = timeouts or Timeouts()
    parsed = parse_dsn(dsn)
    # The DSN's own options come last, so a setting it names wins over our default.
    given_options = str(conninfo_to_dict(parsed.conninfo).get("options") or "")
    connect_kwargs: dict[str, Any] = {
        "autocommit": True,
        # libpq takes whole seconds and treats anything below 2 as 2.
        "connect_timeout": max(2, math.ceil(connect_timeout)),
        "application_name": application_name,
        "options": f"{timeouts.options()} {given_options}".strip(),
        "context": STORED_JSON,  # json and jsonb through read_json (see the module docstring)
    }
    return PoolSettings(
        conninfo=parsed.conninfo,
        description=parsed.description,
        secrets=parsed.secrets,
        retry=retry or RetryPolicy(),
        connect_timeout=connect_timeout,
        check_after_idle=check_after_idle,
        timeouts=timeouts,
        max_size=max_size,
        connect_kwargs=connect_kwargs,
        pool_kwargs={
            "conninfo": parsed.conninfo,
            "min_size": min_size,
            "max_size": max_size,
            "kwargs": connect_kwargs,
            "open": False,  # opened by the DAL, after a direct connection says why it fails
            "timeout": connect_timeout,
            "max_idle": float(max_idle),  # connections above min_size idle this long close
            "name": POOL_NAME,
        },
    )


_LAST_CHECKOUT: Final = "_amira_last_checkout"


class IdleTracker:
    """Whether a pooled connection sat idle long enough to be pinged before reuse.

    A connection the server dropped (restart, failover, idle timeout) while it
    waited in the pool is caught by the pool's ``check_connection`` and
    replaced instead of failing the caller's query. Pinging on *every* checkout
    would cost a second round trip per call and halve throughput (measured), for
    no gain on a connection used a moment ago: so only idle ones are pinged.
    """

    __slots__ = ("_idle_seconds",)

    def __init__(self, idle_seconds: float) -> None:
        self._idle_seconds = idle_seconds

    def due(self, conn: object) -> bool:
        """Record a checkout of ``conn``; True if it must be pinged first."""
        # The time lives on the connection itself (as psycopg_pool's own _expire_at
        # does): a WeakKeyDictionary made a weakref per checkout, ~10 µs measured.
        now = time.monotonic()
        last: float | None = getattr(conn, _LAST_CHECKOUT, None)
        setattr(conn, _LAST_CHECKOUT, now)
        return last is None or now - last >= self._idle_seconds


def write_slots(max_size: int) -> int:
    """How many writes (and transactions) may hold pooled connections at once.

    A quarter of the pool (at least one connection) stays for reads: writers waiting
    on a row lock can then never starve reads of other keys.
    """
    reserved = max(1, max_size // 4) if max_size > 1 else 0
    return max_size - reserved


@contextmanager
def our_rows(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> Iterator[None]:
    """Read our rows on a caller's connection, whatever its row factory and its json
    loaders: tuples, and json/jsonb through read_json; both restored afterwards."""
    factory = conn.row_factory
    adapters = conn.adapters
    theirs = [
        (oid, loader, adapters.get_loader(oid, loader.format)) for oid, loader in _JSON_LOADERS
    ]
    swapped = [(oid, found) for oid, ours, found in theirs if found is not ours]
    for oid, ours, found in theirs:
        if found is not ours:
            adapters.register_loader(oid, ours)
    if factory is not tuple_row:
        conn.row_factory = tuple_row
    try:
        yield
    finally:
        conn.row_factory = factory
        for oid, found in swapped:
            if found is not None:
                adapters.register_loader(oid, found)
