"""The change feed and the cache, against a real server (and a restarted one).

Waits here are "until it happens, or fail after a generous deadline": they
assert that something arrives, never how fast.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from structlog.testing import capture_logs

from amira_data_access import (
    CachedConfigDAL,
    ConfigChange,
    ConfigDAL,
    DatabaseConnectionError,
)
from conftest import TestServer

DEADLINE = 30.0


def _eventually(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def _set_in_other_process(dsn: str, key: str, value: int) -> None:
    code = (
        "import sys; from amira_data_access import ConfigDAL\n"
        "with ConfigDAL(sys.argv[1]) as d: d.set(sys.argv[2], int(sys.argv[3]), updated_by='other')"
    )
    subprocess.run([sys.executable, "-c", code, dsn, key, str(value)], check=True, timeout=60)


@pytest.fixture
def cached(dsn: str) -> Iterator[CachedConfigDAL]:
    """An open CachedConfigDAL whose feed is connected."""
    with CachedConfigDAL(dsn, max_size=4) as store:
        # open() waits only so long for the feed: on a loaded machine it can come later.
        assert store._change_feed().wait_connected(DEADLINE)
        yield store


def test_watch_sees_changes_from_other_processes_and_raw_sql(dal: ConfigDAL, dsn: str) -> None:
    """Changes by another process and by plain SQL both arrive, with who made them."""
    with dal.watch("svc.") as changes:
        assert dal._change_feed().wait_connected(DEADLINE)
        _set_in_other_process(dsn, "svc.limit", 5)
        dal.set("other.key", 1, updated_by="me")  # not under the prefix
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                "UPDATE amira_config.configurations SET value = '6' WHERE key = 'svc.limit'"
            )
            conn.execute("DELETE FROM amira_config.configurations WHERE key = 'svc.limit'")
        got = [changes.next(timeout=DEADLINE) for _ in range(3)]
    assert [(c.key, c.version, c.operation) for c in got if c] == [
        ("svc.limit", 1, "insert"),
        ("svc.limit", 2, "update"),
        ("svc.limit", 3, "delete"),
    ]
    assert got[0] is not None
    assert got[0].changed_by == "other"


def test_rolled_back_changes_are_not_announced(dal: ConfigDAL) -> None:
    """Only committed changes reach watchers."""
    with dal.watch() as changes:
        assert dal._change_feed().wait_connected(DEADLINE)
        with pytest.raises(RuntimeError), dal.transaction() as tx:  # noqa: PT012
            tx.set("ghost", 1, updated_by="a")
            raise RuntimeError("abort")
        dal.set("real", 1, updated_by="a")
        first = changes.next(timeout=DEADLINE)
    assert first is not None
    assert first.key == "real"


def test_subscribe_runs_callbacks_and_survives_a_failing_one(dal: ConfigDAL) -> None:
    """Callbacks get their prefix's changes; one that raises does not stop the others."""
    seen: list[ConfigChange] = []

    def broken(change: ConfigChange) -> None:
        raise ValueError("callback bug")

    with dal.subscribe(broken), dal.subscribe(seen.append, prefix="a."):
        dal.set("a.one", 1, updated_by="x")
        dal.set("b.two", 2, updated_by="x")
        dal.set("a.three", 3, updated_by="x")
        _eventually(lambda: len(seen) >= 2, "two changes under a.")
    assert [c.key for c in seen] == ["a.one", "a.three"]


def _terminate_listener(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'amira-data-access listener'"
        )


def _allow_connections(pg_server: TestServer, dsn: str, allowed: bool) -> None:
    dbname = str(conninfo_to_dict(dsn)["dbname"])
    with psycopg.connect(pg_server.dsn("postgres"), autocommit=True) as conn:
        conn.execute(
            sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS {}").format(
                sql.Identifier(dbname), sql.Literal(allowed)
            )
        )


def test_no_change_is_lost_when_commits_come_out_of_revision_order_around_a_reconnect(
    dal: ConfigDAL, dsn: str, pg_server: TestServer
) -> None:
    """Transaction A writes first but commits after B, while the listener is away.

    Had A drawn its revision when it wrote (lower than B's), a resync asking for
    "revisions after the last one seen" would skip A for ever; revisions are given
    at commit instead, so A's is higher than B's and it is delivered after reconnecting.
    """
    feed = dal._change_feed()
    with dal.watch() as changes:
        assert feed.wait_connected(DEADLINE)
        with psycopg.connect(dsn) as slow:  # transaction A: written, not committed
            slow.execute(
                "INSERT INTO amira_config.configurations (key, value, data_type, updated_by)"
                " VALUES ('slow', '1', 'int', 'A')"
            )
            dal.set("fast", 1, updated_by="B")  # transaction B: later revision, commits first
            fast = changes.next(timeout=DEADLINE)
            assert fast is not None
            assert fast.key == "fast"

            _allow_connections(pg_server, dsn, False)
            try:
                _terminate_listener(pg_server.dsn("postgres"))
                _eventually(lambda: not feed.connected, "the listener to notice")
                slow.commit()  # A commits while nobody listens
                assert changes.next(timeout=1.0) is None
            finally:
                _allow_connections(pg_server, dsn, True)
        resynced = changes.next(timeout=DEADLINE)
    assert resynced is not None
    assert (resynced.key, resynced.changed_by) == ("slow", "A")
    assert resynced.revision == fast.revision + 1  # revision order is commit order


