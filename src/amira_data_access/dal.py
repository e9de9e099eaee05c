"""ConfigDAL: the facade services use to read and change their configuration.

Every operation is described once, without I/O, in :mod:`._calls`; this module
only runs those descriptions on a connection: from the pool with the retry
policy (:class:`ConfigDAL`), or on one connection inside a transaction
(:class:`ConfigTransaction`, from :meth:`ConfigDAL.transaction` or
:meth:`ConfigDAL.bind`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Self, TypeVar

import psycopg
from psycopg_pool import ConnectionPool

from . import _calls as calls
from . import migrations
from ._calls import Call
from ._operations import Operation
from ._retry import NO_RETRY, RetryPolicy
from ._running import Attempts, IdleTracker, Lifecycle, pool_settings, tuple_rows
from .entries import ConfigEntry, ConfigItem, ConfigRevision
from .errors import DatabaseConnectionError
from .queries import config_queries
from .settings import conninfo_from_env

__all__ = ["ConfigDAL", "ConfigTransaction"]

APPLICATION_NAME = "amira-data-access"
T = TypeVar("T")

# ``list`` is also a method name inside the classes: spell the types out here.
_EntryList = list[ConfigEntry]
_RevisionList = list[ConfigRevision]
_MigrationList = list[migrations.Migration]


class _IdleConnectionCheck(IdleTracker):
    """Pool ``check`` callback: ping a connection before reuse if it sat idle a while."""

    __slots__ = ()

    def __call__(self, conn: psycopg.Connection[Any]) -> None:
        if self.due(conn):
            ConnectionPool.check_connection(conn)


class _ConfigOperations:
    """The read and write methods, shared by the DAL and its transactions.

    Subclasses say how a :class:`Call` runs (``_run``); everything else is here.
    """

    _queries: Any
    _secrets: tuple[str, ...]

    def _run(self, call: Call[T]) -> T:
        raise NotImplementedError

    def _send(self, conn: psycopg.Connection[Any], call: Call[Any]) -> Any:
        """Run the call's query on ``conn`` and return its raw result."""
        result = getattr(self._queries, call.query or "")(conn, **call.params)
        return list(result) if call.rows else result

    # -- reads ---------------------------------------------------------------------

    def get(self, key: str, default: Any = None) -> Any:
        """The value of ``key``, or ``default`` when the key does not exist."""
        return self._run(calls.get(key, default))

    def get_entry(self, key: str) -> ConfigEntry | None:
        """The whole stored entry of ``key`` (value, type, version, audit fields), or None."""
        return self._run(calls.get_entry(key))

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """The values of ``keys`` in one round trip; absent keys are left out."""
        return self._run(calls.get_many(keys))

    def list(self, prefix: str = "", *, after: str | None = None, limit: int = 100) -> _EntryList:
        """Entries whose key starts with ``prefix``, in key order, at most ``limit`` (1-1000).

        For the next page pass the last key you got as ``after`` (keyset pagination:
        stable while keys are added or removed, and cheap however deep you go).
        """
        return self._run(calls.list_entries(prefix, after, limit))

    def history(
        self, key: str, *, limit: int = 100, before_version: int | None = None
    ) -> _RevisionList:
        """Changes of ``key``, newest first (deletions included); page with ``before_version``."""
        return self._run(calls.history(key, limit, before_version))

    def get_at(self, key: str, when: datetime) -> Any:
        """The value ``key`` had at instant ``when`` (timezone-aware), None if absent then."""
        return self._run(calls.get_at(key, when))

    def snapshot_at(self, when: datetime, prefix: str = "") -> dict[str, Any]:
        """Every key starting with ``prefix`` as it was at instant ``when``: key -> value."""
        return self._run(calls.snapshot_at(when, prefix))

    # -- writes --------------------------------------------------------------------

    def set(
        self,
        key: str,
        value: Any,
        *,
        data_type: str | None = None,
        description: str | None = None,
        updated_by: str,
        reason: str | None = None,
        expected_version: int | None = None,
    ) -> ConfigEntry:
        """Create or replace ``key``; return the stored entry (``version`` 1, then +1 per change).

        ``data_type`` (str, int, float, bool, json) is inferred from the value for a
        new key and kept from the stored entry when omitted on an update; the value
        must match it. ``description`` is kept when omitted. ``reason`` goes into the
        history. With ``expected_version`` the write happens only if the stored
        version is that one (0: only if the key does not exist yet), else
        :class:`~amira_data_access.errors.ConcurrentModificationError`.
        """
        return self._run(
            calls.set_value(
                key,
                value,
                data_type=data_type,
                description=description,
                updated_by=updated_by,
                reason=reason,
                expected_version=expected_version,
            )
        )

    def set_default(
        self,
        key: str,
        value: Any,
        *,
        data_type: str | None = None,
        description: str | None = None,
        updated_by: str,
    ) -> ConfigEntry:
        """Create ``key`` only if it does not exist; return the stored entry either way.

        Race-free: concurrent callers never overwrite each other or fail.
        """
        return self._run(
            calls.set_default(
                key, value, data_type=data_type, description=description, updated_by=updated_by
            )
        )

    def set_many(
        self,
        items: Mapping[str, Any] | Iterable[ConfigItem],
        *,
        updated_by: str,
        reason: str | None = None,
    ) -> _EntryList:
        """Write many keys at once: all or nothing, one history revision; entries in key order.

        ``items`` maps keys to values (types inferred or kept), or is a sequence of
        :class:`~amira_data_access.entries.ConfigItem` to give types and descriptions.
        """
        return self._run(calls.set_many(items, updated_by=updated_by, reason=reason))

    def delete(
        self,
        key: str,
        *,
        deleted_by: str,
        reason: str | None = None,
        expected_version: int | None = None,
    ) -> bool:
        """Delete ``key``; True if it existed. Its history stays (a ``delete`` revision).

        With ``expected_version`` the key is deleted only at that version, else
        :class:`~amira_data_access.errors.ConcurrentModificationError`.
        """
        return self._run(
            calls.delete(
                key, deleted_by=deleted_by, reason=reason, expected_version=expected_version
            )
        )

    def rollback(
        self, key: str, *, to_version: int, updated_by: str, reason: str | None = None
    ) -> ConfigEntry:
        """Write a new version of ``key`` with the value, type and description of ``to_version``."""
        return self._run(
            calls.rollback(key, to_version=to_version, updated_by=updated_by, reason=reason)
        )


