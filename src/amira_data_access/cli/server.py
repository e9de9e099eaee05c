"""The embedded PostgreSQL the CLI uses when no database is configured.

One cluster per data home (``AMIRA_CONFIG_HOME``, else the platform's user-data
folder), started on demand by whichever command needs it and left running so
the next command connects at once; ``amira-config server stop`` stops it.
Every command finds the running server again from the cluster's own
``postmaster.pid`` (through :class:`~amira_data_access._dev.local_postgres.LocalPostgres`),
so nothing but the data folder holds state. That module is imported only when a
command actually needs to start or inspect the embedded server: a CLI given a
database never loads it, and a command finding the server running connects
from ``postmaster.pid`` alone, without running any of PostgreSQL's programs.

The server keeps its port from one start to the next (``server.json`` in the
cluster folder; ``AMIRA_CONFIG_PORT`` or ``server start --port N`` pins
another), so a program holding its DSN reconnects after ``server stop`` and
``server start``. ``server dsn`` and ``server env`` give a connection string
without the password: it is in ``postgres/pgpass`` (mode 0600), named by
libpq's ``passfile``.

Root: PostgreSQL refuses to run as root, so ``LocalPostgres`` runs it as the
``postgres`` (or ``nobody``) account, which must be able to *traverse* every
folder above the cluster. Root's usual user-data folder is under ``/root``
(mode 700), so root's default home is ``/var/lib/amira-config`` instead: the
usual place for a system account's state, persistent (unlike ``/tmp``) and
reachable through world-traversable parents. A home given explicitly that the
server account cannot reach is refused with the folder to fix: we never
loosen the permissions of folders we did not create.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import stat
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .._dev.local_postgres import LocalPostgres

__all__ = [
    "DATABASE",
    "HOME_ENV",
    "PORT_ENV",
    "ROLE",
    "EmbeddedServer",
    "ServerState",
    "data_home",
    "pinned_port",
]

HOME_ENV = "AMIRA_CONFIG_HOME"
PORT_ENV = "AMIRA_CONFIG_PORT"  # pins the embedded server's port
DATABASE = "amira"  # the database the CLI keeps configuration in, inside the cluster
ROLE = "amira"  # the cluster's superuser, the CLI's login (local_postgres.SUPERUSER)
ROOT_HOME = Path("/var/lib/amira-config")


def data_home(environ: dict[str, str] | None = None) -> Path:
    """Where the CLI keeps its embedded PostgreSQL: ``AMIRA_CONFIG_HOME`` or a per-user folder.

    ``$XDG_DATA_HOME/amira-config`` (default ``~/.local/share/amira-config``) on
    Linux, ``~/Library/Application Support/amira-config`` on macOS, and
    ``/var/lib/amira-config`` for root (see the module docstring).
    """
    env = os.environ if environ is None else environ
    explicit = env.get(HOME_ENV, "").strip()
    if explicit:
        return Path(explicit).expanduser().absolute()
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return ROOT_HOME
    home = Path(env.get("HOME") or Path.home())
    if sys.platform == "darwin":
        return home / "Library" / "Application Support" / "amira-config"
    xdg = env.get("XDG_DATA_HOME", "").strip()
    # The XDG spec says to ignore a relative XDG_DATA_HOME.
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else home / ".local" / "share"
    return base / "amira-config"


def pinned_port(environ: dict[str, str] | None = None) -> int | None:
    """The port ``AMIRA_CONFIG_PORT`` pins, None if unset; a clear error if not a port."""
    from .values import UsageError

    env = os.environ if environ is None else environ
    text = env.get(PORT_ENV, "").strip()
    if not text:
        return None
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise UsageError(f"{PORT_ENV}={text!r} is not a port number (1-65535)")
    return int(text)


@dataclass(frozen=True, slots=True)
class ServerState:
    """What ``server status`` reports."""

    home: Path
    initialized: bool
    running: bool
    port: int | None  # the port it listens on, or will listen on at the next start
    binaries: str | None  # where the PostgreSQL programs come from
    major_version: int | None = None  # of the data folder
    problem: str | None = None  # why it cannot start, when it cannot
    log_file: Path | None = None

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready form."""
        return {
            "home": str(self.home),
            "initialized": self.initialized,
            "running": self.running,
            "host": "127.0.0.1" if self.running else None,
            "port": self.port,
            "database": DATABASE,
            "role": ROLE,
            "binaries": self.binaries,
            "major_version": self.major_version,
            "problem": self.problem,
            "log_file": str(self.log_file) if self.log_file else None,
        }


