"""Running migrations: the connection, the advisory lock, and applying one file.

:func:`migration_lock` takes a session-level advisory lock by *polling*
``pg_try_advisory_lock``: a session blocked inside ``pg_advisory_lock()`` would
hold a snapshot that a ``CREATE INDEX CONCURRENTLY`` in the running migration
must wait for, and the two would wait on each other forever.

A transactional file runs in one transaction together with its history row,
with ``SET LOCAL lock_timeout`` and ``statement_timeout``; a lock timeout is
retried with backoff (:func:`apply_in_transaction`). A no-transaction file's
one statement runs between a history row written ``success=false`` and its flip
to ``true`` (:func:`apply_outside_transaction`), so a failure or a crash leaves
a visible failed row.
"""

from __future__ import annotations

import getpass
import hashlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal, cast

import psycopg
import psycopg.errors

from ..errors import MigrationError, translate
from ..logging import get_logger
from ..queries import migration_queries
from ..settings import parse_dsn
from .files import Migration
from .history import read_invalid_indexes
from .lexer import split_statements

__all__ = [
    "APPLICATION_NAME",
    "LOCK_KEY",
    "LOCK_POLL_SECONDS",
    "LockStrategy",
    "RunOptions",
    "apply_in_transaction",
    "apply_outside_transaction",
    "connect",
    "default_actor",
    "migration_lock",
]

# A fixed name hashed with sha256: the same key in every process and every Python
# (hash() is salted per process and would give each runner its own lock).
LOCK_KEY = int.from_bytes(
    hashlib.sha256(b"amira_data_access.migrations").digest()[:8], "big", signed=True
)
LOCK_POLL_SECONDS = 0.5
APPLICATION_NAME = "amira-data-access migrations"

# Longest pause between two attempts after a lock_timeout: past that, waiting
# longer only delays the deploy while the blocking session is likely stuck.
_MAX_RETRY_DELAY = 30.0
_LOCK_NOT_AVAILABLE = "55P03"

# "block" is the deadlock-prone way, kept only for a regression test (see migration_lock).
LockStrategy = Literal["poll", "block"]


@dataclass(frozen=True, slots=True)
class RunOptions:
    """How each file runs: the timeouts (seconds) and the lock_timeout retries."""

    lock_timeout: float | None
    statement_timeout: float | None
    lock_attempts: int
    lock_retry_delay: float


def apply_in_transaction(
    conn: psycopg.Connection[Any], migration: Migration, actor: str, options: RunOptions
) -> None:
    """Run a transactional file with its history row; retry when it timed out on a lock."""
    log = get_logger()
    for attempt in range(1, options.lock_attempts + 1):
        try:
            elapsed_ms = _apply_once(conn, migration, actor, options)
        except psycopg.Error as exc:
            if exc.sqlstate == _LOCK_NOT_AVAILABLE and attempt < options.lock_attempts:
                delay = min(options.lock_retry_delay * 2 ** (attempt - 1), _MAX_RETRY_DELAY)
                log.warning(
                    "migrations.lock_retry",
                    file=migration.filename,
                    attempt=attempt,
                    attempts=options.lock_attempts,
                    retry_in_s=delay,
                    error=_first_line(exc),
                )
                time.sleep(delay)
                continue
            log.error("migrations.failed", file=migration.filename, error=_first_line(exc))
            reason = translate(exc, operation="migrate")
            if exc.sqlstate == _LOCK_NOT_AVAILABLE:
                waited = (
                    "the server's lock_timeout"
                    if options.lock_timeout is None
                    else f"lock_timeout {options.lock_timeout:g} s"
                )
                reason = MigrationError(f"{reason} ({waited}, {options.lock_attempts} attempt(s))")
            raise MigrationError(
                f"{migration.filename} failed and was rolled back: {reason}"
            ) from exc
        log.info("migrations.applied", file=migration.filename, execution_ms=elapsed_ms)
        return


def _apply_once(
    conn: psycopg.Connection[Any], migration: Migration, actor: str, options: RunOptions
) -> int:
    queries = migration_queries()
    started = time.perf_counter()
    with conn.transaction():
        queries.set_local_migration_timeouts(
            conn,
            lock_timeout=_pg_duration(options.lock_timeout),
            statement_timeout=_pg_duration(options.statement_timeout),
        )
        conn.execute(cast(Any, migration.sql))  # a script: several statements, no parameters
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.INTRANS:
            # The lexer refuses these files before running anything; this is the backstop.
            raise MigrationError(
                f"{migration.filename}: the file ends the transaction itself "
                "(COMMIT/ROLLBACK); remove that: the runner commits each file together "
                "with its history row"
            )
        elapsed_ms = round((time.perf_counter() - started) * 1000)
        queries.record_migration(
            conn,
            version=migration.version,
            name=migration.name,
            checksum=migration.checksum,
            transactional=True,
            success=True,
            kind="apply",
            applied_by=actor,
            execution_ms=elapsed_ms,
        )
    return elapsed_ms


