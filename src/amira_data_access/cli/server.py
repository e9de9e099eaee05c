"""The embedded PostgreSQL the CLI uses when no database is configured.

One cluster per data home (``AMIRA_CONFIG_HOME``, else the platform's user-data
folder), started on demand by whichever command needs it and left running so
the next command connects at once; ``amira-config server stop`` stops it.
Every command finds the running server again from the cluster's own
``postmaster.pid`` (through :class:`~amira_data_access._dev.local_postgres.LocalPostgres`),
so nothing but the data folder holds state. That module is imported only when a
command actually needs the embedded server: a CLI given a database never loads it.

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

import psycopg
from psycopg import sql

from .. import migrations
from ..errors import DatabaseConnectionError

if TYPE_CHECKING:
    from .._dev.local_postgres import LocalPostgres

__all__ = ["DATABASE", "HOME_ENV", "EmbeddedServer", "ServerState", "data_home"]

HOME_ENV = "AMIRA_CONFIG_HOME"
DATABASE = "amira"  # the database the CLI keeps configuration in, inside the cluster
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


@dataclass(frozen=True, slots=True)
class ServerState:
    """What ``server status`` reports."""

    home: Path
    initialized: bool
    running: bool
    port: int | None
    binaries: str | None  # where the PostgreSQL programs come from

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready form."""
        return {
            "home": str(self.home),
            "initialized": self.initialized,
            "running": self.running,
            "host": "127.0.0.1" if self.running else None,
            "port": self.port,
            "database": DATABASE,
            "binaries": self.binaries,
        }


class EmbeddedServer:
    """The CLI's PostgreSQL cluster in ``home/postgres``, serving on 127.0.0.1."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.cluster_dir = home / "postgres"
        self._local: LocalPostgres | None = None

    @property
    def description(self) -> str:
        """What stderr says is in use (no password: it stays in the credentials file)."""
        port = self._local.port if self._local is not None else None
        where = f" (127.0.0.1:{port}, database {DATABASE})" if port else ""
        return f"embedded PostgreSQL at {self.cluster_dir}{where}"

    def ensure_running(self, *, migrate: bool = True) -> str:
        """Start the server if needed and return the DSN of its configuration database.

        When this call started the server or created the database, pending
        migrations are applied ("migrated on first use"); ``migrate=False``
        leaves that to the migration commands.
        """
        check_reachable(self.home)
        with self._lock():
            local = self._cluster()
            was_running = local.is_running()
            local.start()  # creates the cluster on first use; finds the port if running
            created = _create_database(local)
            dsn = local.dsn(DATABASE)
            if migrate and (created or not was_running):
                migrations.migrate(dsn)
        return dsn

    def state(self) -> ServerState:
        """Whether the cluster exists and runs, and on which port; starts nothing."""
        if not (self.cluster_dir / "data" / "PG_VERSION").exists():
            return ServerState(self.home, False, False, None, None)
        local = self._cluster()
        running = local.is_running()
        port = _port_from_pid_file(self.cluster_dir) if running else None
        return ServerState(self.home, True, running, port, local.binaries.source)

    def stop(self) -> bool:
        """Stop the server if it runs; True if it was running. The data stays."""
        if not (self.cluster_dir / "data" / "PG_VERSION").exists():
            return False
        with self._lock():
            local = self._cluster()
            if not local.is_running():
                return False
            local.stop()
        return True

    # -- internals -----------------------------------------------------------------

    def _cluster(self) -> LocalPostgres:
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


def _port_from_pid_file(cluster_dir: Path) -> int | None:
    """Line 4 of ``postmaster.pid`` is the port the running server listens on."""
    try:
        return int((cluster_dir / "data" / "postmaster.pid").read_text().splitlines()[3])
    except (OSError, IndexError, ValueError):
        return None


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
