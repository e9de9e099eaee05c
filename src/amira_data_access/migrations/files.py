"""Migration files: naming, reading, checksums, directives and the checks of their content.

Files are ``migrations/NNNN_slug.sql``. The checksum is taken over the file
normalised for line endings and a BOM, so an editor's settings do not count as
an edit. A file whose first non-blank line is ``-- migrate:no-transaction``
holds exactly one statement that cannot run in a transaction; everything else
runs in one transaction together with its history row, so it must not end that
transaction itself. :func:`content_problems` refuses what would break either
rule *before* anything runs (with the statement splitter of :mod:`.lexer`).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from .._resources import sql_dir
from ..errors import MigrationError
from .lexer import cannot_run_in_transaction, ends_transaction, split_statements

__all__ = [
    "MIGRATION_FILE",
    "NO_TRANSACTION_HEADER",
    "Migration",
    "checksum",
    "content_problems",
    "directive",
    "discover",
    "scan",
]

MIGRATION_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
NO_TRANSACTION_HEADER = "-- migrate:no-transaction"

_DIRECTIVE = re.compile(r"--\s*migrate:\s*(\S.*?)\s*")


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
    migrations, problems = scan(directory)
    if problems:
        raise MigrationError("; ".join(problems))
    return migrations


def scan(directory: Path | None) -> tuple[list[Migration], list[str]]:
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
            transactional=directive(sql) != "no-transaction",
        )
    return [migrations[version] for version in sorted(migrations)], problems


def directive(sql: str) -> str | None:
    """The ``-- migrate:<directive>`` of the first non-blank line, if it is one."""
    for line in sql.splitlines():
        if line.strip():
            match = _DIRECTIVE.fullmatch(line.strip())
            return match.group(1) if match else None
    return None


def content_problems(migration: Migration) -> list[str]:
    """What is wrong with a file's SQL for the way it will run; [] when it may run."""
    name = migration.filename
    header = directive(migration.sql)
    if header is not None and header != "no-transaction":
        return [
            f"{name}: unknown directive '-- migrate:{header}' "
            f"(the only one is '{NO_TRANSACTION_HEADER}')"
        ]
    try:
        statements = split_statements(migration.sql)
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
            if ends_transaction(s)
        ]
        return problems
    for statement in statements:
        if ends_transaction(statement):
            problems.append(
                f"{name} line {statement.line}: {statement.keyword} would end the "
                "transaction the runner opened for the file; remove it (the runner commits "
                "each file together with its history row)"
            )
        elif cannot_run_in_transaction(statement):
            problems.append(
                f"{name} line {statement.line}: {statement.keyword} … cannot run inside a "
                f"transaction: put it alone in a file whose first line is "
                f"'{NO_TRANSACTION_HEADER}'"
            )
    return problems