def test_cache_serves_reads_and_sees_changes_made_elsewhere(
    cached: CachedConfigDAL, dsn: str
) -> None:
    """A change committed by another process, or by plain SQL, reaches the cache."""
    cached.set("limit", 1, updated_by="me")
    assert cached.get("limit") == 1
    _set_in_other_process(dsn, "limit", 2)
    _eventually(lambda: cached.get("limit") == 2, "the other process's change")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("UPDATE amira_config.configurations SET value = '3' WHERE key = 'limit'")
    _eventually(lambda: cached.get("limit") == 3, "the raw SQL change")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM amira_config.configurations WHERE key = 'limit'")
    _eventually(lambda: cached.get("limit") is None, "the raw SQL delete")


def test_cache_reads_its_own_writes_at_once(cached: CachedConfigDAL) -> None:
    """A write through the cached DAL is visible to the next read, before any notification."""
    for i in range(20):
        cached.set("k", i, updated_by="me")
        assert cached.get("k") == i
        entry = cached.get_entry("k")
        assert entry is not None
        assert entry.value == i
    cached.delete("k", deleted_by="me")
    assert cached.get("k") is None
    with cached.transaction() as tx:
        tx.set("t", {"x": 1}, updated_by="me")
    assert cached.get("t") == {"x": 1}


def test_cached_containers_are_copies(cached: CachedConfigDAL) -> None:
    """Mutating a value read from the cache does not change the cache."""
    cached.set("policy", {"allowed": ["a"]}, updated_by="me")
    first = cached.get("policy")
    first["allowed"].append("b")
    assert cached.get("policy") == {"allowed": ["a"]}
    assert cached.get_many(["policy", "absent"]) == {"policy": {"allowed": ["a"]}}


def test_registered_defaults(dsn: str) -> None:
    """Registered defaults answer for absent keys; ensure_defaults writes them race-free."""
    with CachedConfigDAL(dsn) as store:
        store.register_defaults({"tone": "friendly", "limit": 10})
        store.set("limit", 20, updated_by="ops")
        assert store.get("tone") == "friendly"
        assert store.get("tone", default="x") == "x"  # an explicit default wins
        assert store.get("limit") == 20
        entries = store.ensure_defaults(updated_by="svc")
        assert {e.key: e.value for e in entries} == {"tone": "friendly", "limit": 20}
        assert store.get_entry("tone") is not None


def test_health_reports_state(cached: CachedConfigDAL) -> None:
    """health() says reachable, schema current, listener connected, cache size."""
    cached.set("k", 1, updated_by="me")
    report = cached.health()
    assert report.reachable
    assert report.schema_up_to_date
    assert report.listener_connected is True
    assert report.cache_size is not None
    assert report.cache_size >= 1
    assert report.server_version
    assert "pool_size" in report.pool


def test_stale_on_error_across_a_server_restart(restartable: TestServer, dsn: str) -> None:
    """With the server down, cached values keep being served; after it is back, changes arrive."""
    pg_server = restartable
    assert pg_server.local is not None
    with CachedConfigDAL(dsn, connect_timeout=2) as store:
        store.set("cached", "v1", updated_by="me")
        store.register_defaults({"registered": "fallback"})
        assert store.get("cached") == "v1"
        pg_server.local.stop()
        try:
            with capture_logs() as logs:
                assert store.get("cached") == "v1"  # stale, but an answer
                assert store.get("registered") == "fallback"
                assert store.get("never.seen", default=7) == 7
                with pytest.raises(DatabaseConnectionError):
                    store.get("never.seen")
            assert any(e.get("outcome") == "stale" for e in logs)
            down = store.health()
            assert not down.reachable
            assert down.error
        finally:
            pg_server.local.start()
        _set_in_other_process(dsn, "cached_int", 1)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                "UPDATE amira_config.configurations SET value = '\"v2\"' WHERE key = 'cached'"
            )

        def sees_new_value() -> bool:
            # The pool reconnects with its own backoff; until then reads may fail.
            try:
                return bool(store.get("cached") == "v2")
            except DatabaseConnectionError:
                return False

        _eventually(sees_new_value, "the change made after the restart")
        assert store.health().reachable


def test_async_watch_sees_changes(dsn: str) -> None:
    """AsyncConfigDAL.watch is an async iterator over the same feed."""
    import asyncio

    from amira_data_access import AsyncConfigDAL

    async def scenario() -> list[tuple[str, int]]:
        async with AsyncConfigDAL(dsn) as store, store.watch("w.") as changes:
            await store.set("w.one", 1, updated_by="a")
            await store.set("x.other", 1, updated_by="a")
            await store.set("w.one", 2, updated_by="a")
            got = [await asyncio.wait_for(anext(changes), DEADLINE) for _ in range(2)]
        return [(c.key, c.version) for c in got]

    assert asyncio.run(scenario()) == [("w.one", 1), ("w.one", 2)]


def test_a_resumed_watch_reads_a_long_history_by_whole_revisions(dal: ConfigDAL) -> None:
    """More changes than one read returns (1000), in revisions that straddle the page."""
    first = dal.set_many({f"p.{n:04}": n for n in range(600)}, updated_by="a")
    dal.set_many({f"p.{n:04}": n for n in range(600, 1200)}, updated_by="b")
    dal.set("p.last", 1, updated_by="c")
    since = dal.history(first[0].key)[0].revision - 1
    with dal.watch("p.", since_revision=since) as changes:
        got = [changes.next(timeout=DEADLINE) for _ in range(1201)]
        dal.set("p.live", 1, updated_by="d")
        live = changes.next(timeout=DEADLINE)
    assert [c.key for c in got if c] == [f"p.{n:04}" for n in range(1200)] + ["p.last"]
    assert [c.revision for c in got if c] == [since + 1] * 600 + [since + 2] * 600 + [since + 3]
    assert live is not None
    assert (live.key, live.revision) == ("p.live", since + 4)