class ConfigTransaction(_ConfigOperations):
    """The DAL's methods on one connection, inside a transaction someone else owns.

    From :meth:`ConfigDAL.transaction` (committed when the block ends, rolled back
    on an exception) or :meth:`ConfigDAL.bind` (your connection, your transaction).
    Nothing is retried here: a failed statement fails the transaction.
    """

    def __init__(self, conn: psycopg.Connection[Any], queries: Any, secrets: tuple[str, ...]):
        self.connection = conn
        self._queries = queries
        self._secrets = secrets

    def _run(self, call: Call[T]) -> T:
        if call.query is None:
            return call.finish(None)
        attempts = Attempts(call, NO_RETRY, self._secrets)
        for _ in attempts:
            with attempts.trying():
                attempts.result = self._send(self.connection, call)
        return attempts.value

    def _send(self, conn: psycopg.Connection[Any], call: Call[Any]) -> Any:
        # The caller's connection may use another row factory; our rows are tuples.
        with tuple_rows(conn):
            return super()._send(conn, call)


class ConfigDAL(_ConfigOperations, Lifecycle):
    """Typed, audited access to ``amira_config.configurations`` over a connection pool.

    The pool opens on first use (or :meth:`open`) and is closed by :meth:`close`
    or by leaving a ``with`` block. A pooled connection idle for
    ``check_after_idle`` seconds or more is pinged before reuse and replaced if
    the server dropped it. Each call is one statement run in autocommit: a
    transaction around it would only add round trips. Transient failures are
    retried per ``retry`` (see :mod:`amira_data_access._retry`). Thread-safe.

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
        retry: RetryPolicy | None = None,
        application_name: str = APPLICATION_NAME,
    ) -> None:
        settings = pool_settings(
            dsn,
            min_size=min_size,
            max_size=max_size,
            connect_timeout=connect_timeout,
            check_after_idle=check_after_idle,
            retry=retry,
            application_name=application_name,
        )
        self._conninfo = settings.conninfo
        self._description = settings.description
        self._secrets = settings.secrets
        self._retry = settings.retry
        self._connect_timeout = connect_timeout
        self._connect_kwargs = settings.connect_kwargs
        self._pool = ConnectionPool(
            **settings.pool_kwargs, check=_IdleConnectionCheck(check_after_idle)
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
        return self._description

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
                psycopg.connect(self._conninfo, **self._connect_kwargs).close()
                self._pool.open(wait=True, timeout=self._connect_timeout)
            except psycopg.Error as exc:
                raise operation.failed(exc, self._secrets) from exc
            self._opened = True
            operation.done(target=self.target, level="info")

    def close(self) -> None:
        """Close the pool and its connections; the DAL cannot be used afterwards."""
        with self._open_lock:
            self._closed = True
            self._pool.close()

    # -- running calls ---------------------------------------------------------------

    def _run(self, call: Call[T]) -> T:
        if call.query is None:
            return call.finish(None)
        if not self._opened:
            self.open()
        attempts = Attempts(call, self._retry, self._secrets)
        for delay in attempts:
            if delay:
                time.sleep(delay)
            with attempts.trying(), self._pool.connection() as conn:
                attempts.result = self._send(conn, call)
        return attempts.value

    # -- transactions ----------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[ConfigTransaction]:
        """Run several operations in one database transaction::

            with dal.transaction() as tx:
                tx.set("a", 1, updated_by="ops")
                tx.delete("b", deleted_by="ops")

        Committed when the block ends, rolled back if it raises; all changes share
        one history revision. Not retried (a transaction is not safe to replay
        behind your back).
        """
        if not self._opened:
            self.open()
        operation = Operation("config.transaction")
        try:
            with self._pool.connection() as conn, conn.transaction():
                yield ConfigTransaction(conn, self._queries, self._secrets)
        except psycopg.Error as exc:
            raise operation.failed(exc, self._secrets) from exc
        operation.done(level="info")

    def bind(self, conn: psycopg.Connection[Any]) -> ConfigTransaction:
        """The DAL's methods on *your* connection, inside *your* transaction.

        Use it to change configuration atomically with your own data; you commit
        or roll back. The connection must reach a database with the schema.
        """
        return ConfigTransaction(conn, self._queries, self._secrets)

    # -- schema --------------------------------------------------------------------

    def migrate(self) -> _MigrationList:
        """Apply pending migrations (safe from several processes at once); return those applied."""
        return migrations.migrate(self._conninfo)

    def migration_status(self) -> migrations.MigrationStatus:
        """Applied, pending and changed migrations of this database."""
        return migrations.status(self._conninfo)
