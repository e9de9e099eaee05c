"""Plain SQL migrations: applied in order, recorded with checksums, one run at a time.

Files are ``migrations/NNNN_slug.sql``. :func:`migrate` takes a session-level
advisory lock by *polling* ``pg_try_advisory_lock``: a session blocked inside
``pg_advisory_lock()`` would hold a snapshot that a ``CREATE INDEX
CONCURRENTLY`` in the running migration must wait for, and the two would wait
on each other forever. Each file runs in its own transaction together with its
row in ``amira_config.schema_migrations``, so a file is either applied and
recorded, or neither. A file edited after it was applied is refused by name.

A file whose first non-blank line is ``-- migrate:no-transaction`` holds exactly
one statement (``CREATE INDEX CONCURRENTLY``…) that cannot run in a transaction.
Its history row is written ``success=false`` first and flipped to ``true`` once
the statement succeeded, so a failure (or a crash) leaves a visible failed row:
every later run refuses, naming any INVALID index, until :func:`repair`.

Every run validates first (failed rows, edited, missing, out-of-order and
duplicate files, and the content of pending files) and applies nothing when
anything is wrong. The verbs are functions here (:func:`migrate`,
:func:`status`, :func:`verify`, :func:`baseline`, :func:`repair`,
:func:`reset`) and a thin command line::

    python -m amira_data_access.migrations [--dsn DSN] [--directory DIR] \\
        {migrate [--dry-run] | status | verify | baseline VERSION | repair VERSION | reset}
"""

from __future__ import annotations

import argparse
import getpass
import hashlib
import os
import re
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, TextIO, cast

import psycopg
import psycopg.errors

from ._resources import sql_dir
from .errors import ConfigurationAccessError, MigrationError, translate
from .logging import get_logger
from .queries import MigrationQueries, migration_queries
from .settings import DatabaseSettings, describe_dsn, parse_dsn

__all__ = [
    "LOCK_KEY",
    "AppliedMigration",
    "Migration",
    "MigrationStatus",
    "baseline",
    "checksum",
    "discover",
    "main",
    "migrate",
    "repair",
    "reset",
    "status",
    "verify",
]

MIGRATION_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# A fixed name hashed with sha256: the same key in every process and every Python
# (hash() is salted per process and would give each runner its own lock).
LOCK_KEY = int.from_bytes(
    hashlib.sha256(b"amira_data_access.migrations").digest()[:8], "big", signed=True
)
LOCK_POLL_SECONDS = 0.5
APPLICATION_NAME = "amira-data-access migrations"
NO_TRANSACTION_HEADER = "-- migrate:no-transaction"
RESET_ALLOWED_ENV = "AMIRA_CONFIG_ALLOW_RESET"

_DIRECTIVE = re.compile(r"--\s*migrate:\s*(\S.*?)\s*")
# Longest pause between two attempts after a lock_timeout: past that, waiting
# longer only delays the deploy while the blocking session is likely stuck.
_MAX_RETRY_DELAY = 30.0
_LOCK_NOT_AVAILABLE = "55P03"

_LockStrategy = Literal["poll", "block"]


@dataclass(frozen=True, slots=True)
class Migration:
    """One migration file."""

    version: int
    name: str
    path: Path
    sql: str = field(repr=False)
    checksum: str
    transactional: bool = True  # False when the file starts with -- migrate:no-transaction

    @property
    def filename(self) -> str:
        """The file's name, as people refer to it."""
        return self.path.name


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


# --- files -------------------------------------------------------------------------------


def checksum(content: bytes) -> str:
    """``v1:sha256:<hex>`` of the file, normalised so an editor's line endings do not count.

    Strict UTF-8, a leading BOM dropped, CRLF and CR turned into LF. Where the
    lines break still counts: ``a\\nb`` and ``ab`` differ.
    """
    try:
        text = content.decode("utf-8", errors="strict")
    except UnicodeDecodeError as exc:
        raise MigrationError(f"migration is not valid UTF-8: {exc}") from exc
    text = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    return "v1:sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def discover(directory: Path | None = None) -> list[Migration]:
    """Read the migration files of ``directory`` (default: the package's), in version order.

    Raises :class:`MigrationError` naming every badly named, duplicated or
    non-UTF-8 file.
    """
    migrations, problems = _scan(directory)
    if problems:
        raise MigrationError("; ".join(problems))
    return migrations


