# GENERATED from src/amira_data_access/memory_async.py by tools/async_to_sync.py: do not edit.
# Edit the source, then run `just generate`.
"""InMemoryConfigStore: the configuration store in process memory, for your unit tests.

Written once, as async code; ``tools/async_to_sync.py`` generates the sync
form (whose first line says so).

Like fakeredis for Redis: give a service under test an in-memory store where it
would get a DAL, and it behaves the same with no server: the same methods and
results, the same errors for the same bad input, versions, history with
revisions, point-in-time reads, rollbacks, conditional writes, transactions,
registered defaults, ``watch()`` and ``subscribe()``. It is the very same
operations (:mod:`.core.operations`) driven against the Python twin of the SQL
(:mod:`.backends.memory_sql`) instead of PostgreSQL, and the contract suite
(``tests/contract``) runs every store through the same tests to keep it so.

Not for production: nothing is persisted or shared between processes, and a
transaction makes other writers wait until it ends.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import psycopg_pool

from ._compat import Lock
from .backends.memory_sql import Clock, MemoryDatabase, Session
from .codec import ValueLimits, value_limits
from .core.running import Context
from .core.statements import Statement
from .dal import _Operations, _Store
from .errors import DatabaseConnectionError
from .feed.streams import Feed
from .secrets import Keyring, store_keyring

if TYPE_CHECKING:
    # Imported where used: every process imports the library, few run migrations,
    # so the runner is not loaded with it.
    from . import migrations

__all__ = ["InMemoryConfigStore", "InMemoryTransaction"]

_MigrationList = list["migrations.Migration"]


class InMemoryTransaction(_Operations):
    """The store's methods inside one transaction (from ``transaction()``).

    Reads see the transaction's own writes; other stores on the same database
    see none of them until it ends.
    """

    def __init__(self, database: MemoryDatabase, session: Session, context: Context) -> None:
        self._database = database
        self._session = session
        self._context = context

    def _execute(self, step: Statement[Any]) -> Any:
        return self._database.run_in(self._session, step)


class InMemoryConfigStore(_Store):
    """A DAL in process memory: the fake for the unit tests of services that use one.

    ::

        store = InMemoryConfigStore()
        service = MyService(config=store)          # where production passes a DAL
        store.set("amira.chat.tone", "formal", updated_by="test")

    ``database`` is the data it holds (a new, empty one by default): pass the
    same :class:`~amira_data_access.backends.memory_sql.MemoryDatabase` to a
    sync and an async store to set data up from one and read it from the other.
    ``clock`` gives the instants written to ``created_at``/``updated_at`` and
    the history of a new database (default: ``datetime.now(UTC)``); pass your
    own to control time in ``get_at`` and ``snapshot_at`` tests. ``limits``, as
    for the DAL, bounds the values written (the database mirrors the table's own
    limits, 1 MiB and 64 levels, as PostgreSQL's constraints would). ``keyring`` seals
    and opens secrets, as for the DAL: the database holds their envelopes only.
    """

    def __init__(
        self,
        database: MemoryDatabase | None = None,
        *,
        clock: Clock | None = None,
        limits: ValueLimits | None = None,
        keyring: Keyring | None = None,
    ) -> None:
        if database is not None and clock is not None:
            raise ValueError("pass a clock to the MemoryDatabase, not to a store sharing it")
        self.database = database if database is not None else MemoryDatabase(clock=clock)
        self._context = Context(limits=value_limits(limits), keyring=store_keyring(keyring))
        self._connect_timeout = 0.0
        # Writers wait for an open transaction, as PostgreSQL's row locks would make them.
        self._writing = Lock()
        self._closed = False

    @property
    def target(self) -> str:
        """What this store uses (for logs)."""
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

    # -- running statements ----------------------------------------------------------

    def _execute(self, step: Statement[Any]) -> Any:
        if self._closed:
            # The very error a closed DAL gives (its pool is closed).
            raise psycopg_pool.PoolClosed("the store is closed")
        if step.read_only:
            return self.database.run(step)
        with self._writing:
            return self.database.run(step)

    @contextmanager
    def transaction(self) -> Iterator[InMemoryTransaction]:
        """Several operations as one: all applied when the block ends, none if it raises.

        As in PostgreSQL, changes share one history revision and one instant,
        and after a statement failed inside the block the rest are refused and
        nothing is applied.
        """
        self.open()
        with (
            self._context.operation("config.transaction", level="info"),
            self._writing,
            self.database.transaction() as session,
        ):
            yield InMemoryTransaction(self.database, session, self._context)

    # -- change feed and health --------------------------------------------------------

    def _change_feed(self) -> Feed:
        return self.database.feed

    def _current_feed(self) -> Feed | None:
        return self.database.feed

    def _schema_up_to_date(self) -> bool:
        return True
