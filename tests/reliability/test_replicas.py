"""Issue 19, replicas: a real hot standby (pg_basebackup -R) of the harness's server.

Reported: ``watch()`` on a standby failed with ``cannot execute LISTEN during
recovery``, returned after 5 s and never yielded, ``health()`` showing no error;
the cache blocked 5 s in ``open()``; the listener's backoff reset on every
connection (135 sessions in 15 s); a write on a standby was a generic error;
the first read after a write from the replica was stale in 153 of 200 cases.

Now: the feed refuses a standby at once; writes there are ReadOnlyServerError;
``ConfigDAL(primary, read_dsn=standby)`` reads its own writes (waiting for the
replay, bounded, then reading the primary), across processes with a write
token too; and a cache reading a lagging replica never keeps a value older than
a change it was told about.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo
from structlog.testing import capture_logs

from amira_data_access import (
    CachedConfigDAL,
    ChangeFeedUnavailableError,
    ConfigDAL,
    DatabaseConnectionError,
    ReadOnlyServerError,
)
from amira_data_access.feed import listener
from conftest import TestServer

from .conftest import eventually, report, scaled
from .scale_servers import Standby, standby

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def replica(pg_server: TestServer, migrated_template: str) -> Iterator[Standby]:
    """One standby for the module: databases created on the primary appear on it."""
    with standby(pg_server) as server:
        yield server


@pytest.fixture
def standby_dsn(replica: Standby, dsn: str) -> str:
    replica.wait_replayed(dsn)  # the test's database exists there too
    return replica.dsn(dsn)


def _replay(dsn: str, *, paused: bool) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_wal_replay_pause()" if paused else "SELECT pg_wal_replay_resume()")


def test_write_on_a_standby_says_so(standby_dsn: str) -> None:
    with (
        ConfigDAL(standby_dsn, max_size=1) as dal,
        pytest.raises(ReadOnlyServerError, match="primary"),
    ):
        dal.set("replica.write", 1, updated_by="test")


def test_feed_refuses_a_standby_at_once(standby_dsn: str) -> None:
    """watch() and the cache's open() raise a clear error instead of waiting and looping."""
    with ConfigDAL(standby_dsn, max_size=1) as dal:
        started = time.monotonic()
        with pytest.raises(ChangeFeedUnavailableError, match="standby"):
            dal.watch()
        refused_in = time.monotonic() - started
        health = dal.health()
        assert health.degraded is not None
        assert "standby" in health.degraded
    cache = CachedConfigDAL(standby_dsn, max_size=1)
    with pytest.raises(ChangeFeedUnavailableError):
        cache.open()
    # open() released what it had opened (``with`` would not have called close()).
    with pytest.raises(DatabaseConnectionError, match="closed"):
        cache.get("replica.key")
    report("replica_feed_refused", seconds=refused_in)


def test_read_your_writes_on_a_replica(dsn: str, standby_dsn: str) -> None:
    """Each read right after a write sees it; the replica serves the reads.

    The harness's server runs with synchronous_commit=off (speed), where the WAL
    reaches a standby only at the WAL writer's next round (200 ms); the writers here
    commit as production does (on), so the lag measured is replication's own.
    """
    dsn = make_conninfo(dsn, options="-c synchronous_commit=on")
    rounds = scaled(200, 2000)
    stale_plain = 0
    with ConfigDAL(dsn, max_size=2) as primary, ConfigDAL(standby_dsn, max_size=2) as plain:
        lags: list[float] = []
        for n in range(rounds):  # what the issue measured: write, then read the replica
            primary.set("replica.plain", n, updated_by="test")
            written = time.perf_counter()
            stale_plain += plain.get("replica.plain") != n
            while plain.get("replica.plain") != n:  # replication lag: until it is visible
                pass
            lags.append((time.perf_counter() - written) * 1000)
    lags.sort()
    waits: list[float] = []
    with ConfigDAL(dsn, max_size=2, read_dsn=standby_dsn) as dal:
        stale = 0
        for n in range(rounds):
            dal.set("replica.ryw", n, updated_by="test")
            started = time.perf_counter()
            stale += dal.get("replica.ryw") != n
            waits.append((time.perf_counter() - started) * 1000)
        fallbacks = dal.replica_fallbacks
        assert dal.write_token is not None
    waits.sort()
    report(
        "replica_read_your_writes",
        rounds=rounds,
        stale_without=stale_plain,
        lag_p50_ms=statistics.median(lags),
        lag_p99_ms=lags[int(len(lags) * 0.99) - 1],
        lag_max_ms=lags[-1],
        stale_with=stale,
        read_p50_ms=statistics.median(waits),
        read_p99_ms=waits[int(len(waits) * 0.99) - 1],
        fallbacks=fallbacks,
    )
    assert stale == 0
    assert fallbacks < rounds  # the replica served reads (not all fell back)