def _scan(directory: Path | None) -> tuple[list[Migration], list[str]]:
    """The readable migrations, and a sentence for every file that is not one."""
    folder = directory or sql_dir("migrations")
    migrations: dict[int, Migration] = {}
    problems: list[str] = []
    for path in sorted(folder.glob("*.sql")):
        match = MIGRATION_FILE.match(path.name)
        if not match:
            problems.append(f"{path.name}: migration files must be named NNNN_lowercase_slug.sql")
            continue
        version = int(match.group(1))
        if version in migrations:
            problems.append(
                f"two migration files have version {version:04d}: "
                f"{migrations[version].filename} and {path.name}"
            )
            continue
        content = path.read_bytes()
        try:
            digest = checksum(content)  # validates UTF-8 before anything decodes it
        except MigrationError as exc:
            problems.append(f"{path.name}: {exc}")
            continue
        sql = content.decode("utf-8-sig")
        migrations[version] = Migration(
            version=version,
            name=match.group(2),
            path=path,
            sql=sql,
            checksum=digest,
            transactional=_directive(sql) != "no-transaction",
        )
    return [migrations[version] for version in sorted(migrations)], problems


def _directive(sql: str) -> str | None:
    """The ``-- migrate:<directive>`` of the first non-blank line, if it is one."""
    for line in sql.splitlines():
        if line.strip():
            match = _DIRECTIVE.fullmatch(line.strip())
            return match.group(1) if match else None
    return None


# --- a small SQL lexer ----------------------------------------------------------------------
# Enough of PostgreSQL's lexical rules to find where statements end and how they start,
# so that a file is refused *before* anything in it runs. It is not a parser: the
# server still parses every statement; this only has to agree with it about comments,
# quotes and semicolons.


@dataclass(frozen=True, slots=True)
class _Statement:
    """One statement of a script."""

    text: str  # its source, without the terminating semicolon
    line: int  # 1-based line where it starts
    words: tuple[str, ...]  # its unquoted words (keywords, names), lower-case, in order

    @property
    def keyword(self) -> str:
        """The first word, upper-case (``COMMIT``, ``CREATE``…); '' when it has none."""
        return self.words[0].upper() if self.words else ""


class _SqlSyntaxError(MigrationError):
    """The script ends inside a comment, string, quoted name or dollar-quoted body."""


# PostgreSQL's ident_start / ident_cont and dollar-quote delimiters (scan.l).
_WORD = re.compile(r"[A-Za-z_\u0080-\U0010ffff][A-Za-z_0-9$\u0080-\U0010ffff]*")
_DOLLAR_QUOTE = re.compile(r"\$(?:[A-Za-z_\u0080-\U0010ffff][A-Za-z_0-9\u0080-\U0010ffff]*)?\$")


def _split_statements(sql: str) -> list[_Statement]:
    """Split a script on its top-level semicolons; comments-only and empty statements vanish.

    Skips ``--`` and (nested) ``/* */`` comments, ``'…'`` strings (``''`` inside,
    and backslash escapes in ``E'…'``), ``"…"`` names and ``$tag$…$tag$`` bodies.
    Like psql, a semicolon inside parentheses or inside the ``BEGIN ATOMIC … END``
    body of ``CREATE FUNCTION``/``PROCEDURE`` does not end the statement.
    Raises :class:`MigrationError` when the script ends inside one of those.
    """
    statements: list[_Statement] = []
    length = len(sql)
    pos = 0
    start: int | None = None  # where the current statement's first token is
    words: list[str] = []
    parens = 0
    begins = 0  # BEGIN … END depth inside a CREATE FUNCTION/PROCEDURE body

    def finish(end: int) -> None:
        nonlocal start, words, parens, begins
        if start is not None:
            line = sql.count("\n", 0, start) + 1
            statements.append(_Statement(sql[start:end].rstrip(), line, tuple(words)))
        start, words, parens, begins = None, [], 0, 0

    while pos < length:
        char = sql[pos]
        if char.isspace():
            pos += 1
            continue
        if sql.startswith("--", pos):
            newline = sql.find("\n", pos)
            pos = length if newline < 0 else newline + 1
            continue
        if sql.startswith("/*", pos):
            pos = _skip_block_comment(sql, pos)
            continue
        if char == ";" and parens == 0 and begins == 0:
            finish(pos)
            pos += 1
            continue
        if start is None:
            start = pos
        if char == "'":
            pos = _skip_string(sql, pos, backslashes=False)
        elif char == '"':
            pos = _skip_quoted_name(sql, pos)
        elif char == "$" and (dollar := _DOLLAR_QUOTE.match(sql, pos)):
            close = sql.find(dollar.group(), dollar.end())
            if close < 0:
                raise _SqlSyntaxError(
                    f"dollar-quoted text opened with {dollar.group()} on line "
                    f"{_line(sql, pos)} is never closed"
                )
            pos = close + len(dollar.group())
        elif word := _WORD.match(sql, pos):
            pos = word.end()
            lowered = word.group().lower()
            if lowered == "e" and sql.startswith("'", pos):  # E'…': backslash escapes
                pos = _skip_string(sql, pos, backslashes=True)
                continue
            words.append(lowered)
            if parens == 0 and _is_routine_definition(words):
                if lowered == "begin" or (lowered == "case" and begins > 0):
                    begins += 1  # CASE … END only matters inside a BEGIN block, as in psql
                elif lowered == "end" and begins > 0:
                    begins -= 1
        elif char == "(":
            parens += 1
            pos += 1
        elif char == ")":
            parens = max(0, parens - 1)
            pos += 1
        else:
            pos += 1  # numbers, operators, $1 parameters, a lone semicolon in parentheses
    finish(length)
    return statements


