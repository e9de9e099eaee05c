"""The migration runner's safety checks and verbs against a real server.

No-transaction failures and repair, edit detection, refusals before anything
runs, lock_timeout retries, dry runs, baseline and reset.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from structlog.testing import capture_logs

from amira_data_access import ConfigurationAccessError, DatabaseConnectionError, MigrationError
from amira_data_access.migrations import (
    APPLICATION_NAME,
    LOCK_KEY,
    baseline,
    checksum,
    discover,
    migrate,
    repair,
    reset,
    status,
    verify,
)
from amira_data_access.migrations.verbs import RESET_ALLOWED_ENV


def _write(folder: Path, name: str, sql: str) -> Path:
    path = folder / name
    path.write_text(sql)
    return path


def _history(dsn: str) -> list[tuple[int, bool, str]]:
    """(version, success, kind) of every history row."""
    with psycopg.connect(dsn) as conn:
        return [
            (int(v), bool(s), str(k))
            for v, s, k in conn.execute(
                "SELECT version, success, kind FROM amira_config.schema_migrations ORDER BY version"
            )
        ]


def _scalar(dsn: str, query: str) -> Any:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(query).fetchone()
    assert row is not None
    return row[0]


# --- no-transaction files --------------------------------------------------------------------


def test_no_transaction_file_runs_outside_a_transaction(empty_dsn: str, tmp_path: Path) -> None:
    """A CREATE INDEX CONCURRENTLY file applies and is recorded transactional=false, success."""
    _write(tmp_path, "0001_t.sql", "CREATE TABLE t (a int);")
    _write(
        tmp_path,
        "0002_index.sql",
        "-- migrate:no-transaction\n-- why: t is big\nCREATE INDEX CONCURRENTLY t_a ON t (a);\n",
    )
    assert [m.filename for m in migrate(empty_dsn, directory=tmp_path)] == [
        "0001_t.sql",
        "0002_index.sql",
    ]
    assert _history(empty_dsn) == [(1, True, "apply"), (2, True, "apply")]
    assert [
        (r.version, r.transactional) for r in status(empty_dsn, directory=tmp_path).applied
    ] == [
        (1, True),
        (2, False),
    ]


def test_failed_no_transaction_file_blocks_until_repaired(empty_dsn: str, tmp_path: Path) -> None:
    """UNIQUE CONCURRENTLY on duplicates leaves a failed row; migrate refuses naming the
    INVALID index until the index is dropped and the version repaired."""
    _write(tmp_path, "0001_t.sql", "CREATE TABLE t (a int);\nINSERT INTO t VALUES (1), (1), (2);")
    _write(
        tmp_path,
        "0002_unique.sql",
        "-- migrate:no-transaction\nCREATE UNIQUE INDEX CONCURRENTLY t_a_key ON t (a);\n",
    )
    with pytest.raises(MigrationError, match=r"0002_unique\.sql.*public\.t_a_key"):
        migrate(empty_dsn, directory=tmp_path)
    assert _history(empty_dsn) == [(1, True, "apply"), (2, False, "apply")]

    state = status(empty_dsn, directory=tmp_path)
    assert [row.version for row in state.failed] == [2]
    assert state.invalid_indexes == ["public.t_a_key"]
    assert state.pending == []
    assert not state.up_to_date

    with pytest.raises(MigrationError, match=r"(?s)0002_unique\.sql failed.*public\.t_a_key"):
        migrate(empty_dsn, directory=tmp_path)
    with pytest.raises(MigrationError, match=r"repair\(2\)"):
        verify(empty_dsn, directory=tmp_path)
    with pytest.raises(MigrationError, match=r"drop the INVALID index.*public\.t_a_key"):
        repair(empty_dsn, 2)  # rerunning over an invalid index could "succeed" uselessly
    with pytest.raises(MigrationError, match="applied successfully"):
        repair(empty_dsn, 1)

    with psycopg.connect(empty_dsn, autocommit=True) as conn:
        conn.execute("DROP INDEX CONCURRENTLY t_a_key")
        conn.execute("DELETE FROM t WHERE ctid <> (SELECT min(ctid) FROM t WHERE a = 1) AND a = 1")
    assert repair(empty_dsn, 2).version == 2
    assert _history(empty_dsn) == [(1, True, "apply")]
    assert [m.filename for m in migrate(empty_dsn, directory=tmp_path)] == ["0002_unique.sql"]
    assert _history(empty_dsn) == [(1, True, "apply"), (2, True, "apply")]
    assert _scalar(
        empty_dsn, "SELECT indisvalid FROM pg_index WHERE indexrelid = 't_a_key'::regclass"
    )
    assert verify(empty_dsn, directory=tmp_path).up_to_date


def test_repair_refuses_an_unknown_version(empty_dsn: str, tmp_path: Path) -> None:
    """repair of a version with no history row changes nothing and says so."""
    _write(tmp_path, "0001_a.sql", "SELECT 1;")
    migrate(empty_dsn, directory=tmp_path)
    with pytest.raises(MigrationError, match="0007 has no history row"):
        repair(empty_dsn, 7)


# --- edit detection --------------------------------------------------------------------------


def test_one_changed_character_fails_verify_and_migrate(empty_dsn: str, tmp_path: Path) -> None:
    """Editing one character of an applied file is reported by verify and refused by migrate."""
    path = _write(tmp_path, "0001_a.sql", "CREATE TABLE a (x int);\n")
    migrate(empty_dsn, directory=tmp_path)
    path.write_text("CREATE TABLE a (y int);\n")
    with pytest.raises(MigrationError, match=r"0001_a\.sql was changed after it was applied"):
        verify(empty_dsn, directory=tmp_path)
    with pytest.raises(MigrationError, match=r"nothing was applied(?s:.*)0001_a\.sql"):
        migrate(empty_dsn, directory=tmp_path)


def test_crlf_and_bom_pass_verify(empty_dsn: str, tmp_path: Path) -> None:
    """Line endings and a BOM are not edits for verify either."""
    path = _write(tmp_path, "0001_a.sql", "SELECT 1;\nSELECT 2;\n")
    migrate(empty_dsn, directory=tmp_path)
    path.write_bytes(b"\xef\xbb\xbfSELECT 1;\r\nSELECT 2;\r\n")
    assert verify(empty_dsn, directory=tmp_path).up_to_date
    path.write_bytes(b"SELECT 1;\rSELECT 2;\r")
    assert verify(empty_dsn, directory=tmp_path).up_to_date


def test_removed_line_break_is_an_edit(empty_dsn: str, tmp_path: Path) -> None:
    """Joining two lines ('a\\nb' -> 'ab') is detected."""
    path = _write(tmp_path, "0001_a.sql", "SELECT 1;\nSELECT 2;\n")
    migrate(empty_dsn, directory=tmp_path)
    path.write_text("SELECT 1;SELECT 2;\n")
    assert [m.filename for m in status(empty_dsn, directory=tmp_path).changed] == ["0001_a.sql"]
    with pytest.raises(MigrationError, match=r"0001_a\.sql was changed"):
        verify(empty_dsn, directory=tmp_path)


# --- refusals before anything runs -------------------------------------------------------------


def test_commit_inside_a_file_is_refused_before_anything_runs(
    empty_dsn: str, tmp_path: Path
) -> None:
    """A COMMIT in a pending file stops the whole run: not even earlier statements or files run."""
    _write(tmp_path, "0001_fine.sql", "CREATE TABLE fine (a int);")
    _write(
        tmp_path,
        "0002_commits.sql",
        "CREATE TABLE before_commit (a int);\nCOMMIT;\nCREATE TABLE after_commit (a int);",
    )
    with pytest.raises(MigrationError, match=r"0002_commits\.sql line 2: COMMIT"):
        migrate(empty_dsn, directory=tmp_path)
    with psycopg.connect(empty_dsn) as conn:
        for table in ("fine", "before_commit", "after_commit", "amira_config.schema_migrations"):
            assert conn.execute("SELECT to_regclass(%s)", (table,)).fetchone() == (None,), table


def test_duplicate_version_is_refused_and_nothing_applied(empty_dsn: str, tmp_path: Path) -> None:
    """Two files with one version refuse the run, naming both; nothing is applied."""
    _write(tmp_path, "0001_first.sql", "CREATE TABLE first (a int);")
    _write(tmp_path, "0002_one.sql", "CREATE TABLE one (a int);")
    _write(tmp_path, "0002_other.sql", "CREATE TABLE other (a int);")
    with pytest.raises(MigrationError, match=r"0002_one\.sql and 0002_other\.sql"):
        migrate(empty_dsn, directory=tmp_path)
    assert _scalar(empty_dsn, "SELECT to_regclass('public.first')") is None
    with pytest.raises(MigrationError, match="version 0002"):
        verify(empty_dsn, directory=tmp_path)


def test_verify_reports_every_problem_at_once(empty_dsn: str, tmp_path: Path) -> None:
    """Changed, missing, out-of-order and badly named files are all listed in one error."""
    first = _write(tmp_path, "0001_a.sql", "CREATE TABLE a (x int);")
    third = _write(tmp_path, "0003_c.sql", "CREATE TABLE c (x int);")
    _write(tmp_path, "0004_d.sql", "CREATE TABLE d (x int);")
    migrate(empty_dsn, directory=tmp_path)
    first.write_text("CREATE TABLE a (x text);")
    third.unlink()
    _write(tmp_path, "0002_b.sql", "CREATE TABLE b (x int);")
    _write(tmp_path, "0005_Bad.sql", "SELECT 1;")
    with pytest.raises(MigrationError) as info:
        verify(empty_dsn, directory=tmp_path)
    message = str(info.value)
    assert "0001_a.sql was changed" in message
    assert "0003_c.sql was applied but its file is gone" in message
    assert "0002_b.sql is pending but older than the newest applied version 0004" in message
    assert "0005_Bad.sql: migration files must be named" in message
    with pytest.raises(MigrationError) as refused:
        migrate(empty_dsn, directory=tmp_path)
    assert str(refused.value).count("\n  - ") == 4
    assert [v for v, _, _ in _history(empty_dsn)] == [1, 3, 4]


# --- lock_timeout ---------------------------------------------------------------------------


def test_lock_timeout_is_retried_until_the_lock_is_free(empty_dsn: str, tmp_path: Path) -> None:
    """Another session holds the table for 3 s: the migration times out, retries, then applies."""
    _write(tmp_path, "0001_t.sql", "CREATE TABLE busy (a int);")
    migrate(empty_dsn, directory=tmp_path)
    _write(tmp_path, "0002_alter.sql", "ALTER TABLE busy ADD COLUMN b int;")
    with psycopg.connect(empty_dsn) as holder:
        holder.execute("LOCK TABLE busy IN ACCESS SHARE MODE")
        release = threading.Timer(3.0, holder.rollback)
        release.start()
        try:
            with capture_logs() as logs:
                applied = migrate(
                    empty_dsn,
                    directory=tmp_path,
                    lock_timeout=0.5,
                    lock_attempts=10,
                    lock_retry_delay=0.25,
                )
        finally:
            release.join()
    assert [m.filename for m in applied] == ["0002_alter.sql"]
    retries = [event for event in logs if event["event"] == "migrations.lock_retry"]
    assert retries
    assert all(event["file"] == "0002_alter.sql" for event in retries)
    assert [r["attempt"] for r in retries] == list(range(1, len(retries) + 1))
    assert _history(empty_dsn) == [(1, True, "apply"), (2, True, "apply")]


def test_lock_timeout_gives_up_after_the_attempts(empty_dsn: str, tmp_path: Path) -> None:
    """When the lock never comes, the file is rolled back and the error says why."""
    _write(tmp_path, "0001_t.sql", "CREATE TABLE busy (a int);")
    migrate(empty_dsn, directory=tmp_path)
    _write(tmp_path, "0002_alter.sql", "ALTER TABLE busy ADD COLUMN b int;")
    with psycopg.connect(empty_dsn) as holder:
        holder.execute("LOCK TABLE busy IN ACCESS SHARE MODE")
        with pytest.raises(MigrationError, match=r"0002_alter\.sql.*lock_timeout 0\.2 s, 2 att"):
            migrate(
                empty_dsn,
                directory=tmp_path,
                lock_timeout=0.2,
                lock_attempts=2,
                lock_retry_delay=0.1,
            )
    assert _history(empty_dsn) == [(1, True, "apply")]


def test_statement_timeout_applies_to_migration_files(empty_dsn: str, tmp_path: Path) -> None:
    """statement_timeout is SET LOCAL for the file: a slow file is cancelled and rolled back."""
    _write(tmp_path, "0001_slow.sql", "CREATE TABLE slow (a int);\nSELECT pg_sleep(5);")
    with pytest.raises(MigrationError, match=r"0001_slow\.sql failed and was rolled back"):
        migrate(empty_dsn, directory=tmp_path, statement_timeout=0.2)
    assert _scalar(empty_dsn, "SELECT to_regclass('public.slow')") is None
    assert _history(empty_dsn) == []


# --- dry run, idempotence, baseline, reset -------------------------------------------------


def test_dry_run_lists_pending_with_checksums_and_changes_nothing(
    empty_dsn: str, tmp_path: Path
) -> None:
    """migrate(dry_run=True) returns what would run, with checksums, and creates nothing."""
    _write(tmp_path, "0001_a.sql", "CREATE TABLE a (x int);")
    _write(tmp_path, "0002_b.sql", "CREATE TABLE b (x int);")
    pending = migrate(empty_dsn, directory=tmp_path, dry_run=True)
    assert [(m.filename, m.checksum) for m in pending] == [
        ("0001_a.sql", checksum(b"CREATE TABLE a (x int);")),
        ("0002_b.sql", checksum(b"CREATE TABLE b (x int);")),
    ]
    assert _scalar(empty_dsn, "SELECT to_regnamespace('amira_config')") is None
    assert _scalar(empty_dsn, "SELECT to_regclass('public.a')") is None


def test_rerun_applies_nothing(empty_dsn: str, tmp_path: Path) -> None:
    """A second migrate (and a dry run) finds nothing to do."""
    _write(tmp_path, "0001_a.sql", "CREATE TABLE a (x int);")
    assert len(migrate(empty_dsn, directory=tmp_path)) == 1
    assert migrate(empty_dsn, directory=tmp_path) == []
    assert migrate(empty_dsn, directory=tmp_path, dry_run=True) == []
    assert _history(empty_dsn) == [(1, True, "apply")]


def test_baseline_records_without_running_then_migrate_continues(
    empty_dsn: str, tmp_path: Path
) -> None:
    """baseline marks files up to VERSION applied (kind baseline) without running them."""
    _write(tmp_path, "0001_old.sql", "SELECT 1/0;")  # would fail if it ran
    _write(tmp_path, "0002_old.sql", "-- migrate:no-transaction\nSELECT 1/0;")
    _write(tmp_path, "0003_new.sql", "CREATE TABLE new (x int);")
    recorded = baseline(empty_dsn, 2, directory=tmp_path, applied_by="dba")
    assert [m.version for m in recorded] == [1, 2]
    assert _history(empty_dsn) == [(1, True, "baseline"), (2, True, "baseline")]
    assert [m.filename for m in migrate(empty_dsn, directory=tmp_path)] == ["0003_new.sql"]
    assert verify(empty_dsn, directory=tmp_path).up_to_date


def test_baseline_refuses_a_non_empty_history(empty_dsn: str, tmp_path: Path) -> None:
    """baseline only writes into an empty history, and only for a version that has a file."""
    _write(tmp_path, "0001_a.sql", "CREATE TABLE a (x int);")
    _write(tmp_path, "0002_b.sql", "CREATE TABLE b (x int);")
    with pytest.raises(MigrationError, match="no migration file has version 0009"):
        baseline(empty_dsn, 9, directory=tmp_path)
    migrate(empty_dsn, directory=tmp_path)
    with pytest.raises(MigrationError, match=r"empty history.*2 row"):
        baseline(empty_dsn, 2, directory=tmp_path)
    assert _history(empty_dsn) == [(1, True, "apply"), (2, True, "apply")]


def test_reset_needs_the_environment_switch(
    empty_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """reset refuses without AMIRA_CONFIG_ALLOW_RESET=1; with it, the schema goes and migrate
    starts over."""
    migrate(empty_dsn)
    monkeypatch.delenv(RESET_ALLOWED_ENV, raising=False)
    with pytest.raises(MigrationError, match=RESET_ALLOWED_ENV):
        reset(empty_dsn)
    assert _scalar(empty_dsn, "SELECT to_regnamespace('amira_config')") is not None
    monkeypatch.setenv(RESET_ALLOWED_ENV, "1")
    reset(empty_dsn)
    assert _scalar(empty_dsn, "SELECT to_regnamespace('amira_config')") is None
    assert [m.version for m in migrate(empty_dsn)] == [m.version for m in discover()]


# --- errors keep their class -------------------------------------------------------------------
# A driver error is classified by errors.translate() like everywhere else; MigrationError is
# for what the migrations refuse or fail. (It used to re-wrap every driver error.)


def _runner_pids(conn: psycopg.Connection[Any]) -> list[int]:
    rows = conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE application_name = %s "
        "AND datname = current_database()",
        (APPLICATION_NAME,),
    ).fetchall()
    return [int(pid) for (pid,) in rows]


@pytest.mark.parametrize("verb", ["migrate", "baseline", "repair", "reset"])
def test_losing_the_server_while_waiting_for_the_lock_is_a_connection_error(
    empty_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, verb: str
) -> None:
    """The server ends the runner's session while it waits for the migration lock: the caller
    gets DatabaseConnectionError (worth retrying), not a MigrationError, and nothing changed."""
    _write(tmp_path, "0001_a.sql", "CREATE TABLE a (x int);")
    monkeypatch.setenv(RESET_ALLOWED_ENV, "1")
    calls: dict[str, Callable[[], object]] = {
        "migrate": lambda: migrate(empty_dsn, directory=tmp_path, wait_for_other_runs=120),
        "baseline": lambda: baseline(empty_dsn, 1, directory=tmp_path, wait_for_other_runs=120),
        "repair": lambda: repair(empty_dsn, 1, wait_for_other_runs=120),
        "reset": lambda: reset(empty_dsn, wait_for_other_runs=120),
    }
    raised: list[BaseException] = []

    def run() -> None:
        try:
            calls[verb]()
        except BaseException as exc:  # handed to the test thread
            raised.append(exc)

    with psycopg.connect(empty_dsn, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        runner = threading.Thread(target=run)
        runner.start()
        try:
            deadline = time.monotonic() + 30
            while not (pids := _runner_pids(holder)) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert pids, "the runner never connected"
            holder.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) pid", (pids,))
        finally:
            runner.join(timeout=60)
    assert not runner.is_alive()
    (error,) = raised
    assert isinstance(error, DatabaseConnectionError), repr(error)
    assert not isinstance(error, MigrationError)
    assert _scalar(empty_dsn, "SELECT to_regclass('public.a')") is None


@pytest.mark.parametrize("verb", [status, verify])
def test_a_lock_timeout_reading_the_history_is_not_a_migration_error(
    empty_dsn: str, tmp_path: Path, verb: Callable[..., object]
) -> None:
    """status/verify time out on a locked history table: the server's error, classified as
    everywhere else (ConfigurationAccessError), not a claim that the migrations are wrong."""
    _write(tmp_path, "0001_a.sql", "CREATE TABLE a (x int);")
    migrate(empty_dsn, directory=tmp_path)
    impatient = psycopg.conninfo.make_conninfo(empty_dsn, options="-c lock_timeout=100ms")
    with psycopg.connect(empty_dsn) as holder:
        holder.execute("LOCK TABLE amira_config.schema_migrations IN ACCESS EXCLUSIVE MODE")
        with pytest.raises(ConfigurationAccessError, match="lock timeout") as info:
            verb(impatient, directory=tmp_path)
    assert not isinstance(info.value, MigrationError)
