"""AsyncCachedConfigDAL on a real server: hits come from memory, changes from anywhere arrive."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import psycopg

from amira_data_access import AsyncCachedConfigDAL, ConfigDAL

# Far above the change feed's delay (about a millisecond here, see benchmarks/RESULTS.md):
# how long a change made elsewhere may take to reach the cache.
FRESHNESS_BOUND = 1.0


def _silent_update(dsn: str, key: str, value: str) -> None:
    """Change a row without announcing it (the table owner disables the commit trigger, which
    gives the history row its revision and rings the doorbell: the feed never reads it)."""
    with psycopg.connect(dsn, autocommit=True) as conn, conn.transaction():
        conn.execute(
            "ALTER TABLE amira_config.configuration_history "
            "DISABLE TRIGGER configuration_history_commit"
        )
        conn.execute(
            "UPDATE amira_config.configurations SET value = to_jsonb(%s::text) WHERE key = %s",
            (value, key),
        )
        conn.execute(
            "ALTER TABLE amira_config.configuration_history "
            "ENABLE TRIGGER configuration_history_commit"
        )


def test_a_cached_get_is_answered_from_memory(dsn: str) -> None:
    """Once read (get, get_many) or written, a key is served from memory: a change nobody
    announced is not seen."""

    async def scenario() -> list[object]:
        async with AsyncCachedConfigDAL(dsn) as cache:
            async with cache.watch("c.") as changes:
                with ConfigDAL(dsn) as writer:
                    writer.set_many({"c.tone": "formal", "c.lang": "en"}, updated_by="t")
                # Both announcements handled: no fill below can race with them.
                assert await changes.next(timeout=10) is not None
                assert await changes.next(timeout=10) is not None
            filled = [await cache.get("c.tone"), await cache.get_many(["c.lang"])]
            await cache.set("c.own", "mine", updated_by="t")  # read-your-writes fills too
            for key in ("c.tone", "c.lang", "c.own"):
                _silent_update(dsn, key, "changed underneath")
            served = [
                await cache.get("c.tone"),
                await cache.get_many(["c.lang"]),
                (await cache.get_entry("c.own")).value,  # type: ignore[union-attr]
            ]
            return [*filled, *served]

    assert asyncio.run(scenario()) == [
        "formal",
        {"c.lang": "en"},
        "formal",
        {"c.lang": "en"},
        "mine",
    ]
    with ConfigDAL(dsn) as dal:  # the database did change
        assert dal.get_many(["c.tone", "c.lang", "c.own"]) == dict.fromkeys(
            ["c.tone", "c.lang", "c.own"], "changed underneath"
        )


def test_a_change_made_by_another_process_reaches_the_cache(dsn: str) -> None:
    """Another process's commit is seen by the next get, within the freshness bound."""
    script = (
        "import sys\n"
        "from amira_data_access import ConfigDAL\n"
        "with ConfigDAL(sys.argv[1]) as dal:\n"
        "    dal.set('c.limit', 2, updated_by='other-process')\n"
    )

    async def scenario() -> tuple[int, int, float]:
        async with AsyncCachedConfigDAL(dsn) as cache:
            await cache.set("c.limit", 1, updated_by="t")
            before = await cache.get("c.limit")
            # The other process runs in a thread so the loop stays free for the feed.
            await asyncio.to_thread(
                subprocess.run, [sys.executable, "-c", script, dsn], check=True, timeout=60
            )
            committed = time.monotonic()
            while (value := await cache.get("c.limit")) != 2:
                if time.monotonic() - committed > FRESHNESS_BOUND:
                    break
                await asyncio.sleep(0.005)
            return before, value, time.monotonic() - committed

    before, after, waited = asyncio.run(scenario())
    assert before == 1
    assert after == 2, f"the cache still served {after} {waited:.3f} s after the commit"
