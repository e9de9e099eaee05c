"""Plain SQL migrations: applied in order, recorded with checksums, one run at a time.

Files are ``migrations/NNNN_slug.sql``. :func:`migrate` takes a session-level
advisory lock by *polling* ``pg_try_advisory_lock``: a session blocked inside
``pg_advisory_lock()`` would hold a snapshot that a ``CREATE INDEX
CONCURRENTLY`` in the running migration must wait for, and the two would wait
on each other forever. Each file runs in its own transaction together with its
row in ``amira_config.schema_migrations``, so a file is either applied and
recorded, or neither. A file edited after it was applied is refused by name.
"""

from __future__ import annotations

import getpass
import hashlib
import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import psycopg

from ._resources import sql_dir
from .errors import MigrationError, translate
from .logging import get_logger
from .queries import MigrationQueries, migration_queries
from .settings import parse_dsn

__all__ = [
    "AppliedMigration",
    "Migration",
    "MigrationStatus",
    "checksum",
    "discover",
    "migrate",
    "status",
]

MIGRATION_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# A fixed name hashed with sha256: the same key in every process and every Python
# (hash() is salted per process and would give each runner its own lock).
LOCK_KEY = int.from_bytes(
    hashlib.sha256(b"amira_data_access.migrations").digest()[:8], "big", signed=True
)
LOCK_POLL_SECONDS = 0.5
APPLICATION_NAME = "amira-data-access migrations"


@dataclass(frozen=True, slots=True)
class Migration:
    """One migration file."""

    version: int
    name: str
    path: Path
    sql: str = field(repr=False)
    checksum: str

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
    kind: str
    applied_at: datetime
    applied_by: str
    execution_ms: int


@dataclass(frozen=True, slots=True)
class MigrationStatus:
    """Where the database stands against the migration files."""

    applied: list[AppliedMigration] = field(default_factory=list)
    pending: list[Migration] = field(default_factory=list)
    changed: list[Migration] = field(default_factory=list)  # applied, file since edited
    missing: list[AppliedMigration] = field(default_factory=list)  # applied, file gone

    @property
    def up_to_date(self) -> bool:
        """True when everything is applied and nothing disagrees with the files."""
        return not (self.pending or self.changed or self.missing)


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
    """Read the migration files of ``directory`` (default: the package's), in version order."""
    folder = directory or sql_dir("migrations")
    migrations: dict[int, Migration] = {}
    for path in sorted(folder.glob("*.sql")):
        match = MIGRATION_FILE.match(path.name)
        if not match:
            raise MigrationError(
                f"{path.name}: migration files must be named NNNN_lowercase_slug.sql"
            )
        version = int(match.group(1))
        if version in migrations:
            raise MigrationError(
                f"two migration files have version {version:04d}: "
                f"{migrations[version].filename} and {path.name}"
            )
        content = path.read_bytes()
        digest = checksum(content)  # first: it refuses a file that is not UTF-8
        migrations[version] = Migration(
            version=version,
            name=match.group(2),
            path=path,
            sql=content.decode("utf-8-sig"),
            checksum=digest,
        )
    return [migrations[version] for version in sorted(migrations)]


def status(conninfo: str, *, directory: Path | None = None) -> MigrationStatus:
    """Compare the database's history with the files; reads only, takes no lock."""
    migrations = discover(directory)
    with _connect(conninfo) as conn:
        try:
            applied = _read_history(conn) if _queries().migration_history_exists(conn) else []
        except psycopg.Error as exc:
            raise MigrationError(str(translate(exc, operation="migration status"))) from exc
    return _compare(migrations, applied)


