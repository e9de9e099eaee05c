"""The migration runner against a real server, with real concurrent processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from amira_data_access import MigrationError
from amira_data_access.migrations import discover, migrate, status


def _write(folder: Path, name: str, sql: str) -> Path:
    path = folder / name
    path.write_text(sql)
    return path


def _history(dsn: str) -> list[tuple[int, str, bool]]:
    with psycopg.connect(dsn) as conn:
        return [
            (int(v), str(n), bool(s))
            for v, n, s in conn.execute(
                "SELECT version, name, success FROM amira_config.schema_migrations ORDER BY version"
            )
        ]


def test_project_migrations_apply_in_order_and_are_idempotent(empty_dsn: str) -> None:
    """The shipped migrations apply once; a second run applies nothing."""
    applied = migrate(empty_dsn)
    assert [m.version for m in applied] == [m.version for m in discover()]
    assert migrate(empty_dsn) == []
    state = status(empty_dsn)
    assert state.up_to_date
    assert [row.version for row in state.applied] == [m.version for m in discover()]
    with psycopg.connect(empty_dsn) as conn:
        assert conn.execute("SELECT to_regclass('amira_config.configurations')").fetchone() == (
            "amira_config.configurations",
        )


def test_files_apply_in_numeric_order(empty_dsn: str, tmp_path: Path) -> None:
    """0002 runs after 0001 even when it depends on it, whatever the directory order."""
    _write(tmp_path, "0002_add_column.sql", "ALTER TABLE t ADD COLUMN b int;")
    _write(tmp_path, "0001_create_t.sql", "CREATE TABLE t (a int);")
    _write(tmp_path, "0010_fill.sql", "INSERT INTO t VALUES (1, 2);")
    assert [m.filename for m in migrate(empty_dsn, directory=tmp_path)] == [
        "0001_create_t.sql",
        "0002_add_column.sql",
        "0010_fill.sql",
    ]
    assert [v for v, _, _ in _history(empty_dsn)] == [1, 2, 10]


def test_status_before_anything_lists_all_pending_without_creating_tables(
    empty_dsn: str, tmp_path: Path
) -> None:
    """status() on a new database is read-only and lists every file as pending."""
    _write(tmp_path, "0001_a.sql", "CREATE TABLE a (x int);")
    state = status(empty_dsn, directory=tmp_path)
    assert [m.filename for m in state.pending] == ["0001_a.sql"]
    assert not state.up_to_date
    with psycopg.connect(empty_dsn) as conn:
        assert conn.execute("SELECT to_regnamespace('amira_config')").fetchone() == (None,)


def test_edited_file_is_refused_by_name(empty_dsn: str, tmp_path: Path) -> None:
    """Changing an applied file shows in status() and makes migrate() refuse, naming it."""
    path = _write(tmp_path, "0001_a.sql", "CREATE TABLE a (x int);")
    migrate(empty_dsn, directory=tmp_path)
    path.write_text("CREATE TABLE a (x bigint);")
    _write(tmp_path, "0002_b.sql", "CREATE TABLE b (x int);")
    state = status(empty_dsn, directory=tmp_path)
    assert [m.filename for m in state.changed] == ["0001_a.sql"]
    assert [m.filename for m in state.pending] == ["0002_b.sql"]
    with pytest.raises(MigrationError, match=r"0001_a\.sql"):
        migrate(empty_dsn, directory=tmp_path)
    assert [v for v, _, _ in _history(empty_dsn)] == [1]  # 0002 was not applied either


def test_line_endings_and_bom_are_not_edits(empty_dsn: str, tmp_path: Path) -> None:
    """Re-saving a file with CRLF endings or a BOM does not count as a change."""
    path = _write(tmp_path, "0001_a.sql", "CREATE TABLE a (x int);\nSELECT 1;\n")
    migrate(empty_dsn, directory=tmp_path)
    path.write_bytes(b"\xef\xbb\xbfCREATE TABLE a (x int);\r\nSELECT 1;\r\n")
    assert status(empty_dsn, directory=tmp_path).up_to_date
    assert migrate(empty_dsn, directory=tmp_path) == []


def test_missing_and_out_of_order_files_are_refused(empty_dsn: str, tmp_path: Path) -> None:
    """A removed applied file, or a new file older than the newest applied, stops migrate()."""
    first = _write(tmp_path, "0001_a.sql", "CREATE TABLE a (x int);")
    _write(tmp_path, "0003_c.sql", "CREATE TABLE c (x int);")
    migrate(empty_dsn, directory=tmp_path)
    _write(tmp_path, "0002_b.sql", "CREATE TABLE b (x int);")
    with pytest.raises(MigrationError, match=r"0002_b\.sql.*older"):
        migrate(empty_dsn, directory=tmp_path)
    (tmp_path / "0002_b.sql").unlink()
    first.unlink()
    assert [row.version for row in status(empty_dsn, directory=tmp_path).missing] == [1]
    with pytest.raises(MigrationError, match=r"0001_a\.sql"):
        migrate(empty_dsn, directory=tmp_path)


def test_failing_file_leaves_no_object_and_no_row(empty_dsn: str, tmp_path: Path) -> None:
    """A file whose second statement fails is rolled back whole; the fixed file then applies."""
    path = _write(tmp_path, "0001_a.sql", "CREATE TABLE a (x int);\nSELECT * FROM no_such_table;")
    with pytest.raises(MigrationError, match=r"0001_a\.sql"):
        migrate(empty_dsn, directory=tmp_path)
    with psycopg.connect(empty_dsn) as conn:
        assert conn.execute("SELECT to_regclass('public.a')").fetchone() == (None,)
    assert _history(empty_dsn) == []
    path.write_text("CREATE TABLE a (x int);")
    assert len(migrate(empty_dsn, directory=tmp_path)) == 1


def test_concurrent_processes_apply_each_file_exactly_once(empty_dsn: str, tmp_path: Path) -> None:
    """Four processes migrating at once all succeed, and each file is applied once."""
    _write(tmp_path, "0001_counter.sql", "CREATE TABLE applied_log (file text);")
    _write(
        tmp_path,
        "0002_slow.sql",
        "SELECT pg_sleep(1);\nINSERT INTO applied_log VALUES ('0002');",
    )
    _write(tmp_path, "0003_more.sql", "INSERT INTO applied_log VALUES ('0003');")
    code = (
        "import sys; from amira_data_access.migrations import migrate; "
        "applied = migrate(sys.argv[1], directory=__import__('pathlib').Path(sys.argv[2])); "
        "print(len(applied))"
    )
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", code, empty_dsn, str(tmp_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outputs = [p.communicate(timeout=120) for p in processes]
    assert [p.returncode for p in processes] == [0, 0, 0, 0], outputs
    assert sorted(int(out.strip()) for out, _ in outputs) == [0, 0, 0, 3]
    assert [v for v, _, _ in _history(empty_dsn)] == [1, 2, 3]
    with psycopg.connect(empty_dsn) as conn:
        rows = conn.execute("SELECT file FROM applied_log ORDER BY file").fetchall()
    assert rows == [("0002",), ("0003",)]


def test_lock_is_released_after_a_failure(empty_dsn: str, tmp_path: Path) -> None:
    """A failed run does not leave the advisory lock behind for the next one."""
    path = _write(tmp_path, "0001_a.sql", "SELECT 1/0;")
    with pytest.raises(MigrationError):
        migrate(empty_dsn, directory=tmp_path)
    path.write_text("SELECT 1;")
    assert len(migrate(empty_dsn, directory=tmp_path, wait_for_other_runs=2)) == 1


def test_lock_timeout_names_the_holder(empty_dsn: str, tmp_path: Path) -> None:
    """If another session holds the migration lock too long, the error names its pid."""
    from amira_data_access.migrations import LOCK_KEY

    _write(tmp_path, "0001_a.sql", "SELECT 1;")
    with psycopg.connect(empty_dsn, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        pid = holder.info.backend_pid
        with pytest.raises(MigrationError, match=f"pid {pid}"):
            migrate(empty_dsn, directory=tmp_path, wait_for_other_runs=1)
