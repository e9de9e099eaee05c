"""The migration runner in real processes: CONCURRENTLY against a waiting runner, SIGKILL, CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from amira_data_access.migrations import APPLICATION_NAME, migrate, status
from conftest import TestServer

GATE_KEY = 4242  # an advisory lock the test holds to keep the first migration running

_MIGRATE = (
    "import json, sys; from pathlib import Path; "
    "from amira_data_access.migrations import migrate; "
    "applied = migrate(sys.argv[1], directory=Path(sys.argv[2]), **json.loads(sys.argv[3])); "
    "print(len(applied))"
)


def _write(folder: Path, name: str, sql: str) -> None:
    (folder / name).write_text(sql)


def _spawn(
    dsn: str, folder: Path, env: dict[str, str] | None = None, **kwargs: Any
) -> subprocess.Popen[str]:
    """Start ``migrate(dsn, directory=folder, **kwargs)`` in a new Python process."""
    return subprocess.Popen(
        [sys.executable, "-c", _MIGRATE, dsn, str(folder), json.dumps(kwargs)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def _wait_for(check: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def _runner_backends(conn: psycopg.Connection[Any]) -> list[tuple[int, str, str | None]]:
    """(pid, query, wait_event) of every migration runner session on this database."""
    rows = conn.execute(
        "SELECT pid, query, wait_event FROM pg_stat_activity "
        "WHERE datname = current_database() AND application_name = %s",
        (APPLICATION_NAME,),
    ).fetchall()
    return [(int(pid), str(query), wait_event) for pid, query, wait_event in rows]


def _terminate_runners(conn: psycopg.Connection[Any]) -> None:
    """End every runner session (a killed client's backend lingers until it next talks)."""
    conn.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = current_database() AND application_name = %s",
        (APPLICATION_NAME,),
    )
    _wait_for(lambda: not _runner_backends(conn), "runner sessions to end")


