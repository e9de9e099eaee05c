"""Which failures mean "the database is down" (the outage state's pure decisions)."""

from __future__ import annotations

import psycopg
import psycopg.errors
import psycopg_pool
import pytest

from amira_data_access.backends.reachability import Reachability, is_connection_failure
from amira_data_access.errors import DatabaseUnreachable


@pytest.mark.parametrize(
    "exc",
    [
        psycopg_pool.PoolTimeout("couldn't get a connection after 5.00 sec"),
        psycopg.OperationalError("consuming input failed: server closed the connection"),
        psycopg.OperationalError('connection to server at "127.0.0.1" failed: Connection refused'),
        psycopg.errors.lookup("57P01")("terminating connection due to administrator command"),
        psycopg.errors.lookup("08006")("connection failure"),
    ],
)
def test_lost_or_refused_connections_are_connection_failures(exc: Exception) -> None:
    """What a server that went away looks like."""
    assert is_connection_failure(exc)


@pytest.mark.parametrize(
    "exc",
    [
        psycopg.OperationalError('FATAL:  password authentication failed for user "svc"'),
        psycopg.OperationalError('FATAL:  database "nope" does not exist'),
        psycopg.errors.lookup("55P03")("canceling statement due to lock timeout"),
        psycopg.errors.lookup("57014")("canceling statement due to statement timeout"),
        psycopg.errors.lookup("23514")("violates check constraint"),
        psycopg.errors.lookup("42501")("permission denied"),
        ValueError("not a database error"),
    ],
)
def test_answers_of_a_working_server_are_not(exc: Exception) -> None:
    """A refused login, a timeout or a refused statement came from a server that is up."""
    assert not is_connection_failure(exc)


def test_check_passes_until_down_and_then_fails_at_once() -> None:
    """While up, check() does nothing; once down it raises without touching the network."""
    state = Reachability("host=127.0.0.1 port=1", {}, ())
    state.check()
    state._down_since = 1_000_000.0  # as failed() would mark it
    state._reason = "Connection refused"
    with pytest.raises(
        DatabaseUnreachable, match=r"database unreachable since .*Connection refused"
    ):
        state.check()
    state.close()


def test_a_failure_that_is_not_a_lost_connection_does_not_probe() -> None:
    """A timeout or a refused login must not mark the database down (nor even probe it)."""
    state = Reachability("host=127.0.0.1 port=1", {}, ())
    probed: list[bool] = []
    state._probe = lambda: probed.append(True) or False  # type: ignore[method-assign]
    state.failed(psycopg.errors.lookup("55P03")("lock timeout"))
    assert probed == []
    assert state.down_since is None
    state.failed(psycopg.OperationalError("server closed the connection unexpectedly"))
    assert probed == [True]
    assert state.down_since is not None
    state.close()
