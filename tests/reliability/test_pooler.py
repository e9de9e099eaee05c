"""Issue 19, PgBouncer: a real PgBouncer (Debian's 1.18) in transaction and session mode.

Reported: through transaction mode, 12 concurrent clients over 6 s got 6,177
errors (prepared statements missing or colliding, reported as "database
unavailable" or "bad input", a raw ValueError) and 773 silently wrong results
(``get_many`` returning ``{}``); ``watch()`` connected and then heard nothing
while ``health()`` said connected.

Now a DAL detects the pooler at ``open()`` and turns psycopg's prepared
statements off (or is told to), so every call returns the right answer; the
change feed refuses a transaction-mode pooler at once, works through a
session-mode one, and can be given its own DSN (``listen_dsn``).
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from structlog.testing import capture_logs

from amira_data_access import (
    CachedConfigDAL,
    ChangeFeedUnavailableError,
    ConfigDAL,
    ConfigurationAccessError,
)
from conftest import TestServer

from .conftest import DEADLINE, eventually, report, scaled
from .scale_servers import pgbouncer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

CLIENTS = 12
KEYS = [f"pool.key.{n:02d}" for n in range(20)]


def _workload(
    dsn: str, seconds: float, **options: Any
) -> tuple[int, int, int, list[BaseException]]:
    """12 clients (each its own DAL, as 12 processes would be) reading and writing through
    ``dsn`` for ``seconds``; every answer is checked. Returns (ok, errors, wrong, raw)."""
    # The keys are written with the pooler detected (not under ``options``): with
    # prepared statements forced on, a write can fail already here, the bug itself.
    with ConfigDAL(dsn, max_size=2) as setup:
        for n, key in enumerate(KEYS):
            setup.set(key, n, updated_by="test")
    counts = {"ok": 0, "errors": 0, "wrong": 0}
    raw: list[BaseException] = []  # anything outside our hierarchy
    lock = threading.Lock()
    start = threading.Barrier(CLIENTS)
    end_at = time.monotonic() + seconds

    def client(number: int) -> None:
        own = f"pool.client.{number:02d}"
        ok = errors = wrong = 0
        with ConfigDAL(dsn, max_size=2, **options) as dal:
            start.wait()
            version = 0
            while time.monotonic() < end_at:
                try:
                    if dal.get(KEYS[number]) != number:
                        wrong += 1
                    found = dal.get_many(KEYS)
                    if found != {key: n for n, key in enumerate(KEYS)}:
                        wrong += 1
                    entry = dal.set(own, version, updated_by="test")
                    if entry.value != version or entry.key != own:
                        wrong += 1
                    version += 1
                    if dal.get_entry(own) is None:
                        wrong += 1
                    if [item.key for item in dal.list("pool.key.", limit=5)] != KEYS[:5]:
                        wrong += 1
                    ok += 5
                except ConfigurationAccessError:
                    errors += 1
                except Exception as exc:  # the bug: raw errors escaping the hierarchy
                    with lock:
                        raw.append(exc)
        with lock:
            counts["ok"] += ok
            counts["errors"] += errors
            counts["wrong"] += wrong

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return counts["ok"], counts["errors"], counts["wrong"], raw


def test_transaction_mode_every_call_is_right(pg_server: TestServer, dsn: str) -> None:
    """12 concurrent clients through transaction mode: 0 errors, 0 wrong results."""
    with pgbouncer(pg_server, "transaction") as bouncer:
        pooled = bouncer.dsn(dsn)
        seconds = scaled(4, 30)
        ok, errors, wrong, raw = _workload(pooled, seconds)
    report(
        "pooler_transaction_mode",
        seconds=seconds,
        clients=CLIENTS,
        ok=ok,
        errors=errors,
        wrong=wrong,
        raw=len(raw),
    )
    assert raw == []
    assert (errors, wrong) == (0, 0)
    assert ok > 0


def test_prepared_statements_forced_on_shows_the_bug_and_no_raw_errors(
    pg_server: TestServer, dsn: str
) -> None:
    """What the detection protects against: with prepared statements forced on, the
    same workload fails (the reported bug), and even then nothing escapes the hierarchy."""
    with pgbouncer(pg_server, "transaction") as bouncer:
        ok, errors, wrong, raw = _workload(
            bouncer.dsn(dsn), scaled(3, 10), prepared_statements=True
        )
    report("pooler_prepared_forced_on", ok=ok, errors=errors, wrong=wrong, raw=len(raw))
    assert errors + wrong > 0, "the workload no longer reproduces the pooler bug"
    assert raw == [], f"raw errors escaped: {raw[:3]}"


def test_pooler_is_detected_and_prepared_statements_turned_off(
    pg_server: TestServer, dsn: str
) -> None:
    """open() tells a pooled connection from a direct one; pooled ones never prepare."""
    with ConfigDAL(dsn, max_size=1) as direct:
        direct.get("x")
        assert direct.behind_pooler is False
        with direct.pool.connection() as conn:
            assert conn.prepare_threshold is not None  # direct: psycopg's default stays
    with (
        capture_logs() as logs,
        pgbouncer(pg_server, "session") as bouncer,
        ConfigDAL(bouncer.dsn(dsn), max_size=1) as dal,
    ):
        dal.get("x")
        assert dal.behind_pooler is True
        # PgBouncer dropped the timeouts' startup options: said, with the remedy.
        dropped = [e for e in logs if e.get("outcome") == "timeouts_not_applied"]
        assert len(dropped) == 1
        assert "ALTER ROLE" in dropped[0]["hint"]
        with dal.pool.connection() as conn:
            assert conn.prepare_threshold is None
    with ConfigDAL(dsn, max_size=1, prepared_statements=False) as told, told.pool.connection() as c:
        assert c.prepare_threshold is None  # told: off even where nothing is detected


def test_feed_refuses_a_transaction_pooler_at_once(pg_server: TestServer, dsn: str) -> None:
    """watch() and the cache refuse transaction mode with a clear error, without looping."""
    with pgbouncer(pg_server, "transaction") as bouncer:
        pooled = bouncer.dsn(dsn)
        with ConfigDAL(pooled, max_size=1) as dal:
            started = time.monotonic()
            with pytest.raises(ChangeFeedUnavailableError, match="transaction"):
                dal.watch()
            refused_in = time.monotonic() - started
            health = dal.health()
            assert health.listener_connected is False
            assert health.degraded is not None
            assert "transaction" in health.degraded
            # It stopped: no thread reconnecting behind our back.
            feed = dal._current_feed()
            assert feed is not None
            eventually(lambda: not feed._thread.is_alive(), "the listener thread to stop")  # type: ignore[attr-defined]
        cache = CachedConfigDAL(pooled, max_size=1)
        try:
            with pytest.raises(ChangeFeedUnavailableError):
                cache.open()
        finally:
            cache.close()
    report("pooler_feed_refused", seconds=refused_in)


def test_feed_through_session_mode_and_listen_dsn(pg_server: TestServer, dsn: str) -> None:
    """Session mode: the feed works through the pooler. Transaction mode for calls plus a
    direct listen_dsn: the cache stays fresh."""
    with (
        pgbouncer(pg_server, "session", pool_size=4) as session,
        ConfigDAL(session.dsn(dsn), max_size=1) as dal,
        dal.watch() as changes,
    ):
        with ConfigDAL(dsn, max_size=1) as writer:
            writer.set("pool.session", 1, updated_by="test")
        change = changes.next(timeout=20)
        assert change is not None
        assert change.key == "pool.session"
        assert dal.health().degraded is None
    with (
        pgbouncer(pg_server, "transaction") as bouncer,
        CachedConfigDAL(bouncer.dsn(dsn), max_size=2, listen_dsn=dsn) as cache,
    ):
        assert cache._change_feed().wait_connected(DEADLINE)  # open() waits only 5 s
        assert cache.get("pool.fresh") is None
        with ConfigDAL(dsn, max_size=1) as writer:
            writer.set("pool.fresh", "new", updated_by="other")
        eventually(lambda: cache.get("pool.fresh") == "new", "the cache to see the change")
        assert cache.health().listener_connected is True


def test_async_dal_through_transaction_mode(pg_server: TestServer, dsn: str) -> None:
    """The async source detects the pooler too, and its calls come back right."""
    from amira_data_access import AsyncConfigDAL

    async def scenario() -> tuple[bool | None, list[dict[str, Any]]]:
        async with AsyncConfigDAL(pooled, max_size=2) as dal:
            await dal.set_many({f"async.k{n}": n for n in range(5)}, updated_by="test")

            async def reader() -> dict[str, Any]:
                found: dict[str, Any] = {}
                for _ in range(30):  # past psycopg's prepare threshold (5)
                    found = await dal.get_many([f"async.k{n}" for n in range(5)])
                return found

            results = await asyncio.gather(*(reader() for _ in range(6)))
            return dal.behind_pooler, list(results)

    with pgbouncer(pg_server, "transaction", pool_size=2) as bouncer:
        pooled = bouncer.dsn(dsn)
        behind_pooler, results = asyncio.run(scenario())
    assert behind_pooler is True
    assert results == [{f"async.k{n}": n for n in range(5)}] * 6
