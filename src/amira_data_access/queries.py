"""The named SQL of the migration runner and the change feed (the stores' queries are
typed by :class:`~amira_data_access.core.statements.Statements`).

Loaded once per process by :func:`~amira_data_access.backends.postgres.load_queries`;
the migration runner's queries have a typed Protocol. Rows are tuples in the
column order of the SQL.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol, cast

import psycopg

from .backends.postgres import load_queries

__all__ = ["MigrationQueries", "change_queries", "migration_queries"]

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


def migration_queries() -> MigrationQueries:
    """The migration runner's queries, typed."""
    return cast(MigrationQueries, load_queries())


def change_queries() -> Any:
    """The change feed's queries (queries/changes.sql), called by name from watch.py."""
    return load_queries()
