"""ConfigDAL: the facade services use to read and change their configuration."""

from __future__ import annotations

import math
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any, Self

import psycopg
from psycopg_pool import ConnectionPool

from . import migrations
from ._operations import Operation, delete_params, list_params, set_params, value_from_row
from .codec import validate_key
from .entries import ConfigEntry, entry_from_row
from .errors import ConfigurationAccessError, DatabaseConnectionError
from .queries import config_queries
from .settings import conninfo_from_env, parse_dsn

__all__ = ["ConfigDAL"]

APPLICATION_NAME = "amira-data-access"
# ``list`` is also a method name inside the class: spell the types out here.
_EntryList = list[ConfigEntry]
_MigrationList = list[migrations.Migration]


class _IdleConnectionCheck:
    """Pool ``check`` callback: ping a connection before reuse if it sat idle a while.

    A connection the server dropped (restart, failover, idle timeout) while it
    waited in the pool is caught by ``ConnectionPool.check_connection`` and
    replaced instead of failing the caller's query. Pinging on *every* checkout
    would cost a second round trip per call and halve throughput (measured), for
    no gain on a connection used a moment ago: so only idle ones are pinged.
    """

    __slots__ = ("_idle_seconds", "_last_checkout")

    def __init__(self, idle_seconds: float) -> None:
        self._idle_seconds = idle_seconds
        self._last_checkout: weakref.WeakKeyDictionary[psycopg.Connection[Any], float] = (
            weakref.WeakKeyDictionary()
        )

    def __call__(self, conn: psycopg.Connection[Any]) -> None:
        now = time.monotonic()
        last = self._last_checkout.get(conn)
        self._last_checkout[conn] = now
        if last is None or now - last >= self._idle_seconds:
            ConnectionPool.check_connection(conn)