def _is_routine_definition(words: Sequence[str]) -> bool:
    """``CREATE [OR REPLACE] FUNCTION|PROCEDURE``: psql's test for a BEGIN ATOMIC body."""
    head = list(words[:4])
    if head[:2] == ["create", "or"] and len(head) >= 4 and head[2] == "replace":
        return head[3] in ("function", "procedure")
    return len(head) >= 2 and head[0] == "create" and head[1] in ("function", "procedure")


def _skip_block_comment(sql: str, pos: int) -> int:
    depth = 0
    index = pos
    while index < len(sql):
        if sql.startswith("/*", index):
            depth += 1
            index += 2
        elif sql.startswith("*/", index):
            depth -= 1
            index += 2
            if depth == 0:
                return index
        else:
            index += 1
    raise _SqlSyntaxError(f"the /* comment opened on line {_line(sql, pos)} is never closed")


def _skip_string(sql: str, pos: int, *, backslashes: bool) -> int:
    index = pos + 1
    while index < len(sql):
        char = sql[index]
        if backslashes and char == "\\":
            index += 2
        elif char == "'":
            if sql.startswith("''", index):
                index += 2
            else:
                return index + 1
        else:
            index += 1
    raise _SqlSyntaxError(f"the string opened on line {_line(sql, pos)} is never closed")


def _skip_quoted_name(sql: str, pos: int) -> int:
    index = pos + 1
    while True:
        close = sql.find('"', index)
        if close < 0:
            raise _SqlSyntaxError(
                f'the quoted name (") opened on line {_line(sql, pos)} is never closed'
            )
        if not sql.startswith('""', close):
            return close + 1
        index = close + 2


def _line(sql: str, pos: int) -> int:
    return sql.count("\n", 0, pos) + 1


def _ends_transaction(statement: _Statement) -> bool:
    """COMMIT, ROLLBACK, END, ABORT, BEGIN, START TRANSACTION, PREPARE TRANSACTION."""
    first, second = (*statement.words[:2], "", "")[:2]
    if first in ("commit", "end", "abort", "begin", "start"):
        return True
    if first == "rollback":
        return second != "to"  # ROLLBACK TO SAVEPOINT stays inside the transaction
    return first == "prepare" and second == "transaction"


def _cannot_run_in_transaction(statement: _Statement) -> bool:
    """Statements PostgreSQL refuses inside a transaction block (the common ones)."""
    words = statement.words
    first, second = (*words[:2], "", "")[:2]
    if first in ("create", "drop", "reindex") and "concurrently" in words:
        return True  # CREATE/DROP INDEX CONCURRENTLY, REINDEX … CONCURRENTLY
    if first == "alter" and "detach" in words and "concurrently" in words:
        return True  # ALTER TABLE … DETACH PARTITION … CONCURRENTLY
    return first == "vacuum" or (
        first in ("create", "drop") and second in ("database", "tablespace")
    )


