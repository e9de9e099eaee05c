"""The read lease and the fast ``get`` (issue 14): one pooled connection kept for reads.

A ``get`` that finds the leased connection free runs on it without the pool's
checkout, and without the operation's per-call objects when nothing would be
logged. These tests pin what that must not change: the pool's promises (idle
connections pinged, ``min_size=0`` closing everything, nothing left open by
``close``), retries and their log event, and the answers themselves.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from amira_data_access import (
    AsyncConfigDAL,
    ConfigDAL,
    DatabaseConnectionError,
    DatabaseTimeoutError,
    Timeouts,
)
from amira_data_access.core.retry import RetryPolicy

APP = "amira-lease-test"


def _checkouts(dal: ConfigDAL | AsyncConfigDAL) -> int:
    """How many times the pool handed out a connection."""
    return int(dal.pool.get_stats().get("requests_num", 0))


def _sessions(dsn: str) -> list[int]:
    """The backend pids of this test's DAL sessions."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (APP,)
        ).fetchall()
    return [int(row[0]) for row in rows]


def _leased_pid(dal: ConfigDAL) -> int:
    conn = dal._lease._conn
    assert conn is not None, "no connection leased"
    return int(conn.info.backend_pid)


def _terminate(dsn: str, pids: list[int]) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for pid in pids:
            conn.execute("SELECT pg_terminate_backend(%s)", (pid,))


@pytest.fixture
def lease_dal(dsn: str) -> Iterator[ConfigDAL]:
    with ConfigDAL(dsn, max_size=8, application_name=APP) as store:
        store.set("lease.a", "one", updated_by="test")
        store.set("lease.b", {"n": 2}, updated_by="test")
        yield store


def test_gets_after_the_first_skip_the_pool(lease_dal: ConfigDAL) -> None:
    assert lease_dal.get("lease.a") == "one"
    before = _checkouts(lease_dal)
    answers = [lease_dal.get("lease.b") for _ in range(20)]
    assert answers == [{"n": 2}] * 20
    assert _checkouts(lease_dal) == before  # every one ran on the leased connection
    assert lease_dal.get("lease.absent", "fallback") == "fallback"
    assert _checkouts(lease_dal) == before


def test_other_reads_use_the_lease_too(lease_dal: ConfigDAL) -> None:
    lease_dal.get("lease.a")
    before = _checkouts(lease_dal)
    entry = lease_dal.get_entry("lease.b")
    assert entry is not None
    assert entry.value == {"n": 2}
    assert lease_dal.get_many(["lease.a", "lease.b"]) == {"lease.a": "one", "lease.b": {"n": 2}}
    assert _checkouts(lease_dal) == before


def test_writes_never_use_the_lease(lease_dal: ConfigDAL) -> None:
    lease_dal.get("lease.a")
    before = _checkouts(lease_dal)
    lease_dal.set("lease.a", "two", updated_by="test")
    assert _checkouts(lease_dal) == before + 1  # a write slot's own pooled connection
    assert lease_dal.get("lease.a") == "two"  # and the lease reads what it committed


@pytest.mark.parametrize(
    "pool",
    [
        {"min_size": 0, "max_size": 8},  # max_idle may shrink the pool: keep nothing
        {"min_size": 1, "max_size": 7},  # one connection kept for reads: never the lease's
    ],
)
def test_no_lease_without_connections_to_spare(dsn: str, pool: dict[str, int]) -> None:
    with ConfigDAL(dsn, **pool, application_name=APP) as dal:
        dal.set("lease.a", "one", updated_by="test")
        dal.get("lease.a")
        before = _checkouts(dal)
        dal.get("lease.a")
        dal.get("lease.a")
        assert _checkouts(dal) == before + 2  # each from the pool
        assert dal._lease.held == 0


def test_a_lease_idle_for_check_after_idle_goes_back_to_the_pool(dsn: str) -> None:
    with ConfigDAL(dsn, max_size=8, check_after_idle=0.2, application_name=APP) as dal:
        dal.set("lease.a", "one", updated_by="test")
        dal.get("lease.a")
        dal.get("lease.a")
        before = _checkouts(dal)
        time.sleep(0.3)
        assert dal.get("lease.a") == "one"
        assert _checkouts(dal) == before + 1  # checked out again: the pool pings it first


def test_a_lease_killed_while_idle_is_replaced_without_an_error(lease_dal: ConfigDAL) -> None:
    dsn = lease_dal._settings.conninfo
    lease_dal.get("lease.a")
    _terminate(dsn, _sessions(dsn))  # the leased connection, and the pool's
    assert lease_dal.get("lease.a") == "one"
    assert lease_dal.get("lease.b") == {"n": 2}


def test_a_failed_fast_get_is_retried_and_logged_as_a_retry(
    lease_dal: ConfigDAL, caplog: pytest.LogCaptureFixture
) -> None:
    dsn = lease_dal._settings.conninfo
    lease_dal.get("lease.a")
    _terminate(dsn, [_leased_pid(lease_dal)])
    with caplog.at_level(logging.WARNING, logger="amira_data_access"):
        assert lease_dal.get("lease.a") == "one"
    retries = [r for r in caplog.records if "config.get" in r.getMessage()]
    assert retries
    assert "outcome='retry'" in retries[0].getMessage()


