"""History, point-in-time reads and rollback, against a real server."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from amira_data_access import ConfigDAL, InvalidConfigurationError


def _history_rows(dsn: str, key: str) -> list[tuple[int, str, str]]:
    with psycopg.connect(dsn) as conn:
        return [
            (int(version), str(operation), str(changed_by))
            for version, operation, changed_by in conn.execute(
                "SELECT version, operation, changed_by FROM amira_config.configuration_history"
                " WHERE key = %s ORDER BY version",
                (key,),
            )
        ]


def _server_now(dsn: str) -> datetime:
    # Instants between changes are taken from the server's clock, the one changed_at uses.
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT clock_timestamp()").fetchone()
        assert row is not None
        return row[0]  # type: ignore[no-any-return]


def test_every_change_is_one_history_row_with_gapless_versions(dal: ConfigDAL, dsn: str) -> None:
    """N changes (including a delete and a re-create) give N rows, versions 1..N."""
    dal.set("k", 1, updated_by="a")
    dal.set("k", 2, updated_by="b", reason="tuning")
    dal.delete("k", deleted_by="c", reason="cleanup")
    entry = dal.set("k", 3, updated_by="d")
    assert entry.version == 4  # re-creating continues the numbering
    assert _history_rows(dsn, "k") == [
        (1, "insert", "a"),
        (2, "update", "b"),
        (3, "delete", "c"),
        (4, "insert", "d"),
    ]
    revisions = dal.history("k")
    assert [r.version for r in revisions] == [4, 3, 2, 1]
    assert revisions[1].operation == "delete"
    assert revisions[1].value == 2  # what the key held when deleted
    assert revisions[1].change_reason == "cleanup"
    assert revisions[2].change_reason == "tuning"
    assert revisions[0].change_reason is None


def test_history_pages_with_before_version(dal: ConfigDAL) -> None:
    """limit and before_version page through a long history, newest first."""
    for i in range(7):
        dal.set("k", i, updated_by="a")
    first = dal.history("k", limit=3)
    assert [r.version for r in first] == [7, 6, 5]
    second = dal.history("k", limit=3, before_version=first[-1].version)
    assert [r.version for r in second] == [4, 3, 2]
    assert dal.history("absent") == []


def test_concurrent_writers_leave_gapless_history(dsn: str) -> None:
    """Threads writing one key at once: every write has its own version, none lost."""
    writers, writes = 4, 15
    with ConfigDAL(dsn, max_size=writers) as store:
        store.set("counter", 0, updated_by="init")

        def write(name: str) -> None:
            for i in range(writes):
                store.set("counter", i, updated_by=name)

        threads = [threading.Thread(target=write, args=(f"w{n}",)) for n in range(writers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        entry = store.get_entry("counter")
    assert entry is not None
    total = 1 + writers * writes
    assert entry.version == total
    assert [v for v, _, _ in _history_rows(dsn, "counter")] == list(range(1, total + 1))


def test_raw_sql_changes_are_recorded_with_the_database_user(dal: ConfigDAL, dsn: str) -> None:
    """A DBA's UPDATE and DELETE in plain SQL still bump the version and write history."""
    dal.set("k", "a", updated_by="svc")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("UPDATE amira_config.configurations SET value = '\"b\"' WHERE key = 'k'")
        user = conn.execute("SELECT session_user").fetchone()
        conn.execute("DELETE FROM amira_config.configurations WHERE key = 'k'")
    assert user is not None
    assert _history_rows(dsn, "k") == [
        (1, "insert", "svc"),
        (2, "update", user[0]),
        (3, "delete", user[0]),
    ]


def test_raw_sql_cannot_bypass_history(dal: ConfigDAL, dsn: str) -> None:
    """Renaming a key or truncating the table is refused: both would lose history."""
    dal.set("k", 1, updated_by="a")
    with psycopg.connect(dsn, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.CheckViolation, match="renamed"):
            conn.execute("UPDATE amira_config.configurations SET key = 'k2' WHERE key = 'k'")
        with pytest.raises(psycopg.errors.RaiseException, match="TRUNCATE"):
            conn.execute("TRUNCATE amira_config.configurations")
    assert dal.get("k") == 1


