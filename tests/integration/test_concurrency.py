"""Optimistic concurrency, get-or-create, batches, transactions and retries."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row
from structlog.testing import capture_logs

from amira_data_access import (
    ConcurrentModificationError,
    ConfigDAL,
    ConfigEntry,
    ConfigItem,
    ConfigurationAccessError,
    DatabaseConnectionError,
    InvalidConfigurationError,
    RetryPolicy,
)

INCREMENTER = textwrap.dedent(
    """
    import sys
    from amira_data_access import ConcurrentModificationError, ConfigDAL

    dsn, increments, checked = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "checked"
    with ConfigDAL(dsn, max_size=1) as dal:
        done = 0
        while done < increments:
            entry = dal.get_entry("counter")
            try:
                dal.set("counter", entry.value + 1, updated_by="worker",
                        expected_version=entry.version if checked else None)
            except ConcurrentModificationError:
                continue  # someone else won: read again and retry
            done += 1
    """
)


def _run_incrementers(dsn: str, *, processes: int, increments: int, checked: bool) -> int:
    with ConfigDAL(dsn) as dal:
        dal.set("counter", 0, updated_by="test")
        workers = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    INCREMENTER,
                    dsn,
                    str(increments),
                    "checked" if checked else "blind",
                ],
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(processes)
        ]
        errors = [worker.communicate(timeout=300)[1] for worker in workers]
        assert [w.returncode for w in workers] == [0] * processes, errors
        value = dal.get("counter")
        assert isinstance(value, int)
        return value


def test_expected_version_prevents_lost_updates_across_processes(dsn: str) -> None:
    """Processes doing read-modify-write with expected_version lose no increment."""
    assert _run_incrementers(dsn, processes=4, increments=40, checked=True) == 160


def test_without_expected_version_updates_can_be_lost(dal: ConfigDAL) -> None:
    """Two read-modify-write cycles that interleave lose one increment: the feature's reason."""
    dal.set("counter", 0, updated_by="test")
    first = dal.get_entry("counter")
    second = dal.get_entry("counter")
    assert first is not None
    assert second is not None
    dal.set("counter", first.value + 1, updated_by="one")
    dal.set("counter", second.value + 1, updated_by="two")
    assert dal.get("counter") == 1  # two increments, one survives
    with pytest.raises(ConcurrentModificationError) as info:
        dal.set("counter", second.value + 1, updated_by="two", expected_version=second.version)
    assert info.value.current_version == 3
    assert info.value.expected_version == 1


def test_expected_version_zero_means_create_only(dal: ConfigDAL) -> None:
    """expected_version=0 creates a key and refuses if it already exists."""
    entry = dal.set("k", 1, updated_by="a", expected_version=0)
    assert entry.version == 1
    with pytest.raises(ConcurrentModificationError) as info:
        dal.set("k", 2, updated_by="b", expected_version=0)
    assert info.value.current_version == 1
    assert dal.get("k") == 1


def test_expected_version_on_an_absent_key_reports_version_zero(dal: ConfigDAL) -> None:
    """Updating a key that does not exist at an expected version is a conflict at 0."""
    with pytest.raises(ConcurrentModificationError) as info:
        dal.set("ghost", 1, updated_by="a", expected_version=3)
    assert info.value.current_version == 0
    assert isinstance(info.value, ConfigurationAccessError)


def test_conditional_delete(dal: ConfigDAL) -> None:
    """delete with expected_version removes only the version the caller saw."""
    dal.set("k", 1, updated_by="a")
    dal.set("k", 2, updated_by="a")
    with pytest.raises(ConcurrentModificationError) as info:
        dal.delete("k", deleted_by="a", expected_version=1)
    assert info.value.current_version == 2
    assert dal.delete("k", deleted_by="a", expected_version=2) is True
    with pytest.raises(ConcurrentModificationError):
        dal.delete("k", deleted_by="a", expected_version=2)


def test_set_default_inserts_once_and_returns_the_stored_entry(dal: ConfigDAL) -> None:
    """set_default writes only when absent and returns what is stored."""
    first = dal.set_default("lang", "en", updated_by="a")
    second = dal.set_default("lang", "fr", updated_by="b")
    assert first == second
    assert dal.get("lang") == "en"


