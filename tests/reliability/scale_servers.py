"""Servers the scale tests start next to the harness's PostgreSQL: PgBouncer and a standby.

* :func:`pgbouncer`: Debian's PgBouncer (``apt-get install pgbouncer``, which
  ``.ci/run`` does) in front of the test server, in ``transaction`` or
  ``session`` mode; the tests that need it skip, saying so, where it is not
  installed (CI installs it, and fails rather than skip: AMIRA_CONFIG_REQUIRE_DB).
* :func:`standby`: a hot standby of the harness's own server, made with
  ``pg_basebackup -R`` (streaming replication from the primary's default
  ``wal_level=replica`` and pg_hba replication line), only where the harness
  started the server itself.

Both run as the unprivileged account the harness runs PostgreSQL as when we are
root (both refuse root), and are stopped and deleted when the block ends.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from conftest import TestServer

_PGBOUNCER_PATHS = ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer")


def _require(reason: str) -> None:
    if os.environ.get("AMIRA_CONFIG_REQUIRE_DB") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


def _account() -> tuple[int, int] | None:
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            entry = pwd.getpwnam(name)
            return entry.pw_uid, entry.pw_gid
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    end = time.monotonic() + 30
    while time.monotonic() < end:
        if process.poll() is not None:
            raise RuntimeError(f"exited {process.returncode}: {log.read_text(errors='replace')}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"not listening on {port} after 30 s: {log.read_text(errors='replace')}")


def _give(path: Path, account: tuple[int, int] | None) -> None:
    if account is not None:
        os.chown(path, *account)


@dataclass
class Bouncer:
    """A running PgBouncer: :meth:`dsn` turns a direct test DSN into one through it."""

    port: int
    mode: str
    log: Path

    def dsn(self, direct: str) -> str:
        """The same database, user and password, through the pooler."""
        params = conninfo_to_dict(direct)
        params.update(host="127.0.0.1", port=str(self.port))
        return make_conninfo(**{k: v for k, v in params.items() if v is not None})


@contextlib.contextmanager
def pgbouncer(pg_server: TestServer, mode: str, *, pool_size: int = 4) -> Iterator[Bouncer]:
    """PgBouncer in ``mode`` in front of the test server, ``pool_size`` server connections
    per database and user (fewer than the clients the tests start: they must share)."""
    program = next((path for path in _PGBOUNCER_PATHS if os.path.exists(path)), None)
    program = program or shutil.which("pgbouncer")
    if program is None:
        _require("PgBouncer is not installed (apt-get install -y pgbouncer; CI installs it)")
    assert program is not None
    target = conninfo_to_dict(pg_server.dsn("postgres"))
    account = _account()
    folder = Path(tempfile.mkdtemp(prefix="amira-pgbouncer-"))
    _give(folder, account)
    port = _free_port()
    users = folder / "userlist.txt"
    users.write_text(f'"{target["user"]}" "{target.get("password") or ""}"\n')
    users.chmod(0o600)
    _give(users, account)
    log = folder / "pgbouncer.log"
    ini = folder / "pgbouncer.ini"
    ini.write_text(
        "\n".join(
            [
                "[databases]",
                f"* = host={target.get('host') or '127.0.0.1'} port={target.get('port') or 5432}",
                "[pgbouncer]",
                "listen_addr = 127.0.0.1",
                f"listen_port = {port}",
                "unix_socket_dir =",
                "auth_type = scram-sha-256",
                f"auth_file = {users}",
                f"pool_mode = {mode}",
                f"default_pool_size = {pool_size}",
                "max_client_conn = 1000",
                # libpq's startup "options" (our statement/lock timeouts) are not
                # supported by PgBouncer 1.18: without this it refuses the login.
                "ignore_startup_parameters = options",
                f"logfile = {log}",
                f"pidfile = {folder / 'pgbouncer.pid'}",
                "",
            ]
        )
    )
    _give(ini, account)
    process = subprocess.Popen(  # our own command line
        [program, str(ini)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=folder,
        user=account[0] if account else None,
        group=account[1] if account else None,
        extra_groups=[] if account else None,
    )
    try:
        _wait_for_port(port, process, log)
        yield Bouncer(port, mode, log)
    finally:
        process.send_signal(signal.SIGINT)  # PgBouncer: shut down now
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(folder, ignore_errors=True)


@dataclass
class Standby:
    """A running hot standby: :meth:`dsn` turns a primary DSN into the same on the standby."""

    port: int

    def dsn(self, primary: str) -> str:
        """The same database, user and password, on the standby."""
        params = conninfo_to_dict(primary)
        params.update(host="127.0.0.1", port=str(self.port))
        return make_conninfo(**{k: v for k, v in params.items() if v is not None})

    def wait_replayed(self, primary: str) -> None:
        """Return once the standby has replayed everything the primary wrote until now."""
        with psycopg.connect(primary, autocommit=True) as conn:
            row = conn.execute("SELECT pg_current_wal_insert_lsn()").fetchone()
        assert row is not None
        params = {**conninfo_to_dict(self.dsn(primary)), "dbname": "postgres"}
        with psycopg.connect(make_conninfo(**params), autocommit=True) as conn:
            end = time.monotonic() + 30
            while True:
                done = conn.execute(
                    "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (row[0],)
                ).fetchone()
                if done is not None and done[0]:
                    return
                if time.monotonic() > end:
                    raise AssertionError("the standby did not catch up in 30 s")
                time.sleep(0.01)


@contextlib.contextmanager
def standby(pg_server: TestServer) -> Iterator[Standby]:
    """A hot standby of the test server (pg_basebackup -R), streaming from it."""
    local = pg_server.local
    if local is None:
        _require(
            f"a standby is made from the harness's own server, and the {pg_server.source} "
            "server is not: unset AMIRA_CONFIG_TEST_DSN to run it on a local cluster"
        )
    assert local is not None
    account = _account()
    folder = Path(tempfile.mkdtemp(prefix="amira-standby-"))
    _give(folder, account)
    folder.chmod(0o700)
    data = folder / "data"
    target = conninfo_to_dict(pg_server.dsn("postgres"))
    env = {**local.program_env(), "PGPASSWORD": str(target.get("password") or "")}

    def run(*argv: str) -> None:
        result = subprocess.run(  # our own command line
            list(argv),
            capture_output=True,
            text=True,
            env=env,
            cwd=folder,
            user=account[0] if account else None,
            group=account[1] if account else None,
            extra_groups=[] if account else None,
            timeout=120,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed: {result.stderr or result.stdout}")

    port = _free_port()
    run(
        str(local.program("pg_basebackup")),
        "-D",
        str(data),
        "-R",
        "-X",
        "stream",
        "-h",
        str(target.get("host") or "127.0.0.1"),
        "-p",
        str(target.get("port")),
        "-U",
        str(target["user"]),
        "--no-sync",
        "--checkpoint=fast",
    )
    options = f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={folder}"
    pg_ctl = str(local.program("pg_ctl"))
    run(
        pg_ctl, "start", "-w", "-t", "60", "-D", str(data), "-l", str(folder / "log"), "-o", options
    )
    try:
        yield Standby(port)
    finally:
        with contextlib.suppress(RuntimeError, subprocess.SubprocessError):
            run(pg_ctl, "stop", "-m", "immediate", "-w", "-t", "60", "-D", str(data))
        shutil.rmtree(folder, ignore_errors=True)