def _content_problems(migration: Migration) -> list[str]:
    """What is wrong with a file's SQL for the way it will run; [] when it may run."""
    name = migration.filename
    directive = _directive(migration.sql)
    if directive is not None and directive != "no-transaction":
        return [
            f"{name}: unknown directive '-- migrate:{directive}' "
            f"(the only one is '{NO_TRANSACTION_HEADER}')"
        ]
    try:
        statements = _split_statements(migration.sql)
    except MigrationError as exc:
        return [f"{name}: {exc}"]
    if not statements:
        return [f"{name}: contains no SQL statement"]
    problems: list[str] = []
    if not migration.transactional:
        if len(statements) != 1:
            problems.append(
                f"{name}: a '{NO_TRANSACTION_HEADER}' file must hold exactly one statement "
                f"(it has {len(statements)}): outside a transaction, a failure halfway could "
                "not be rolled back; split it into one file per statement"
            )
        problems += [
            f"{name} line {s.line}: {s.keyword} controls transactions; remove it"
            for s in statements
            if _ends_transaction(s)
        ]
        return problems
    for statement in statements:
        if _ends_transaction(statement):
            problems.append(
                f"{name} line {statement.line}: {statement.keyword} would end the "
                "transaction the runner opened for the file; remove it (the runner commits "
                "each file together with its history row)"
            )
        elif _cannot_run_in_transaction(statement):
            problems.append(
                f"{name} line {statement.line}: {statement.keyword} … cannot run inside a "
                f"transaction: put it alone in a file whose first line is "
                f"'{NO_TRANSACTION_HEADER}'"
            )
    return problems


# --- verbs --------------------------------------------------------------------------------


def status(conninfo: str, *, directory: Path | None = None) -> MigrationStatus:
    """Compare the database's history with the files; reads only, takes no lock."""
    migrations = discover(directory)
    with _connect(conninfo, "migration status") as conn:
        try:
            return _read_status(conn, migrations)
        except psycopg.Error as exc:
            raise MigrationError(str(translate(exc, operation="migration status"))) from exc


def verify(conninfo: str, *, directory: Path | None = None) -> MigrationStatus:
    """Check history and files without changing anything; return the status when clean.

    Raises :class:`MigrationError` describing every problem: failed rows,
    edited, missing, out-of-order, duplicate or badly named files, and pending
    files :func:`migrate` would refuse (a ``COMMIT`` inside, several statements
    in a no-transaction file…). Pending files alone are not a problem.
    """
    migrations, problems = _scan(directory)
    with _connect(conninfo, "migration verify") as conn:
        try:
            state = _read_status(conn, migrations)
        except psycopg.Error as exc:
            raise MigrationError(str(translate(exc, operation="migration verify"))) from exc
    problems += _all_problems(state)
    if problems:
        raise MigrationError(_problem_list("verify found problems", problems))
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
    _lock_strategy: _LockStrategy = "poll",
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
    migrations, problems = _scan(directory)
    actor = applied_by or _default_actor()
    options = _RunOptions(
        lock_timeout=lock_timeout,
        statement_timeout=statement_timeout,
        lock_attempts=lock_attempts,
        lock_retry_delay=lock_retry_delay,
    )
    log = get_logger()
    applied: list[Migration] = []
    with _connect(conninfo, "migrate") as conn:
        try:
            guard: AbstractContextManager[None] = (
                nullcontext()
                if dry_run
                else _migration_lock(conn, wait_for_other_runs, strategy=_lock_strategy)
            )
            with guard:
                state = _read_status(conn, migrations)
                problems += _all_problems(state)
                if problems:
                    log.error("migrations.refused", problems=problems)
                    raise MigrationError(
                        _problem_list("refusing to migrate, nothing was applied", problems)
                    )
                if dry_run:
                    log.info("migrations.dry_run", pending=[m.filename for m in state.pending])
                    return list(state.pending)
                if state.pending:
                    # Created here, under the lock: two first runs must not race on it.
                    _queries().create_migration_history(conn)
                for migration in state.pending:
                    if migration.transactional:
                        _apply(conn, migration, actor, options)
                    else:
                        _apply_outside_transaction(conn, migration, actor, options)
                    applied.append(migration)
        except psycopg.Error as exc:  # the runner's own queries (lock, history table)
            raise MigrationError(str(translate(exc, operation="migrate"))) from exc
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
    actor = applied_by or _default_actor()
    chosen = [m for m in migrations if m.version <= version]
    queries = _queries()
    with _connect(conninfo, "migration baseline") as conn:
        try:
            with _migration_lock(conn, wait_for_other_runs):
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
            raise MigrationError(str(translate(exc, operation="migration baseline"))) from exc
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
    queries = _queries()
    with _connect(conninfo, "migration repair") as conn:
        try:
            with _migration_lock(conn, wait_for_other_runs):
                history = _read_history(conn) if queries.migration_history_exists(conn) else []
                row = next((r for r in history if r.version == version), None)
                if row is None:
                    raise MigrationError(f"repair: version {version:04d} has no history row")
                if row.success:
                    raise MigrationError(
                        f"repair: {row.filename} was applied successfully; repair only "
                        "clears a failed row"
                    )
                invalid = _invalid_indexes(conn)
                if invalid:
                    raise MigrationError(
                        f"repair {row.filename}: drop the INVALID index(es) first "
                        f"(DROP INDEX CONCURRENTLY): {', '.join(invalid)}"
                    )
                with conn.transaction():
                    queries.delete_failed_migration(conn, version=version)
        except psycopg.Error as exc:
            raise MigrationError(str(translate(exc, operation="migration repair"))) from exc
    get_logger().info("migrations.repaired", file=row.filename)
    return row


