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
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Self, TypeVar

import psycopg
from psycopg_pool import ConnectionPool

from . import _calls as calls
from ._calls import Call
from ._operations import Operation, set_params
from ._retry import NO_RETRY, RetryPolicy
from ._running import Attempts, IdleTracker, Lifecycle, pool_settings, tuple_rows
from .codec import validate_prefix
from .entries import ConfigChange, ConfigEntry, ConfigItem, ConfigRevision
from .errors import ConfigurationAccessError, DatabaseConnectionError, scrub
from .queries import change_queries, config_queries
from .settings import conninfo_from_env
from .watch import ChangeFeed, ChangeStream, Subscription, listener_feed

if TYPE_CHECKING:
    # Imported where used at run time: this module is imported by the package, and
    # an eager import would make `python -m amira_data_access.migrations` warn.
    from . import migrations
__all__ = ["ConfigDAL", "ConfigTransaction", "Health"]

APPLICATION_NAME = "amira-data-access"
T = TypeVar("T")
_UNSET: Any = object()  # "no default passed" (None is a valid default)

# ``list`` is also a method name inside the classes: spell the types out here.
_EntryList = list[ConfigEntry]
_RevisionList = list[ConfigRevision]
_MigrationList = list["migrations.Migration"]


@dataclass(frozen=True, slots=True)
class Health:
    """What :meth:`ConfigDAL.health` found (None: not applicable / not known)."""

    reachable: bool
    latency_ms: float
    server_version: str | None
    schema_up_to_date: bool
    pool: dict[str, int]
    listener_connected: bool | None  # None: no change feed in use
    cache_size: int | None  # None: no cache
    cache_age_seconds: float | None  # since the cache's feed last (re)synchronised
    error: str | None = None


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
        self._feed: ChangeFeed | None = None
        self._defaults: dict[str, Any] = {}

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
        """Close the pool, the change feed and their connections; the DAL cannot be used again."""
        with self._open_lock:
            self._closed = True
            feed, self._feed = self._feed, None
        if feed is not None:
            feed.close()
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

    # -- defaults --------------------------------------------------------------------

    def get(self, key: str, default: Any = _UNSET) -> Any:
        """The value of ``key``; when absent, ``default`` if given, else its registered default.

        (See :meth:`register_defaults`; with neither, None.)
        """
        if default is _UNSET:
            default = self._defaults.get(key)
        return super().get(key, default)

    def register_defaults(self, defaults: Mapping[str, Any]) -> None:
        """Values :meth:`get` returns for absent keys (in-process only; see ensure_defaults)."""
        for key, value in defaults.items():
            set_params(key, value, data_type=None, description=None, updated_by="-")  # validate
        self._defaults = {**self._defaults, **defaults}

    def ensure_defaults(self, *, updated_by: str) -> _EntryList:
        """Write each registered default whose key is absent (race-free); return stored entries."""
        return [
            self.set_default(key, value, updated_by=updated_by)
            for key, value in self._defaults.items()
        ]

    # -- change feed -----------------------------------------------------------------

    def _live_change_feed(self) -> ChangeFeed:
        """The feed, waited for (up to connect_timeout) so changes after this call are seen."""
        feed = self._change_feed()
        feed.wait_connected(self._connect_timeout)
        return feed

    def _change_feed(self) -> ChangeFeed:
        with self._open_lock:
            if self._closed:
                raise DatabaseConnectionError("this ConfigDAL is closed")
            if self._feed is None:
                self._feed = listener_feed(self._conninfo, self._connect_kwargs)
            return self._feed

    def watch(self, prefix: str = "") -> ChangeStream:
        """An iterator of committed changes to keys starting with ``prefix``::

            with dal.watch("amira.chat.") as changes:
                for change in changes:
                    print(change.key, change.version, change.operation)

        Changes made by any process, and by raw SQL, are seen: every change
        committed after this call returns (if the server is unreachable now, after
        the listener first connects). The listener reconnects by itself and
        re-reads from the history what it missed meanwhile.
        """
        validate_prefix(prefix)
        stream = ChangeStream(self._change_feed(), prefix)
        self._live_change_feed()
        return stream

    def subscribe(self, callback: Callable[[ConfigChange], None], prefix: str = "") -> Subscription:
        """Call ``callback(change)`` on the listener thread for each change under ``prefix``.

        Keep callbacks short (they run one after another); an exception in one is
        logged and does not stop the others. ``close()`` the result to unsubscribe.
        """
        validate_prefix(prefix)
        subscription = self._change_feed().subscribe(callback, prefix)
        self._live_change_feed()
        return subscription

    # -- health ----------------------------------------------------------------------

    def health(self) -> Health:
        """Reachability, latency, server version, schema state, pool and listener state."""
        started = time.perf_counter()
        reachable, version, schema_ready, error = False, None, False, None
        try:
            if not self._opened:
                self.open()
            with self._pool.connection() as conn:
                version, tables_exist = change_queries().server_health(conn)
            reachable = True
            from . import migrations  # see the TYPE_CHECKING note

            schema_ready = bool(tables_exist) and migrations.status(self._conninfo).up_to_date
        except (ConfigurationAccessError, psycopg.Error) as exc:
            message = str(exc).strip()
            error = scrub(message.splitlines()[0], self._secrets) if message else type(exc).__name__
        feed = self._feed
        return Health(
            reachable=reachable,
            latency_ms=round((time.perf_counter() - started) * 1000, 3),
            server_version=version,
            schema_up_to_date=schema_ready,
            pool=dict(self._pool.get_stats()) if self._opened else {},
            listener_connected=feed.connected if feed is not None else None,
            cache_size=None,
            cache_age_seconds=None,
            error=error,
        )

    # -- schema --------------------------------------------------------------------

    def migrate(self) -> _MigrationList:
        """Apply pending migrations (safe from several processes at once); return those applied."""
        from . import migrations  # see the TYPE_CHECKING note

        return migrations.migrate(self._conninfo)

    def migration_status(self) -> migrations.MigrationStatus:
        """Applied, pending and changed migrations of this database."""
        from . import migrations  # see the TYPE_CHECKING note

        return migrations.status(self._conninfo)
