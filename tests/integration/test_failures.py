"""Failures a service meets in production: clear errors, fast, and never a password."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator

import psycopg
import pytest
from psycopg.conninfo import make_conninfo
from structlog.testing import capture_logs

from amira_data_access import (
    ConfigDAL,
    ConfigurationAccessError,
    DatabaseConnectionError,
    SchemaNotReadyError,
)
from conftest import TestServer

SECRET = "s3cr3t-Pa55word"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def secret_role(pg_server: TestServer, dsn: str) -> Iterator[str]:
    """A login role whose password is SECRET, and a DSN using it."""
    role = f"svc_{int(time.time() * 1000) % 10**9}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            psycopg.sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                psycopg.sql.Identifier(role), psycopg.sql.Literal(SECRET)
            )
        )
        conn.execute(
            psycopg.sql.SQL("GRANT USAGE ON SCHEMA amira_config TO {}").format(
                psycopg.sql.Identifier(role)
            )
        )
        conn.execute(
            psycopg.sql.SQL(
                "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA amira_config TO {}"
            ).format(psycopg.sql.Identifier(role))
        )
    yield role
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("DROP OWNED BY {}").format(psycopg.sql.Identifier(role)))
        conn.execute(psycopg.sql.SQL("DROP ROLE {}").format(psycopg.sql.Identifier(role)))


def _assert_no_secret(
    error: BaseException, logs: list[dict[str, object]], caplog_text: str
) -> None:
    chain: BaseException | None = error
    while chain is not None:
        assert SECRET not in str(chain)
        chain = chain.__cause__ or chain.__context__
    assert SECRET not in repr(logs)
    assert SECRET not in caplog_text


def test_server_down_gives_database_connection_error_quickly() -> None:
    """Nothing listening on the port: DatabaseConnectionError, well within connect_timeout."""
    dsn = make_conninfo(
        host="127.0.0.1", port=_closed_port(), dbname="x", user="u", password=SECRET
    )
    dal = ConfigDAL(dsn, connect_timeout=3)
    started = time.monotonic()
    with capture_logs() as logs, pytest.raises(DatabaseConnectionError) as info:
        dal.get("default_language")
    assert time.monotonic() - started < 3
    assert "config.open" in str(info.value)
    assert "\n" not in str(info.value)
    _assert_no_secret(info.value, logs, "")
    assert [e["outcome"] for e in logs] == ["error"]
    dal.close()


def test_seed_error_names_are_the_same_classes() -> None:
    """The seed's exception names, imported from config_repository, are our classes."""
    from amira_data_access import config_repository

    assert config_repository.DatabaseConnectionError is DatabaseConnectionError
    assert config_repository.ConfigurationAccessError is ConfigurationAccessError
    assert issubclass(DatabaseConnectionError, ConfigurationAccessError)


def test_wrong_password_is_a_connection_error_without_the_password(
    pg_server: TestServer, dsn: str, secret_role: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A wrong password fails clearly, and neither the error nor any log line shows it."""
    caplog.set_level(logging.DEBUG)
    dbname = psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]
    wrong = pg_server.dsn(str(dbname), user=secret_role, password=SECRET + "-wrong")
    dal = ConfigDAL(wrong, connect_timeout=3)
    with capture_logs() as logs, pytest.raises(DatabaseConnectionError) as info:
        dal.get("k")
    assert "password authentication failed" in str(info.value)
    _assert_no_secret(info.value, logs, caplog.text)
    assert SECRET + "-wrong" not in str(info.value)
    dal.close()


def test_right_password_in_dsn_never_reaches_logs(
    pg_server: TestServer, dsn: str, secret_role: str, caplog: pytest.LogCaptureFixture
) -> None:
    """With a password DSN, every operation's log events and errors are free of it."""
    caplog.set_level(logging.DEBUG)
    dbname = psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]
    good = pg_server.dsn(str(dbname), user=secret_role, password=SECRET)
    with capture_logs() as logs, ConfigDAL(good) as dal:
        dal.set("k", 1, updated_by="a")
        dal.get("k")
        dal.list()
        dal.delete("k", deleted_by="a")
        with pytest.raises(ConfigurationAccessError) as info:
            dal.set("k", "x", data_type="int", updated_by="a")
        assert SECRET not in dal.target
    assert len(logs) >= 5
    _assert_no_secret(info.value, logs, caplog.text)


def test_invalid_connection_string_is_one_clear_line_without_password() -> None:
    """A malformed DSN fails at construction with a one-line message and no secret."""
    with pytest.raises(DatabaseConnectionError) as info:
        ConfigDAL(f"host=localhost password={SECRET} port=notaport = =")
    message = str(info.value)
    assert message.startswith("invalid connection string")
    assert "\n" not in message
    assert SECRET not in message
    assert info.value.__cause__ is None


def test_unknown_database_is_a_connection_error(pg_server: TestServer) -> None:
    """Connecting to a database that does not exist says so."""
    dal = ConfigDAL(pg_server.dsn("no_such_database_here"), connect_timeout=3)
    with pytest.raises(DatabaseConnectionError, match="does not exist"):
        dal.get("k")
    dal.close()


def test_missing_schema_says_run_migrations(empty_dsn: str) -> None:
    """Before migrations, operations raise SchemaNotReadyError pointing at them."""
    with ConfigDAL(empty_dsn) as dal, pytest.raises(SchemaNotReadyError, match="migrations"):
        dal.get("k")


def test_server_restart_is_survived_by_the_pool(restartable: TestServer, dsn: str) -> None:
    """After a server restart, the next call gets a fresh connection instead of an error."""
    pg_server = restartable
    assert pg_server.local is not None
    with ConfigDAL(dsn, check_after_idle=0.0) as dal:
        dal.set("k", "before", updated_by="a")
        pg_server.local.stop()
        other = ConfigDAL(dsn, connect_timeout=2)
        with pytest.raises(DatabaseConnectionError):
            other.get("k")
        other.close()
        pg_server.local.start()
        assert dal.get("k") == "before"
