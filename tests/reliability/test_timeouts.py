"""Never hang: a held row lock, a slow statement and an idle transaction all end in time.

Reproduced before the fix: one psql session holding ``SELECT … FOR UPDATE``
blocked writers for the whole 40 s it held the lock, and once blocked writers
filled the pool, reads of unrelated keys failed after 5 s ("pool exhausted").
"""

from __future__ import annotations

import contextlib
import threading
import time

import pytest

from amira_data_access import (
    ConfigDAL,
    ConfigurationAccessError,
    DatabaseTimeoutError,
    Timeouts,
)

from .conftest import held_row_lock, report

HOLD_SECONDS = 6.0  # how long the other session holds the lock: longer than every bound below


def test_writers_blocked_by_a_held_lock_time_out_and_reads_go_on(dsn: str) -> None:
    """Writers of a locked key fail with DatabaseTimeoutError naming it; reads of other keys
    keep answering while they wait, even with more writers than the pool has connections."""
    timeouts = Timeouts(lock=0.5)
    with ConfigDAL(dsn, max_size=4, timeouts=timeouts) as dal:
        dal.set_many({"locked": 0, "other": "free"}, updated_by="t")
        errors: list[BaseException] = []
        writer_seconds: list[float] = []
        read_seconds: list[float] = []

        def write() -> None:
            started = time.monotonic()
            try:
                dal.set("locked", 1, updated_by="writer")
            except ConfigurationAccessError as exc:
                errors.append(exc)
            writer_seconds.append(time.monotonic() - started)

        with held_row_lock(dsn, "locked"):
            writers = [threading.Thread(target=write) for _ in range(8)]
            for writer in writers:
                writer.start()
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline:  # reads while the writers wait and fail
                started = time.monotonic()
                assert dal.get("other") == "free"
                read_seconds.append(time.monotonic() - started)
            for writer in writers:
                writer.join(timeout=HOLD_SECONDS)
            assert not any(writer.is_alive() for writer in writers), "a writer still waits"
        report(
            "held-row-lock",
            writers=8,
            pool=4,
            lock_timeout_s=0.5,
            timed_out=sum(isinstance(exc, DatabaseTimeoutError) for exc in errors),
            longest_writer_wait_s=max(writer_seconds),
            reads=len(read_seconds),
            longest_read_s=max(read_seconds),
        )
        assert len(errors) == 8
        assert all(isinstance(exc, DatabaseTimeoutError) for exc in errors), errors
        assert "'locked'" in str(errors[0])
        assert "lock" in str(errors[0])
        assert max(writer_seconds) < HOLD_SECONDS  # they did not wait for the lock's holder
        assert max(read_seconds) < 1.0, f"a read waited {max(read_seconds):.2f} s for a connection"
        assert dal.get("locked") == 0


def test_a_statement_that_runs_too_long_is_cancelled(dsn: str) -> None:
    """With no lock timeout, statement_timeout still ends a write that waits too long."""
    with ConfigDAL(dsn, timeouts=Timeouts(statement=0.5, lock=0)) as dal:
        dal.set("slow", 0, updated_by="t")
        with held_row_lock(dsn, "slow"):
            started = time.monotonic()
            with pytest.raises(DatabaseTimeoutError, match=r"statement_timeout|statement timeout"):
                dal.set("slow", 1, updated_by="t")
            assert time.monotonic() - started < HOLD_SECONDS


def test_an_idle_transaction_is_ended_by_the_server(dsn: str) -> None:
    """A transaction() block that sits idle too long is ended, and nothing of it is kept."""
    with ConfigDAL(dsn, timeouts=Timeouts(idle_in_transaction=0.5)) as dal:
        with pytest.raises(ConfigurationAccessError), dal.transaction() as tx:  # noqa: PT012
            tx.set("idle", 1, updated_by="t")
            time.sleep(1.5)  # the server ends the session meanwhile
            tx.set("idle", 2, updated_by="t")
        assert dal.get("idle") is None
        dal.set("after", 1, updated_by="t")  # the pool replaced the ended connection
        assert dal.get("after") == 1


def test_the_dsn_can_still_choose_its_own_settings(dsn: str) -> None:
    """A DSN's own options (here a longer lock_timeout) win over the defaults."""
    with ConfigDAL(f"{dsn} options='-c lock_timeout=3210'") as dal, dal.transaction() as tx:
        row = tx.connection.execute("SHOW lock_timeout").fetchone()
        assert row is not None
        assert row[0] == "3210ms"
        statement = tx.connection.execute("SHOW statement_timeout").fetchone()
        assert statement is not None
        assert statement[0] == "10s"


def test_concurrent_reads_and_health_go_on_while_writers_fill_a_small_pool(dsn: str) -> None:
    """With a pool of 4, one connection is kept for reads: several readers at once share
    it, and health() answers, while writers blocked on a held lock hold the other three.
    (Found in review: the read lease kept that one connection for itself even when idle,
    so a second reader waited for a writer's lock timeout instead of a millisecond.)"""
    with ConfigDAL(dsn, max_size=4, timeouts=Timeouts(lock=3.0)) as dal:
        dal.set_many({"locked": 0, "other": "free"}, updated_by="t")
        read_seconds: list[float] = []
        failures: list[BaseException] = []

        def write() -> None:
            with contextlib.suppress(ConfigurationAccessError):
                dal.set("locked", 1, updated_by="writer")

        def read_for(seconds: float) -> None:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                started = time.monotonic()
                try:
                    assert dal.get("other") == "free"
                except BaseException as exc:
                    failures.append(exc)
                    return
                read_seconds.append(time.monotonic() - started)

        with held_row_lock(dsn, "locked"):
            writers = [threading.Thread(target=write) for _ in range(8)]
            for writer in writers:
                writer.start()
            time.sleep(0.3)  # the writers hold their connections, waiting for the lock
            readers = [threading.Thread(target=read_for, args=(1.5,)) for _ in range(3)]
            for reader in readers:
                reader.start()
            started = time.monotonic()
            health = dal.health()
            health_seconds = time.monotonic() - started
            for thread in (*readers, *writers):
                thread.join(timeout=HOLD_SECONDS)
        assert not failures, failures
        assert health.reachable, health.error
        assert health_seconds < 1.0, f"health() waited {health_seconds:.2f} s for a connection"
        assert max(read_seconds) < 1.0, f"a read waited {max(read_seconds):.2f} s for a connection"