def apply_outside_transaction(
    conn: psycopg.Connection[Any], migration: Migration, actor: str, options: RunOptions
) -> None:
    """Run a no-transaction file's one statement between a failed row and its flip to success."""
    log = get_logger()
    queries = migration_queries()
    (statement,) = split_statements(migration.sql)  # validated: exactly one
    with conn.transaction():
        queries.record_migration(
            conn,
            version=migration.version,
            name=migration.name,
            checksum=migration.checksum,
            transactional=False,
            success=False,
            kind="apply",
            applied_by=actor,
            execution_ms=0,
        )
    # Committed: from here a failure or a crash leaves success=false, which every
    # later run refuses until someone looks at what the statement left and repairs.
    started = time.perf_counter()
    try:
        session_timeout = _pg_duration(options.statement_timeout)
        if session_timeout is not None:
            queries.set_session_statement_timeout(conn, statement_timeout=session_timeout)
        try:
            conn.execute(cast(Any, statement.text))  # autocommit: its own implicit transaction
        finally:
            if session_timeout is not None and not conn.broken:
                queries.reset_session_statement_timeout(conn)
    except psycopg.Error as exc:
        log.error("migrations.failed", file=migration.filename, error=_first_line(exc))
        invalid = [] if conn.broken else read_invalid_indexes(conn)
        detail = f"; INVALID index(es) in the database: {', '.join(invalid)}" if invalid else ""
        raise MigrationError(
            f"{migration.filename} failed outside a transaction and is recorded as failed: "
            f"{translate(exc, operation='migrate')}{detail}. Clean up what it left "
            f"(DROP INDEX CONCURRENTLY …), then run repair({migration.version}) and migrate"
        ) from exc
    elapsed_ms = round((time.perf_counter() - started) * 1000)
    with conn.transaction():
        queries.set_migration_history_success(
            conn, version=migration.version, execution_ms=elapsed_ms
        )
    log.info(
        "migrations.applied",
        file=migration.filename,
        execution_ms=elapsed_ms,
        transactional=False,
    )


@contextmanager
def migration_lock(
    conn: psycopg.Connection[Any], timeout: float, *, strategy: LockStrategy = "poll"
) -> Iterator[None]:
    """Hold the advisory lock for the block; poll for it rather than block inside the server."""
    queries = migration_queries()
    if strategy == "block":
        _blocking_lock_for_regression_test(conn)
    else:
        deadline = time.monotonic() + timeout
        while not queries.try_migration_lock(conn, lock_key=LOCK_KEY):
            if time.monotonic() >= deadline:
                holder = queries.migration_lock_holder(conn, lock_key=LOCK_KEY)
                raise MigrationError(
                    f"another migration run (server pid {holder}) held the migration lock "
                    f"for more than {timeout:g} s"
                )
            time.sleep(LOCK_POLL_SECONDS)
    try:
        yield
    finally:
        if not conn.closed and not conn.broken:
            queries.release_migration_lock(conn, lock_key=LOCK_KEY)


def _blocking_lock_for_regression_test(conn: psycopg.Connection[Any]) -> None:
    """The WRONG way, kept only so a test can show it deadlocks against CONCURRENTLY.

    While this statement waits, it holds a snapshot; ``CREATE INDEX CONCURRENTLY``
    in the session holding the lock waits for that snapshot to go away.
    """
    conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))


@contextmanager
def connect(conninfo: str, operation: str) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection named APPLICATION_NAME; a failure to connect is translated."""
    parsed = parse_dsn(conninfo)
    try:
        conn = psycopg.connect(parsed.conninfo, autocommit=True, application_name=APPLICATION_NAME)
    except psycopg.Error as exc:
        raise translate(exc, operation=operation, secrets=parsed.secrets) from exc
    with conn:
        yield conn


def _pg_duration(seconds: float | None) -> str | None:
    """Seconds as a PostgreSQL duration setting ('0' disables; None keeps the server's)."""
    if seconds is None:
        return None
    if seconds <= 0:
        return "0"
    return f"{max(1, round(seconds * 1000))}ms"


def _first_line(exc: BaseException) -> str:
    message = str(exc).strip()
    return message.splitlines()[0] if message else type(exc).__name__


def default_actor() -> str:
    """Who the history records when the caller does not say: the OS user, and this tool."""
    try:
        return f"{getpass.getuser()} (amira-data-access migrate)"
    except (KeyError, OSError):
        return "amira-data-access migrate"