def migrate(
    conninfo: str,
    *,
    directory: Path | None = None,
    lock_timeout: float = 300.0,
    applied_by: str | None = None,
) -> list[Migration]:
    """Apply every pending migration in order; return those applied (empty when up to date).

    Safe to call from several processes at once: they take turns on an advisory
    lock and each file is applied exactly once. Refuses to run (applying
    nothing) when an applied file was edited or removed, or when a pending file
    is older than the newest applied one.
    """
    migrations = discover(directory)
    actor = applied_by or _default_actor()
    log = get_logger()
    with _connect(conninfo) as conn:
        try:
            with _migration_lock(conn, lock_timeout):
                _queries().create_migration_history(conn)
                state = _compare(migrations, _read_history(conn))
                _refuse_inconsistent(state)
                applied: list[Migration] = []
                for migration in state.pending:
                    _apply(conn, migration, actor)
                    applied.append(migration)
        except psycopg.Error as exc:  # the runner's own queries (lock, history table)
            raise MigrationError(str(translate(exc, operation="migrate"))) from exc
    log.info("migrations.done", applied=[m.filename for m in applied], applied_by=actor)
    return applied


def _apply(conn: psycopg.Connection[Any], migration: Migration, actor: str) -> None:
    log = get_logger()
    started = time.perf_counter()
    try:
        with conn.transaction():
            conn.execute(cast(Any, migration.sql))  # a script: several statements, no parameters
            if conn.info.transaction_status != psycopg.pq.TransactionStatus.INTRANS:
                raise MigrationError(
                    f"{migration.filename}: the file ends the transaction itself "
                    "(COMMIT/ROLLBACK); remove that: the runner commits each file together "
                    "with its history row"
                )
            elapsed_ms = round((time.perf_counter() - started) * 1000)
            _queries().record_migration(
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
    except psycopg.Error as exc:
        log.error("migrations.failed", file=migration.filename, error=str(exc).splitlines()[0])
        reason = translate(exc, operation="migrate")
        raise MigrationError(f"{migration.filename} failed and was rolled back: {reason}") from exc
    log.info("migrations.applied", file=migration.filename, execution_ms=elapsed_ms)


def _compare(
    migrations: Sequence[Migration], applied: Sequence[AppliedMigration]
) -> MigrationStatus:
    by_version = {m.version: m for m in migrations}
    applied_versions = {row.version for row in applied}
    changed = [
        by_version[row.version]
        for row in applied
        if row.version in by_version and by_version[row.version].checksum != row.checksum
    ]
    missing = [row for row in applied if row.version not in by_version]
    pending = [m for m in migrations if m.version not in applied_versions]
    return MigrationStatus(applied=list(applied), pending=pending, changed=changed, missing=missing)


def _refuse_inconsistent(state: MigrationStatus) -> None:
    if state.changed:
        names = ", ".join(m.filename for m in state.changed)
        raise MigrationError(
            f"migration file(s) changed after they were applied: {names} "
            "(checksum mismatch); restore the applied version and add a new migration instead"
        )
    if state.missing:
        names = ", ".join(f"{row.version:04d}_{row.name}.sql" for row in state.missing)
        raise MigrationError(f"applied migration(s) have no file any more: {names}")
    if state.applied and state.pending:
        newest = max(row.version for row in state.applied)
        older = [m.filename for m in state.pending if m.version < newest]
        if older:
            raise MigrationError(
                f"pending migration(s) {', '.join(older)} are older than the newest applied "
                f"version {newest:04d}; renumber them after it"
            )


def _read_history(conn: psycopg.Connection[Any]) -> list[AppliedMigration]:
    return [AppliedMigration(*row) for row in _queries().list_applied_migrations(conn)]


@contextmanager
def _migration_lock(conn: psycopg.Connection[Any], timeout: float) -> Iterator[None]:
    """Hold the advisory lock for the block; poll for it rather than block inside the server."""
    queries = _queries()
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


@contextmanager
def _connect(conninfo: str) -> Iterator[psycopg.Connection[Any]]:
    parsed = parse_dsn(conninfo)
    try:
        conn = psycopg.connect(parsed.conninfo, autocommit=True, application_name=APPLICATION_NAME)
    except psycopg.Error as exc:
        raise translate(exc, operation="migrate", secrets=parsed.secrets) from exc
    with conn:
        yield conn


def _default_actor() -> str:
    try:
        return f"{getpass.getuser()} (amira-data-access migrate)"
    except (KeyError, OSError):
        return "amira-data-access migrate"


def _queries() -> MigrationQueries:
    return migration_queries()
