"""The exception hierarchy, and the one place where driver errors become ours.

Every psycopg / psycopg_pool error that leaves this package goes through
:func:`translate`, which picks our class from the SQLSTATE class (like psycopg's
own lookup falls back from the full code to its two-character class), scrubs
secrets from the message and lets the caller chain the original (``raise … from``).
"""

from __future__ import annotations

from collections.abc import Iterable

import psycopg
import psycopg_pool

__all__ = [
    "ConcurrentModificationError",
    "ConfigurationAccessError",
    "DatabaseConnectionError",
    "InvalidConfigurationError",
    "MigrationError",
    "SchemaNotReadyError",
    "translate",
]


class ConfigurationAccessError(Exception):
    """Base class: configuration could not be read or written."""


class DatabaseConnectionError(ConfigurationAccessError):
    """The server cannot be reached or was lost, the DSN is wrong, or it refused us."""


class InvalidConfigurationError(ConfigurationAccessError, ValueError):
    """Bad input (key, value, data type, actor): refused and nothing was written."""


class ConcurrentModificationError(ConfigurationAccessError):
    """The key's version was not the expected one: someone else changed it first.

    ``current_version`` is the version found (0: the key does not exist; None:
    changed again so fast it could not be read).
    """

    def __init__(self, key: str, *, expected_version: int, current_version: int | None) -> None:
        self.key = key
        self.expected_version = expected_version
        self.current_version = current_version
        found = "does not exist" if current_version == 0 else f"is at version {current_version}"
        if current_version is None:
            found = "was changed concurrently"
        super().__init__(
            f"{key!r} {found}, not at the expected version {expected_version}: "
            "read it again and retry"
        )


class SchemaNotReadyError(ConfigurationAccessError):
    """The configuration tables do not exist yet: run the migrations."""


class MigrationError(ConfigurationAccessError):
    """A migration could not be applied, or the history disagrees with the files."""


# SQLSTATE classes (the first two characters) and what they mean to a caller.
_CONNECTION_CLASSES = {
    "08",  # connection exception
    "28",  # invalid authorization specification (wrong user or password)
    "3D",  # invalid catalog name (the database does not exist)
    "53",  # insufficient resources (too many connections, out of memory)
    "57",  # operator intervention (server shutting down, cannot connect now)
}
_INVALID_INPUT_CLASSES = {
    "22",  # data exception (bad JSON, value out of range, NUL byte…)
    "23",  # integrity constraint violation (our CHECK constraints)
}
_SCHEMA_MISSING_CODES = {
    "42P01",  # undefined table
    "3F000",  # invalid schema name
    "42883",  # undefined function (a migration-created function is missing)
}


def scrub(text: str, secrets: Iterable[str | None] = ()) -> str:
    """Return ``text`` with every non-empty secret replaced by ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def _first_line(exc: BaseException) -> str:
    message = str(exc).strip()
    return message.splitlines()[0] if message else type(exc).__name__


def translate(
    exc: BaseException,
    *,
    operation: str,
    key: str | None = None,
    secrets: Iterable[str | None] = (),
) -> ConfigurationAccessError:
    """Map a driver or pool error to our hierarchy; the caller raises it ``from exc``.

    The message names the operation and key, keeps the server's first line (after
    removing ``secrets``) and never includes a connection string.
    """
    if isinstance(exc, ConfigurationAccessError):
        return exc
    subject = f"{operation} {key!r}" if key is not None else operation
    detail = scrub(_first_line(exc), secrets)

    if isinstance(exc, psycopg_pool.PoolTimeout):
        return DatabaseConnectionError(
            f"{subject}: no database connection available in time "
            f"(server unreachable or pool exhausted): {detail}"
        )
    if isinstance(exc, psycopg_pool.PoolClosed):
        return DatabaseConnectionError(f"{subject}: the connection pool is closed")

    sqlstate = getattr(exc, "sqlstate", None)
    if sqlstate in _SCHEMA_MISSING_CODES:
        return SchemaNotReadyError(
            f"{subject}: the configuration schema is missing or incomplete; "
            f"run the migrations first ({detail})"
        )
    sqlclass = sqlstate[:2] if sqlstate else None
    if sqlstate == "57014":  # query_canceled (statement timeout, cancel): the server is fine
        return ConfigurationAccessError(f"{subject} was cancelled: {detail}")
    if sqlclass in _CONNECTION_CLASSES or (
        sqlstate is None and isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)
    ):
        # A lost connection is a plain OperationalError with no SQLSTATE.
        return DatabaseConnectionError(f"{subject}: database unavailable: {detail}")
    if sqlclass in _INVALID_INPUT_CLASSES:
        return InvalidConfigurationError(f"{subject}: refused by the database: {detail}")
    return ConfigurationAccessError(f"{subject} failed: {detail}")
