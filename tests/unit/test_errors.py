"""Unit tests for amira_data_access.errors: the hierarchy and translate()."""

from __future__ import annotations

import psycopg
import psycopg.errors
import psycopg_pool
import pytest

from amira_data_access.errors import (
    AuthenticationError,
    ConfigurationAccessError,
    DatabaseConnectionError,
    DatabaseTimeoutError,
    InvalidConfigurationError,
    MigrationError,
    PermissionDeniedError,
    SchemaNotReadyError,
    ServerRefusal,
    scrub,
    translate,
)


def pg_error(sqlstate: str, message: str = "server said no") -> psycopg.Error:
    """A psycopg error of the class registered for ``sqlstate``."""
    error = psycopg.errors.lookup(sqlstate)(message)
    assert error.sqlstate == sqlstate
    return error


@pytest.mark.parametrize(
    "cls",
    [DatabaseConnectionError, InvalidConfigurationError, SchemaNotReadyError, MigrationError],
)
def test_every_error_is_a_configuration_access_error(cls: type[Exception]) -> None:
    """Every public error subclasses ConfigurationAccessError, itself an Exception."""
    assert issubclass(cls, ConfigurationAccessError)
    assert issubclass(ConfigurationAccessError, Exception)


def test_invalid_configuration_error_is_a_value_error() -> None:
    """InvalidConfigurationError is also a ValueError, so `except ValueError` catches it."""
    assert issubclass(InvalidConfigurationError, ValueError)
    assert not issubclass(DatabaseConnectionError, ValueError)


@pytest.mark.parametrize("sqlstate", ["08006", "08001", "3D000", "57P01", "53300"])
def test_translate_connection_sqlstates(sqlstate: str) -> None:
    """Connection, missing-database, resources and shutdown errors mean unavailable."""
    error = translate(pg_error(sqlstate), operation="config.get", key="k")
    assert type(error) is DatabaseConnectionError


@pytest.mark.parametrize("sqlstate", ["28P01", "28000"])
def test_translate_authentication_sqlstates(sqlstate: str) -> None:
    """A refused login is an AuthenticationError, still a DatabaseConnectionError."""
    error = translate(pg_error(sqlstate), operation="config.get", key="k")
    assert type(error) is AuthenticationError
    assert isinstance(error, DatabaseConnectionError)
    assert "refused the login" in str(error)


@pytest.mark.parametrize("sqlstate", ["57014", "55P03", "25P03"])
def test_translate_timeouts(sqlstate: str) -> None:
    """A statement, lock or idle-in-transaction timeout is a DatabaseTimeoutError."""
    error = translate(pg_error(sqlstate), operation="config.set", key="k")
    assert type(error) is DatabaseTimeoutError
    assert "ran out of time" in str(error)


def test_translate_permission_denied() -> None:
    """42501 (insufficient privilege) is a PermissionDeniedError."""
    error = translate(pg_error("42501", "permission denied for table x"), operation="config.set")
    assert type(error) is PermissionDeniedError
    assert "permission denied for table x" in str(error)


def test_translate_constraint_with_its_own_message() -> None:
    """The value/type CHECK gets a message saying what to do, from any backend."""
    refusal = ServerRefusal("violates check", "23514", "configurations_value_matches_type")
    error = translate(refusal, operation="config.set", key="k")
    assert type(error) is InvalidConfigurationError
    assert "pass data_type=" in str(error)
    assert type(translate(ServerRefusal("other", "23514", "other"), operation="x")) is (
        InvalidConfigurationError
    )


@pytest.mark.parametrize("cls", [psycopg.OperationalError, psycopg.InterfaceError])
def test_translate_lost_connection_without_sqlstate(cls: type[psycopg.Error]) -> None:
    """A plain OperationalError/InterfaceError with no SQLSTATE is a lost connection."""
    exc = cls("server closed the connection unexpectedly")
    assert exc.sqlstate is None
    error = translate(exc, operation="config.get")
    assert type(error) is DatabaseConnectionError
    assert "server closed the connection unexpectedly" in str(error)


@pytest.mark.parametrize("sqlstate", ["42P01", "3F000", "42883"])
def test_translate_schema_missing(sqlstate: str) -> None:
    """Undefined table, schema or function means the migrations have not run."""
    error = translate(pg_error(sqlstate), operation="config.get", key="k")
    assert type(error) is SchemaNotReadyError
    assert "run the migrations" in str(error)


@pytest.mark.parametrize("sqlstate", ["22P02", "23514", "22003", "23505"])
def test_translate_invalid_input(sqlstate: str) -> None:
    """Data exceptions and integrity violations are the caller's invalid input."""
    error = translate(pg_error(sqlstate), operation="config.set", key="k")
    assert type(error) is InvalidConfigurationError
    assert isinstance(error, ValueError)


@pytest.mark.parametrize("sqlstate", ["42601", "40001", "XX000"])
def test_translate_other_errors_give_the_base_class(sqlstate: str) -> None:
    """Anything else (syntax error, serialization failure, internal) gives the base class."""
    error = translate(pg_error(sqlstate), operation="config.get", key="k")
    assert type(error) is ConfigurationAccessError


def test_translate_non_psycopg_exception_gives_the_base_class() -> None:
    """An unrelated exception is wrapped in the base class with its message."""
    error = translate(RuntimeError("boom"), operation="config.get")
    assert type(error) is ConfigurationAccessError
    assert "boom" in str(error)


