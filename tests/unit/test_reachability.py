"""Which failures mean "the database is down" (the outage state's pure decisions)."""

from __future__ import annotations

import time

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


def test_a_session_opened_elsewhere_ends_the_outage_at_once_and_once() -> None:
    """answered() (the change feed connected) marks the database up without waiting for
    the probe, runs the recovery callbacks once, and the probe of that outage stops; a
    later outage is probed again."""
    state = Reachability("host=127.0.0.1 port=1", {}, (), probe_interval=0.05)
    probes: list[bool] = []
    state._probe = lambda: probes.append(True) or False  # type: ignore[method-assign]
    recovered: list[str] = []
    state.on_recovered(lambda: recovered.append("up"))
    state.answered()  # up already: nothing to do
    assert recovered == []
    lost = psycopg.OperationalError("server closed the connection unexpectedly")
    state.failed(lost)
    assert state.down_since is not None
    first_prober = state._prober
    assert first_prober is not None
    state.answered()
    assert state.down_since is None
    state.check()  # no longer fails at once
    assert recovered == ["up"]
    first_prober.join(timeout=5)
    assert not first_prober.is_alive()  # this outage's probe stopped
    state.answered()
    assert recovered == ["up"]  # recovered once
    state.failed(lost)  # a new outage: probed in the background again
    assert state.down_since is not None
    probes.clear()
    time.sleep(0.3)
    assert probes, "the new outage is not being probed"
    state.close()
