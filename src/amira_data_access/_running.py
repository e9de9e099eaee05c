"""How a :class:`~._calls.Call` is run, without the I/O: shared by the sync and async DALs.

The DALs differ only in ``with`` versus ``async with`` and ``time.sleep`` versus
``asyncio.sleep``; everything they decide (pool options, when a pooled
connection is pinged, which failures are retried, when a statement is run
again, what is logged) lives here once.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

import psycopg
from psycopg.rows import tuple_row

from ._calls import Call, RetryStatement
from ._retry import RetryPolicy
from .errors import ConfigurationAccessError, scrub
from .logging import get_logger
from .settings import parse_dsn

__all__ = [
    "AsyncLifecycle",
    "Attempts",
    "IdleTracker",
    "Lifecycle",
    "PoolSettings",
    "pool_settings",
    "tuple_rows",
]

T = TypeVar("T")

MAX_STATEMENT_REPEATS = 3  # RetryStatement: a concurrent insert not yet visible
POOL_NAME = "amira-config"


@dataclass(frozen=True, slots=True)
class PoolSettings:
    """A DAL's validated options: where to connect, how, and the pool's arguments."""

    conninfo: str
    description: str  # for logs: no password
    secrets: tuple[str, ...]
    retry: RetryPolicy
    connect_timeout: float
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
    parsed = parse_dsn(dsn)
    connect_kwargs: dict[str, Any] = {
        "autocommit": True,
        # libpq takes whole seconds and treats anything below 2 as 2.
        "connect_timeout": max(2, math.ceil(connect_timeout)),
        "application_name": application_name,
    }
    return PoolSettings(
        conninfo=parsed.conninfo,
        description=parsed.description,
        secrets=parsed.secrets,
        retry=retry or RetryPolicy(),
        connect_timeout=connect_timeout,
        connect_kwargs=connect_kwargs,
        pool_kwargs={
            "conninfo": parsed.conninfo,
            "min_size": min_size,
            "max_size": max_size,
            "kwargs": connect_kwargs,
            "open": False,  # opened by the DAL, after a direct connection says why it fails
            "timeout": connect_timeout,
            "name": POOL_NAME,
        },
    )


class Lifecycle:
    """``with store:`` opens the store and closes it at the end of the block."""

    def open(self) -> None:
        """Get ready (connect); subclasses say how."""
        raise NotImplementedError

    def close(self) -> None:
        """Release everything; subclasses say how."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class AsyncLifecycle:
    """``async with store:`` opens the store and closes it at the end of the block."""

    async def open(self) -> None:
        """Get ready (connect); subclasses say how."""
        raise NotImplementedError

    async def close(self) -> None:
        """Release everything; subclasses say how."""
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()


_LAST_CHECKOUT = "_amira_last_checkout"


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


@contextmanager
def tuple_rows(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> Iterator[None]:
    """Read tuples on a caller's connection, whatever its row factory, and restore it."""
    factory = conn.row_factory
    if factory is tuple_row:
        yield
        return
    conn.row_factory = tuple_row
    try:
        yield
    finally:
        conn.row_factory = factory


class Attempts(Generic[T]):
    """The attempts of one call: the DAL sends the query, this decides everything else.

    Iterating gives the seconds to wait before each attempt (0 for the first);
    the DAL runs the query inside :meth:`trying` and stores the raw result in
    :attr:`result`; after the loop, :attr:`value` is the call's answer::

        attempts = Attempts(call, policy, secrets)
        for delay in attempts:
            if delay:
                time.sleep(delay)
            with attempts.trying(), pool.connection() as conn:
                attempts.result = send(conn, call)
        return attempts.value

    A failed attempt is retried as ``policy`` allows (see :mod:`._retry`) and
    logged (``outcome="retry"``); a result the call rejects with
    :class:`~._calls.RetryStatement` is run again at once, a few times at most.
    Every other failure leaves the loop translated (``Operation.failed``).
    """

    __slots__ = ("_attempt", "_call", "_failed", "_policy", "_secrets", "result", "value")

    def __init__(self, call: Call[T], policy: RetryPolicy, secrets: tuple[str, ...]) -> None:
        self._call = call
        self._policy = policy
        self._secrets = secrets
        self._attempt = 1
        self._failed = False
        self.result: Any = None
        self.value: T

    def __iter__(self) -> Iterator[float]:
        call = self._call
        delay = 0.0
        while True:
            self._failed = False
            yield delay
            if self._failed:
                delay = self._policy.delay(self._attempt)
            else:
                try:
                    self.value = call.finish(self.result)
                except RetryStatement:
                    if self._attempt >= MAX_STATEMENT_REPEATS:
                        raise call.operation.failed(_gave_up(call)) from None
                    delay = 0.0
                else:
                    return
            self._attempt += 1

    @contextmanager
    def trying(self) -> Iterator[None]:
        """Around one attempt's I/O: a retryable driver error is logged and swallowed."""
        try:
            yield
        except psycopg.Error as exc:
            call = self._call
            if not self._policy.should_retry(
                exc, attempt=self._attempt, idempotent=call.idempotent
            ):
                raise call.operation.failed(exc, self._secrets) from exc
            _log_retry(call, exc, self._attempt, self._secrets)
            self._failed = True


def _gave_up(call: Call[Any]) -> ConfigurationAccessError:
    return ConfigurationAccessError(
        f"{call.operation.name} {call.operation.key!r}: the row changed under every attempt"
    )


def _log_retry(call: Call[Any], exc: BaseException, attempt: int, secrets: tuple[str, ...]) -> None:
    message = str(exc).strip()
    get_logger().warning(
        call.operation.name,
        key=call.operation.key,
        outcome="retry",
        attempt=attempt,
        sqlstate=getattr(exc, "sqlstate", None),
        error=scrub(message.splitlines()[0], secrets) if message else type(exc).__name__,
    )
