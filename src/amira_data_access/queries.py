"""The named SQL in queries/, loaded once per process with aiosql.

aiosql creates its methods at run time. The configuration stores call them by
name from one place (``_calls`` describes each operation), and the names are
checked when the SQL is loaded; the migration runner's queries have a typed
Protocol. Rows are tuples in the column order of the SQL.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from typing import Any, Final, Protocol, cast

import aiosql
import psycopg

from ._resources import sql_dir

__all__ = [
    "CONFIG_QUERY_NAMES",
    "MigrationQueries",
    "async_config_queries",
    "change_queries",
    "config_queries",
    "migration_queries",
]

Row = tuple[Any, ...]


class MigrationQueries(Protocol):
    """The queries of queries/schema_migrations.sql."""

    def create_migration_history(self, conn: psycopg.Connection[Any]) -> str: ...

    def migration_history_exists(self, conn: psycopg.Connection[Any]) -> bool: ...

    def list_applied_migrations(self, conn: psycopg.Connection[Any]) -> Iterable[Row]: ...

    def record_migration(
        self,
        conn: psycopg.Connection[Any],
        *,
        version: int,
        name: str,
        checksum: str,
        transactional: bool,
        success: bool,
        kind: str,
        applied_by: str,
        execution_ms: int,
    ) -> int: ...

    def try_migration_lock(self, conn: psycopg.Connection[Any], *, lock_key: int) -> bool: ...

    def release_migration_lock(self, conn: psycopg.Connection[Any], *, lock_key: int) -> bool: ...

    def migration_lock_holder(
        self, conn: psycopg.Connection[Any], *, lock_key: int
    ) -> int | None: ...

    def set_migration_history_success(
        self, conn: psycopg.Connection[Any], *, version: int, execution_ms: int
    ) -> int: ...

    def delete_failed_migration(self, conn: psycopg.Connection[Any], *, version: int) -> int: ...

    def count_migration_history(self, conn: psycopg.Connection[Any]) -> int: ...

    def list_invalid_indexes(self, conn: psycopg.Connection[Any]) -> Iterable[Row]: ...

    def set_local_migration_timeouts(
        self,
        conn: psycopg.Connection[Any],
        *,
        lock_timeout: str | None,
        statement_timeout: str | None,
    ) -> str: ...

    def set_session_statement_timeout(
        self, conn: psycopg.Connection[Any], *, statement_timeout: str
    ) -> str: ...

    def reset_session_statement_timeout(self, conn: psycopg.Connection[Any]) -> str: ...

    def drop_config_schema(self, conn: psycopg.Connection[Any]) -> str: ...


@cache
def _load() -> Any:
    # Parsed once per process: parsing per call would cost more than the query.
    return aiosql.from_path(sql_dir("queries"), "psycopg")


# The queries the stores run by name (see _calls): checked when first loaded, so
# a renamed or missing query fails at start-up, not on the first call that needs it.
CONFIG_QUERY_NAMES: Final = frozenset(
    {
        "get_configuration",
        "get_configuration_value",
        "get_configuration_values",
        "get_configurations",
        "list_configurations",
        "upsert_configuration",
        "upsert_configurations",
        "replace_configuration_if_version",
        "insert_configuration_if_absent",
        "delete_configuration",
        "delete_configuration_if_version",
        "list_history",
        "get_value_at",
        "get_snapshot_at",
        "rollback_configuration",
    }
)


def _with_config_names(queries: Any) -> Any:
    missing = sorted(name for name in CONFIG_QUERY_NAMES if not hasattr(queries, name))
    if missing:
        raise RuntimeError(f"queries/ lacks the named queries {missing}")
    return queries


def config_queries() -> Any:
    """The aiosql queries object the stores call by name (names checked once)."""
    return _with_config_names(_load())


@cache
def _load_async() -> Any:
    return aiosql.from_path(sql_dir("queries"), "apsycopg")


def async_config_queries() -> Any:
    """The same named queries for ``psycopg.AsyncConnection`` (aiosql's ``apsycopg``).

    Each is a coroutine function, except a SELECT without suffix (many rows),
    which is an *async generator* to iterate, like the sync one is a generator.
    """
    return _with_config_names(_load_async())


def migration_queries() -> MigrationQueries:
    """The migration runner's queries, typed."""
    return cast(MigrationQueries, _load())


def change_queries() -> Any:
    """The change feed's queries (queries/changes.sql), called by name from watch.py."""
    return _load()
