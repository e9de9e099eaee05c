"""AsyncConfigDAL: the configuration store for asyncio services.

The async twin of :class:`~amira_data_access.dal.ConfigDAL`: the same options,
methods, results and errors, as coroutines. Only the I/O is its own
(``psycopg_pool.AsyncConnectionPool`` and aiosql's ``apsycopg`` adapter): what
each operation validates, sends and returns comes from :mod:`._calls`, retries
and the idle check from :mod:`._running`, so the two DALs cannot drift apart.

Cancelling a task in the middle of a call is safe: psycopg cancels the
statement on the server before the connection goes back to the pool (or the
pool closes it), and every write is one statement in autocommit, or a
transaction rolled back when the block is left by the cancellation. A cancelled
write has therefore either happened completely or not at all.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any, Self, TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool

from . import _calls as calls
from ._calls import Call
from ._operations import Operation
from ._retry import NO_RETRY, RetryPolicy
from ._running import AsyncLifecycle, Attempts, IdleTracker, pool_settings, tuple_rows
from .codec import validate_prefix
from .dal import APPLICATION_NAME
from .entries import ConfigEntry, ConfigItem, ConfigRevision
from .errors import DatabaseConnectionError
from .queries import async_config_queries
from .settings import conninfo_from_env
from .watch import AsyncChangeStream, ChangeFeed, listener_feed

if TYPE_CHECKING:
    # Imported where used at run time: this module is imported by the package, and
    # an eager import would make `python -m amira_data_access.migrations` warn.
    from . import migrations
__all__ = ["AsyncConfigDAL", "AsyncConfigTransaction"]

T = TypeVar("T")

# ``list`` is also a method name inside the classes: spell the types out here.
_EntryList = list[ConfigEntry]
_RevisionList = list[ConfigRevision]
_MigrationList = list["migrations.Migration"]


class _AsyncIdleConnectionCheck(IdleTracker):
    """Async pool ``check`` callback: ping a connection before reuse if it sat idle a while."""

    __slots__ = ()

    async def __call__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        if self.due(conn):
            await AsyncConnectionPool.check_connection(conn)


class _AsyncConfigOperations:
    """The read and write coroutines, shared by the async DAL and its transactions.

    Each is :class:`~amira_data_access.dal.ConfigDAL`'s method of the same name,
    awaited; subclasses say how a :class:`Call` runs (``_run``).
    """

    _queries: Any
    _secrets: tuple[str, ...]

    async def _run(self, call: Call[T]) -> T:
        raise NotImplementedError

    async def _send(self, conn: psycopg.AsyncConnection[Any], call: Call[Any]) -> Any:
        """Run the call's query on ``conn`` and return its raw result."""
        result = getattr(self._queries, call.query or "")(conn, **call.params)
        # A many-row query is an async generator: drain it while we hold the connection.
        return [row async for row in result] if call.rows else await result

    # -- reads ---------------------------------------------------------------------

    async def get(self, key: str, default: Any = None) -> Any:
        """The value of ``key``, or ``default`` when the key does not exist."""
        return await self._run(calls.get(key, default))

    async def get_entry(self, key: str) -> ConfigEntry | None:
        """The whole stored entry of ``key``, or None (see ``ConfigDAL.get_entry``)."""
        return await self._run(calls.get_entry(key))

    async def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """The values of ``keys`` in one round trip; absent keys are left out."""
        return await self._run(calls.get_many(keys))

    async def list(
        self, prefix: str = "", *, after: str | None = None, limit: int = 100
    ) -> _EntryList:
        """Entries by key prefix, in key order, a page at a time (see ``ConfigDAL.list``)."""
        return await self._run(calls.list_entries(prefix, after, limit))

    async def history(
        self, key: str, *, limit: int = 100, before_version: int | None = None
    ) -> _RevisionList:
        """Changes of ``key``, newest first (see ``ConfigDAL.history``)."""
        return await self._run(calls.history(key, limit, before_version))

    async def get_at(self, key: str, when: datetime) -> Any:
        """The value ``key`` had at instant ``when`` (timezone-aware), None if absent then."""
        return await self._run(calls.get_at(key, when))

    async def snapshot_at(self, when: datetime, prefix: str = "") -> dict[str, Any]:
        """Every key starting with ``prefix`` as it was at instant ``when``."""
        return await self._run(calls.snapshot_at(when, prefix))

    # -- writes --------------------------------------------------------------------

    async def set(
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
        """Create or replace ``key``; return the stored entry (see ``ConfigDAL.set``)."""
        call = calls.set_value(
            key,
            value,
            data_type=data_type,
            description=description,
            updated_by=updated_by,
            reason=reason,
            expected_version=expected_version,
        )
        return await self._run(call)

    async def set_default(
        self,
        key: str,
        value: Any,
        *,
        data_type: str | None = None,
        description: str | None = None,
        updated_by: str,
    ) -> ConfigEntry:
        """Create ``key`` only if it does not exist; return the stored entry either way."""
        call = calls.set_default(
            key, value, data_type=data_type, description=description, updated_by=updated_by
        )
        return await self._run(call)

    async def set_many(
        self,
        items: Mapping[str, Any] | Iterable[ConfigItem],
        *,
        updated_by: str,
        reason: str | None = None,
    ) -> _EntryList:
        """Write many keys at once: all or nothing, one history revision; entries in key order."""
        return await self._run(calls.set_many(items, updated_by=updated_by, reason=reason))

    async def delete(
        self,
        key: str,
        *,
        deleted_by: str,
        reason: str | None = None,
        expected_version: int | None = None,
    ) -> bool:
        """Delete ``key``; True if it existed (see ``ConfigDAL.delete``)."""
        call = calls.delete(
            key, deleted_by=deleted_by, reason=reason, expected_version=expected_version
        )
        return await self._run(call)

    async def rollback(
        self, key: str, *, to_version: int, updated_by: str, reason: str | None = None
    ) -> ConfigEntry:
        """Write a new version of ``key`` with the value, type and description of ``to_version``."""
        call = calls.rollback(key, to_version=to_version, updated_by=updated_by, reason=reason)
        return await self._run(call)


class AsyncConfigTransaction(_AsyncConfigOperations):
    """The async DAL's methods on one connection, inside a transaction someone else owns.

    From :meth:`AsyncConfigDAL.transaction` (committed when the block ends,
    rolled back on an exception) or :meth:`AsyncConfigDAL.bind` (your
    connection, your transaction). Nothing is retried here.
    """

    def __init__(
        self, conn: psycopg.AsyncConnection[Any], queries: Any, secrets: tuple[str, ...]
    ) -> None:
        self.connection = conn
        self._queries = queries
        self._secrets = secrets

    async def _run(self, call: Call[T]) -> T:
        if call.query is None:
            return call.finish(None)
        attempts = Attempts(call, NO_RETRY, self._secrets)
        for _ in attempts:
            with attempts.trying(), tuple_rows(self.connection):
                # The caller's connection may use another row factory; our rows are tuples.
                attempts.result = await self._send(self.connection, call)
        return attempts.value


class AsyncConfigDAL(_AsyncConfigOperations, AsyncLifecycle):
    """:class:`~amira_data_access.dal.ConfigDAL` for asyncio: the same options and methods,
    awaited, over a ``psycopg_pool.AsyncConnectionPool``.

    Open it once per process (``await dal.open()`` or ``async with``) and share
    it between tasks; close it at shutdown. Every failure is a
    :class:`~amira_data_access.errors.ConfigurationAccessError`, exactly as with
    the sync DAL. Use it from one event loop.
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
        self._settings = settings = pool_settings(
            dsn,
            min_size=min_size,
            max_size=max_size,
            connect_timeout=connect_timeout,
            check_after_idle=check_after_idle,
            retry=retry,
            application_name=application_name,
        )
        self._secrets = settings.secrets
        self._pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] = AsyncConnectionPool(
            **settings.pool_kwargs, check=_AsyncIdleConnectionCheck(check_after_idle)
        )
        self._queries = async_config_queries()
        # Created here, bound to the running loop on first use (Python >= 3.10).
        self._open_lock = asyncio.Lock()
        self._opened = False
        self._closed = False
        self._feed: ChangeFeed | None = None

    @classmethod
    def from_env(cls, **options: Any) -> Self:
        """A DAL for the database named by the environment (``AMIRA_CONFIG_DSN`` or ``DB_*``)."""
        return cls(conninfo_from_env(), **options)

    @property
    def target(self) -> str:
        """Which server and database this DAL uses, without the password (for logs and CLIs)."""
        return self._settings.description

    @property
    def pool(self) -> AsyncConnectionPool[psycopg.AsyncConnection[Any]]:
        """The underlying pool (for its ``get_stats()`` in health checks and tests)."""
        return self._pool

    # -- lifecycle -----------------------------------------------------------------

    async def open(self) -> None:
        """Connect now instead of on first use; raises DatabaseConnectionError if impossible."""
        async with self._open_lock:
            if self._closed:
                raise DatabaseConnectionError("this AsyncConfigDAL is closed")
            if not self._opened:
                await self._open_pool()

    async def _open_pool(self) -> None:
        operation = Operation("config.open")
        settings = self._settings
        # One direct connection first: the pool only reports "timed out", while
        # this says why (refused, wrong password, unknown database) at once.
        try:
            probe = await psycopg.AsyncConnection.connect(
                settings.conninfo, **settings.connect_kwargs
            )
            await probe.close()
            await self._pool.open(wait=True, timeout=settings.connect_timeout)
        except psycopg.Error as exc:
            raise operation.failed(exc, self._secrets) from exc
        self._opened = True
        operation.done(target=self.target, level="info")

    async def close(self) -> None:
        """Close the pool, the change feed and their connections; the DAL cannot be used again."""
        self._closed = True
        feed, self._feed = self._feed, None
        if feed is not None:
            await asyncio.to_thread(feed.close)
        await self._pool.close()

    def watch(self, prefix: str = "") -> AsyncChangeStream:
        """Committed changes to keys under ``prefix``, as an async iterator::

            async with dal.watch("amira.chat.") as changes:
                async for change in changes:
                    ...

        The same feed as :meth:`ConfigDAL.watch` (reconnects, resyncs from the
        history), run on a background thread.
        """
        validate_prefix(prefix)
        if self._closed:
            raise DatabaseConnectionError("this AsyncConfigDAL is closed")
        if self._feed is None:
            settings = self._settings
            self._feed = listener_feed(settings.conninfo, settings.connect_kwargs)
        return AsyncChangeStream(self._feed, prefix, self._settings.connect_timeout)

    # -- running calls ---------------------------------------------------------------

    async def _run(self, call: Call[T]) -> T:
        if call.query is None:
            return call.finish(None)
        if not self._opened:
            await self.open()
        attempts = Attempts(call, self._settings.retry, self._secrets)
        for delay in attempts:
            if delay:
                await asyncio.sleep(delay)
            with attempts.trying():
                async with self._pool.connection() as conn:
                    attempts.result = await self._send(conn, call)
        return attempts.value

    # -- transactions ----------------------------------------------------------------

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConfigTransaction]:
        """Run several operations in one database transaction::

            async with dal.transaction() as tx:
                await tx.set("a", 1, updated_by="ops")
                await tx.delete("b", deleted_by="ops")

        Committed when the block ends, rolled back if it raises (cancellation
        included); all changes share one history revision. Not retried.
        """
        if not self._opened:
            await self.open()
        operation = Operation("config.transaction")
        try:
            async with self._pool.connection() as conn, conn.transaction():
                yield AsyncConfigTransaction(conn, self._queries, self._secrets)
        except psycopg.Error as exc:
            raise operation.failed(exc, self._secrets) from exc
        operation.done(level="info")

    def bind(self, conn: psycopg.AsyncConnection[Any]) -> AsyncConfigTransaction:
        """The DAL's methods on *your* async connection, inside *your* transaction."""
        return AsyncConfigTransaction(conn, self._queries, self._secrets)

    # -- schema --------------------------------------------------------------------

    async def migrate(self) -> _MigrationList:
        """Apply pending migrations (in a thread: the runner is sync); return those applied."""
        from . import migrations  # see the TYPE_CHECKING note

        return await asyncio.to_thread(migrations.migrate, self._settings.conninfo)

    async def migration_status(self) -> migrations.MigrationStatus:
        """Applied, pending and changed migrations of this database."""
        from . import migrations  # see the TYPE_CHECKING note

        return await asyncio.to_thread(migrations.status, self._settings.conninfo)