@pytest.fixture
def admin(empty_dsn: str) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit session on the test database, to watch and steer the runners."""
    with psycopg.connect(empty_dsn, autocommit=True) as conn:
        yield conn


@pytest.mark.parametrize(
    ("strategy", "deadline"),
    [
        pytest.param("poll", 30.0, id="polling-lock"),
        pytest.param(
            "block",
            10.0,
            id="blocking-pg_advisory_lock",
            marks=pytest.mark.xfail(
                strict=True,
                raises=(AssertionError, subprocess.TimeoutExpired),
                reason="a runner waiting inside pg_advisory_lock() holds a snapshot that "
                "CREATE INDEX CONCURRENTLY waits for: the server reports a deadlock (or it hangs)",
            ),
        ),
    ],
)
def test_concurrently_after_a_slow_migration_with_a_waiting_runner_finishes(
    empty_dsn: str,
    tmp_path: Path,
    admin: psycopg.Connection[Any],
    strategy: str,
    deadline: float,
) -> None:
    """Two runners, a slow file then CREATE INDEX CONCURRENTLY: both finish within 30 s."""
    # The "slow" file waits on a lock the test holds, so the second runner is surely
    # waiting for the migration lock by the time the index build starts.
    _write(
        tmp_path,
        "0001_slow.sql",
        f"CREATE TABLE t (a int);\nSELECT pg_advisory_xact_lock({GATE_KEY});",
    )
    _write(
        tmp_path,
        "0002_index.sql",
        "-- migrate:no-transaction\nCREATE INDEX CONCURRENTLY t_a_idx ON t (a);\n",
    )
    admin.execute("SELECT pg_advisory_lock(%s)", (GATE_KEY,))
    options = {"lock_timeout": 60, "_lock_strategy": strategy}
    processes: list[subprocess.Popen[str]] = []
    try:
        processes.append(_spawn(empty_dsn, tmp_path, **options))
        first_pid = _wait_for(
            lambda: admin.execute(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                "AND objid = %s",
                (GATE_KEY,),
            ).fetchone(),
            "the first runner to reach the slow migration",
        )[0]
        processes.append(_spawn(empty_dsn, tmp_path, **options))
        _wait_for(
            lambda: [
                pid
                for pid, query, _ in _runner_backends(admin)
                if pid != first_pid and "advisory_lock" in query
            ],
            "the second runner to wait for the migration lock",
        )
        started = time.monotonic()
        admin.execute("SELECT pg_advisory_unlock(%s)", (GATE_KEY,))
        outputs = [
            p.communicate(timeout=max(0.1, started + deadline - time.monotonic()))
            for p in processes
        ]
        assert [p.returncode for p in processes] == [0, 0], outputs
        assert sorted(int(out) for out, _ in outputs) == [0, 2]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
            process.communicate()
        _terminate_runners(admin)
        admin.execute("SELECT pg_advisory_unlock_all()")
    state = status(empty_dsn, directory=tmp_path)
    assert state.up_to_date
    assert admin.execute(
        "SELECT indisvalid FROM pg_index WHERE indexrelid = 't_a_idx'::regclass"
    ).fetchone() == (True,)


def test_sigkill_mid_migration_leaves_no_row_and_a_rerun_works(
    empty_dsn: str, tmp_path: Path, admin: psycopg.Connection[Any]
) -> None:
    """Killing the migrating process mid-statement leaves neither the object nor a row."""
    # Sleeps only when the session sets amira.test_sleep: the killed run does, the rerun not.
    _write(
        tmp_path,
        "0001_slow.sql",
        "CREATE TABLE killed (a int);\n"
        "SELECT pg_sleep(coalesce(nullif(current_setting('amira.test_sleep', true), ''), '0')"
        "::float8);\n",
    )
    process = _spawn(empty_dsn, tmp_path, env={"PGOPTIONS": "-c amira.test_sleep=120"})
    try:
        _wait_for(
            lambda: any(wait == "PgSleep" for _, _, wait in _runner_backends(admin)),
            "the migration to be sleeping",
        )
        os.kill(process.pid, signal.SIGKILL)
        process.communicate(timeout=30)
        assert process.returncode == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
        # The server notices a vanished client only when it next talks to it, so the
        # sleeping backend (and its open transaction) would linger for two minutes.
        _terminate_runners(admin)
    assert admin.execute("SELECT to_regclass('public.killed')").fetchone() == (None,)
    assert admin.execute("SELECT count(*) FROM amira_config.schema_migrations").fetchone() == (0,)
    assert [m.filename for m in migrate(empty_dsn, directory=tmp_path)] == ["0001_slow.sql"]
    assert status(empty_dsn, directory=tmp_path).up_to_date


def _cli(
    *args: str, dsn: str | None = None, module: str = "amira_data_access.migrations"
) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("AMIRA_CONFIG_DSN", "AMIRA_CONFIG_ALLOW_RESET")
    }
    if dsn is not None:
        env["AMIRA_CONFIG_DSN"] = dsn
    return subprocess.run(
        # -v: the "using host=…" notice, which off a terminal only -v shows.
        [sys.executable, "-m", module, "-v", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_command_line_verbs_and_exit_codes(
    pg_server: TestServer, empty_dsn: str, tmp_path: Path
) -> None:
    """python -m amira_data_access.migrations is amira-config's schema commands: it migrates,
    reports and verifies, exits 6 on problems as amira-config does (this CLI used to exit 1),
    and never prints a password."""
    secret = pg_server.password or "never-shown-pw"
    dsn = make_conninfo(empty_dsn, password=secret)
    folder = str(tmp_path)
    _write(tmp_path, "0001_a.sql", "CREATE TABLE a (x int);\n")

    dry = _cli("migrate", "--dry-run", "--directory", folder, dsn=dsn)
    assert dry.returncode == 0, dry.stderr
    assert "would apply 0001_a.sql" in dry.stdout
    dry_json = _cli("migrate", "--dry-run", "--directory", folder, "--json", dsn=dsn)
    assert dry_json.returncode == 0, dry_json.stderr
    (would,) = json.loads(dry_json.stdout)["applied"]
    assert (would["filename"], would["checksum"][:10]) == ("0001_a.sql", "v1:sha256:")

    pending = _cli("--dsn", dsn, "status", "--directory", folder)
    assert pending.returncode == 0, pending.stderr  # pending alone is not a problem
    assert "pending  0001_a.sql" in pending.stdout

    applied = _cli("migrate", "--directory", folder, dsn=dsn)
    assert applied.returncode == 0, applied.stderr
    assert "applied 0001_a.sql" in applied.stdout

    clean = _cli("verify", "--directory", folder, dsn=dsn)
    assert (clean.returncode, clean.stdout.splitlines()[-1]) == (0, "ok: 1 applied, 0 pending")

    _write(tmp_path, "0001_a.sql", "CREATE TABLE a (x bigint);\n")
    changed = _cli("status", "--directory", folder, dsn=dsn)
    assert changed.returncode == 6
    assert "changed  0001_a.sql" in changed.stdout
    assert "0001_a.sql was changed after it was applied" in changed.stderr
    refused = _cli("verify", "--directory", folder, dsn=dsn)
    assert refused.returncode == 6
    assert "0001_a.sql was changed after it was applied" in refused.stderr

    usage = _cli("repair", dsn=dsn)  # VERSION missing
    assert usage.returncode == 2
    not_ours = _cli("get", "some.key", dsn=dsn)  # amira-config's, not a schema command
    assert not_ours.returncode == 2

    for result in (dry, dry_json, pending, applied, clean, changed, refused):
        assert "amira-config: using host=" in result.stderr
        assert secret not in result.stdout + result.stderr


def test_command_line_is_amira_config(empty_dsn: str, tmp_path: Path) -> None:
    """Same verbs, same output, same exit codes as amira-config, byte for byte."""
    _write(tmp_path, "0001_a.sql", "CREATE TABLE a (x int);\n")
    migrate(empty_dsn, directory=tmp_path)
    _write(tmp_path, "0001_a.sql", "CREATE TABLE a (x bigint);\n")  # changed after it ran
    _write(tmp_path, "0002_b.sql", "COMMIT;\n")  # refused before it runs
    for args in (
        ["status", "--directory", str(tmp_path)],
        ["migrate", "--directory", str(tmp_path)],
        ["verify", "--directory", str(tmp_path), "--json"],
        ["baseline", "7", "--directory", str(tmp_path)],
        ["repair", "1"],
        ["reset"],
    ):
        ours = _cli("--dsn", empty_dsn, *args)
        theirs = _cli("--dsn", empty_dsn, *args, module="amira_data_access.cli")
        assert (ours.returncode, ours.stdout, ours.stderr) == (
            theirs.returncode,
            theirs.stdout,
            theirs.stderr,
        ), args
        assert ours.returncode == 6, args  # each of them is refused here


def test_command_line_does_not_warn_about_a_double_import() -> None:
    """runpy warns when the module run is already imported: the package's __main__ is not."""
    done = subprocess.run(
        [sys.executable, "-W", "error", "-m", "amira_data_access.migrations", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert "migrate" in done.stdout
