"""The migration verbs: migrate, status, verify, baseline, repair and reset.

Each opens its own connection. The ones that write take the advisory lock
first, and every one validates before it changes anything: a refusal names
every problem at once and leaves the database as it was.

Errors: :class:`~amira_data_access.errors.MigrationError` is for what the
migrations themselves refuse or fail (a problem list, a file that failed, the
lock held too long by another run). Any other driver error is raised as
:func:`~amira_data_access.errors.translate` classifies it everywhere else: a
server lost while waiting for the lock is a DatabaseConnectionError, a missing
schema a SchemaNotReadyError, and so on.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import psycopg

from ..errors import MigrationError, translate
from ..logging import get_logger
from ..queries import migration_queries
from ..settings import describe_dsn
from .files import Migration, discover, scan
from .history import (
    AppliedMigration,
    MigrationStatus,
    all_problems,
    problem_list,
    read_history,
    read_invalid_indexes,
    read_status,
)
from .runner import (
    LockStrategy,
    RunOptions,
    apply_in_transaction,
    apply_outside_transaction,
    connect,
    default_actor,
    migration_lock,
)

__all__ = [
    "RESET_ALLOWED_ENV",
    "baseline",
    "migrate",
    "repair",
    "require_reset_allowed",
    "reset",
    "status",
    "verify",
]

RESET_ALLOWED_ENV = "AMIRA_CONFIG_ALLOW_RESET"


def status(conninfo: str, *, directory: Path | None = None) -> MigrationStatus:
    """Compare the database's history with the files; reads only, takes no lock."""
    migrations = discover(directory)
    with connect(conninfo, "migration status") as conn:
        try:
            return read_status(conn, migrations)
        except psycopg.Error as exc:
            raise translate(exc, operation="migration status") from exc


def verify(conninfo: str, *, directory: Path | None = None) -> MigrationStatus:
    """Check history and files without changing anything; return the status when clean.

    Raises :class:`MigrationError` describing every problem: failed rows,
    edited, missing, out-of-order, duplicate or badly named files, and pending
    files :func:`migrate` would refuse (a ``COMMIT`` inside, several statements
    in a no-transaction file…). Pending files alone are not a problem.
    """
    migrations, problems = scan(directory)
    with connect(conninfo, "migration verify") as conn:
        try:
            state = read_status(conn, migrations)
        except psycopg.Error as exc:
            raise translate(exc, operation="migration verify") from exc
    problems += all_problems(state)
    if problems:
        raise MigrationError(problem_list("verify found problems", problems))
    return state


def migrate(
    conninfo: str,
    *,
    directory: Path | None = None,
    dry_run: bool = False,
    applied_by: str | None = None,
    wait_for_other_runs: float = 300.0,
    lock_timeout: float | None = 5.0,
    statement_timeout: float | None = None,
    lock_attempts: int = 5,
    lock_retry_delay: float = 1.0,
    _lock_strategy: LockStrategy = "poll",
) -> list[Migration]:
    """Apply every pending migration in order; return those applied (empty when up to date).

    Safe to call from several processes at once: they take turns on an advisory
    lock (waiting up to ``wait_for_other_runs`` seconds) and each file is applied
    exactly once. Validates first and applies nothing when anything is wrong
    (see :func:`verify`).

    ``dry_run=True`` validates and returns the pending files (each with its
    checksum) without taking the lock or changing anything.

    In each transactional file, ``lock_timeout`` and ``statement_timeout``
    (seconds; ``0`` disables, ``None`` keeps the server's setting) are ``SET
    LOCAL``: a migration waiting for a table lock queues every query on that
    table behind it, so it gives up after ``lock_timeout`` and is retried
    ``lock_attempts`` times in all, after ``lock_retry_delay`` seconds, doubling
    (at most 30 s). A no-transaction file gets ``statement_timeout`` only: a
    ``CREATE INDEX CONCURRENTLY`` interrupted by ``lock_timeout`` would leave an
    invalid index behind.

    ``_lock_strategy`` is private: ``"block"`` waits inside ``pg_advisory_lock()``,
    the deadlock-prone way, only so that a regression test can show the failure.
    """
    if lock_attempts < 1:
        raise ValueError("lock_attempts must be at least 1")
    migrations, problems = scan(directory)
    actor = applied_by or default_actor()
    options = RunOptions(
        lock_timeout=lock_timeout,
        statement_timeout=statement_timeout,
        lock_attempts=lock_attempts,
        lock_retry_delay=lock_retry_delay,
    )
    log = get_logger()
    applied: list[Migration] = []
    with connect(conninfo, "migrate") as conn:
        try:
            guard: AbstractContextManager[None] = (
                nullcontext()
                if dry_run
                else migration_lock(conn, wait_for_other_runs, strategy=_lock_strategy)
            )
            with guard:
                state = read_status(conn, migrations)
                problems += all_problems(state)
                if problems:
                    log.error("migrations.refused", problems=problems)
                    raise MigrationError(
                        problem_list("refusing to migrate, nothing was applied", problems)
                    )
                if dry_run:
                    log.info("migrations.dry_run", pending=[m.filename for m in state.pending])
                    return list(state.pending)
                if state.pending:
                    # Created here, under the lock: two first runs must not race on it.
                    migration_queries().create_migration_history(conn)
                for migration in state.pending:
                    if migration.transactional:
                        apply_in_transaction(conn, migration, actor, options)
                    else:
                        apply_outside_transaction(conn, migration, actor, options)
                    applied.append(migration)
        except psycopg.Error as exc:  # the runner's own queries (lock, history table)
            raise translate(exc, operation="migrate") from exc
    log.info("migrations.done", applied=[m.filename for m in applied], applied_by=actor)
    return applied