class ConfigDAL:
    """Typed, audited access to ``amira_config.configurations`` over a connection pool.

    The pool opens on first use (or :meth:`open`) and is closed by :meth:`close`
    or by leaving a ``with`` block. A pooled connection idle for
    ``check_after_idle`` seconds or more is pinged before reuse and replaced if
    the server dropped it. Statements run in autocommit: each call is one
    statement, so a transaction around it would only add two round trips. All
    methods are safe to call from several threads.

    Every failure is a :class:`~amira_data_access.errors.ConfigurationAccessError`;
    bad input raises :class:`~amira_data_access.errors.InvalidConfigurationError`
    before any SQL runs.
    """

    def __init__(
        self,
        dsn: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        connect_timeout: float = 5.0,
        check_after_idle: float = 1.0,
        application_name: str = APPLICATION_NAME,
    ) -> None:
        if not 0 <= min_size <= max_size or max_size < 1:
            raise ValueError(
                f"need 0 <= min_size <= max_size and max_size >= 1, got {min_size}, {max_size}"
            )
        if connect_timeout <= 0:
            raise ValueError("connect_timeout must be positive")
        if check_after_idle < 0:
            raise ValueError("check_after_idle must be >= 0 (0 pings at every checkout)")
        self._dsn = parse_dsn(dsn)
        self._connect_timeout = connect_timeout
        self._connect_kwargs: dict[str, Any] = {
            "autocommit": True,
            # libpq takes whole seconds and treats anything below 2 as 2.
            "connect_timeout": max(2, math.ceil(connect_timeout)),
            "application_name": application_name,
        }
        self._pool = ConnectionPool(
            self._dsn.conninfo,
            min_size=min_size,
            max_size=max_size,
            kwargs=self._connect_kwargs,
            open=False,
            check=_IdleConnectionCheck(check_after_idle),
            timeout=connect_timeout,
            name="amira-config",
        )
        self._queries = config_queries()
        self._open_lock = threading.Lock()
        self._opened = False
        self._closed = False

    @classmethod
    def from_env(cls, **options: Any) -> Self:
        """A DAL for the database named by the environment (``AMIRA_CONFIG_DSN`` or ``DB_*``)."""
        return cls(conninfo_from_env(), **options)

    @property
    def target(self) -> str:
        """Which server and database this DAL uses, without the password (for logs and CLIs)."""
        return self._dsn.description

    # -- lifecycle -----------------------------------------------------------------

    def open(self) -> None:
        """Connect now instead of on first use; raises DatabaseConnectionError if impossible."""
        with self._open_lock:
            if self._closed:
                raise DatabaseConnectionError("this ConfigDAL is closed")
            if self._opened:
                return
            operation = Operation("config.open")
            # One direct connection first: the pool only reports "timed out", while
            # this says why (refused, wrong password, unknown database) at once.
            try:
                psycopg.connect(self._dsn.conninfo, **self._connect_kwargs).close()
                self._pool.open(wait=True, timeout=self._connect_timeout)
            except psycopg.Error as exc:
                raise operation.failed(exc, self._dsn.secrets) from exc
            self._opened = True
            operation.done(target=self.target, level="info")

    def close(self) -> None:
        """Close the pool and its connections; the DAL cannot be used afterwards."""
        with self._open_lock:
            self._closed = True
            self._pool.close()

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

    @contextmanager
    def _connection(self, operation: Operation) -> Iterator[psycopg.Connection[Any]]:
        if not self._opened:
            self.open()
        try:
            with self._pool.connection() as conn:
                yield conn
        except psycopg.Error as exc:
            raise operation.failed(exc, self._dsn.secrets) from exc

    # -- reads ---------------------------------------------------------------------

    def get(self, key: str, default: Any = None) -> Any:
        """The value of ``key``, or ``default`` when the key does not exist."""
        operation = Operation("config.get", key)
        with operation.validating():
            validate_key(key)
        with self._connection(operation) as conn:
            row = self._queries.get_configuration_value(conn, key=key)
        operation.done("hit" if row is not None else "miss")
        return value_from_row(row, default)

    def get_entry(self, key: str) -> ConfigEntry | None:
        """The whole stored entry of ``key`` (value, type, version, audit fields), or None."""
        operation = Operation("config.get_entry", key)
        with operation.validating():
            validate_key(key)
        with self._connection(operation) as conn:
            row = self._queries.get_configuration(conn, key=key)
        operation.done("hit" if row is not None else "miss")
        return entry_from_row(row) if row is not None else None

    def list(self, prefix: str = "", *, after: str | None = None, limit: int = 100) -> _EntryList:
        """Entries whose key starts with ``prefix``, in key order, at most ``limit``.

        For the next page pass the last key you got as ``after`` (keyset pagination:
        stable while keys are added or removed, and cheap however deep you go).
        """
        operation = Operation("config.list", prefix)
        with operation.validating():
            params = list_params(prefix, after, limit)
        with self._connection(operation) as conn:
            entries = [
                entry_from_row(row) for row in self._queries.list_configurations(conn, **params)
            ]
        operation.done(count=len(entries))
        return entries

    # -- writes --------------------------------------------------------------------

    def set(
        self,
        key: str,
        value: Any,
        *,
        data_type: str | None = None,
        description: str | None = None,
        updated_by: str,
    ) -> ConfigEntry:
        """Create or replace ``key``; return the stored entry (``version`` 1, then +1 per change).

        ``data_type`` (str, int, float, bool, json) is inferred from the value for a
        new key and kept from the stored entry when omitted on an update; the value
        must match it. ``description`` is kept when omitted.
        """
        operation = Operation("config.set", key)
        with operation.validating():
            params = set_params(
                key, value, data_type=data_type, description=description, updated_by=updated_by
            )
        with self._connection(operation) as conn:
            row = self._queries.upsert_configuration(conn, **params)
        if row is None:  # RETURNING always yields the row; guard against a changed query
            raise ConfigurationAccessError(f"config.set {key!r}: the database returned no row")
        entry = entry_from_row(row)
        operation.done(
            level="info", version=entry.version, data_type=entry.data_type, updated_by=updated_by
        )
        return entry

    def delete(self, key: str, *, deleted_by: str) -> bool:
        """Delete ``key``; True if it existed. ``deleted_by`` names who did it (audit)."""
        operation = Operation("config.delete", key)
        with operation.validating():
            params = delete_params(key, deleted_by=deleted_by)
        with self._connection(operation) as conn:
            deleted = self._queries.delete_configuration(conn, **params) > 0
        operation.done("deleted" if deleted else "absent", level="info", deleted_by=deleted_by)
        return deleted

    # -- schema --------------------------------------------------------------------

    def migrate(self) -> _MigrationList:
        """Apply pending migrations (safe from several processes at once); return those applied."""
        return migrations.migrate(self._dsn.conninfo)

    def migration_status(self) -> migrations.MigrationStatus:
        """Applied, pending and changed migrations of this database."""
        return migrations.status(self._dsn.conninfo)