def test_without_retries_the_failure_is_reported_translated(dsn: str) -> None:
    with ConfigDAL(dsn, max_size=8, application_name=APP, retry=RetryPolicy(attempts=1)) as dal:
        dal.set("lease.a", "one", updated_by="test")
        dal.get("lease.a")
        _terminate(dsn, [_leased_pid(dal)])
        with pytest.raises(DatabaseConnectionError, match=r"config\.get"):
            dal.get("lease.a")
        assert dal.get("lease.a") == "one"  # the broken connection was not kept


def test_debug_logging_still_gets_its_event(
    lease_dal: ConfigDAL, caplog: pytest.LogCaptureFixture
) -> None:
    lease_dal.get("lease.a")
    with caplog.at_level(logging.DEBUG, logger="amira_data_access"):
        lease_dal.get("lease.a")
    assert any("config.get" in r.getMessage() and "hit" in r.getMessage() for r in caplog.records)


def test_close_leaves_no_session_open(dsn: str) -> None:
    dal = ConfigDAL(dsn, max_size=8, application_name=APP)
    dal.set("lease.a", "one", updated_by="test")
    dal.get("lease.a")
    assert dal._lease.held == 1
    dal.close()
    deadline = time.monotonic() + 5
    while _sessions(dsn) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _sessions(dsn) == []


def test_threads_share_the_lease_and_the_pool(lease_dal: ConfigDAL) -> None:
    errors: list[BaseException] = []
    seen: list[object] = []

    def reader() -> None:
        try:
            for _ in range(50):
                seen.append(lease_dal.get("lease.b"))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert seen == [{"n": 2}] * 300
    stats = lease_dal.pool.get_stats()
    assert stats["pool_size"] - stats["pool_available"] == lease_dal._lease.held


def test_async_get_uses_the_lease_and_survives_cancellation(dsn: str) -> None:
    async def scenario() -> None:
        async with AsyncConfigDAL(dsn, max_size=8, application_name=APP) as dal:
            await dal.set("lease.a", "one", updated_by="test")
            await dal.get("lease.a")
            before = _checkouts(dal)
            assert [await dal.get("lease.a") for _ in range(10)] == ["one"] * 10
            assert _checkouts(dal) == before
            results = await asyncio.gather(*(dal.get("lease.a") for _ in range(8)))
            assert results == ["one"] * 8  # the ones that found it busy used the pool
            task = asyncio.ensure_future(dal.get("lease.a"))
            await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            # Cancelled on the leased connection: that one went back to the pool (which
            # checks it) and the lease is free, not held by a call that will never end.
            assert not dal._lease._lock.locked()
            assert await dal.get("lease.a") == "one"  # from the pool, then leased again
            assert dal._lease.held == 1
            before = _checkouts(dal)
            assert await dal.get("lease.a") == "one"
            assert _checkouts(dal) == before

    asyncio.run(scenario())


def test_a_failed_fast_get_whose_connection_the_pool_closes_is_still_ours(
    dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pool may close what it gets back (past max_lifetime, or closing): the failed
    connection is asked who its login was before it goes back, not after (a closed
    connection's info raises, and that raw psycopg error replaced our timeout)."""
    with ConfigDAL(dsn, max_size=8, timeouts=Timeouts(statement=0.3), application_name=APP) as dal:
        dal.set("lease.a", "one", updated_by="test")
        dal.get("lease.a")
        assert dal._lease.held == 1
        put_back = dal.pool.putconn

        def closing_putconn(conn: psycopg.Connection[Any]) -> None:
            conn.close()  # as the pool does to a connection past its max_lifetime
            put_back(conn)

        monkeypatch.setattr(dal.pool, "putconn", closing_putconn)
        with psycopg.connect(dsn) as locker:  # the get waits, and its statement times out
            locker.execute("LOCK TABLE amira_config.configurations IN ACCESS EXCLUSIVE MODE")
            with pytest.raises(DatabaseTimeoutError, match=r"config\.get"):
                dal.get("lease.a")


def test_a_plain_get_skips_the_operation_and_anything_unusual_runs_it(
    lease_dal: ConfigDAL, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The fast path is taken (no operation built) for a plain get with nothing to log;
    a str subclass as key, or a debug level, goes the operation's way."""
    from amira_data_access.core import operations

    built: list[object] = []
    real_get = operations.get

    def counting_get(*args: Any, **kwargs: Any) -> Any:
        built.append(args[1])
        return real_get(*args, **kwargs)

    monkeypatch.setattr(operations, "get", counting_get)
    lease_dal.get("lease.a")  # leased from here on
    built.clear()
    assert lease_dal.get("lease.a") == "one"
    assert built == []

    class Key(str):
        pass

    assert lease_dal.get(Key("lease.a")) == "one"
    assert len(built) == 1
    with caplog.at_level(logging.DEBUG, logger="amira_data_access"):
        assert lease_dal.get("lease.a") == "one"
    assert len(built) == 2