def test_one_transaction_is_one_revision(dal: ConfigDAL) -> None:
    """Changes made together share a revision; separate changes do not."""
    with dal.transaction() as tx:
        tx.set("a", 1, updated_by="ops")
        tx.set("b", 2, updated_by="ops")
    dal.set("c", 3, updated_by="ops")
    rev_a = dal.history("a")[0].revision
    assert dal.history("b")[0].revision == rev_a
    assert dal.history("c")[0].revision > rev_a


def test_get_at_and_snapshot_at_between_changes(dal: ConfigDAL, dsn: str) -> None:
    """Point-in-time reads see each key as it was at instants between its changes."""
    before_all = _server_now(dsn)
    time.sleep(0.01)
    dal.set("svc.lang", "en", updated_by="a")
    dal.set("svc.tone", "formal", updated_by="a")
    time.sleep(0.01)
    t1 = _server_now(dsn)
    time.sleep(0.01)
    dal.set("svc.lang", "fr", updated_by="a")
    dal.delete("svc.tone", deleted_by="a")
    time.sleep(0.01)
    t2 = _server_now(dsn)

    assert dal.get_at("svc.lang", before_all) is None
    assert dal.get_at("svc.lang", t1) == "en"
    assert dal.get_at("svc.lang", t2) == "fr"
    assert dal.get_at("svc.tone", t1) == "formal"
    assert dal.get_at("svc.tone", t2) is None  # deleted by then
    assert dal.snapshot_at(before_all) == {}
    assert dal.snapshot_at(t1, prefix="svc.") == {"svc.lang": "en", "svc.tone": "formal"}
    assert dal.snapshot_at(t2) == {"svc.lang": "fr"}


def test_point_in_time_reads_need_an_aware_datetime(dal: ConfigDAL) -> None:
    """A naive datetime is ambiguous and refused."""
    with pytest.raises(InvalidConfigurationError, match="timezone-aware"):
        dal.get_at("k", datetime(2026, 1, 1))  # naive on purpose
    assert dal.snapshot_at(datetime.now(UTC) + timedelta(days=1)) == {}


def test_rollback_writes_a_new_version_with_the_old_content(dal: ConfigDAL) -> None:
    """rollback copies value, type and description of an old version into a new one."""
    dal.set("mode", "fast", description="first", updated_by="a")
    dal.set("mode", {"speed": 9}, data_type="json", description="second", updated_by="b")
    entry = dal.rollback("mode", to_version=1, updated_by="ops", reason="bad deploy")
    assert (entry.value, entry.data_type, entry.description) == ("fast", "str", "first")
    assert entry.version == 3
    latest = dal.history("mode", limit=1)[0]
    assert (latest.changed_by, latest.change_reason) == ("ops", "bad deploy")
    assert [r.version for r in dal.history("mode")] == [3, 2, 1]  # nothing rewritten


def test_rollback_restores_a_deleted_key(dal: ConfigDAL) -> None:
    """Rolling back to a version from before a delete brings the key back."""
    dal.set("k", 5, updated_by="a")
    dal.delete("k", deleted_by="a")
    entry = dal.rollback("k", to_version=1, updated_by="ops")
    assert (entry.value, entry.version) == (5, 3)


@pytest.mark.parametrize("to_version", [2, 99])
def test_rollback_to_a_missing_version_is_a_clear_error(dal: ConfigDAL, to_version: int) -> None:
    """A version that never existed, or is a deletion, cannot be rolled back to."""
    dal.set("k", 1, updated_by="a")
    dal.delete("k", deleted_by="a")  # version 2 is the deletion
    with pytest.raises(InvalidConfigurationError, match=f"no version {to_version}"):
        dal.rollback("k", to_version=to_version, updated_by="ops")
    assert dal.get("k") is None


def test_a_repeatable_read_writer_behind_a_newer_commit_fails_at_commit(
    dal: ConfigDAL, dsn: str
) -> None:
    """Revisions are taken in commit order on one counter row: a REPEATABLE READ writer whose
    snapshot predates another change's commit cannot take the next one (40001: run it again)."""
    dal.set("k", 1, updated_by="a")
    with psycopg.connect(dsn) as late:
        late.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        late.execute("SELECT 1")  # its snapshot
        dal.set("other", 1, updated_by="b")  # commits after that snapshot
        dal.bind(late).set("k", 2, updated_by="late")
        with pytest.raises(psycopg.errors.SerializationFailure):
            late.commit()
    assert dal.get("k") == 1
    assert dal.history("k")[0].revision < dal.history("other")[0].revision
    assert dal.set("k", 3, updated_by="again").version == 2
