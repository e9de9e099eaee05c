"""InMemoryConfigStore: the configuration store in process memory, for your unit tests.

Like fakeredis for Redis: give a service under test an
:class:`InMemoryConfigStore` (or :class:`AsyncInMemoryConfigStore`) where it
would get a :class:`~amira_data_access.dal.ConfigDAL` (or
:class:`~amira_data_access.aio.AsyncConfigDAL`), and it behaves the same with no
server: the same methods and results, the same errors for the same bad input,
versions, history with revisions, point-in-time reads, rollbacks, conditional
writes and transactions. The contract suite (``tests/contract``) runs every
store through the same tests to keep it so.

How it stays identical: each operation is built by the same :mod:`._calls`
builder as in the DALs (so validation, results, errors and log events are the
very same code), and only the named query is answered here, from two
dictionaries that mirror the tables and their triggers (migrations 0001-0002).
Values are kept as the JSON text the DALs would send and decoded on every
read, the way jsonb returns them (object keys in jsonb order, no ``-0.0``), so
mutating a returned dict never changes the store.

Not for production: nothing is persisted or shared between processes, and a
transaction holds the store's lock until it ends (other threads' writes wait).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, TypeVar

import psycopg_pool

from ._calls import Call
from ._operations import Operation
from ._running import AsyncLifecycle, Lifecycle
from .aio import _AsyncConfigOperations
from .dal import _ConfigOperations
from .errors import DatabaseConnectionError

if TYPE_CHECKING:
    # Imported where used at run time: this module is imported by the package, and
    # an eager import would make `python -m amira_data_access.migrations` warn.
    from . import migrations
__all__ = [
    "AsyncInMemoryConfigStore",
    "AsyncInMemoryTransaction",
    "InMemoryConfigStore",
    "InMemoryTransaction",
]

T = TypeVar("T")
Clock = Callable[[], datetime]

_MigrationList = list["migrations.Migration"]
_Rows = list[tuple[Any, ...]]


def _utc_now() -> datetime:
    return datetime.now(UTC)


# -- the tables ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Row:
    """A row of amira_config.configurations (value as JSON text)."""

    value: str
    data_type: str
    description: str | None
    version: int
    created_at: datetime
    updated_at: datetime
    updated_by: str


@dataclass(frozen=True, slots=True)
class _Change:
    """A row of amira_config.configuration_history."""

    revision: int
    version: int
    operation: str
    value: str
    data_type: str
    description: str | None
    changed_by: str
    changed_at: datetime
    change_reason: str | None


@dataclass(slots=True)
class _Tables:
    """Both tables. Copied before a write (history tuples are shared: never mutated),
    so a failed statement or transaction simply drops its copy."""

    rows: dict[str, _Row] = field(default_factory=dict)
    history: dict[str, tuple[_Change, ...]] = field(default_factory=dict)

    def copy(self) -> _Tables:
        return _Tables(dict(self.rows), dict(self.history))


@dataclass(slots=True)
class _Session:
    """What a database transaction carries: its clock reading, revision, and state."""

    now: datetime
    next_revision: Callable[[], int]
    revision: int | None = None
    aborted: bool = False  # a statement failed: PostgreSQL refuses the rest
    touched: set[str] = field(default_factory=set)

    def current_revision(self) -> int:
        # Like amira_config.current_revision(): drawn on the transaction's first change.
        if self.revision is None:
            self.revision = self.next_revision()
        return self.revision


class _DatabaseError(Exception):
    """What PostgreSQL would have raised; translated by ``Operation.failed`` like psycopg's."""

    def __init__(self, message: str, sqlstate: str, constraint_name: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate
        self.diag = _Diagnostic(constraint_name)


@dataclass(frozen=True, slots=True)
class _Diagnostic:
    constraint_name: str | None


def _type_mismatch() -> _DatabaseError:
    return _DatabaseError(
        'new row for relation "configurations" violates check constraint '
        '"configurations_value_matches_type"',
        "23514",
        "configurations_value_matches_type",
    )


def _aborted() -> _DatabaseError:
    return _DatabaseError(
        "current transaction is aborted, commands ignored until end of transaction block",
        "25P02",
    )


# -- values as jsonb returns them --------------------------------------------------------


def _jsonb_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # jsonb keeps object keys sorted by their UTF-8 length, then bytes.
    return dict(sorted(pairs, key=lambda pair: (len(pair[0].encode()), pair[0].encode())))


def _jsonb_float(text: str) -> float:
    # jsonb numbers are numerics, which have no negative zero: -0.0 comes back 0.0.
    return float(text) + 0.0


def _loads(text: str) -> Any:
    return json.loads(text, object_pairs_hook=_jsonb_object, parse_float=_jsonb_float)


def _matches_type(text: str, data_type: str) -> bool:
    """The CHECK constraint configurations_value_matches_type, on the JSON text."""
    value = json.loads(text)
    if data_type == "str":
        return isinstance(value, str)
    if data_type == "int":  # a JSON number with no fractional part
        return isinstance(value, int) and not isinstance(value, bool)
    if data_type == "float":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if data_type == "bool":
        return isinstance(value, bool)
    return True


def _entry(key: str, row: _Row) -> tuple[Any, ...]:
    """The column list every configurations query returns."""
    return (
        key,
        _loads(row.value),
        row.data_type,
        row.description,
        row.version,
        row.created_at,
        row.updated_at,
        row.updated_by,
    )


# -- the named queries -------------------------------------------------------------------


class _Statements:
    """The named queries of queries/*.sql, answered from :class:`_Tables`.

    Each method takes the query's parameters and returns what aiosql returns
    for it (one row, rows, or a row count); the triggers of migration 0002
    (versions, audit fields, history) are :meth:`_write` and :meth:`_remove`.
    """

    def __init__(self, tables: _Tables, session: _Session | None) -> None:
        self.tables = tables
        self._session = session

    @property
    def session(self) -> _Session:
        assert self._session is not None, "a write needs a session"
        return self._session

    # -- reads -----------------------------------------------------------------------

    def get_configuration(self, key: str) -> tuple[Any, ...] | None:
        row = self.tables.rows.get(key)
        return _entry(key, row) if row is not None else None

    def get_configuration_value(self, key: str) -> tuple[Any, ...] | None:
        row = self.tables.rows.get(key)
        return (_loads(row.value), row.data_type) if row is not None else None

    def get_configuration_values(self, keys: list[str]) -> _Rows:
        rows = self.tables.rows
        return [(key, _loads(rows[key].value), rows[key].data_type) for key in keys if key in rows]

    def get_configurations(self, keys: list[str]) -> _Rows:
        rows = self.tables.rows
        return [_entry(key, rows[key]) for key in keys if key in rows]

    def list_configurations(self, prefix: str, after: str | None, limit: int) -> _Rows:
        # Python orders str by code point, which is UTF-8 byte order: COLLATE "C".
        keys = sorted(k for k in self.tables.rows if k.startswith(prefix) and k > (after or ""))
        return [_entry(key, self.tables.rows[key]) for key in keys[:limit]]

    def list_history(self, key: str, before_version: int | None, limit: int) -> _Rows:
        changes = [
            change
            for change in reversed(self.tables.history.get(key, ()))
            if before_version is None or change.version < before_version
        ]
        return [_revision(key, change) for change in changes[:limit]]

    def get_value_at(self, key: str, at: datetime) -> tuple[Any, ...] | None:
        change = self._latest_change(key, at)
        return (change.operation, _loads(change.value), change.data_type) if change else None

    def get_snapshot_at(self, at: datetime, prefix: str) -> _Rows:
        snapshot = []
        for key in sorted(k for k in self.tables.history if k.startswith(prefix)):
            change = self._latest_change(key, at)
            if change is not None and change.operation != "delete":
                snapshot.append((key, _loads(change.value), change.data_type))
        return snapshot

    def _latest_change(self, key: str, at: datetime) -> _Change | None:
        earlier = [c for c in self.tables.history.get(key, ()) if c.changed_at <= at]
        return max(earlier, key=lambda c: c.version, default=None)

    # -- writes ----------------------------------------------------------------------

    def upsert_configuration(
        self,
        key: str,
        value: Any,
        data_type: str | None,
        inferred_type: str,
        description: str | None,
        updated_by: str,
        reason: str | None,
    ) -> tuple[Any, ...]:
        row = self._upsert(
            key, value.obj, data_type, inferred_type, description, updated_by, reason
        )
        return _entry(key, row)

    def upsert_configurations(
        self,
        keys: list[str],
        values: list[Any],
        data_types: list[str | None],
        inferred_types: list[str],
        descriptions: list[str | None],
        updated_by: str,
        reason: str | None,
    ) -> _Rows:
        items = zip(keys, values, data_types, inferred_types, descriptions, strict=True)
        return [
            _entry(key, self._upsert(key, value.obj, data_type, inferred, text, updated_by, reason))
            for key, value, data_type, inferred, text in items
        ]

    def replace_configuration_if_version(
        self,
        key: str,
        value: Any,
        data_type: str | None,
        description: str | None,
        updated_by: str,
        reason: str | None,
        expected_version: int,
    ) -> tuple[Any, ...] | None:
        row = self.tables.rows.get(key)
        if row is None:
            return None
        if row.version != expected_version:
            return (False, *_entry(key, row))
        written = self._upsert(
            key, value.obj, data_type, row.data_type, description, updated_by, reason
        )
        return (True, *_entry(key, written))

    def insert_configuration_if_absent(
        self,
        key: str,
        value: Any,
        data_type: str,
        description: str | None,
        updated_by: str,
        reason: str | None,
    ) -> tuple[Any, ...]:
        row = self.tables.rows.get(key)
        if row is not None:
            return (False, *_entry(key, row))
        written = self._upsert(
            key, value.obj, data_type, data_type, description, updated_by, reason
        )
        return (True, *_entry(key, written))

    def delete_configuration(self, key: str, deleted_by: str, reason: str | None) -> int:
        if key not in self.tables.rows:
            return 0
        self._remove(key, deleted_by, reason)
        return 1

    def delete_configuration_if_version(
        self, key: str, deleted_by: str, reason: str | None, expected_version: int
    ) -> tuple[bool, int] | None:
        row = self.tables.rows.get(key)
        if row is None:
            return None
        if row.version != expected_version:
            return (False, row.version)
        self._remove(key, deleted_by, reason)
        return (True, row.version)

    def rollback_configuration(
        self, key: str, to_version: int, updated_by: str, reason: str | None
    ) -> tuple[Any, ...] | None:
        target = next(
            (
                change
                for change in self.tables.history.get(key, ())
                if change.version == to_version and change.operation != "delete"
            ),
            None,
        )
        if target is None:
            return None
        # Value, type and description all come from the target, even a None description.
        content = replace(
            self._next_row(key, target.value, target.data_type, updated_by),
            description=target.description,
        )
        return _entry(key, self._write(key, content, reason))

    # -- what the table's constraints and triggers do -----------------------------------

    def _upsert(
        self,
        key: str,
        text: str,
        data_type: str | None,
        inferred_type: str,
        description: str | None,
        updated_by: str,
        reason: str | None,
    ) -> _Row:
        old = self.tables.rows.get(key)
        # An omitted type keeps the stored one, else is inferred; an omitted
        # description keeps the stored one (COALESCE in the upsert queries).
        resolved = data_type or (old.data_type if old is not None else inferred_type)
        if description is None and old is not None:
            description = old.description
        row = replace(self._next_row(key, text, resolved, updated_by), description=description)
        return self._write(key, row, reason)

    def _next_row(self, key: str, text: str, data_type: str, updated_by: str) -> _Row:
        """configurations_before_write: version, created_at, updated_at."""
        if not _matches_type(text, data_type):
            raise _type_mismatch()
        now = self.session.now
        old = self.tables.rows.get(key)
        if old is None:
            # Versions continue across a delete and re-create.
            history = self.tables.history.get(key, ())
            version = max((c.version for c in history), default=0) + 1
            return _Row(text, data_type, None, version, now, now, updated_by)
        return _Row(text, data_type, None, old.version + 1, old.created_at, now, updated_by)

    def _write(self, key: str, row: _Row, reason: str | None) -> _Row:
        """Store ``row`` and append its history row (configurations_record_history)."""
        operation = "insert" if key not in self.tables.rows else "update"
        self.tables.rows[key] = row
        self._record(key, row.version, operation, row, row.updated_by, reason)
        return row

    def _remove(self, key: str, deleted_by: str, reason: str | None) -> None:
        row = self.tables.rows.pop(key)
        # A deletion is the next version and keeps what the key held.
        self._record(key, row.version + 1, "delete", row, deleted_by, reason)

    def _record(
        self, key: str, version: int, operation: str, row: _Row, by: str, reason: str | None
    ) -> None:
        session = self.session
        change = _Change(
            revision=session.current_revision(),
            version=version,
            operation=operation,
            value=row.value,
            data_type=row.data_type,
            description=row.description,
            changed_by=by,
            changed_at=session.now,
            change_reason=reason or None,  # the queries store '' as NULL too
        )
        self.tables.history[key] = (*self.tables.history.get(key, ()), change)
        session.touched.add(key)


def _revision(key: str, change: _Change) -> tuple[Any, ...]:
    """The column list of list_history."""
    return (
        change.revision,
        key,
        change.version,
        change.operation,
        _loads(change.value),
        change.data_type,
        change.description,
        change.changed_by,
        change.changed_at,
        change.change_reason,
    )


_READS: Final = frozenset(
    {
        "get_configuration",
        "get_configuration_value",
        "get_configuration_values",
        "get_configurations",
        "list_configurations",
        "list_history",
        "get_value_at",
        "get_snapshot_at",
    }
)


def _answer(call: Call[Any], tables: _Tables, session: _Session | None) -> Any:
    """Run ``call``'s query on ``tables``; PostgreSQL's errors translated as the DALs do."""
    statement = getattr(_Statements(tables, session), call.query or "", None)
    if statement is None:  # a query added to queries/ but not here: say so plainly
        raise NotImplementedError(f"InMemoryConfigStore does not answer {call.query!r} yet")
    try:
        if session is not None and session.aborted:
            raise _aborted()
        return statement(**call.params)
    except _DatabaseError as exc:
        if session is not None:
            session.aborted = True
        raise call.operation.failed(exc) from exc


# -- the stores --------------------------------------------------------------------------


class InMemoryTransaction(_ConfigOperations):
    """The store's methods inside one transaction (from :meth:`InMemoryConfigStore.transaction`).

    Reads see the transaction's own writes; other threads see none of them until it ends.
    """

    def __init__(self, tables: _Tables, session: _Session) -> None:
        self._tables = tables
        self._session = session

    def _run(self, call: Call[T]) -> T:
        if call.query is None:
            return call.finish(None)
        return call.finish(_answer(call, self._tables, self._session))


class InMemoryConfigStore(_ConfigOperations, Lifecycle):
    """A :class:`~amira_data_access.dal.ConfigDAL` in process memory: the fake for unit tests.

    ::

        store = InMemoryConfigStore()
        service = MyService(config=store)          # where production passes a ConfigDAL
        store.set("amira.chat.tone", "formal", updated_by="test")

    Same methods, results and errors as the DAL (see the module docstring).
    ``clock`` gives the instants written to ``created_at``/``updated_at`` and
    the history (default: ``datetime.now(UTC)``); pass your own to control
    time in :meth:`get_at` and :meth:`snapshot_at` tests. Thread-safe.
    """

    def __init__(self, *, clock: Clock | None = None) -> None:
        self._clock = clock or _utc_now
        self._tables = _Tables()
        # One lock for writes; reads use the last published tables without waiting.
        self._lock = threading.RLock()
        self._revisions = itertools.count(1)  # amira_config.revision_seq
        self._closed = False

    @property
    def target(self) -> str:
        """What this store uses (for logs), like ``ConfigDAL.target``."""
        return "in-memory"

    # -- lifecycle (nothing to connect; kept so code written for the DAL runs) ------

    def open(self) -> None:
        """Nothing to connect; raises DatabaseConnectionError once closed, like the DAL."""
        if self._closed:
            raise DatabaseConnectionError("this InMemoryConfigStore is closed")

    def close(self) -> None:
        """Refuse further use, like a closed DAL (the data is kept for inspection)."""
        self._closed = True

    def migrate(self) -> _MigrationList:
        """Nothing to migrate: returns ``[]`` (no migration applied)."""
        return []

    def migration_status(self) -> migrations.MigrationStatus:
        """Always up to date."""
        from . import migrations  # see the TYPE_CHECKING note

        return migrations.MigrationStatus()

    # -- running calls ---------------------------------------------------------------

    def _session(self) -> _Session:
        return _Session(now=self._clock(), next_revision=self._revisions.__next__)

    def _run(self, call: Call[T]) -> T:
        if call.query is None:
            return call.finish(None)
        if self._closed:
            # The very error a closed DAL gives (its pool is closed).
            raise call.operation.failed(psycopg_pool.PoolClosed("the store is closed"))
        if call.query in _READS:
            raw = _answer(call, self._tables, None)
        else:
            with self._lock:
                # One statement is atomic: it works on a copy published only on success.
                tables = self._tables.copy()
                raw = _answer(call, tables, self._session())
                self._tables = tables
        return call.finish(raw)

    @contextmanager
    def transaction(self) -> Iterator[InMemoryTransaction]:
        """Several operations as one: all applied when the block ends, none if it raises.

        As in PostgreSQL, changes share one history revision and one instant,
        and after a statement failed inside the block the rest are refused and
        nothing is applied.
        """
        self.open()
        operation = Operation("config.transaction")
        with self._lock:
            tables = self._tables.copy()
            session = self._session()
            yield InMemoryTransaction(tables, session)
            if not session.aborted:
                self._publish(tables, session.touched)
        operation.done(level="info")

    def _publish(self, tables: _Tables, touched: set[str]) -> None:
        # Only the keys the transaction changed: writes this thread made outside
        # the transaction meanwhile (to other keys) are kept.
        published = self._tables.copy()
        for key in touched:
            if key in tables.rows:
                published.rows[key] = tables.rows[key]
            else:
                published.rows.pop(key, None)
            published.history[key] = tables.history[key]
        self._tables = published


class AsyncInMemoryTransaction(_AsyncConfigOperations):
    """:class:`InMemoryTransaction` with the async methods (from the async store)."""

    def __init__(self, inner: InMemoryTransaction) -> None:
        self._inner = inner

    async def _run(self, call: Call[T]) -> T:
        return self._inner._run(call)


class AsyncInMemoryConfigStore(_AsyncConfigOperations, AsyncLifecycle):
    """:class:`InMemoryConfigStore` for asyncio services: the fake for an ``AsyncConfigDAL``.

    The same store behind coroutines (nothing here waits). ``store.sync`` is
    the underlying :class:`InMemoryConfigStore`, to set up or inspect data
    from synchronous test code.
    """

    def __init__(
        self, store: InMemoryConfigStore | None = None, *, clock: Clock | None = None
    ) -> None:
        self.sync = store if store is not None else InMemoryConfigStore(clock=clock)
        # Tasks share one thread, so the sync store's lock cannot make a task's
        # write wait for another task's open transaction: this lock does, as
        # PostgreSQL's row locks would.
        self._writing = asyncio.Lock()

    @property
    def target(self) -> str:
        """What this store uses (for logs)."""
        return self.sync.target

    async def open(self) -> None:
        """Nothing to connect (see :meth:`InMemoryConfigStore.open`)."""
        self.sync.open()

    async def close(self) -> None:
        """Refuse further use, like a closed DAL."""
        self.sync.close()

    async def migrate(self) -> _MigrationList:
        """Nothing to migrate: returns ``[]``."""
        return self.sync.migrate()

    async def migration_status(self) -> migrations.MigrationStatus:
        """Always up to date."""
        return self.sync.migration_status()

    async def _run(self, call: Call[T]) -> T:
        if call.query in _READS:
            return self.sync._run(call)
        async with self._writing:
            return self.sync._run(call)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncInMemoryTransaction]:
        """Several operations as one (see :meth:`InMemoryConfigStore.transaction`)."""
        async with self._writing:
            with self.sync.transaction() as tx:
                yield AsyncInMemoryTransaction(tx)
