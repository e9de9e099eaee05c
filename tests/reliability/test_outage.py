"""A database outage: answer from what is known without waiting, and be fresh soon after.

Reproduced before the fix: with the server down every cached read first waited
the full 5 s connect timeout; after the server returned the cache stayed stale
3.5-15.4 s and raised DatabaseConnectionError for keys dropped during catch-up;
the plain DAL needed up to 12.3 s to serve again; 200 gets with the server
down logged 400 lines.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from structlog.testing import capture_logs

from amira_data_access import CachedConfigDAL, ConfigDAL, DatabaseConnectionError

# Far below connect_timeout (10 s here), far above an answer from memory: a read
# that waited on the network cannot pass under it, one that did not cannot fail it.
NO_WAIT = 1.0
# After the server is back: the probe's interval (0.25 s), a reconnect, a resync.
BACK_WITHIN = 3.0


def _longest(call: Callable[[], Any], times: int) -> float:
    longest = 0.0
    for _ in range(times):
        started = time.monotonic()
        call()
        longest = max(longest, time.monotonic() - started)
    return longest


def _raises_within(call: Callable[[], Any], error: type[Exception]) -> float:
    started = time.monotonic()
    with pytest.raises(error):
        call()
    return time.monotonic() - started


def _eventually(check: Callable[[], bool], seconds: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        try:
            if check():
                return time.monotonic() - started
        except DatabaseConnectionError:
            pass
        time.sleep(0.02)
    raise AssertionError(f"not within {seconds} s")


def test_an_outage_is_answered_from_memory_and_recovered_from_quickly(
    restartable: Any, dsn: str
) -> None:
    """While down: cached values and defaults answer at once, other reads fail at once, and
    the outage is logged as a change of state, not per read. After: fresh within seconds."""
    local = restartable.local
    with (
        CachedConfigDAL(dsn, connect_timeout=10) as cache,
        ConfigDAL(dsn, connect_timeout=10) as plain,
    ):
        cache.set_many({"o.tone": "formal", "o.limit": 3}, updated_by="t")
        cache.register_defaults({"o.default": "fallback"})
        assert cache.get("o.tone") == "formal"
        assert plain.get("o.tone") == "formal"
        local.stop()
        try:
            with capture_logs() as logs:
                first = _raises_within(lambda: plain.get("o.tone"), DatabaseConnectionError)
                assert first < NO_WAIT * 3, "the first failure took the whole connect timeout"
                served = _longest(lambda: cache.get("o.tone"), 200)
                assert cache.get_many(["o.tone", "o.limit"]) == {"o.tone": "formal", "o.limit": 3}
                defaulted = _longest(lambda: cache.get("o.default"), 20)
                failing = max(
                    _raises_within(lambda: plain.get("o.tone"), DatabaseConnectionError)
                    for _ in range(50)
                )
            assert served < NO_WAIT, f"a cached read waited {served:.2f} s"
            assert defaulted < NO_WAIT, f"a default waited {defaulted:.2f} s"
            assert failing < NO_WAIT, f"a read of the plain DAL waited {failing:.2f} s"
            noisy = [e for e in logs if e["log_level"] in ("warning", "error")]
            assert len(noisy) <= 6, [(e["event"], e.get("outcome")) for e in noisy]
        finally:
            local.start()
        restarted = time.monotonic()
        with ConfigDAL(restartable.dsn(plain_dbname(dsn))) as writer:
            writer.set("o.tone", "casual", updated_by="after")
        plain_back = _eventually(lambda: plain.get("o.tone") == "casual", BACK_WITHIN)
        cache_back = _eventually(lambda: cache.get("o.tone") == "casual", BACK_WITHIN)
        assert cache.health().listener_connected
        assert time.monotonic() - restarted < BACK_WITHIN + 1
        assert plain_back < BACK_WITHIN
        assert cache_back < BACK_WITHIN


def plain_dbname(dsn: str) -> str:
    """The database name in a test DSN."""
    from psycopg.conninfo import conninfo_to_dict

    return str(conninfo_to_dict(dsn)["dbname"])