def baseline(
    conninfo: str,
    version: int,
    *,
    directory: Path | None = None,
    applied_by: str | None = None,
    wait_for_other_runs: float = 300.0,
) -> list[Migration]:
    """Record the files up to ``version`` as applied (kind ``baseline``) without running them.

    For a database whose schema was created some other way. Only writes into an
    empty history (refuses otherwise, changing nothing); returns the files recorded.
    """
    migrations = discover(directory)
    if version not in {m.version for m in migrations}:
        raise MigrationError(f"baseline: no migration file has version {version:04d}")
    actor = applied_by or default_actor()
    chosen = [m for m in migrations if m.version <= version]
    queries = migration_queries()
    with connect(conninfo, "migration baseline") as conn:
        try:
            with migration_lock(conn, wait_for_other_runs):
                if queries.migration_history_exists(conn):
                    rows = queries.count_migration_history(conn)
                    if rows:
                        raise MigrationError(
                            f"baseline only writes into an empty history; "
                            f"amira_config.schema_migrations already has {rows} row(s)"
                        )
                queries.create_migration_history(conn)
                with conn.transaction():
                    for migration in chosen:
                        queries.record_migration(
                            conn,
                            version=migration.version,
                            name=migration.name,
                            checksum=migration.checksum,
                            transactional=migration.transactional,
                            success=True,
                            kind="baseline",
                            applied_by=actor,
                            execution_ms=0,
                        )
        except psycopg.Error as exc:
            raise translate(exc, operation="migration baseline") from exc
    get_logger().info(
        "migrations.baseline", recorded=[m.filename for m in chosen], applied_by=actor
    )
    return chosen


def repair(conninfo: str, version: int, *, wait_for_other_runs: float = 300.0) -> AppliedMigration:
    """Delete the failed history row of ``version``, so the next :func:`migrate` runs it again.

    Only a row left ``success=false`` (a no-transaction file that failed or was
    interrupted) is removed; a successful row is refused. Also refused while the
    database has an INVALID index: a rerun with ``CREATE INDEX CONCURRENTLY IF
    NOT EXISTS`` would skip it and record success over a useless index. Drop it
    (``DROP INDEX CONCURRENTLY``) first. Returns the removed row.
    """
    queries = migration_queries()
    with connect(conninfo, "migration repair") as conn:
        try:
            with migration_lock(conn, wait_for_other_runs):
                history = read_history(conn) if queries.migration_history_exists(conn) else []
                row = next((r for r in history if r.version == version), None)
                if row is None:
                    raise MigrationError(f"repair: version {version:04d} has no history row")
                if row.success:
                    raise MigrationError(
                        f"repair: {row.filename} was applied successfully; repair only "
                        "clears a failed row"
                    )
                invalid = read_invalid_indexes(conn)
                if invalid:
                    raise MigrationError(
                        f"repair {row.filename}: drop the INVALID index(es) first "
                        f"(DROP INDEX CONCURRENTLY): {', '.join(invalid)}"
                    )
                with conn.transaction():
                    queries.delete_failed_migration(conn, version=version)
        except psycopg.Error as exc:
            raise translate(exc, operation="migration repair") from exc
    get_logger().info("migrations.repaired", file=row.filename)
    return row


def reset(conninfo: str, *, wait_for_other_runs: float = 300.0) -> None:
    """Drop the ``amira_config`` schema with everything in it, migration history included.

    For tests only: refuses unless ``AMIRA_CONFIG_ALLOW_RESET=1`` is set. The
    project's migrations keep all their objects in ``amira_config``; objects a
    migration created elsewhere are not dropped.
    """
    require_reset_allowed()
    with connect(conninfo, "migration reset") as conn:
        try:
            with migration_lock(conn, wait_for_other_runs):
                migration_queries().drop_config_schema(conn)
        except psycopg.Error as exc:
            raise translate(exc, operation="migration reset") from exc
    get_logger().warning("migrations.reset", database=describe_dsn(conninfo))


def require_reset_allowed() -> None:
    """Refuse (MigrationError) unless ``AMIRA_CONFIG_ALLOW_RESET=1``: what :func:`reset` checks.

    For callers that want to refuse before they even find the database.
    """
    if os.environ.get(RESET_ALLOWED_ENV) != "1":
        raise MigrationError(
            f"reset drops every configuration and is for tests only: "
            f"set {RESET_ALLOWED_ENV}=1 to allow it"
        )
