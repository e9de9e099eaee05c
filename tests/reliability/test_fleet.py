"""Issue 19, a fleet: many processes, each with a cache, on one server.

Reported: 50 processes with a cache each needed 101 server connections (a pool
connection and a listener each), so at ``max_connections=100`` four failed to
start, and ``health()`` failed too (it opened a connection per call); one
write made every process re-read the key.

Here N real processes (8 in CI, 50 under AMIRA_CONFIG_SOAK=1) each run a
``CachedConfigDAL``; the test writes, and checks that every process gets every
change exactly once, already in its cache, and that a serving cache keeps only
its listener connected once its pool's idle connection has timed out.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import textwrap
import time
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from amira_data_access import CachedConfigDAL, ConfigDAL
from amira_data_access.feed import listener
from amira_data_access.feed.carry import MAX_CARRIED_BYTES
from amira_data_access.feed.listener import LISTENER_NAME
from conftest import TestServer

from .conftest import DEADLINE, connections_refused, eventually, report, scaled

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

# One process of the fleet: a cache, warmed; each change it hears (already in its
# cache: the feed re-reads before announcing) is printed with the time it arrived.
CHILD = textwrap.dedent(
    """
    import json, sys, time
    from amira_data_access import CachedConfigDAL

    dsn = sys.argv[1]
    with CachedConfigDAL(dsn, max_size=2, max_idle=1.0) as cache:
        # Warmed once the feed listens: its first sync empties what was filled before.
        assert cache._change_feed().wait_connected(60)
        cache.get("fleet.key")
        def heard(change):
            value = cache._cache.value(change.key)  # what a get() would answer: memory
            print(json.dumps({"version": change.version, "at": time.time(),
                              "cached": value}), flush=True)
        cache.subscribe(heard, "fleet.")
        print("ready", flush=True)
        sys.stdin.read()  # until the test closes our stdin
        print(json.dumps({"health": cache.health().degraded}), flush=True)
    """
)


def _sessions(pg_server: TestServer, dsn: str) -> dict[str, int]:
    """Server sessions on the test database, by application_name."""
    with psycopg.connect(pg_server.dsn("postgres"), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT application_name, count(*) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid() GROUP BY 1",
            (conninfo_to_dict(dsn)["dbname"],),
        ).fetchall()
    return {str(name): int(count) for name, count in rows}


def test_fleet_fan_out(pg_server: TestServer, dsn: str) -> None:
    processes = scaled(8, 50)
    writes = scaled(10, 50)
    with ConfigDAL(dsn, max_size=1) as writer:
        writer.set("fleet.key", -1, updated_by="test")
    children = [
        subprocess.Popen(  # our own interpreter and script
            [sys.executable, "-c", CHILD, dsn],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    try:
        for child in children:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "ready"
        warm = _sessions(pg_server, dsn)
        # A serving cache keeps its listener, and no idle pool connection (max_idle).
        eventually(
            lambda: sum(_sessions(pg_server, dsn).values()) == processes,
            "the pools' idle connections to close, leaving one listener per process",
            deadline=60,
        )
        idle = _sessions(pg_server, dsn)
        assert idle == {LISTENER_NAME: processes}
        written: dict[int, float] = {}
        with ConfigDAL(dsn, max_size=1) as writer:
            for n in range(writes):
                entry = writer.set("fleet.key", n, updated_by="test")
                written[entry.version] = time.time()
                time.sleep(0.05)  # pacing between writes, not synchronisation
    finally:
        outputs = [child.communicate(input="", timeout=120)[0] for child in children]
    delays: list[float] = []
    for output in outputs:
        lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
        heard = [line for line in lines if "version" in line]
        assert [line["version"] for line in heard] == sorted(written), "each change once, in order"
        for line in heard:
            # Already in memory: this change's value, or a later one read in the same
            # page (a listener that fell behind reads several changes at once).
            assert line["cached"] >= line["version"] - 2
            delays.append((line["at"] - written[line["version"]]) * 1000)
        assert lines[-1] == {"health": None}
    delays.sort()
    report(
        "fleet_fan_out",
        processes=processes,
        writes=writes,
        sessions_warm=sum(warm.values()),
        sessions_serving=sum(idle.values()),
        per_process_serving=sum(idle.values()) / processes,
        propagation_p50_ms=statistics.median(delays),
        propagation_p99_ms=delays[int(len(delays) * 0.99) - 1],
        propagation_max_ms=delays[-1],
    )


def test_health_uses_the_pool(pg_server: TestServer, dsn: str) -> None:
    """health() when no new session may connect: answered on the pooled connection
    (it opened one of its own per call, and failed first when the server was full)."""
    with ConfigDAL(dsn, min_size=1, max_size=1) as dal:
        dal.get("x")
        with connections_refused(pg_server, dsn):
            health = dal.health()
    assert health.error is None
    assert health.reachable
    assert health.schema_up_to_date


def test_changes_carry_small_values_and_reread_once_per_change_set(
    dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A change to a held key refreshes the cache before it is announced: small values come
    with the feed's own read of the history (no query of their own), large ones are re-read
    together, in one query per change set, not one per key and process."""
    rereads: list[list[str]] = []
    real = listener._entries

    def counted(conn: Any, queries: Any, keys: list[str]) -> Any:
        rereads.append(sorted(keys))
        return real(conn, queries, keys)

    monkeypatch.setattr(listener, "_entries", counted)
    big = "x" * (MAX_CARRIED_BYTES + 1)
    keys = [f"carry.big.{n}" for n in range(5)]
    with ConfigDAL(dsn, max_size=1) as other:
        # Written before the cache's feed first listens, so that no announcement of them
        # races the fills below and voids one (the cache would hold nothing to refresh).
        other.set("carry.small", 1, updated_by="other")
        other.set_many(dict.fromkeys(keys, "old"), updated_by="other")
        with CachedConfigDAL(dsn, max_size=1) as cache:
            # open() waits only so long for the feed, and its first sync empties the
            # cache: fill after it (CI once saw these races on a loaded machine).
            assert cache._change_feed().wait_connected(DEADLINE)
            assert cache.get("carry.small") == 1
            assert cache.get_many(keys) == dict.fromkeys(keys, "old")
            heard: list[int] = []
            with cache.subscribe(lambda change: heard.append(change.revision), "carry."):
                other.set("carry.small", 2, updated_by="other")
                eventually(lambda: len(heard) == 1, "the small change")
                assert cache._cache.value("carry.small") == 2  # in memory, not re-read
                assert rereads == []
                other.set_many(dict.fromkeys(keys, big), updated_by="other")
                eventually(lambda: len(heard) == 1 + len(keys), "the big change set")
            assert rereads == [sorted(keys)]  # one query for the whole change set
            assert all(cache._cache.value(key) == big for key in keys)
