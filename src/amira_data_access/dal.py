# GENERATED from src/amira_data_access/dal_async.py by tools/async_to_sync.py: do not edit.
# Edit the source, then run `just generate`.
"""ConfigDAL: the facade services use to read and change their configuration.

Written once, as async code; ``tools/async_to_sync.py`` generates the sync
form (whose first line says so). Every operation is written once, without
I/O, in :mod:`.core.operations`; here the stores only drive those operations:
:meth:`_Operations._run` sends each statement an operation asks for to the
backend (a pooled connection, the caller's connection, or the in-memory twin),
sleeps when it asks, and hands back the rows or the error.

Cancelling a task in the middle of a call is safe: psycopg cancels the
statement on the server before the connection goes back to the pool (or the
pool closes it), and every write is one statement in autocommit, or a
transaction rolled back when the block is left by the cancellation. A cancelled
write has therefore either happened completely or not at all.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any, Concatenate, Final, ParamSpec, Self, TypeVar, cast

import psycopg
import psycopg_pool
from psycopg_pool import ConnectionPool

from ._compat import Lock, Slots, in_thread, sleep
from .backends.pooler import LSN, identify, lsn
from .backends.postgres import (
    APPLICATION_NAME,
    IdleTracker,
    Timeouts,
    our_rows,
    pool_settings,
    sync_queries,
    write_slots,
)
from .backends.reachability import AbandonCheckout, Reachability, is_connection_failure
from .codec import (
    ValueLimits,
    decode_value,
    validate_actor,
    validate_key,
    validate_prefix,
    value_limits,
)
from .core import operations as ops
from .core import schema_operations as schema_ops
from .core.arguments import validate_version, write_params
from .core.retry import NO_RETRY, RetryPolicy
from .core.running import UNSET, Context, Sleep, Steps
from .core.statements import Statement
from .entries import ConfigChange, ConfigEntry, ConfigItem, ConfigRevision, Health
from .errors import (
    BACKEND_ERRORS,
    ConfigurationAccessError,
    DatabaseConnectionError,
    DatabaseTimeoutError,
    InvalidConfigurationError,
    OutcomeUnknownError,
    first_line,
    note_refused_login,
    scrub,
    translate,
)
from .feed.listener import listener_feed
from .feed.streams import ChangeStream, Feed, Subscription
from .logging import get_logger, is_enabled
from .schemas import SchemaEntry, SchemaViolation
from .secrets import Keyring, store_keyring
from .settings import conninfo_from_env

if TYPE_CHECKING:
    # Imported where used: every process imports the library, few run migrations,
    # so the runner is not loaded with it.
    from pydantic import BaseModel

    from . import migrations
    from .flags import FlagEvaluation
    from .flags._store import FlagCompiler
    from .live import LiveSettings

__all__ = ["ConfigDAL", "ConfigTransaction"]

P = ParamSpec("P")
T = TypeVar("T")
M = TypeVar("M", bound="BaseModel")

# ``list`` is also a method name inside the classes: spell the types out here.
_EntryList = list[ConfigEntry]
_KeyList = list[str]
_RevisionList = list[ConfigRevision]
_MigrationList = list["migrations.Migration"]
_SchemaList = list[SchemaEntry]
_ViolationList = list[SchemaViolation]


def execute(queries: Any, conn: psycopg.Connection[Any], step: Statement[Any]) -> Any:
    """Run one statement on ``conn`` with aiosql and return its raw result."""
    query = getattr(queries, step.query)
    try:
        if step.many:
            # aiosql gives many rows as a generator: drain it while we hold the connection.
            return list(query(conn, **step.params))
        return query(conn, **step.params)
    except psycopg.Error as exc:
        note_refused_login(exc, conn.info.user)  # PermissionDeniedError names the login
        raise


class _Operations:
    """Every read and write, shared by the stores and their transactions.

    Each method runs its operation of :mod:`.core.operations`; subclasses say
    only how one statement is executed (:meth:`_execute`).
    """

    _context: Context
    _flag_compiler: FlagCompiler | None = None

    def _execute(self, step: Statement[Any]) -> Any:
        """Run one statement and return its rows (backend errors propagate)."""
        raise NotImplementedError

    def _run(
        self,
        operation: Callable[Concatenate[Context, P], Steps[T]],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Drive ``operation``: execute the statements it asks for, sleep when it asks."""
        return self._drive(operation(self._context, *args, **kwargs))

    def _drive(self, steps: Steps[T], first_failed: Exception | None = None) -> T:
        """Run ``steps`` to its answer; ``first_failed``: its first statement was already
        sent (see ConfigDAL.get) and failed with that error, to be retried or reported."""
        try:
            step = next(steps)  # validation runs here, before any I/O
            if first_failed is not None:
                step = steps.throw(first_failed)
            while True:
                if isinstance(step, Sleep):
                    sleep(step.seconds)
                    step = steps.send(None)
                    continue
                try:
                    result = self._execute(step)
                except (*BACKEND_ERRORS, ConfigurationAccessError) as exc:
                    step = steps.throw(exc)  # retried, translated and logged by the operation
                else:
                    step = steps.send(result)
        except StopIteration as done:
            return cast(T, done.value)
        finally:
            steps.close()  # cancelled or failed in our own code: the operation logs nothing

    # -- reads ---------------------------------------------------------------------

    def get(self, key: str, default: Any = UNSET) -> Any:
        """The value of ``key``; when absent, ``default`` if given, else its registered
        default (see :meth:`register_defaults`), else None."""
        return self._run(ops.get, key, default)

    def evaluate(
        self, flag: str, context: Mapping[str, Any] | None = None, default: Any = None
    ) -> FlagEvaluation:
        """Evaluate the feature flag ``flag`` (a ``data_type="flag"`` key) for ``context``.

        ``context`` holds the ``targetingKey`` (who is asking: what a rollout buckets
        on) and the attributes the rules test. The answer carries the value, the
        variant, the reason (static, targeting match, split, default, disabled,
        error) and the flag's version; ``default`` when the flag is disabled,
        absent or invalid, or when ``default`` is not of the flag's type. Read as
        :meth:`get_entry` reads (a cached store answers from memory), evaluated
        in this process (:mod:`amira_data_access.flags`).
        """
        if context is not None and not isinstance(context, Mapping):
            raise InvalidConfigurationError(
                "an evaluation context is a mapping (targetingKey and attributes), "
                f"not {type(context).__name__}"
            )
        return self._flags().evaluate(flag, self.get_entry(flag), context, default)

    def _flags(self) -> FlagCompiler:
        """This store's compiled flags (made on the first evaluation)."""
        compiler = self._flag_compiler
        if compiler is None:
            # Imported on the first evaluation: a service without flags never loads them.
            from .flags._store import FlagCompiler

            compiler = self._flag_compiler = FlagCompiler()
        return compiler

    def is_enabled(self, flag: str, context: Mapping[str, Any] | None = None) -> bool:
        """Whether the boolean flag ``flag`` is on for ``context`` (False if absent or off)."""
        return self.evaluate(flag, context, False).value is True

    def get_entry(self, key: str) -> ConfigEntry | None:
        """The whole stored entry of ``key`` (value, type, version, audit fields), or None."""
        return self._run(ops.get_entry, key)

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """The values of ``keys`` in one round trip; absent keys are left out."""
        return self._run(ops.get_many, keys)

    def list(self, prefix: str = "", *, after: str | None = None, limit: int = 100) -> _EntryList:
        """Entries whose key starts with ``prefix``, in key order, at most ``limit`` (1-1000).

        For the next page pass the last key you got as ``after`` (keyset pagination:
        stable while keys are added or removed, and cheap however deep you go).
        """
        return self._run(ops.list_entries, prefix, after, limit)

    def history(
        self, key: str, *, limit: int = 100, before_version: int | None = None
    ) -> _RevisionList:
        """Changes of ``key``, newest first (deletions included); page with ``before_version``."""
        return self._run(ops.history, key, limit, before_version)

    def get_at(self, key: str, when: datetime) -> Any:
        """The value ``key`` had at instant ``when`` (timezone-aware), None if absent then."""
        return self._run(ops.get_at, key, when)

    def snapshot_at(self, when: datetime, prefix: str = "") -> dict[str, Any]:
        """Every key starting with ``prefix`` as it was at instant ``when``: key -> value."""
        return self._run(ops.snapshot_at, when, prefix)

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
            ops.set_value,
            key,
            value,
            data_type=data_type,
            description=description,
            updated_by=updated_by,
            reason=reason,
            expected_version=expected_version,
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
            ops.set_default,
            key,
            value,
            data_type=data_type,
            description=description,
            updated_by=updated_by,
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
        return self._run(ops.set_many, items, updated_by=updated_by, reason=reason)

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
            ops.delete, key, deleted_by=deleted_by, reason=reason, expected_version=expected_version
        )

    def delete_many(
        self,
        keys: Iterable[str],
        *,
        deleted_by: str,
        reason: str | None = None,
        expected_count: int | None = None,
    ) -> _KeyList:
        """Delete those of ``keys`` that exist (at most 1000): all or nothing, one revision.

        Returns the deleted keys in key order. With ``expected_count``, nothing is
        deleted unless exactly that many of the keys exist, else
        :class:`~amira_data_access.errors.UnexpectedCountError`.
        """
        return self._run(
            ops.delete_many,
            keys,
            deleted_by=deleted_by,
            reason=reason,
            expected_count=expected_count,
        )

    def delete_prefix(
        self,
        prefix: str,
        *,
        deleted_by: str,
        reason: str | None = None,
        expected_count: int | None = None,
    ) -> _KeyList:
        """Delete every key starting with ``prefix`` (not empty): all or nothing, one revision.

        Returns the deleted keys in key order; ``expected_count`` as in :meth:`delete_many`
        (list the keys first, then pass their number, to delete exactly what you saw).
        """
        return self._run(
            ops.delete_prefix,
            prefix,
            deleted_by=deleted_by,
            reason=reason,
            expected_count=expected_count,
        )

    def rollback(
        self, key: str, *, to_version: int, updated_by: str, reason: str | None = None
    ) -> ConfigEntry:
        """Write a new version of ``key`` with the value, type and description of ``to_version``."""
        return self._run(
            ops.rollback, key, to_version=to_version, updated_by=updated_by, reason=reason
        )

    # -- typed reads ---------------------------------------------------------------

    def get_as(self, key: str, type_: type[T], default: Any = UNSET) -> T:
        """The value of ``key`` as a ``type_`` (``int``, ``list[str]``, a pydantic model…).

        Unlike :meth:`get`, an absent key is not None: it is ``default`` if given,
        else its registered default, else
        :class:`~amira_data_access.typed.MissingConfigurationError`; a stored value
        that is not a ``type_`` (a JSON null for ``int``, ``"3"`` for ``int``) raises
        :class:`~amira_data_access.typed.WrongTypeError` (strict: nothing is coerced).
        """
        from .typed import convert, missing

        entry = self.get_entry(key)
        if entry is None:
            if default is not UNSET:
                return cast(T, default)
            if key in self._context.defaults:
                return convert(key, self._context.defaults[key], type_)
            raise missing(key)
        return convert(key, entry.value, type_)

    # -- JSON Schemas --------------------------------------------------------------

    def set_schema(
        self,
        target: str,
        schema: Any,
        *,
        prefix: bool | None = None,
        description: str | None = None,
        updated_by: str,
        force: bool = False,
    ) -> SchemaEntry:
        """Attach a JSON Schema (Draft 2020-12) to a key, or to every key under a prefix.

        ``target`` is a prefix when ``prefix`` says so, or by default when it ends
        with '.'. From then on every write of a key it covers must satisfy it,
        through every store, else :class:`~amira_data_access.schemas.SchemaViolationError`
        (naming the key, the schema and the JSON path) and nothing is written.
        Refused the same way, listing them, if stored values violate it; with
        ``force=True`` it is attached anyway and the entry's ``violations`` lists them.
        """
        return self._run(
            schema_ops.set_schema,
            target,
            schema,
            prefix=prefix,
            description=description,
            updated_by=updated_by,
            force=force,
        )

    def get_schema(self, target: str, *, prefix: bool | None = None) -> SchemaEntry | None:
        """The schema attached to a key or prefix (see :meth:`set_schema`), or None."""
        return self._run(schema_ops.get_schema, target, prefix=prefix)

    def list_schemas(self) -> _SchemaList:
        """Every attached schema, by target."""
        return self._run(schema_ops.list_schemas)

    def delete_schema(self, target: str, *, prefix: bool | None = None, deleted_by: str) -> bool:
        """Detach the schema of a key or prefix; True if there was one (its history stays)."""
        return self._run(schema_ops.delete_schema, target, prefix=prefix, deleted_by=deleted_by)

    def check_schemas(self, prefix: str = "") -> _ViolationList:
        """Every stored value under ``prefix`` that its schemas refuse (raw SQL's too)."""
        return self._run(schema_ops.check_schemas, prefix)