def reset(conninfo: str, *, wait_for_other_runs: float = 300.0) -> None:
    """Drop the ``amira_config`` schema with everything in it, migration history included.

    For tests only: refuses unless ``AMIRA_CONFIG_ALLOW_RESET=1`` is set. The
    project's migrations keep all their objects in ``amira_config``; objects a
    migration created elsewhere are not dropped.
    """
    if os.environ.get(RESET_ALLOWED_ENV) != "1":
        raise MigrationError(
            f"reset drops every configuration and is for tests only: "
            f"set {RESET_ALLOWED_ENV}=1 to allow it"
        )
    with _connect(conninfo, "migration reset") as conn:
        try:
            with _migration_lock(conn, wait_for_other_runs):
                _queries().drop_config_schema(conn)
        except psycopg.Error as exc:
            raise MigrationError(str(translate(exc, operation="migration reset"))) from exc
    get_logger().warning("migrations.reset", database=describe_dsn(conninfo))


# --- applying ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _RunOptions:
    lock_timeout: float | None
    statement_timeout: float | None
    lock_attempts: int
    lock_retry_delay: float


def _apply(
    conn: psycopg.Connection[Any], migration: Migration, actor: str, options: _RunOptions
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
    conn: psycopg.Connection[Any], migration: Migration, actor: str, options: _RunOptions
) -> int:
    queries = _queries()
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


def _apply_outside_transaction(
    conn: psycopg.Connection[Any], migration: Migration, actor: str, options: _RunOptions
) -> None:
    """Run a no-transaction file's one statement between a failed row and its flip to success."""
    log = get_logger()
    queries = _queries()
    (statement,) = _split_statements(migration.sql)  # validated: exactly one
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
        invalid = [] if conn.broken else _invalid_indexes(conn)
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


# --- history ------------------------------------------------------------------------------


