"""Cancelling a task in the middle of an AsyncConfigDAL write: nothing half-done, nothing leaked.

A trigger makes writes of ``slow.*`` keys sleep on the server, so the task is
cancelled while its statement runs. psycopg then cancels the statement on the
server (the autocommit statement, or the transaction around it, rolls back)
before the pool takes the connection back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
import pytest

from amira_data_access import AsyncConfigDAL, ConfigItem

SLOW_TRIGGER = """
CREATE FUNCTION public.slow_write() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.key LIKE 'slow.%' THEN
        PERFORM pg_sleep(30);
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER slow_write BEFORE INSERT OR UPDATE ON amira_config.configurations
    FOR EACH ROW EXECUTE FUNCTION public.slow_write();
"""


def _scalar(dsn: str, query: str) -> Any:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(query).fetchone()
        assert row is not None
        return row[0]


def _active_sessions(dsn: str) -> int:
    return int(
        _scalar(
            dsn,
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'amira-data-access'"
            " AND state = 'active' AND datname = current_database()",
        )
    )


def _stored(dsn: str) -> tuple[int, int]:
    """(rows, history rows) in the store."""
    return (
        int(_scalar(dsn, "SELECT count(*) FROM amira_config.configurations")),
        int(_scalar(dsn, "SELECT count(*) FROM amira_config.configuration_history")),
    )


async def _wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail("condition not reached in time")
        await asyncio.sleep(0.02)


def _in_use(dal: AsyncConfigDAL) -> int:
    """Connections checked out of the pool by a call: the one leased for reads counts
    only while a call holds it (a call it never came back from leaks it too)."""
    stats = dal.pool.get_stats()
    idle_lease = dal._lease.held and not dal._lease._lock.locked()
    return stats["pool_size"] - stats["pool_available"] - int(idle_lease)


async def _cancel_mid_statement(dsn: str, dal: AsyncConfigDAL, write: Awaitable[Any]) -> float:
    """Start ``write``, cancel it once its statement runs on the server; seconds it took."""
    task = asyncio.ensure_future(write)
    # The session is 'active' only while the (sleeping) statement runs.
    await _wait_until(lambda: _active_sessions(dsn) == 1)
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    return time.monotonic() - started


@pytest.fixture
def slow_dsn(dsn: str) -> str:
    """A store whose writes of slow.* keys take 30 s on the server."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(SLOW_TRIGGER)
    return dsn


async def _check_nothing_left(dsn: str, dal: AsyncConfigDAL, before: tuple[int, int]) -> None:
    await _wait_until(lambda: _in_use(dal) == 0)
    await _wait_until(lambda: _active_sessions(dsn) == 0, timeout=5)
    assert _stored(dsn) == before
    # The pool still serves: the connection came back clean (or was replaced).
    await dal.set("after", 1, updated_by="test")
    assert await dal.get("after") == 1


@pytest.mark.parametrize("operation", ["set", "set_many", "set_default", "rollback"])
def test_cancelled_write_leaves_no_change_and_no_busy_connection(
    slow_dsn: str, operation: str
) -> None:
    """A write cancelled while its statement runs is rolled back and frees its connection."""

    async def scenario() -> None:
        async with AsyncConfigDAL(slow_dsn, min_size=1, max_size=2) as dal:
            await dal.set("fast", "x", updated_by="test")
            before = _stored(slow_dsn)
            writes = {
                "set": lambda: dal.set("slow.k", 1, updated_by="test"),
                "set_many": lambda: dal.set_many(
                    [ConfigItem("a.first", 1), ConfigItem("slow.k", 2)], updated_by="test"
                ),
                "set_default": lambda: dal.set_default("slow.k", 1, updated_by="test"),
                "rollback": lambda: dal.rollback("slow.k", to_version=1, updated_by="test"),
            }
            if operation == "rollback":
                with psycopg.connect(slow_dsn, autocommit=True) as conn:
                    conn.execute(
                        "ALTER TABLE amira_config.configurations DISABLE TRIGGER slow_write"
                    )
                await dal.set("slow.k", 0, updated_by="test")
                await dal.set("slow.k", 5, updated_by="test")
                with psycopg.connect(slow_dsn, autocommit=True) as conn:
                    conn.execute(
                        "ALTER TABLE amira_config.configurations ENABLE TRIGGER slow_write"
                    )
                before = _stored(slow_dsn)
            elapsed = await _cancel_mid_statement(slow_dsn, dal, writes[operation]())
            assert elapsed < 10  # the server statement was cancelled, not waited for
            await _check_nothing_left(slow_dsn, dal, before)

    asyncio.run(scenario())


def test_cancelled_transaction_rolls_back_every_change(slow_dsn: str) -> None:
    """A task cancelled inside ``async with dal.transaction()`` commits none of its writes."""

    async def scenario() -> None:
        async with AsyncConfigDAL(slow_dsn, min_size=1, max_size=2) as dal:
            before = _stored(slow_dsn)

            async def transaction() -> None:
                async with dal.transaction() as tx:
                    await tx.set("a.first", 1, updated_by="test")
                    await tx.delete("missing", deleted_by="test")
                    await tx.set("slow.k", 2, updated_by="test")  # cancelled here

            await _cancel_mid_statement(slow_dsn, dal, transaction())
            await _check_nothing_left(slow_dsn, dal, before)
            assert await dal.get_many(["a.first", "slow.k"]) == {}

    asyncio.run(scenario())


def test_cancelled_while_waiting_for_a_connection(slow_dsn: str) -> None:
    """A task cancelled while queued for a pooled connection leaves the pool intact."""

    async def scenario() -> None:
        async with AsyncConfigDAL(slow_dsn, min_size=1, max_size=1) as dal:
            before = _stored(slow_dsn)
            busy = asyncio.ensure_future(dal.set("slow.k", 1, updated_by="test"))
            await _wait_until(lambda: _active_sessions(slow_dsn) == 1)
            queued = asyncio.ensure_future(dal.get("fast"))
            await _wait_until(lambda: dal.pool.get_stats().get("requests_waiting", 0) == 1)
            queued.cancel()
            busy.cancel()
            for task in (queued, busy):
                with pytest.raises(asyncio.CancelledError):
                    await task
            await _check_nothing_left(slow_dsn, dal, before)

    asyncio.run(scenario())