class ConfigTransaction(_Operations):
    """The store's methods on one connection, inside a transaction someone else owns.

    From :meth:`ConfigDAL.transaction` (committed when the block ends,
    rolled back on an exception) or :meth:`ConfigDAL.bind` (your
    connection, your transaction). Nothing is retried here: a failed statement
    fails the transaction.
    """

    def __init__(self, conn: psycopg.Connection[Any], queries: Any, context: Context) -> None:
        self.connection = conn
        self._queries = queries
        self._context = context

    def _execute(self, step: Statement[Any]) -> Any:
        # The caller's connection may use another row factory (and json loaders).
        with our_rows(self.connection):
            return execute(self._queries, self.connection, step)


class _Store(_Operations):
    """What a whole store offers beyond reads and writes: defaults, the change feed,
    health, and ``with`` (shared by the DAL and the in-memory store)."""

    _connect_timeout: float

    def open(self) -> None:
        """Get ready (connect); subclasses say how."""
        raise NotImplementedError

    def close(self) -> None:
        """Release everything; subclasses say how."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- defaults --------------------------------------------------------------------

    def register_defaults(self, defaults: Mapping[str, Any]) -> None:
        """Values :meth:`get` returns for absent keys (in-process only; see ensure_defaults)."""
        if not isinstance(defaults, Mapping):
            raise InvalidConfigurationError(
                f"register_defaults takes a mapping of key to value, not {type(defaults).__name__}"
            )
        for key, value in defaults.items():
            write_params(
                key,
                value,
                data_type=None,
                description=None,
                updated_by="-",
                limits=self._context.limits,
            )
        self._context.defaults = {**self._context.defaults, **defaults}

    def ensure_defaults(self, *, updated_by: str) -> _EntryList:
        """Write each registered default whose key is absent (race-free); return stored entries."""
        validate_actor(updated_by)
        return [
            self.set_default(key, value, updated_by=updated_by)
            for key, value in self._context.defaults.items()
        ]

    # -- change feed -----------------------------------------------------------------

    def _change_feed(self) -> Feed:
        """The feed of committed changes (started on first use); subclasses say which."""
        raise NotImplementedError

    def _current_feed(self) -> Feed | None:
        """The feed if one is running (health reports it)."""
        raise NotImplementedError

    def watch(self, prefix: str = "", *, since_revision: int | None = None) -> ChangeStream:
        """An iterator of committed changes to keys starting with ``prefix``::

            with dal.watch("amira.chat.") as changes:
                for change in changes:
                    print(change.key, change.version, change.operation)

        Changes made by any process, and by raw SQL, are seen, exactly once, in
        revision (commit) order: every change committed after the stream has
        started (if the server is unreachable then, after the listener first
        connects). The listener reconnects by itself and re-reads from the history
        what it missed meanwhile. With ``since_revision=N`` (the revision of the
        last change you handled), first every change with a higher revision that
        is already in the history, then the live ones: nothing between, nothing twice.
        """
        validate_prefix(prefix)
        if since_revision is not None:
            validate_version(since_revision, "since_revision", minimum=0)
        return ChangeStream(self._change_feed(), prefix, self._connect_timeout, since_revision)

    def subscribe(self, callback: Callable[[ConfigChange], None], prefix: str = "") -> Subscription:
        """Call ``callback(change)`` on the feed's thread for each change under ``prefix``.

        Keep callbacks short (they run one after another); an exception in one is
        logged and does not stop the others. ``close()`` the result to unsubscribe.
        """
        validate_prefix(prefix)
        feed = self._change_feed()
        subscription = feed.subscribe(callback, prefix)
        in_thread(feed.wait_connected, self._connect_timeout)
        return subscription

    # -- typed, live settings ------------------------------------------------------------

    def bind_settings(
        self, model: type[M], *, prefix: str, require_valid: bool = True
    ) -> LiveSettings[M]:
        """A live, validated ``model`` of the keys under ``prefix`` (see :mod:`.live`)::

            chat = config.bind_settings(ChatSettings, prefix="amira.chat.")
            chat.current.max_turns                    # an int: mypy sees ChatSettings
            chat.on_change(lambda old, new: ...)      # after each valid change

        Unless ``require_valid=False``, settings that do not validate now raise
        :class:`~amira_data_access.live_model.SettingsValidationError` naming every
        missing or invalid key; with it, the handle starts with ``error`` set (see
        :func:`~amira_data_access.live_model.validate_or_exit` for one report at start-up).
        """
        from .live import LiveSettings
        from .live_model import SettingsValidationError

        validate_prefix(prefix)
        handle = LiveSettings(self, model, prefix)
        # Follow the feed first, then read: a change between the two is read twice,
        # never missed.
        handle._start()
        try:
            handle.reload()
        except BaseException:
            handle.close()
            raise
        if handle.error is not None and require_valid:
            handle.close()
            raise SettingsValidationError(handle.error, list(handle.problems))
        self._live_settings().add(handle)
        return handle

    def _live_settings(self) -> weakref.WeakSet[Any]:
        live: weakref.WeakSet[Any] | None = self.__dict__.get("_live")
        if live is None:
            live = self.__dict__.setdefault("_live", weakref.WeakSet())
        return live

    # -- health ----------------------------------------------------------------------

    def health(self) -> Health:
        """Reachability, latency, server version, schema state, pool and change-feed state."""
        started = time.perf_counter()
        reachable, version, schema_ready, error = False, None, False, None
        try:
            version, tables_exist = self._run(ops.server_health)
            reachable = True
            schema_ready = tables_exist and self._schema_up_to_date()
        except ConfigurationAccessError as exc:
            error = scrub(first_line(exc), self._context.secrets)
        feed = self._current_feed()
        degraded = feed.problem if feed is not None else None
        return Health(
            reachable=reachable,
            latency_ms=round((time.perf_counter() - started) * 1000, 3),
            server_version=version,
            schema_up_to_date=schema_ready,
            pool=self._pool_stats(),
            listener_connected=feed.connected if feed is not None else None,
            cache_size=None,
            cache_age_seconds=None,
            error=error,
            degraded=degraded,
            settings_errors=tuple(
                handle.error for handle in self._live_settings() if handle.error is not None
            ),
        )

    def _schema_up_to_date(self) -> bool:
        raise NotImplementedError

    def _pool_stats(self) -> dict[str, int]:
        return {}


class _IdleConnectionCheck(IdleTracker):
    """Pool ``check`` callback: ping a connection before reuse if it sat idle a while.

    A failed ping also asks the outage state: if the database is down, waiting for the
    pool to connect a replacement would cost the whole ``connect_timeout``, so the
    checkout is abandoned at once (:class:`~.backends.reachability.AbandonCheckout`).
    """

    __slots__ = ("_reachability",)

    def __init__(self, idle_seconds: float, reachability: Reachability) -> None:
        super().__init__(idle_seconds)
        self._reachability = reachability

    def __call__(self, conn: psycopg.Connection[Any]) -> None:
        if self.due(conn):
            try:
                ConnectionPool.check_connection(conn)
            except psycopg.Error as exc:
                in_thread(self._reachability.failed, exc)
                if self._reachability.down_since is not None:
                    raise AbandonCheckout from exc
                raise


# How long one connection stays leased for reads (see _ReadLease) before it goes back to
# the pool, for the pool's own upkeep of it (max_lifetime) and a fresh lease.
_LEASE_SECONDS: Final = 30.0


class _ReadLease:
    """One pooled connection kept checked out for reads, used by one call at a time.

    A read that finds it free runs on it and skips the pool's ``getconn``/``putconn``:
    ~17-23 µs of CPU per call in the benchmark's get ladder (~25 µs on a slower day
    of the same machine; the lease itself costs ~2.5 µs). A read that finds it busy
    uses the pool, and a successful pooled read leases its connection when there is
    none.

    The pool's promises still hold: the connection goes back to the pool once it
    sat idle ``idle_seconds`` (``check_after_idle``: the pool pings it before its
    next use), after ``_LEASE_SECONDS``, when a read on it fails (the pool discards
    a broken one) and on close. Only for pools that keep connections anyway
    (``min_size`` >= 1, so that ``max_idle`` still closes everything idle when 0)
    and keep at least two for reads (``max_size`` >= 8: writes may hold all but a
    quarter of the pool, see ``backends.postgres.write_slots``).
    """

    __slots__ = (
        "_closed",
        "_conn",
        "_enabled",
        "_idle_seconds",
        "_lock",
        "_pool",
        "_renew_at",
        "_used_at",
    )

    def __init__(
        self,
        pool: ConnectionPool[psycopg.Connection[Any]],
        *,
        idle_seconds: float,
        enabled: bool,
    ) -> None:
        self._pool = pool
        self._idle_seconds = idle_seconds
        self._enabled = enabled and idle_seconds > 0  # 0: the caller wants a ping per use
        # Held while a call uses the connection; only ever tried, never waited for.
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[Any] | None = None
        self._used_at = 0.0
        self._renew_at = 0.0
        self._closed = False

    @property
    def held(self) -> int:
        """1 while a connection is leased (it counts as in use in the pool's stats), else 0."""
        return 0 if self._conn is None else 1

    def take(self) -> psycopg.Connection[Any] | None:
        """The leased connection, now the caller's until :meth:`release` or :meth:`lost`;
        None when there is none or another call has it (use the pool then)."""
        if self._conn is None or not self._lock.acquire(blocking=False):
            return None
        conn = self._conn
        now = time.monotonic()
        if conn is not None and now - self._used_at < self._idle_seconds and now < self._renew_at:
            return conn
        self._conn = None  # idle too long or leased long enough: back to the pool
        self._lock.release()
        if conn is not None:
            self._pool.putconn(conn)
        return None

    def release(self) -> None:
        """The call that took the connection is done with it."""
        self._used_at = time.monotonic()
        self._lock.release()

    def lost(self, conn: psycopg.Connection[Any]) -> None:
        """The call on it failed or was cancelled: the pool judges it (discards it if broken)."""
        self._conn = None
        self._lock.release()
        self._pool.putconn(conn)

    def adopt(self, conn: psycopg.Connection[Any]) -> bool:
        """Lease ``conn`` (checked out, just used for a read) if there is no lease; True if kept."""
        if not self._enabled or self._conn is not None or self._closed:
            return False
        if not self._lock.acquire(blocking=False):
            return False
        try:
            if self._conn is not None or self._closed:
                return False
            now = time.monotonic()
            self._conn, self._used_at, self._renew_at = conn, now, now + _LEASE_SECONDS
            return True
        finally:
            self._lock.release()

    def close(self) -> None:
        """Give the connection back to the pool (before it closes) and lease no more."""
        self._closed = True
        self.give_back()

    def give_back(self) -> None:
        """Give the connection back to the pool (which checks it), once no call uses it."""
        self._lock.acquire()
        conn, self._conn = self._conn, None
        self._lock.release()
        if conn is not None:
            self._pool.putconn(conn)


class ConfigDAL(_Store):
    """Typed, audited access to ``amira_config.configurations`` over a connection pool.

    The pool opens on first use (or :meth:`open`) and is closed by :meth:`close`
    or by leaving a ``with`` block; open one per process and share it. A pooled
    connection idle for ``check_after_idle`` seconds or more is pinged before
    reuse and replaced if the server dropped it. Each call is one statement run
    in autocommit: a transaction around it would only add round trips.
    Transient failures are retried per ``retry`` (see
    :class:`~amira_data_access.core.retry.RetryPolicy`). A value written is at most
    ``limits`` large and deep (:class:`~amira_data_access.codec.ValueLimits`:
    1 MiB of JSON text and 64 levels by default; the table's own limits bound them).
    ``keyring`` (:class:`~amira_data_access.secrets.Keyring`) seals the secrets written
    (``data_type="secret"``) and opens them in ``get``; without one, a secret is
    written or read only as its sealed envelope.

    Every failure is a :class:`~amira_data_access.errors.ConfigurationAccessError`;
    bad input raises :class:`~amira_data_access.errors.InvalidConfigurationError`
    before any SQL runs. ``timeouts`` bound how long the server lets a statement run
    and wait for a lock (:class:`~amira_data_access.backends.postgres.Timeouts`).
    While the database is found unreachable, calls fail at once instead of each
    waiting ``connect_timeout``, and a background probe notices when it is back.

    Running at scale (see the README): ``prepared_statements`` (None: on, unless
    :meth:`open` finds a pooler such as PgBouncer between us and the server; False
    behind a pooler it cannot detect) must be off through a transaction-mode pooler.
    Pooled connections above ``min_size`` close after ``max_idle`` idle seconds.
    ``read_dsn`` sends reads to a replica (writes, transactions and the change feed
    stay on ``dsn``) with read-your-writes: a read after a write of this DAL, or after
    :meth:`read_after` with a :attr:`write_token`, waits up to ``replica_wait`` seconds
    for the replica to replay it, then reads from the primary. ``listen_dsn`` gives the
    change feed its own server (the primary directly, or a session-mode pooler) when
    ``dsn`` goes through a transaction-mode pooler.
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
        timeouts: Timeouts | None = None,
        limits: ValueLimits | None = None,
        prepared_statements: bool | None = None,
        read_dsn: str | None = None,
        listen_dsn: str | None = None,
        replica_wait: float = 1.0,
        max_idle: float = 600.0,
        keyring: Keyring | None = None,
    ) -> None:
        if prepared_statements is not None and not isinstance(prepared_statements, bool):
            raise ValueError("prepared_statements must be True, False or None (detect a pooler)")
        if isinstance(replica_wait, bool) or not isinstance(replica_wait, int | float):
            raise ValueError("replica_wait must be a number of seconds >= 0")
        if replica_wait < 0:
            raise ValueError("replica_wait must be a number of seconds >= 0")
        self._settings = settings = pool_settings(
            dsn,
            min_size=min_size,
            max_size=max_size,
            connect_timeout=connect_timeout,
            check_after_idle=check_after_idle,
            retry=retry,
            application_name=application_name,
            timeouts=timeouts,
            max_idle=max_idle,
        )
        others = [
            pool_settings(
                other,
                min_size=0,
                max_size=max_size,
                connect_timeout=connect_timeout,
                check_after_idle=check_after_idle,
                retry=retry,
                application_name=application_name,
                timeouts=timeouts,
                max_idle=max_idle,
            )
            if other is not None
            else None
            for other in (read_dsn, listen_dsn)
        ]
        self._read_settings, self._listen_settings = others
        secrets = settings.secrets + tuple(
            secret for other in others if other is not None for secret in other.secrets
        )
        self._prepared_statements = prepared_statements
        if prepared_statements is False:
            for each in (settings, *others):
                if each is not None:
                    each.connect_kwargs["prepare_threshold"] = None  # see backends/pooler.py
        self._context = Context(
            retry=settings.retry,
            secrets=secrets,
            limits=value_limits(limits),
            keyring=store_keyring(keyring),
        )
        self._connect_timeout = connect_timeout

        self._queries = sync_queries()
        self._get_value_sql: str = self._queries.get_configuration_value.sql
        # Writes and transactions may hold only part of the pool, so that writers
        # waiting on a lock held elsewhere can never starve reads of other keys.
        self._write_slots = Slots(write_slots(max_size))
        self._reachability = Reachability(
            settings.conninfo, settings.connect_kwargs, settings.secrets
        )
        self._pool_check_due = False
        self._reachability.on_recovered(self._recovered)
        self._pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            **settings.pool_kwargs, check=_IdleConnectionCheck(check_after_idle, self._reachability)
        )
        # Only where reads keep two connections or more: the lease holds one even while
        # idle, and with a single one kept for reads, writers blocked on a lock would
        # leave a second concurrent read (or health()) nothing to run on.
        kept_for_reads = max_size - write_slots(max_size)
        self._lease = _ReadLease(
            self._pool, idle_seconds=check_after_idle, enabled=min_size >= 1 and kept_for_reads >= 2
        )
        # Reads from a replica (read_dsn): its own pool and outage state, so a replica
        # that is down or behind only sends reads back to the primary.
        self._read_pool: ConnectionPool[psycopg.Connection[Any]] | None = None
        self._read_reachability: Reachability | None = None
        if self._read_settings is not None:
            read = self._read_settings
            self._read_reachability = Reachability(read.conninfo, read.connect_kwargs, secrets)
            self._read_pool = ConnectionPool(
                **read.pool_kwargs,
                check=_IdleConnectionCheck(check_after_idle, self._read_reachability),
            )
        self._replica_wait = float(replica_wait)
        self._position_lock = threading.Lock()
        self._floor: LSN = 0  # the primary's WAL position reads must reflect (read-your-writes)
        self._floor_text: str | None = None
        self._replica_seen: LSN = 0  # how far the replica was last seen to have replayed
        self.replica_fallbacks = 0  # reads sent to the primary because the replica lagged
        self.behind_pooler: bool | None = None  # found by open(): a pooler announced itself
        self._migration_files: _MigrationList | None = None  # read once, for health()
        self._open_lock = Lock()
        self._feed_lock = threading.Lock()  # the feed is created once, from any thread
        self._opened = False
        self._closed = False
        self._feed: Feed | None = None

    @classmethod
    def from_env(cls, **options: Any) -> Self:
        """A store for the database named by the environment (``AMIRA_CONFIG_DSN`` or ``DB_*``),
        with the keyring it names (``AMIRA_CONFIG_SECRET_KEYS``…) unless given ``keyring=``."""
        if "keyring" not in options:
            options["keyring"] = Keyring.from_env()
        return cls(conninfo_from_env(), **options)

    @property
    def target(self) -> str:
        """Which server and database this store uses, without the password (for logs, CLIs)."""
        return self._settings.description

    @property
    def pool(self) -> ConnectionPool[psycopg.Connection[Any]]:
        """The underlying pool (for its ``get_stats()`` in health checks and tests)."""
        return self._pool

    def get(self, key: str, default: Any = UNSET) -> Any:
        """The value of ``key``; when absent, ``default`` if given, else its registered
        default (see :meth:`register_defaults`), else None."""
        # The hot path: what ops.get does, minus its per-call objects (~9-10 µs of CPU
        # per call in the benchmark's get ladder, ~30 µs on a slower day), when no
        # event would be logged and the leased connection is free. Everything else,
        # and anything unusual on the way, goes the operation's way.
        if (
            key.__class__ is not str
            or not self._opened
            or self._pool_check_due
            or self._read_pool is not None
            or self._reachability.down_since is not None
            or is_enabled("debug")
        ):
            return self._run(ops.get, key, default)
        try:
            validate_key(key)
        except InvalidConfigurationError:
            return self._run(ops.get, key, default)  # refused (and logged) there
        conn = self._lease.take()
        if conn is None:
            return self._run(ops.get, key, default)
        try:
            # The named query's SQL as aiosql loaded it, sent without aiosql's per-call
            # cursor and wrapper (~5 µs); prepared as the connection's threshold says.
            cursor = conn.execute(self._get_value_sql, {"key": key})
            row = cursor.fetchone()
        except BACKEND_ERRORS as exc:
            if isinstance(exc, psycopg.Error):
                # Before it goes back: the pool may close it (past max_lifetime, or
                # closing), and a closed connection's info raises.
                note_refused_login(exc, conn.info.user)
            self._lease.lost(conn)
            if isinstance(exc, psycopg.Error):
                in_thread(self._reachability.failed, exc)
            # Retried, translated and logged as when the operation sent it itself.
            return self._drive(ops.get(self._context, key, default), exc)
        except BaseException:
            self._lease.lost(conn)  # cancelled: the pool checks what it gets back
            raise
        self._lease.release()
        if row is None:
            return self._context.defaults.get(key) if default is UNSET else default
        try:
            return self._context.reveal(key, decode_value(row[0], row[1], key))
        except Exception:
            # Undecodable, a secret that does not open, rows of another shape: the
            # operation reads it again and reports it, in our hierarchy and logged.
            return self._run(ops.get, key, default)

    # -- lifecycle -----------------------------------------------------------------

    def open(self) -> None:
        """Connect now instead of on first use; raises DatabaseConnectionError if impossible."""
        with self._open_lock:
            if self._closed:
                raise DatabaseConnectionError("this ConfigDAL is closed")
            if self._opened:
                return
            settings = self._settings
            with self._context.operation("config.open", level="info") as op:
                # One direct connection first: the pool only reports "timed out", while
                # this says why (refused, wrong password, unknown database) at once.
                probe = psycopg.Connection.connect(settings.conninfo, **settings.connect_kwargs)
                try:
                    server = identify(probe)
                finally:
                    probe.close()
                if server.behind_pooler and self._prepared_statements is None:
                    # A pooler may hand each transaction another server connection,
                    # where our prepared statements do not exist (backends/pooler.py).
                    # (The pool connects with this very dict: pool_kwargs["kwargs"].)
                    settings.connect_kwargs["prepare_threshold"] = None
                    if self._read_settings is not None:
                        self._read_settings.connect_kwargs["prepare_threshold"] = None
                self._pool.open(wait=True, timeout=settings.connect_timeout)
                if self._read_pool is not None:
                    # The replica may be down: reads then go to the primary until it is back.
                    self._read_pool.open(wait=False)
                self.behind_pooler = server.behind_pooler
                op.note(target=self.target, behind_pooler=server.behind_pooler)
            wanted_ms = round(settings.timeouts.statement * 1000)
            if server.behind_pooler and server.statement_timeout_ms != wanted_ms:
                # PgBouncer 1.18 drops the startup "options" our timeouts travel in
                # (ignore_startup_parameters): the session runs with the role's or the
                # server's. Said once, with the README's remedy.
                get_logger().warning(
                    "config.open",
                    outcome="timeouts_not_applied",
                    statement_timeout_ms=server.statement_timeout_ms,
                    wanted_ms=wanted_ms,
                    hint="set statement_timeout and lock_timeout on the role "
                    "(ALTER ROLE … SET …), and query_wait_timeout in the pooler",
                )
            self._opened = True

    def close(self) -> None:
        """Close the pool, the change feed and their connections; the store cannot be used again."""
        with self._feed_lock:
            self._closed = True
            feed, self._feed = self._feed, None
        if feed is not None:
            in_thread(feed.close)
        in_thread(self._reachability.close)
        self._lease.close()
        self._pool.close()
        if self._read_pool is not None and self._read_reachability is not None:
            in_thread(self._read_reachability.close)
            self._read_pool.close()

    # -- running statements ----------------------------------------------------------

    def _execute(self, step: Statement[Any]) -> Any:
        self._reachability.check()  # known down: fail now rather than wait for the pool
        if not self._opened:
            self.open()
        if self._pool_check_due:
            # Back after an outage: drop the pool's dead connections now, instead of
            # discovering them one call at a time.
            self._pool_check_due = False
            self._lease.give_back()
            self._pool.check()
        if step.read_only:
            if self._read_pool is not None:
                done, result = self._on_replica(step)
                if done:
                    return result
            return self._on_pooled_connection(step)
        self._take_write_slot()
        try:
            return self._on_pooled_connection(step, track=self._read_pool is not None)
        finally:
            self._write_slots.release()

    # -- replicas and read-your-writes ---------------------------------------------

    @property
    def write_token(self) -> str | None:
        """The primary's WAL position after the last write of this DAL (with ``read_dsn``).

        Hand it to another process (an HTTP header, say) whose DAL calls
        :meth:`read_after` with it, so that its reads see that write too. None
        before any write, and without ``read_dsn`` (every read is on the primary).
        """
        return self._floor_text

    def read_after(self, token: str) -> None:
        """Make this DAL's reads reflect the write ``token`` (a :attr:`write_token`) names.

        Later reads wait up to ``replica_wait`` for the replica to replay it, then go
        to the primary. Without ``read_dsn`` there is nothing to wait for.
        """
        if not isinstance(token, str):
            raise InvalidConfigurationError("read_after takes a write_token (a str)")
        try:
            position = lsn(token)
        except ValueError:
            raise InvalidConfigurationError(
                f"read_after: {token[:40]!r} is not a write_token (a WAL position, X/Y in hex)"
            ) from None
        self._note_position(token, position)

    def _note_position(self, text: str, position: LSN | None = None) -> None:
        """Raise the floor reads must reflect (from any thread: the feed calls it)."""
        position = lsn(text) if position is None else position
        if position is None:
            return
        with self._position_lock:
            if position > self._floor:
                self._floor, self._floor_text = position, text

    def _on_replica(self, step: Statement[Any]) -> tuple[bool, Any]:
        """Run a read on the replica once it has replayed the floor: (True, rows); or
        (False, None) when it stays behind for ``replica_wait`` or cannot be reached."""
        pool, reachability = self._read_pool, self._read_reachability
        assert pool is not None
        assert reachability is not None
        if reachability.down_since is not None:
            return False, None
        try:
            conn = pool.getconn(timeout=self._connect_timeout)
        except (psycopg.Error, AbandonCheckout, psycopg_pool.PoolTimeout) as exc:
            if isinstance(exc, psycopg.Error):
                in_thread(reachability.failed, exc)
            return False, None
        try:
            floor = self._floor
            if floor > self._replica_seen and not self._replica_reached(conn, floor):
                self.replica_fallbacks += 1
                return False, None
            return True, execute(self._queries, conn, step)
        except psycopg.Error as exc:
            if not is_connection_failure(exc):
                raise  # the statement's own error, the operation's to report
            in_thread(reachability.failed, exc)
            return False, None
        finally:
            pool.putconn(conn)

    def _replica_reached(self, conn: psycopg.Connection[Any], floor: LSN) -> bool:
        """Wait (bounded by ``replica_wait``) until the replica has replayed ``floor``."""
        deadline = time.monotonic() + self._replica_wait
        delay = 0.0005  # replay lag measured p50 0.8 ms, p99 6 ms: poll fast, then back off
        while True:
            replayed = lsn(self._queries.replayed_wal_lsn(conn))
            if replayed is None:
                return True  # read_dsn is a primary: it has every write
            if replayed > self._replica_seen:
                self._replica_seen = replayed
            if replayed >= floor:
                return True
            if time.monotonic() + delay > deadline:
                return False
            sleep(delay)
            delay = min(delay * 2, 0.02)

    def _on_pooled_connection(self, step: Statement[Any], *, track: bool = False) -> Any:
        if step.read_only:
            leased = self._lease.take()
            if leased is not None:
                return self._on_leased_connection(leased, step)
        # getconn/putconn rather than ``with pool.connection()``: every statement runs in
        # autocommit, so the commit-or-rollback of that context manager has nothing to
        # do, and skipping it saved a third of the pool's cost per call (measured).
        try:
            conn = self._pool.getconn()
            kept = False
            try:
                result = execute(self._queries, conn, step)
                if track:  # read_dsn: reads after this write wait for the replica to have it
                    self._note_position(str(self._queries.current_wal_lsn(conn)))
                kept = step.read_only and self._lease.adopt(conn)
                return result
            finally:
                if not kept:
                    self._pool.putconn(conn)  # a broken or busy connection is discarded
        except AbandonCheckout:
            self._reachability.check()  # raises DatabaseUnreachable, the operation's to report
            raise
        except psycopg.Error as exc:
            in_thread(self._reachability.failed, exc)
            raise

    def _on_leased_connection(self, conn: psycopg.Connection[Any], step: Statement[Any]) -> Any:
        try:
            result = execute(self._queries, conn, step)
        except BaseException as exc:
            self._lease.lost(conn)
            if isinstance(exc, psycopg.Error):
                in_thread(self._reachability.failed, exc)
            raise
        self._lease.release()
        return result

    def _take_write_slot(self) -> None:
        if not self._write_slots.acquire(self._connect_timeout):
            raise DatabaseTimeoutError(
                f"every write slot stayed busy for {self._connect_timeout:g} s: other writes "
                "are waiting on locks held elsewhere (see lock_timeout)"
            )

    def _recovered(self) -> None:
        """The database answers again (called on the probe's thread)."""
        self._pool_check_due = True

    # -- transactions ----------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[ConfigTransaction]:
        """Run several operations in one database transaction::

            with dal.transaction() as tx:
                tx.set("a", 1, updated_by="ops")
                tx.delete("b", deleted_by="ops")

        Committed when the block ends, rolled back if it raises (cancellation
        included); all changes share one history revision. Not retried (a
        transaction is not safe to replay behind your back).
        """
        with self._transaction(self._transaction_context()) as tx:
            yield tx

    @contextmanager
    def _transaction(self, context: Context) -> Iterator[ConfigTransaction]:
        if not self._opened:
            self.open()
        with self._context.operation("config.transaction", level="info"):
            self._reachability.check()
            self._take_write_slot()  # a transaction holds its connection throughout
            committing = False
            try:
                with self._pool.connection() as conn:
                    with conn.transaction():
                        yield ConfigTransaction(conn, self._queries, context)
                        committing = True  # leaving this block sends COMMIT
                    if self._read_pool is not None:  # read-your-writes, as for one write
                        self._note_position(str(self._queries.current_wal_lsn(conn)))
            except psycopg.Error as exc:
                in_thread(self._reachability.failed, exc)
                if committing and is_connection_failure(exc):
                    detail = scrub(first_line(exc), self._context.secrets)
                    raise OutcomeUnknownError(
                        "config.transaction: the connection was lost while committing, so the "
                        "transaction may or may not have been applied (outcome unknown): read "
                        f"its keys back before trying again ({detail})"
                    ) from exc
                raise
            finally:
                self._write_slots.release()

    def bind(self, conn: psycopg.Connection[Any]) -> ConfigTransaction:
        """The store's methods on *your* connection, inside *your* transaction.

        Use it to change configuration atomically with your own data; you commit
        or roll back. The connection must reach a database with the schema.
        """
        return ConfigTransaction(conn, self._queries, self._transaction_context())

    def _transaction_context(self) -> Context:
        """What operations in a transaction rely on: no retries (the transaction is the unit)."""
        return self._context.derive(retry=NO_RETRY)

    # -- change feed -----------------------------------------------------------------

    def _change_feed(self) -> Feed:
        with self._feed_lock:
            if self._closed:
                raise DatabaseConnectionError("this ConfigDAL is closed")
            if self._feed is None:
                settings = self._listen_settings or self._settings
                same_server = settings is self._settings
                feed = listener_feed(
                    settings.conninfo,
                    settings.connect_kwargs,
                    on_disconnect=self._reachability.failed if same_server else None,
                    on_connect=self._reachability.answered if same_server else None,
                )
                self._reachability.on_recovered(feed.wake)
                if self._read_pool is not None:
                    # A cache's fill after a change must not read the replica before it
                    # has replayed that change: the change's position raises the floor first.
                    feed.on_position = self._note_position
                self._feed = feed
            return self._feed

    def _current_feed(self) -> Feed | None:
        return self._feed

    # -- health and schema -----------------------------------------------------------

    def _pool_stats(self) -> dict[str, int]:
        return dict(self._pool.get_stats()) if self._opened else {}

    def _schema_up_to_date(self) -> bool:
        # On a pooled connection: a health check per call opening a connection of its
        # own failed first when a fleet had filled max_connections (issue 19).
        from . import migrations  # see the TYPE_CHECKING note
        from .migrations.history import compare

        if self._migration_files is None:
            self._migration_files = in_thread(migrations.discover)
        queries = self._queries
        try:
            conn = self._pool.getconn()
            try:
                applied = []
                if queries.migration_history_exists(conn):
                    applied = [
                        migrations.AppliedMigration(*row)
                        for row in queries.list_applied_migrations(conn)
                    ]
            finally:
                self._pool.putconn(conn)
        except psycopg.Error as exc:
            raise translate(exc, operation="config.health", secrets=self._context.secrets) from exc
        return compare(self._migration_files, applied).up_to_date

    def migrate(self) -> _MigrationList:
        """Apply pending migrations (safe from several processes at once); return those applied."""
        from . import migrations  # see the TYPE_CHECKING note

        return in_thread(migrations.migrate, self._settings.conninfo)

    def migration_status(self) -> migrations.MigrationStatus:
        """Applied, pending and changed migrations of this database."""
        from . import migrations  # see the TYPE_CHECKING note

        return in_thread(migrations.status, self._settings.conninfo)