def _read_status(conn: psycopg.Connection[Any], migrations: Sequence[Migration]) -> MigrationStatus:
    """Compare history and files; reads only (a missing history table means 'nothing yet')."""
    applied = _read_history(conn) if _queries().migration_history_exists(conn) else []
    state = _compare(migrations, applied)
    if not state.failed:
        return state
    return MigrationStatus(
        applied=state.applied,
        pending=state.pending,
        changed=state.changed,
        missing=state.missing,
        failed=state.failed,
        invalid_indexes=_invalid_indexes(conn),
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


def _all_problems(state: MigrationStatus) -> list[str]:
    """History problems, then what is wrong with the pending files themselves."""
    problems = state.problems
    for migration in state.pending:
        problems += _content_problems(migration)
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


def _problem_list(headline: str, problems: Sequence[str]) -> str:
    return headline + ":\n" + "\n".join(f"  - {problem}" for problem in problems)


def _read_history(conn: psycopg.Connection[Any]) -> list[AppliedMigration]:
    return [AppliedMigration(*row) for row in _queries().list_applied_migrations(conn)]


def _invalid_indexes(conn: psycopg.Connection[Any]) -> list[str]:
    return [str(row[0]) for row in _queries().list_invalid_indexes(conn)]


# --- connection and lock ------------------------------------------------------------------


@contextmanager
def _migration_lock(
    conn: psycopg.Connection[Any], timeout: float, *, strategy: _LockStrategy = "poll"
) -> Iterator[None]:
    """Hold the advisory lock for the block; poll for it rather than block inside the server."""
    queries = _queries()
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
def _connect(conninfo: str, operation: str) -> Iterator[psycopg.Connection[Any]]:
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


def _default_actor() -> str:
    try:
        return f"{getpass.getuser()} (amira-data-access migrate)"
    except (KeyError, OSError):
        return "amira-data-access migrate"


def _queries() -> MigrationQueries:
    return migration_queries()


# --- command line -------------------------------------------------------------------------
# Thin on purpose: every verb is a function above, so amira-config can call them too.


def main(argv: Sequence[str] | None = None) -> int:
    """Run one verb from the command line; 0 when all is well, 1 on a problem, 2 on bad usage.

    ``status`` exits 1 when a row failed or a file was changed, is missing or out
    of order; pending files alone exit 0 (they are what ``migrate`` is for).
    """
    args = _parser().parse_args(argv)
    try:
        conninfo = args.dsn or DatabaseSettings().conninfo()
        print(f"database: {describe_dsn(conninfo)}")
        return int(_run_verb(args, conninfo, sys.stdout))
    except ConfigurationAccessError as exc:  # messages are already free of secrets
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m amira_data_access.migrations",
        description="Apply and inspect amira-data-access migrations.",
    )
    parser.add_argument(
        "--dsn", help="connection string (default: AMIRA_CONFIG_DSN or DB_HOST/DB_NAME/…)"
    )
    parser.add_argument("--directory", type=Path, help="migration files (default: the package's)")
    verbs = parser.add_subparsers(dest="verb", required=True)
    run = verbs.add_parser("migrate", help="apply pending migrations")
    run.add_argument("--dry-run", action="store_true", help="list pending files, apply nothing")
    verbs.add_parser("status", help="applied, pending, failed, changed, missing")
    verbs.add_parser("verify", help="check history against files (read-only)")
    for verb, text in (
        ("baseline", "record files up to VERSION as applied, without running them"),
        ("repair", "delete the failed history row of VERSION so that it runs again"),
    ):
        verbs.add_parser(verb, help=text).add_argument("version", type=int, metavar="VERSION")
    verbs.add_parser("reset", help=f"drop schema amira_config (tests: {RESET_ALLOWED_ENV}=1)")
    return parser


def _run_verb(args: argparse.Namespace, conninfo: str, out: TextIO) -> bool:
    """Run the verb and print its outcome; True when the exit code is non-zero."""
    directory: Path | None = args.directory
    if args.verb == "migrate":
        done = migrate(conninfo, directory=directory, dry_run=args.dry_run)
        verb = "would apply" if args.dry_run else "applied"
        for migration in done:
            print(f"{verb} {migration.filename}  {migration.checksum}", file=out)
        if not done:
            print("up to date: nothing to apply", file=out)
        return False
    if args.verb == "status":
        state = status(conninfo, directory=directory)
        _print_status(state, out)
        return bool(state.problems)
    if args.verb == "verify":
        state = verify(conninfo, directory=directory)
        print(f"ok: {len(state.applied)} applied, {len(state.pending)} pending", file=out)
        return False
    if args.verb == "baseline":
        for migration in baseline(conninfo, args.version, directory=directory):
            print(f"baselined {migration.filename}  {migration.checksum}", file=out)
        return False
    if args.verb == "repair":
        row = repair(conninfo, args.version)
        print(f"repaired {row.filename}: it will run again on the next migrate", file=out)
        return False
    reset(conninfo)
    print("reset: schema amira_config dropped", file=out)
    return False


def _print_status(state: MigrationStatus, out: TextIO) -> None:
    failed = {row.version for row in state.failed}
    changed = {m.version for m in state.changed}
    for row in state.applied:
        mark = "FAILED" if row.version in failed else "changed" if row.version in changed else "ok"
        print(
            f"{mark:8} {row.filename}  {row.kind} {row.applied_at:%Y-%m-%d %H:%M:%S} "
            f"by {row.applied_by} ({row.execution_ms} ms)",
            file=out,
        )
    for migration in state.pending:
        print(f"{'pending':8} {migration.filename}  {migration.checksum}", file=out)
    for index in state.invalid_indexes:
        print(f"{'INVALID':8} index {index}", file=out)
    for problem in state.problems:
        print(f"problem: {problem}", file=out)
    if state.up_to_date:
        print("up to date", file=out)


if __name__ == "__main__":
    # Call the package's copy of this module (imported by amira_data_access itself),
    # not this __main__ copy, so there is one set of classes.
    from amira_data_access.migrations import main as _main

    sys.exit(_main())
