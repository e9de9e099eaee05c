"""A database outage: answer from what is known without waiting, and be fresh soon after.

Reproduced before the fix: with the server down every cached read first waited
the full 5 s connect timeout; after the server returned the cache stayed stale
3.5-15.4 s and raised DatabaseConnectionError for keys dropped during catch-up;
the plain DAL needed up to 12.3 s to serve again; 200 gets with the server
down logged 400 lines.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import pytest
from structlog.testing import capture_logs

from amira_data_access import CachedConfigDAL, ConfigDAL, DatabaseConnectionError

from .conftest import report, scaled

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
    the outage is logged as a change of state, not per read. After: fresh within seconds.
    (One outage in CI, ten under ``just soak``.)"""
    local = restartable.local
    cycles = scaled(1, 10)
    cache_staleness: list[float] = []
    plain_staleness: list[float] = []
    with (
        CachedConfigDAL(dsn, connect_timeout=10) as cache,
        ConfigDAL(dsn, connect_timeout=10) as plain,
        # Pings every checkout: the first call after the stop fails in the pool's check,
        # which must give up at once too, not wait for a replacement connection.
        ConfigDAL(dsn, connect_timeout=10, check_after_idle=0) as pinging,
    ):
        cache.set_many({"o.tone": "v0", "o.limit": 3}, updated_by="t")
        cache.register_defaults({"o.default": "fallback"})
        for cycle in range(cycles):
            assert cache.get("o.tone") == f"v{cycle}"
            assert plain.get("o.tone") == f"v{cycle}"
            assert pinging.get("o.tone") == f"v{cycle}"
            local.stop()
            try:
                with capture_logs() as logs:
                    first = _raises_within(lambda: plain.get("o.tone"), DatabaseConnectionError)
                    first_pinged = _raises_within(
                        lambda: pinging.get("o.tone"), DatabaseConnectionError
                    )
                    served = _longest(lambda: cache.get("o.tone"), 200)
                    assert cache.get_many(["o.tone", "o.limit"]) == {
                        "o.tone": f"v{cycle}",
                        "o.limit": 3,
                    }
                    defaulted = _longest(lambda: cache.get("o.default"), 20)
                    failing = max(
                        _raises_within(lambda: plain.get("o.tone"), DatabaseConnectionError)
                        for _ in range(50)
                    )
                noisy = [e for e in logs if e["log_level"] in ("warning", "error")]
                report(
                    "outage",
                    cycle=cycle,
                    first_failure_s=first,
                    first_failure_pinged_s=first_pinged,
                    cached_reads=200,
                    longest_cached_read_s=served,
                    longest_default_s=defaulted,
                    longest_plain_failure_s=failing,
                    warnings_and_errors_logged=len(noisy),
                )
                assert first < NO_WAIT * 3, "the first failure took the whole connect timeout"
                assert first_pinged < NO_WAIT * 3, "a failed ping waited for the pool's timeout"
                assert served < NO_WAIT, f"a cached read waited {served:.2f} s"
                assert defaulted < NO_WAIT, f"a default waited {defaulted:.2f} s"
                assert failing < NO_WAIT, f"a read of the plain DAL waited {failing:.2f} s"
                assert len(noisy) <= 6, [(e["event"], e.get("outcome")) for e in noisy]
            finally:
                local.start()
            with ConfigDAL(restartable.dsn(plain_dbname(dsn))) as writer:
                writer.set("o.tone", f"v{cycle + 1}", updated_by="after")
            # Staleness after recovery: from the commit of a change made once the server
            # is back, until each store answers it.
            new = f"v{cycle + 1}"
            cache_staleness.append(
                _eventually(lambda new=new: cache.get("o.tone") == new, BACK_WITHIN)  # type: ignore[misc]
            )
            plain_staleness.append(
                _eventually(lambda new=new: plain.get("o.tone") == new, BACK_WITHIN)  # type: ignore[misc]
            )
            # Reads answered by the server can come before the feed's reconnect: it follows.
            _eventually(lambda: cache.health().listener_connected, BACK_WITHIN)
    report(
        "outage-recovery",
        outages=cycles,
        cache_stale_p50_s=statistics.median(cache_staleness),
        cache_stale_max_s=max(cache_staleness),
        plain_back_p50_s=statistics.median(plain_staleness),
        plain_back_max_s=max(plain_staleness),
    )


def plain_dbname(dsn: str) -> str:
    """The database name in a test DSN."""
    from psycopg.conninfo import conninfo_to_dict

    return str(conninfo_to_dict(dsn)["dbname"])


def test_a_change_the_feed_hands_out_after_an_outage_can_be_read_at_once(
    restartable: Any, dsn: str
) -> None:
    """The feed reconnecting is the database answering: a read made on hearing the first
    change after an outage gets the value, instead of "unreachable" until the outage
    probe's next try (found by `amira-config watch`, which showed such a change without
    its value). The probe is slowed to 30 s here so that only the feed can say it is back."""
    local = restartable.local
    heard: list[tuple[int, object]] = []
    with ConfigDAL(dsn, connect_timeout=10) as dal:
        dal.set("o.k", 1, updated_by="t")
        dal._reachability._probe_interval = 30.0

        def on_change(change: Any) -> None:
            try:
                heard.append((change.version, dal.get("o.k")))
            except DatabaseConnectionError as exc:
                heard.append((change.version, exc))

        subscription = dal.subscribe(on_change, "o.")
        try:
            local.stop()
            try:
                _raises_within(lambda: dal.get("o.k"), DatabaseConnectionError)
                assert dal._reachability.down_since is not None  # marked down
            finally:
                local.start()
            with ConfigDAL(restartable.dsn(plain_dbname(dsn))) as writer:
                writer.set("o.k", 2, updated_by="after")
            _eventually(lambda: bool(heard), BACK_WITHIN)
        finally:
            subscription.close()
    assert heard[0] == (2, 2), heard
