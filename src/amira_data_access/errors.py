"""The exception hierarchy, and the one place where database errors become ours.

Every error a backend raises (psycopg and psycopg_pool errors from PostgreSQL,
:class:`ServerRefusal` from the in-memory twin) leaves this package through
:func:`translate`, which picks our class from the SQLSTATE (falling back from
the full code to its two-character class, like psycopg's own lookup), applies
the few constraint-specific messages, scrubs secrets from the text and lets the
caller chain the original (``raise … from``).

Hierarchy::

    ConfigurationAccessError
    ├── DatabaseConnectionError        unreachable, lost, refused, bad DSN
    │   ├── AuthenticationError        wrong user or password (28xxx)
    │   └── OutcomeUnknownError        lost during a write: applied or not, unknown
    ├── DatabaseTimeoutError           a statement or lock wait ran out of time
    ├── PermissionDeniedError          the login role lacks a privilege (42501)
    ├── InvalidConfigurationError      bad input, refused; also a ValueError
    ├── UnreadableValueError           a stored value Python cannot decode (names the key)
    ├── SecretUnavailableError         a secret without (or with the wrong) keyring
    ├── ConflictError                  the data was not as the caller expected
    │   ├── ConcurrentModificationError    a key's version
    │   └── UnexpectedCountError           how many keys a bulk delete found
    ├── SchemaNotReadyError            the tables do not exist: run the migrations
    ├── ReadOnlyServerError            a write sent to a standby (25006): use the primary
    ├── ChangeFeedUnavailableError     the feed cannot work there (standby, transaction pooler)
    └── MigrationError                 a migration failed or the files disagree
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Final

import psycopg
import psycopg_pool

__all__ = [
    "BACKEND_ERRORS",
    "AuthenticationError",
    "ChangeFeedUnavailableError",
    "ConcurrentModificationError",
    "ConfigurationAccessError",
    "ConflictError",
    "DatabaseConnectionError",
    "DatabaseTimeoutError",
    "DatabaseUnreachable",
    "InvalidConfigurationError",
    "MigrationError",
    "OutcomeUnknownError",
    "PermissionDeniedError",
    "ReadOnlyServerError",
    "SchemaNotReadyError",
    "SecretUnavailableError",
    "ServerRefusal",
    "UnexpectedCountError",
    "UnreadableValueError",
    "note_refused_login",
    "scrub",
    "server_refused_the_session",
    "translate",
]


class ConfigurationAccessError(Exception):
    """Base class: configuration could not be read or written."""


class DatabaseConnectionError(ConfigurationAccessError):
    """The server cannot be reached or was lost, the DSN is wrong, or it refused us."""


class AuthenticationError(DatabaseConnectionError):
    """The server refused the login: wrong user or password, or no matching pg_hba rule."""


class OutcomeUnknownError(DatabaseConnectionError):
    """The connection was lost while a write was in flight: it may or may not have been applied.

    Read the key (or its history) to find out; do not simply write again.
    """


class DatabaseTimeoutError(ConfigurationAccessError):
    """A statement, or its wait for a lock, ran out of time (the server is fine)."""


class PermissionDeniedError(ConfigurationAccessError):
    """The database login lacks the privilege this operation needs.

    ``key`` is the key the operation was about (None: several, or none) and
    ``role`` the database login that was refused (None: not known, e.g. the
    in-memory store); both are in the message too.
    """

    def __init__(self, message: str, *, key: str | None = None, role: str | None = None) -> None:
        super().__init__(message)
        self.key = key
        self.role = role


class InvalidConfigurationError(ConfigurationAccessError, ValueError):
    """Bad input (key, value, data type, actor): refused and nothing was written."""


class UnreadableValueError(ConfigurationAccessError):
    """A stored value Python cannot decode: nested too deeply, or a number of too many digits
    (raw SQL could write those before migrations/0007). The other keys are fine.

    ``keys`` are the keys whose value could not be read. When several keys (or
    revisions) were read at once, ``readable`` is the rest, as the call would
    have returned it (the list of entries or revisions, or the dict of values);
    for one key it is None.
    """

    def __init__(self, message: str, *, keys: Iterable[str], readable: Any = None) -> None:
        super().__init__(message)
        self.keys = tuple(dict.fromkeys(keys))
        self.readable = readable


class SecretUnavailableError(ConfigurationAccessError):
    """A secret (``data_type="secret"``) cannot be sealed or opened here: the store was given
    no keyring, the keyring lacks the key id the secret was sealed with, or the stored
    envelope does not open with it (another key's ciphertext, or altered).

    The message names the configuration key and the key id, never key material or a value.
    """


class ConflictError(ConfigurationAccessError):
    """The stored data was not what the caller said it expected: nothing was written."""


class ConcurrentModificationError(ConflictError):
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


class UnexpectedCountError(ConflictError):
    """A bulk delete found another number of keys than ``expected_count``: none was deleted."""

    def __init__(self, subject: str, *, expected_count: int, found_count: int) -> None:
        self.subject = subject
        self.expected_count = expected_count
        self.found_count = found_count
        super().__init__(
            f"{subject}: expected {expected_count} keys, found {found_count}; nothing was deleted"
        )


class SchemaNotReadyError(ConfigurationAccessError):
    """The configuration tables do not exist yet: run the migrations."""


class ReadOnlyServerError(ConfigurationAccessError):
    """A write reached a read-only server (a hot standby, 25006): send writes to the primary."""


class ChangeFeedUnavailableError(ConfigurationAccessError):
    """The change feed refuses a server it cannot work on: a standby (no LISTEN during
    recovery) or a transaction-mode pooler (notifications never reach the listener)."""


class MigrationError(ConfigurationAccessError):
    """A migration could not be applied, or the history disagrees with the files."""


class ServerRefusal(Exception):  # noqa: N818  # what a server reports, not our error yet
    """A statement refused by a database that is not PostgreSQL (the in-memory twin).

    It carries what :func:`translate` reads from a psycopg error: the SQLSTATE
    PostgreSQL would have used, the constraint, and the server's message.
    """

    def __init__(self, message: str, sqlstate: str, constraint_name: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate
        self.constraint_name = constraint_name


class DatabaseUnreachable(Exception):  # noqa: N818  # a backend's report, not our error yet
    """What a DAL raises instead of trying the network while the database is known to be down.

    Its cause (the database going down) was logged once; each call it fails is not.
    """


# What a backend raises when a statement fails: the only errors translate() turns into ours.
BACKEND_ERRORS: Final = (psycopg.Error, ServerRefusal, DatabaseUnreachable)

# SQLSTATE classes (the first two characters) and what they mean to a caller.
_CONNECTION_CLASSES: Final = {
    "08",  # connection exception
    "3D",  # invalid catalog name (the database does not exist)
    "53",  # insufficient resources (too many connections, out of memory)
    "57",  # operator intervention (server shutting down, cannot connect now)
}
_AUTHENTICATION_CLASS: Final = "28"  # invalid authorization specification
_INVALID_INPUT_CLASSES: Final = {
    "22",  # data exception (bad JSON, value out of range, NUL byte…)
    "23",  # integrity constraint violation (our CHECK constraints)
}
_SCHEMA_MISSING_CODES: Final = {
    "42P01",  # undefined table
    "3F000",  # invalid schema name
    "42883",  # undefined function (a migration-created function is missing)
}
_TIMEOUT_CODES: Final = {
    "57014",  # query_canceled: statement_timeout (or a cancel request)
    "55P03",  # lock_not_available: lock_timeout
    "25P03",  # idle_in_transaction_session_timeout
}
_PERMISSION_DENIED: Final = "42501"  # insufficient_privilege
_READ_ONLY: Final = "25006"  # read_only_sql_transaction: a write on a hot standby

_AUTHENTICATION_REFUSED: Final = re.compile(
    r"password authentication failed|no pg_hba\.conf entry|authentication failed for user"
    r"|role \"[^\"]*\" does not exist|no password supplied|password is missing",
    re.IGNORECASE,
)
_DATABASE_MISSING: Final = re.compile(r'database "[^"]*" does not exist')

# Constraints whose generic "violates check constraint" hides what the caller should do.
_CONSTRAINT_MESSAGES: Final = {
    "configurations_value_matches_type": (
        "the value does not match the key's stored data_type; pass data_type= to change the type"
    ),
    # migrations/0007: what a client configured above the table's limits (or raw SQL) hits.
    "configurations_value_size": (
        "the value is larger than the table allows (amira_config.max_value_bytes() bytes "
        "of JSON text)"
    ),
    "configurations_value_depth": (
        "the value is nested deeper than the table allows (amira_config.max_value_depth())"
    ),
    "configurations_key_nfc": "the key is not in Unicode NFC form",
    # migrations/0009: a secret's value is the envelope amira_data_access.secrets seals.
    "configurations_secret_sealed": (
        "a secret's value must be a sealed envelope; pass data_type='secret' with the "
        "plaintext to a store given a keyring (never the plaintext with another type)"
    ),
    # migrations/0012: a flag replaced without data_type="flag" skips the library's schema.
    "configurations_flag_document": (
        "the value is not a flag document (enabled, variants, defaultVariant); "
        'pass data_type="flag" to have it checked against the flag schema'
    ),
    "configurations_key_grammar": (
        "the key has a character outside the key grammar, or letters of two scripts"
    ),
}


# Shorter secrets are not searched for in free text: a one-letter password would turn
# "not supported" into "not su******orted" in every message, and neither libpq nor
# this library ever writes a password into a message in the first place.
MIN_SCRUBBED_LENGTH: Final = 4


def scrub(text: str, secrets: Iterable[str | None] = ()) -> str:
    """Return ``text`` with every secret (of 4 characters or more) replaced by ``***``."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        if len(secret) >= MIN_SCRUBBED_LENGTH:
            text = text.replace(secret, "***")
    return text


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its class name when it has none."""
    message = str(exc).strip()
    return message.splitlines()[0] if message else type(exc).__name__


def server_refused_the_session(message: str) -> bool:
    """Whether a connection error without SQLSTATE is the server refusing the login or
    the database (it answered: it is not down)."""
    return bool(_AUTHENTICATION_REFUSED.search(message) or _DATABASE_MISSING.search(message))


# Set on a refused (42501) psycopg error by the store that ran the statement: the
# server's "permission denied for table …" does not say which login it refused.
_REFUSED_LOGIN: Final = "_amira_refused_login"


def note_refused_login(exc: BaseException, login: str | None) -> None:
    """Remember on a refused statement's error which database login ran it (for translate)."""
    if getattr(exc, "sqlstate", None) == _PERMISSION_DENIED and login:
        setattr(exc, _REFUSED_LOGIN, login)


def _constraint_name(exc: BaseException) -> str | None:
    if isinstance(exc, ServerRefusal):
        return exc.constraint_name
    diag = getattr(exc, "diag", None)
    name = getattr(diag, "constraint_name", None)
    return name if isinstance(name, str) else None


def translate(
    exc: BaseException,
    *,
    operation: str,
    key: str | None = None,
    secrets: Iterable[str | None] = (),
) -> ConfigurationAccessError:
    """Map a backend error to our hierarchy; the caller raises the result ``from exc``.

    The message names the operation and key, keeps the server's first line (after
    removing ``secrets``) and never includes a connection string. Our own errors
    are returned unchanged.
    """
    if isinstance(exc, ConfigurationAccessError):
        return exc
    subject = f"{operation} {key!r}" if key is not None else operation
    detail = scrub(first_line(exc), secrets)

    if isinstance(exc, psycopg_pool.PoolTimeout):
        return DatabaseConnectionError(
            f"{subject}: no database connection available in time "
            f"(server unreachable or pool exhausted): {detail}"
        )
    if isinstance(exc, psycopg_pool.PoolClosed):
        return DatabaseConnectionError(f"{subject}: the connection pool is closed")
    if isinstance(exc, DatabaseUnreachable):
        return DatabaseConnectionError(f"{subject}: {detail}")

    sqlstate = getattr(exc, "sqlstate", None)
    sqlclass = sqlstate[:2] if isinstance(sqlstate, str) else None
    constraint = _constraint_name(exc)
    if constraint in _CONSTRAINT_MESSAGES:
        return InvalidConfigurationError(f"{subject}: {_CONSTRAINT_MESSAGES[constraint]}")
    if sqlstate in _SCHEMA_MISSING_CODES:
        return SchemaNotReadyError(
            f"{subject}: the configuration schema is missing or incomplete; "
            f"run the migrations first ({detail})"
        )
    if sqlstate in _TIMEOUT_CODES:
        return DatabaseTimeoutError(f"{subject} ran out of time: {detail}")
    if sqlstate == _READ_ONLY:
        return ReadOnlyServerError(
            f"{subject}: the server is read-only (a standby): writes must go to the primary "
            f"(ConfigDAL's dsn; replicas are for read_dsn): {detail}"
        )
    if sqlstate == _PERMISSION_DENIED:
        login = getattr(exc, _REFUSED_LOGIN, None)
        whom = f" to role {login!r}" if login else ""
        return PermissionDeniedError(
            f"{subject}: permission denied{whom}: {detail}", key=key, role=login
        )
    if sqlclass == _AUTHENTICATION_CLASS or (
        sqlstate is None and _AUTHENTICATION_REFUSED.search(detail) is not None
    ):
        # A refused login arrives without a SQLSTATE (libpq reports the server's FATAL
        # before a session exists), so it is also recognised by its words.
        return AuthenticationError(f"{subject}: the server refused the login: {detail}")
    if sqlstate is None and _DATABASE_MISSING.search(detail) is not None:
        return DatabaseConnectionError(
            f"{subject}: database unavailable: {detail} (check the dbname of the DSN, or DB_NAME)"
        )
    if sqlclass in _CONNECTION_CLASSES or (
        sqlstate is None and isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)
    ):
        # A lost connection is a plain OperationalError with no SQLSTATE.
        return DatabaseConnectionError(f"{subject}: database unavailable: {detail}")
    if sqlclass in _INVALID_INPUT_CLASSES:
        return InvalidConfigurationError(f"{subject}: refused by the database: {detail}")
    return ConfigurationAccessError(f"{subject} failed: {detail}")
