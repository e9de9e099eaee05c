"""The named SQL in queries/, loaded once with aiosql, behind a typed interface.

aiosql creates its methods at run time; :class:`ConfigQueries` states what they
are so mypy checks every call. Rows are tuples in the column order of the SQL.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from typing import Any, Protocol, cast

import aiosql
import psycopg
from psycopg.types.json import Jsonb

from ._resources import sql_dir

__all__ = ["ConfigQueries", "MigrationQueries", "config_queries", "migration_queries"]

Row = tuple[Any, ...]


class ConfigQueries(Protocol):
    """The queries of queries/configurations.sql as the sync psycopg adapter exposes them."""

    def get_configuration(self, conn: psycopg.Connection[Any], *, key: str) -> Row | None: ...

    def get_configuration_value(self, conn: psycopg.Connection[Any], *, key: str) -> Row | None: ...

    def upsert_configuration(
        self,
        conn: psycopg.Connection[Any],
        *,
        key: str,
        value: Jsonb,
        data_type: str | None,
        inferred_type: str,
        description: str | None,
        updated_by: str,
    ) -> Row | None: ...

    def delete_configuration(self, conn: psycopg.Connection[Any], *, key: str) -> int: ...

    def list_configurations(
        self, conn: psycopg.Connection[Any], *, prefix: str, after: str | None, limit: int
    ) -> Iterable[Row]: ...


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


def config_queries() -> ConfigQueries:
    """The configuration queries, typed."""
    return cast(ConfigQueries, _load())


def migration_queries() -> MigrationQueries:
    """The migration runner's queries, typed."""
    return cast(MigrationQueries, _load())