class EmbeddedServer:
    """The CLI's PostgreSQL cluster in ``home/postgres``, serving on 127.0.0.1."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.cluster_dir = home / "postgres"
        self.passfile = self.cluster_dir / "pgpass"
        self._local: LocalPostgres | None = None
        self._port: int | None = None

    @property
    def description(self) -> str:
        """What stderr says is in use (no password: it stays in the credentials file)."""
        port = self._port
        where = f" (127.0.0.1:{port}, database {DATABASE}, role {ROLE})" if port else ""
        return f"embedded PostgreSQL at {self.cluster_dir}{where}"

    def running_dsn(self) -> str | None:
        """The configuration database's DSN if the server runs now; starts and runs nothing.

        Read from ``postmaster.pid`` (the process must be alive) and the credentials
        file: this is how a command finds a running server in a few microseconds.
        """
        from psycopg.conninfo import make_conninfo

        pid_file = self.cluster_dir / "data" / "postmaster.pid"
        try:
            lines = pid_file.read_text().splitlines()
            pid, port = int(lines[0]), int(lines[3])
            password = (self.cluster_dir / "credentials").read_text().strip()
        except (OSError, IndexError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except PermissionError:
            pass  # alive, and someone else's (the server account's when we are root)
        except OSError:
            return None  # a stale pid file: the server is not running
        self._port = port
        return make_conninfo(
            host="127.0.0.1", port=port, dbname=DATABASE, user=ROLE, password=password
        )

    def ensure_running(self, *, migrate: bool = True, port: int | None = None) -> str:
        """Start the server if needed and return the DSN of its configuration database.

        When this call started the server or created the database, pending
        migrations are applied ("migrated on first use"); ``migrate=False``
        leaves that to the migration commands. ``port`` (else ``AMIRA_CONFIG_PORT``)
        pins the port of a start.
        """
        wanted = port or pinned_port()
        running = self.running_dsn()
        if running is not None:
            if port is not None and port != self._port:
                from .values import UsageError

                raise UsageError(
                    f"the embedded server already runs on port {self._port}: "
                    "amira-config server stop, then start it with --port"
                )
            return running
        from .. import migrations

        check_reachable(self.home)
        with self._lock():
            local = self.cluster()
            was_running = local.is_running()
            local.start(port=wanted)  # creates the cluster on first use; finds the port if running
            self._port = local.port
            created = _create_database(local)
            dsn = local.dsn(DATABASE)
            self._write_passfile(local.password)
            if migrate and (created or not was_running):
                migrations.migrate(dsn)
        return dsn

    def public_dsn(self) -> str:
        """The DSN without the password: libpq reads it from the passfile (``server dsn``)."""
        from psycopg.conninfo import make_conninfo

        self.ensure_running()
        if not self.passfile.exists():
            password = (self.cluster_dir / "credentials").read_text().strip()
            self._write_passfile(password)
        return make_conninfo(
            host="127.0.0.1",
            port=self._port,
            dbname=DATABASE,
            user=ROLE,
            passfile=str(self.passfile),
        )

    def _write_passfile(self, password: str) -> None:
        """``postgres/pgpass`` (libpq's format, mode 0600) for ``server dsn``/``env``/``psql``."""
        line = f"127.0.0.1:*:*:{ROLE}:{password}\n"
        with contextlib.suppress(OSError):
            if self.passfile.read_text() == line:
                return
        staging = self.passfile.with_suffix(".tmp")
        fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(line)
        staging.replace(self.passfile)

    def state(self) -> ServerState:
        """Whether the cluster exists and runs, on which port, and why it could not start."""
        from .._dev.local_postgres import PostgresUnavailableError, data_major_version

        data = self.cluster_dir / "data"
        if not (data / "PG_VERSION").exists():
            return ServerState(self.home, False, False, None, None)
        major = data_major_version(data)
        log_file = self.cluster_dir / "postgres.log"
        running = self.running_dsn() is not None
        try:
            local = self.cluster()
        except PostgresUnavailableError as exc:
            return ServerState(
                self.home, True, running, self._port, None, major, str(exc), log_file
            )
        port = self._port if running else local.port
        binaries = f"{local.binaries.bindir} ({local.binaries.source})"
        return ServerState(self.home, True, running, port, binaries, major, None, log_file)

    def stop(self) -> bool:
        """Stop the server if it runs; True if it was running. The data stays."""
        if not (self.cluster_dir / "data" / "PG_VERSION").exists():
            return False
        with self._lock():
            local = self.cluster()
            if not local.is_running():
                return False
            local.stop()
        return True

    # -- internals -----------------------------------------------------------------

    def cluster(self) -> LocalPostgres:
        """The cluster's LocalPostgres (its binaries, programs, port), made on first use."""
        if self._local is None:
            from .._dev.local_postgres import LocalPostgres  # only when the server is needed

            self._local = LocalPostgres(self.cluster_dir)
        return self._local

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """One command at a time creates, starts or stops the cluster (two first uses race)."""
        self.home.mkdir(parents=True, exist_ok=True, mode=0o755)
        with (self.home / "server.lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _create_database(local: LocalPostgres) -> bool:
    """Create the configuration database if absent; True if it was created now."""
    import psycopg
    from psycopg import sql

    from ..errors import DatabaseConnectionError

    try:
        with psycopg.connect(local.dsn("postgres"), autocommit=True, connect_timeout=10) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)
            ).fetchone()
            if exists:
                return False
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
            return True
    except psycopg.Error as exc:
        # The message is the server's; the DSN (and its password) is not in it.
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DatabaseConnectionError(f"embedded PostgreSQL: {first}") from exc