def test_lagging_replica_falls_back_to_the_primary(
    dsn: str, standby_dsn: str, replica: Standby
) -> None:
    """Replay paused: a read after a write waits replica_wait, then reads the primary;
    a token carries the write to another DAL (another process, an HTTP hop)."""
    with ConfigDAL(dsn, max_size=1, read_dsn=standby_dsn, replica_wait=0.2) as writer:
        writer.set("replica.lag", "old", updated_by="test")
        replica.wait_replayed(dsn)  # the replica has "old" before its replay is paused
        _replay(standby_dsn, paused=True)
        try:
            writer.set("replica.lag", "new", updated_by="test")
            assert writer.get("replica.lag") == "new"
            assert writer.replica_fallbacks >= 1
            token = writer.write_token
            assert token is not None
            with ConfigDAL(dsn, max_size=1, read_dsn=standby_dsn, replica_wait=0.2) as reader:
                assert reader.get("replica.lag") == "old"  # the replica, behind: no token yet
                reader.read_after(token)
                assert reader.get("replica.lag") == "new"
        finally:
            _replay(standby_dsn, paused=False)


def test_cache_on_a_lagging_replica_never_keeps_an_announced_old_value(
    dsn: str, standby_dsn: str
) -> None:
    """A change announced by the feed (on the primary) raises the floor before anyone hears
    of it, so a fill after it cannot read the replica's older state and keep it."""
    cached = CachedConfigDAL(dsn, max_size=2, read_dsn=standby_dsn, replica_wait=0.2)
    with cached as cache, ConfigDAL(dsn, max_size=1) as other:
        heard: list[str] = []
        _replay(standby_dsn, paused=True)
        try:
            with cache.subscribe(lambda change: heard.append(change.key), "replica."):
                other.set("replica.cached", 2, updated_by="other")  # never read by the cache
                eventually(lambda: heard == ["replica.cached"], "the change to be announced")
            # The replica has not replayed it (absent there): the fill must not be "absent".
            assert cache.get("replica.cached") == 2
            for _ in range(20):
                assert cache.get("replica.cached") == 2  # from memory now, still the new value
            assert cache.replica_fallbacks >= 1
        finally:
            _replay(standby_dsn, paused=False)


def test_backoff_keeps_growing_when_each_connection_fails_after_connecting(
    empty_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Connecting succeeds, the resync fails (no schema here): the listener must back off,
    not reconnect every 0.1 s forever (the reported 135 sessions in 15 s)."""
    with capture_logs() as logs, ConfigDAL(empty_dsn, max_size=1) as dal:
        feed = dal._change_feed()
        feed.start()
        time.sleep(3.5)  # the window the attempts are counted in (not a timing assertion)
        attempts = [e for e in logs if e.get("outcome") == "disconnected"]
    # Backoff 0.1, 0.25, 0.5, 1, 2 s: 5 attempts fit in 3.5 s; a reset per connect, 30+.
    assert 1 <= len(attempts) <= 7, len(attempts)
    assert attempts[-1]["attempt"] == len(attempts)
    report("feed_backoff_after_connect", window_s=3.5, attempts=len(attempts))


class _Deaf:
    """The feed's queries, but LISTEN does nothing: connected, and nothing arrives."""

    def __init__(self, queries: Any) -> None:
        self._queries = queries

    def __getattr__(self, name: str) -> Any:
        if name.startswith("listen_for_"):
            return lambda conn: None
        return getattr(self._queries, name)


def test_heartbeat_marks_a_deaf_feed_not_live(dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """LISTEN 'succeeds' and no notification ever arrives: the heartbeat goes unheard, the
    cache stops serving from memory and health() says degraded, with the reason."""
    real = listener.change_queries
    monkeypatch.setattr(listener, "change_queries", lambda: _Deaf(real()))
    monkeypatch.setattr(listener, "_HEARTBEAT_TIMEOUT", 0.5)
    cache = CachedConfigDAL(dsn, max_size=1)
    try:
        cache.open()  # returns after its bounded wait: never live
        health = cache.health()
        assert health.listener_connected is False
        eventually(lambda: cache.health().degraded is not None, "degraded")
        assert "heartbeat" in (cache.health().degraded or "")
        with ConfigDAL(dsn, max_size=1) as other:
            other.set("deaf.key", 1, updated_by="other")
            assert cache.get("deaf.key") == 1
            other.set("deaf.key", 2, updated_by="other")
            assert cache.get("deaf.key") == 2  # not served from memory: the feed is not live
    finally:
        cache.close()


def test_async_dal_reads_its_writes_on_a_lagging_replica(dsn: str, standby_dsn: str) -> None:
    """The hand-written async source (the sync DAL is generated from it) does the same."""
    from amira_data_access import AsyncConfigDAL

    async def scenario() -> tuple[Any, Any, int, bool | None]:
        async with AsyncConfigDAL(dsn, max_size=1, read_dsn=standby_dsn, replica_wait=0.2) as dal:
            await dal.set("replica.async", "old", updated_by="test")
            first = await dal.get("replica.async")
            _replay(standby_dsn, paused=True)
            try:
                await dal.set("replica.async", "new", updated_by="test")
                second = await dal.get("replica.async")
            finally:
                _replay(standby_dsn, paused=False)
            return first, second, dal.replica_fallbacks, dal.behind_pooler

    first, second, fallbacks, behind_pooler = asyncio.run(scenario())
    assert (first, second) == ("old", "new")
    assert fallbacks >= 1
    assert behind_pooler is False
