"""The history table ``amira_config.schema_migrations``, and how it compares with the files.

Reads only. :class:`MigrationStatus` is the comparison: applied rows, pending
files, and the problems (failed rows, files edited after they were applied,
missing, out of order), one sentence each, naming the file and what to do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg

from ..queries import migration_queries
from .files import Migration, content_problems

__all__ = [
    "AppliedMigration",
    "MigrationStatus",
    "all_problems",
    "problem_list",
    "read_history",
    "read_invalid_indexes",
    "read_status",
]


@dataclass(frozen=True, slots=True)
class AppliedMigration:
    """One row of ``amira_config.schema_migrations``."""

    version: int
    name: str
    checksum: str
    transactional: bool
    success: bool
    kind: str  # 'apply', or 'baseline' (recorded without running)
    applied_at: datetime
    applied_by: str
    execution_ms: int

    @property
    def filename(self) -> str:
        """The name of the file this row was recorded from."""
        return f"{self.version:04d}_{self.name}.sql"


@dataclass(frozen=True, slots=True)
class MigrationStatus:
    """Where the database stands against the migration files.

    ``applied`` is every history row, failed ones included; ``failed`` are the
    rows left ``success=false`` by a no-transaction file that failed or was
    interrupted. A failed row is not also listed as ``changed``: once it is
    repaired, the file is simply pending again.
    """

    applied: list[AppliedMigration] = field(default_factory=list)
    pending: list[Migration] = field(default_factory=list)
    changed: list[Migration] = field(default_factory=list)  # applied, file since edited
    missing: list[AppliedMigration] = field(default_factory=list)  # applied, file gone
    failed: list[AppliedMigration] = field(default_factory=list)  # success=false rows
    invalid_indexes: list[str] = field(default_factory=list)  # pg_index.indisvalid = false

    @property
    def out_of_order(self) -> list[Migration]:
        """Pending files numbered below the newest recorded version (they would run late)."""
        if not self.applied:
            return []
        newest = max(row.version for row in self.applied)
        return [m for m in self.pending if m.version < newest]

    @property
    def problems(self) -> list[str]:
        """Every disagreement between history and files, one sentence each; [] when none.

        Pending files alone are not a problem: they are what :func:`migrate` is for.
        """
        recorded = {row.version: row for row in self.applied}
        found: list[str] = [_failed_problem(row, self.invalid_indexes) for row in self.failed]
        found += [
            f"{m.filename} was changed after it was applied (history has "
            f"{recorded[m.version].checksum}, the file {m.checksum}): restore the applied "
            "content and put the change in a new migration"
            for m in self.changed
        ]
        found += [
            f"{row.filename} was applied but its file is gone: restore it" for row in self.missing
        ]
        if self.out_of_order:
            newest = max(row.version for row in self.applied)
            found += [
                f"{m.filename} is pending but older than the newest applied version "
                f"{newest:04d}: renumber it after {newest:04d}"
                for m in self.out_of_order
            ]
        return found

    @property
    def up_to_date(self) -> bool:
        """True when everything is applied and nothing disagrees with the files."""
        return not (self.pending or self.problems)


def read_status(conn: psycopg.Connection[Any], migrations: Sequence[Migration]) -> MigrationStatus:
    """Compare history and files; reads only (a missing history table means 'nothing yet')."""
    applied = read_history(conn) if migration_queries().migration_history_exists(conn) else []
    state = _compare(migrations, applied)
    if not state.failed:
        return state
    return MigrationStatus(
        applied=state.applied,
        pending=state.pending,
        changed=state.changed,
        missing=state.missing,
        failed=state.failed,
        invalid_indexes=read_invalid_indexes(conn),
    )


def _compare(
    migrations: Sequence[Migration], applied: Sequence[AppliedMigration]
) -> MigrationStatus:
    by_version = {m.version: m for m in migrations}
    applied_versions = {row.version for row in applied}
    changed = [
        by_version[row.version]
        for row in applied
        if row.success
        and row.version in by_version
        and by_version[row.version].checksum != row.checksum
    ]
    missing = [row for row in applied if row.version not in by_version]
    pending = [m for m in migrations if m.version not in applied_versions]
    failed = [row for row in applied if not row.success]
    return MigrationStatus(
        applied=list(applied), pending=pending, changed=changed, missing=missing, failed=failed
    )


def all_problems(state: MigrationStatus) -> list[str]:
    """History problems, then what is wrong with the pending files themselves."""
    problems = state.problems
    for migration in state.pending:
        problems += content_problems(migration)
    return problems


def _failed_problem(row: AppliedMigration, invalid_indexes: Sequence[str]) -> str:
    text = (
        f"{row.filename} failed (history row success=false, started "
        f"{row.applied_at:%Y-%m-%d %H:%M:%S %Z} by {row.applied_by}): "
        f"clean up what it left, then run repair({row.version})"
    )
    if invalid_indexes:
        text += (
            f"; INVALID index(es) in the database, drop them with DROP INDEX CONCURRENTLY: "
            f"{', '.join(invalid_indexes)}"
        )
    return text


def problem_list(headline: str, problems: Sequence[str]) -> str:
    """``headline:`` then one ``  - problem`` line each: how every refusal lists its reasons."""
    return headline + ":\n" + "\n".join(f"  - {problem}" for problem in problems)


def compare(
    migrations: Sequence[Migration], applied: Sequence[AppliedMigration]
) -> MigrationStatus:
    """The status of history rows read elsewhere (a DAL's pooled connection, for health)."""
    return _compare(migrations, applied)


def read_history(conn: psycopg.Connection[Any]) -> list[AppliedMigration]:
    """Every row of the history table, in version order (the table must exist)."""
    return [AppliedMigration(*row) for row in migration_queries().list_applied_migrations(conn)]


def read_invalid_indexes(conn: psycopg.Connection[Any]) -> list[str]:
    """Indexes left INVALID (``pg_index.indisvalid = false``), schema-qualified."""
    return [str(row[0]) for row in migration_queries().list_invalid_indexes(conn)]