def _server_account() -> pwd.struct_passwd | None:
    """The account LocalPostgres runs the server as when we are root (None otherwise)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    return None  # LocalPostgres itself reports that no account exists


def blocking_folder(path: Path, uid: int, gid: int) -> Path | None:
    """The first existing folder above or at ``path`` that ``uid``/``gid`` cannot traverse.

    Pure permission-bit arithmetic (``os.access`` would answer for root, not for
    the server's account). Folders that do not exist yet are created by us with
    mode 755, so they are no obstacle.
    """
    for folder in [*reversed(path.parents), path]:
        try:
            info = folder.stat()
        except FileNotFoundError:
            return None
        if info.st_uid == uid:
            allowed = bool(info.st_mode & stat.S_IXUSR)
        elif info.st_gid == gid:
            allowed = bool(info.st_mode & stat.S_IXGRP)
        else:
            allowed = bool(info.st_mode & stat.S_IXOTH)
        if not allowed:
            return folder
    return None


def check_reachable(home: Path) -> None:
    """Refuse, with the folder to fix, a home the server's account (when root) cannot reach."""
    account = _server_account()
    if account is None:
        return
    blocked = blocking_folder(home, account.pw_uid, account.pw_gid)
    if blocked is not None:
        from .._dev.local_postgres import PostgresUnavailableError  # the embedded server's error

        mode = stat.filemode(blocked.stat().st_mode)
        raise PostgresUnavailableError(
            f"running as root, the embedded PostgreSQL runs as '{account.pw_name}', which "
            f"cannot enter {blocked} ({mode}); set {HOME_ENV} to a folder it can reach "
            f"(default for root: {ROOT_HOME}), make {blocked} traversable (chmod o+x), "
            "or give a database with --dsn"
        )