def test_set_default_is_race_free(dsn: str) -> None:
    """Many threads calling set_default at once all get the same single entry."""
    results: list[object] = []
    failures: list[BaseException] = []
    with ConfigDAL(dsn, max_size=8) as store:
        barrier = threading.Barrier(8)

        def create(n: int) -> None:
            barrier.wait()
            try:
                results.append(store.set_default("shared", n, updated_by=f"t{n}"))
            except BaseException as exc:  # collected and asserted below
                failures.append(exc)

        threads = [threading.Thread(target=create, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert failures == []
        assert len(set(map(repr, results))) == 1
        assert [r.version for r in store.history("shared")] == [1]


def test_get_many_returns_present_keys_in_one_call(dal: ConfigDAL) -> None:
    """get_many maps the keys that exist to their values and leaves the rest out."""
    dal.set_many({"a": 1, "b": "two", "c": [3]}, updated_by="x")
    assert dal.get_many(["a", "c", "zzz", "a"]) == {"a": 1, "c": [3]}
    assert dal.get_many([]) == {}
    with pytest.raises(InvalidConfigurationError):
        dal.get_many("abc")


def test_set_many_is_all_or_nothing_with_one_revision(dal: ConfigDAL) -> None:
    """set_many writes every item in one revision, and a bad item writes nothing."""
    entries = dal.set_many(
        [
            ConfigItem("b", 2.5, data_type="float", description="bee"),
            ConfigItem("a", "x"),
        ],
        updated_by="ops",
        reason="release 7",
    )
    assert [(e.key, e.value, e.version) for e in entries] == [("a", "x", 1), ("b", 2.5, 1)]
    revisions = {dal.history(key)[0].revision for key in ("a", "b")}
    assert len(revisions) == 1
    assert dal.history("a")[0].change_reason == "release 7"

    with pytest.raises(InvalidConfigurationError):
        dal.set_many({"a": "y", "c": float("nan")}, updated_by="ops")
    with pytest.raises(InvalidConfigurationError):
        dal.set_many({"a": "y", "b": "not a float"}, updated_by="ops")  # stored type of b
    assert dal.get_many(["a", "b", "c"]) == {"a": "x", "b": 2.5}
    assert dal.get_entry("b").description == "bee"  # type: ignore[union-attr]


def test_transaction_commits_together_or_not_at_all(dal: ConfigDAL) -> None:
    """A transaction's changes appear together; an exception rolls them all back."""
    with dal.transaction() as tx:
        tx.set("a", 1, updated_by="ops")
        tx.set("b", 2, updated_by="ops")
        assert tx.get("a") == 1  # visible inside
    assert dal.get_many(["a", "b"]) == {"a": 1, "b": 2}

    def change_then_fail() -> None:
        with dal.transaction() as tx:
            tx.set("a", 10, updated_by="ops")
            tx.delete("b", deleted_by="ops")
            raise RuntimeError("abort")

    with pytest.raises(RuntimeError):
        change_then_fail()
    assert dal.get_many(["a", "b"]) == {"a": 1, "b": 2}
    assert len(dal.history("a")) == 1


def test_bind_uses_the_callers_connection_and_transaction(dal: ConfigDAL, dsn: str) -> None:
    """With bind(), configuration changes commit or roll back with the caller's own data."""
    with psycopg.connect(dsn, row_factory=dict_row) as conn:
        conn.execute("CREATE TABLE orders (id int)")
        conn.commit()
        with conn.transaction(force_rollback=True):
            conn.execute("INSERT INTO orders VALUES (1)")
            dal.bind(conn).set("orders.enabled", True, updated_by="svc")
            assert dal.bind(conn).get("orders.enabled") is True
        assert dal.get("orders.enabled") is None  # rolled back with the order
        with conn.transaction():
            conn.execute("INSERT INTO orders VALUES (2)")
            dal.bind(conn).set("orders.enabled", True, updated_by="svc")
        assert conn.row_factory is dict_row  # left as the caller had it
    assert dal.get("orders.enabled") is True


def test_serialization_failures_are_retried(dal: ConfigDAL, dsn: str) -> None:
    """A write that fails twice with 40001 is retried with backoff and then succeeds."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        # A real serialization failure on the first two attempts. The count lives in
        # a sequence because nextval() survives the rollback of the failed statement.
        conn.execute("CREATE SEQUENCE flaky_attempts")
        conn.execute(
            """
            CREATE FUNCTION flaky() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF nextval('public.flaky_attempts') <= 2 THEN
                    RAISE EXCEPTION 'simulated' USING ERRCODE = 'serialization_failure';
                END IF;
                RETURN NEW;
            END $$
            """
        )
        conn.execute(
            "CREATE TRIGGER flaky BEFORE INSERT ON amira_config.configurations"
            " FOR EACH ROW EXECUTE FUNCTION public.flaky()"
        )
    with capture_logs() as logs:
        entry = dal.set("k", 1, updated_by="a")
    assert entry.version == 1
    retries = [e for e in logs if e.get("outcome") == "retry"]
    assert [(e["sqlstate"], e["attempt"]) for e in retries] == [("40001", 1), ("40001", 2)]
    assert [r.version for r in dal.history("k")] == [1]  # written once


def test_retry_policy_gives_up_after_its_attempts(dsn: str) -> None:
    """With attempts=1 a serialization failure surfaces at once, translated."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            """
            CREATE FUNCTION always_conflict() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION 'simulated' USING ERRCODE = 'serialization_failure'; END $$
            """
        )
        conn.execute(
            "CREATE TRIGGER always_conflict BEFORE INSERT ON amira_config.configurations"
            " FOR EACH ROW EXECUTE FUNCTION always_conflict()"
        )
    with (
        ConfigDAL(dsn, retry=RetryPolicy(attempts=1)) as store,
        capture_logs() as logs,
        pytest.raises(ConfigurationAccessError, match="simulated"),
    ):
        store.set("k", 1, updated_by="a")
    assert not [e for e in logs if e.get("outcome") == "retry"]


def _kill_pool_sessions(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'amira-data-access' AND pid <> pg_backend_pid()"
        )


def test_reads_survive_a_killed_connection(dsn: str) -> None:
    """A read whose pooled connection was killed is retried on a fresh one."""
    with ConfigDAL(dsn, max_size=1, min_size=1, check_after_idle=3600) as store:
        store.set("k", "v", updated_by="a")
        _kill_pool_sessions(dsn)
        with capture_logs() as logs:
            assert store.get("k") == "v"
        assert [e["outcome"] for e in logs if e.get("outcome") == "retry"] == ["retry"]


def test_writes_are_not_retried_after_a_lost_connection(dsn: str) -> None:
    """A write on a killed connection may have committed: it surfaces, not repeated.

    (``delete``: its first statement is the write. A ``set`` first reads the schema
    revision, a read that is retried, so its write goes out on a fresh connection: see
    the next test.)"""
    with ConfigDAL(dsn, max_size=1, min_size=1, check_after_idle=3600) as store:
        store.set("k", "v", updated_by="a")
        _kill_pool_sessions(dsn)
        with pytest.raises(DatabaseConnectionError):
            store.delete("k", deleted_by="a")
        assert store.get("k") == "v"


def test_a_write_whose_read_first_lost_the_connection_is_sent_once(dsn: str) -> None:
    """``set`` reads the schema revision before it writes: that read, cut off, is retried on a
    fresh connection, and the write is then sent once (one new version, one retry logged)."""
    with ConfigDAL(dsn, max_size=1, min_size=1, check_after_idle=3600) as store:
        store.set("k", "v", updated_by="a")
        _kill_pool_sessions(dsn)
        with capture_logs() as logs:
            assert store.set("k", "w", updated_by="a").version == 2
        assert [e["outcome"] for e in logs if e.get("outcome") == "retry"] == ["retry"]
        assert [revision.version for revision in store.history("k")] == [2, 1]


def test_recreating_a_key_while_it_is_being_deleted_is_retried_not_refused(
    dal: ConfigDAL, dsn: str
) -> None:
    """A delete and a re-create racing claim the same history version; the loser is retried."""
    dal.set("k", 1, updated_by="a")
    outcome: list[object] = []
    with psycopg.connect(dsn) as deleter:
        deleter.execute("DELETE FROM amira_config.configurations WHERE key = 'k'")
        worker = threading.Thread(
            target=lambda: outcome.append(dal.set("k", 2, updated_by="b")), daemon=True
        )
        worker.start()
        _wait_until_waiting_on_a_lock(deleter)  # the re-create reached the deleted row
        deleter.commit()
    worker.join(timeout=30)
    assert len(outcome) == 1, "the re-create should succeed after a retry"
    entry = outcome[0]
    assert isinstance(entry, ConfigEntry)
    assert (entry.value, entry.version) == (2, 3)  # 1 insert, 2 delete, 3 re-create
    assert [r.version for r in dal.history("k")] == [3, 2, 1]


def test_reason_with_a_lone_surrogate_is_refused_before_any_sql(dal: ConfigDAL) -> None:
    """Text PostgreSQL cannot store is invalid input, not an encoding crash."""
    with pytest.raises(InvalidConfigurationError, match="surrogate"):
        dal.set("k", 1, updated_by="a", reason="bad\ud800")
    assert dal.get("k") is None


def test_set_many_keeps_a_type_changed_while_it_waited(dal: ConfigDAL, dsn: str) -> None:
    """A batch that gives no type keeps the key's type as it is when the batch writes it,
    not as the batch's snapshot saw it: a concurrent type change is not reverted."""
    dal.set("typed", 1, data_type="int", updated_by="t")
    with psycopg.connect(dsn) as other:
        other.execute(
            "UPDATE amira_config.configurations SET value = '1.5', data_type = 'float'"
            " WHERE key = 'typed'"
        )  # holds the row until it commits
        done: list[object] = []
        writer = threading.Thread(
            target=lambda: done.append(dal.set_many({"typed": 2, "fresh": 1}, updated_by="t"))
        )
        writer.start()
        _wait_until_waiting_on_a_lock(other)  # the batch reached the row and waits for it
        other.commit()
        writer.join(timeout=10)
    assert done, "the batch did not finish"
    entry = dal.get_entry("typed")
    assert entry is not None
    assert (entry.data_type, entry.value) == ("float", 2.0)


def _wait_until_waiting_on_a_lock(observer: psycopg.Connection[Any], seconds: float = 10) -> None:
    """Return once another session of this database waits on a lock (not after a guess)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        row = observer.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            " AND pid <> pg_backend_pid() AND datname = current_database()"
        ).fetchone()
        if row and row[0]:
            return
        time.sleep(0.01)
    raise AssertionError(f"no session waited on a lock within {seconds} s")