def test_translate_pool_timeout() -> None:
    """A pool timeout means no connection could be had: DatabaseConnectionError."""
    error = translate(
        psycopg_pool.PoolTimeout("couldn't get a connection after 5.00 sec"),
        operation="config.get",
        key="k",
    )
    assert type(error) is DatabaseConnectionError
    assert "no database connection available in time" in str(error)
    assert "couldn't get a connection after 5.00 sec" in str(error)


def test_translate_pool_closed() -> None:
    """A closed pool is reported as a DatabaseConnectionError."""
    error = translate(psycopg_pool.PoolClosed("the pool is closed"), operation="config.get")
    assert type(error) is DatabaseConnectionError
    assert "pool is closed" in str(error)


@pytest.mark.parametrize(
    "existing",
    [
        ConfigurationAccessError("x"),
        InvalidConfigurationError("bad"),
        SchemaNotReadyError("missing"),
        MigrationError("changed"),
    ],
)
def test_translate_returns_our_errors_unchanged(existing: ConfigurationAccessError) -> None:
    """An error already in our hierarchy is returned as the very same object."""
    assert translate(existing, operation="config.get", key="k") is existing


def test_translate_message_names_operation_and_key() -> None:
    """The message names the operation, the key (repr) and the server's message."""
    error = translate(
        pg_error("23514", "new row violates check constraint"),
        operation="config.set",
        key="app.timeout",
    )
    message = str(error)
    assert message.startswith("config.set 'app.timeout'")
    assert "new row violates check constraint" in message


def test_translate_message_without_key() -> None:
    """Without a key the message starts with the operation alone."""
    error = translate(pg_error("42601", "syntax error"), operation="migrate")
    assert str(error) == "migrate failed: syntax error"


def test_translate_keeps_only_the_first_line() -> None:
    """Only the first line of a multi-line driver message is kept."""
    error = translate(
        pg_error("42601", "syntax error at or near x\nLINE 1: SELECT x\n        ^"),
        operation="config.get",
    )
    assert "LINE 1" not in str(error)
    assert "syntax error at or near x" in str(error)


def test_translate_empty_message_uses_the_class_name() -> None:
    """A driver error with an empty message is described by its class name."""
    error = translate(psycopg.OperationalError(""), operation="config.get")
    assert "OperationalError" in str(error)


@pytest.mark.parametrize("sqlstate", [None, "28P01", "42P01", "23514", "42601"])
def test_translate_scrubs_secrets(sqlstate: str | None) -> None:
    """Secrets in the driver message are replaced by *** whatever the error class."""
    text = 'password authentication failed: "hunter2" (also s3cr%3Ft)'
    exc = psycopg.OperationalError(text) if sqlstate is None else pg_error(sqlstate, text)
    error = translate(
        exc, operation="config.get", key="k", secrets=["hunter2", None, "", "s3cr%3Ft"]
    )
    message = str(error)
    assert "hunter2" not in message
    assert "s3cr%3Ft" not in message
    assert message.count("***") == 2


def test_translate_pool_timeout_scrubs_secrets() -> None:
    """Secrets are scrubbed from pool timeout messages too."""
    error = translate(
        psycopg_pool.PoolTimeout("connection failed for password=hunter2"),
        operation="config.get",
        secrets=["hunter2"],
    )
    assert "hunter2" not in str(error)


def test_scrub_replaces_every_occurrence_and_skips_empty_secrets() -> None:
    """scrub replaces all occurrences of each non-empty secret and ignores empty ones."""
    assert scrub("pw-1 pw-1 x", ["pw-1", "", None]) == "*** *** x"
    assert scrub("nothing here", []) == "nothing here"


def test_scrub_leaves_text_alone_for_a_very_short_secret() -> None:
    """A one-letter password would garble every message ("su******orted"): not scrubbed."""
    assert scrub("Servname not supported", ["p"]) == "Servname not supported"
    assert scrub("abc abcd", ["abc", "abcd"]) == "abc ***"


def test_scrub_replaces_the_longest_form_first() -> None:
    """The raw and percent-encoded forms of one password are both removed, whole."""
    assert scrub("p@ss1 p%40ss1", ["p@ss1", "p%40ss1"]) == "*** ***"


@pytest.mark.parametrize(
    "message",
    [
        'connection failed: FATAL:  password authentication failed for user "amira"',
        'connection failed: FATAL:  no pg_hba.conf entry for host "10.0.0.1", user "x"',
        'connection failed: FATAL:  role "nobody" does not exist',
        "connection failed: fe_sendauth: no password supplied",
    ],
)
def test_a_refused_login_without_sqlstate_is_an_authentication_error(message: str) -> None:
    """libpq reports a refused login before any session exists: no SQLSTATE, just its words."""
    error = translate(psycopg.OperationalError(message), operation="config.open")
    assert type(error) is AuthenticationError
    assert "refused the login" in str(error)


def test_a_missing_database_says_where_its_name_comes_from() -> None:
    """An unknown database is unavailable, and the message points at the DSN's dbname."""
    exc = psycopg.OperationalError('connection failed: FATAL:  database "amria" does not exist')
    error = translate(exc, operation="config.open")
    assert type(error) is DatabaseConnectionError
    assert 'database "amria" does not exist' in str(error)
    assert "DB_NAME" in str(error)
