"""Errors a person can act on, from a real server: a refused login, a missing privilege,
a write whose outcome is unknown.

Reproduced before the fix: a wrong password said "database unavailable"; 42501 came out
as a generic ConfigurationAccessError; a write that failed on a lost connection (which
may have committed: 4 of 108 in a restart test) said nothing about it.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from amira_data_access import (
    AuthenticationError,
    ConfigDAL,
    OutcomeUnknownError,
    PermissionDeniedError,
    Timeouts,
)

from .conftest import held_row_lock

PASSWORD = "correct-horse-battery"  # a throwaway role's


@pytest.fixture
def reader_role(pg_server: Any, dsn: str) -> Iterator[str]:
    """A login role that may read the configuration but not change it."""
    role = f"reader_{uuid.uuid4().hex[:8]}"
    ident = sql.Identifier(role)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(ident, sql.Literal(PASSWORD))
        )
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA amira_config TO {}").format(ident))
        conn.execute(
            sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA amira_config TO {}").format(ident)
        )
    yield role
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP OWNED BY {}").format(ident))
        conn.execute(sql.SQL("DROP ROLE {}").format(ident))


def _as(pg_server: Any, dsn: str, role: str, password: str) -> str:
    return str(pg_server.dsn(str(conninfo_to_dict(dsn)["dbname"]), user=role, password=password))


def test_a_wrong_password_is_an_authentication_error(
    pg_server: Any, dsn: str, reader_role: str
) -> None:
    """The server refused the login: AuthenticationError saying so, not "unavailable"."""
    dal = ConfigDAL(_as(pg_server, dsn, reader_role, "not-the-password"), connect_timeout=3)
    with pytest.raises(AuthenticationError) as info:
        dal.get("k")
    dal.close()
    message = str(info.value)
    assert "password authentication failed" in message
    assert "refused the login" in message
    assert "unavailable" not in message
    assert "not-the-password" not in message


def test_a_missing_privilege_is_permission_denied(
    pg_server: Any, dsn: str, reader_role: str
) -> None:
    """A role that may only read gets PermissionDeniedError naming the operation and key."""
    with ConfigDAL(dsn) as owner:
        owner.set("p.k", 1, updated_by="owner")
    with ConfigDAL(_as(pg_server, dsn, reader_role, PASSWORD)) as dal:
        assert dal.get("p.k") == 1
        with pytest.raises(PermissionDeniedError) as info:
            dal.set("p.k", 2, updated_by="reader")
    assert str(info.value).startswith("config.set 'p.k': permission denied")


def test_a_write_cut_off_in_flight_says_its_outcome_is_unknown(dsn: str) -> None:
    """The write's session is killed while its statement runs: OutcomeUnknownError, which
    tells the caller to read the key back rather than write again."""
    with ConfigDAL(dsn, max_size=1, timeouts=Timeouts(lock=30)) as dal:
        dal.set("u.k", 0, updated_by="t")
        with held_row_lock(dsn, "u.k") as holder:
            outcome: list[BaseException] = []

            def write() -> None:
                try:
                    dal.set("u.k", 1, updated_by="t")
                except Exception as exc:  # the assertion below says which
                    outcome.append(exc)

            writer = threading.Thread(target=write)
            writer.start()
            deadline = time.monotonic() + 10
            pid = None
            while pid is None and time.monotonic() < deadline:  # the write, waiting on the lock
                # pg_stat_activity is read once per transaction (stats_fetch_consistency):
                # without a fresh snapshot, a write arriving after the first look is never seen.
                holder.execute("SELECT pg_stat_clear_snapshot()")
                row = holder.execute(
                    "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND query LIKE '%%configurations%%' LIMIT 1"
                ).fetchone()
                pid = row[0] if row else None
                time.sleep(0.02)
            assert pid is not None, "the write never reached the server"
            with psycopg.connect(dsn, autocommit=True) as killer:
                killer.execute("SELECT pg_terminate_backend(%s)", (pid,))
            writer.join(timeout=10)
        assert len(outcome) == 1
        assert isinstance(outcome[0], OutcomeUnknownError), repr(outcome[0])
        assert "outcome unknown" in str(outcome[0])
        assert "read it back" in str(outcome[0])
        assert dal.get("u.k") in (0, 1)  # the pool recovered; either outcome was possible
