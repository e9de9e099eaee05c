"""The server under test: a durable throwaway PostgreSQL, or an existing one (``--dsn``)."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from amira_data_access._dev.local_postgres import LocalPostgres, PostgresBinaries, find_binaries

from ._cpus import servers_started_here

__all__ = [
    "KEY_PREFIX",
    "Target",
    "bench_keys",
    "json_keys",
    "load_keys",
    "pgbench_database",
    "remove_keys",
    "scratch_database",
    "str_keys",
    "target",
    "with_database",
]

KEY_PREFIX = "bench."
CONFIG_DATABASE = "amira_bench"
# Settings that decide what a commit costs: reported with the results.
DURABILITY_SETTINGS = (
    "fsync",
    "synchronous_commit",
    "full_page_writes",
    "wal_sync_method",
    "shared_buffers",
)


@dataclass
class Target:
    """Where the benchmarks run, and PostgreSQL's client programs (pgbench, psql)."""

    dsn: str
    started_here: bool
    description: str
    programs: dict[str, Path] = field(default_factory=dict)
    program_env: dict[str, str] = field(default_factory=dict)
    data_dir_filesystem: str | None = None

    @property
    def pgbench(self) -> Path | None:
        """pgbench, if found."""
        return self.programs.get("pgbench")

    @property
    def psql(self) -> Path | None:
        """psql, if found."""
        return self.programs.get("psql")

    def server_facts(self) -> dict[str, str]:
        """The server's version and the settings that decide what a commit costs."""
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            facts = {"server_version": _show(conn, "server_version")}
            facts.update({name: _show(conn, name) for name in DURABILITY_SETTINGS})
        return facts

    def triggers(self) -> list[str]:
        """User triggers on the configurations table (a history trigger makes writes dearer)."""
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT tgname FROM pg_trigger"
                " WHERE tgrelid = 'amira_config.configurations'::regclass AND NOT tgisinternal"
                " ORDER BY tgname"
            ).fetchall()
        return [str(row[0]) for row in rows]


def _show(conn: psycopg.Connection[tuple[str]], name: str) -> str:
    row = conn.execute(sql.SQL("SHOW {}").format(sql.Identifier(name))).fetchone()
    return str(row[0]) if row else "?"


def _filesystem_of(path: Path) -> str | None:
    """The filesystem type holding ``path`` (tmpfs makes fsync free: worth saying)."""
    best: tuple[int, str] | None = None
    with contextlib.suppress(OSError):
        for line in Path("/proc/mounts").read_text().splitlines():
            parts = line.split()
            if len(parts) < 3 or not path.is_relative_to(parts[1]):
                continue
            if best is None or len(parts[1]) > best[0]:
                best = (len(parts[1]), parts[2])
    return best[1] if best else None


CLIENT_PROGRAMS = ("pgbench", "psql")


def _found(programs: dict[str, Path]) -> dict[str, Path]:
    return {name: path for name, path in programs.items() if path.exists()}


def _client_binaries() -> tuple[dict[str, Path], dict[str, str]]:
    """pgbench and psql from where the local server's binaries come from (for ``--dsn``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    try:
        binaries: PostgresBinaries = find_binaries()
    except Exception:  # no PostgreSQL binaries at all: the cases needing them say so
        return {}, env
    if binaries.library_dir is not None:
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            filter(None, [str(binaries.library_dir), env.get("LD_LIBRARY_PATH")])
        )
    return _found({name: binaries.program(name) for name in CLIENT_PROGRAMS}), env


@contextlib.contextmanager
def target(dsn: str | None) -> Iterator[Target]:
    """The server to measure: ``dsn`` as given, or a durable throwaway cluster started here.

    ``durable=True``: fsync, synchronous_commit and full_page_writes stay on, so a
    write pays for its WAL flush as it would in production, and as pgbench does.
    """
    if dsn is not None:
        programs, env = _client_binaries()
        yield Target(dsn, False, "existing server (--dsn)", programs, env)
        return
    with contextlib.ExitStack() as stack:
        with servers_started_here():  # the postmaster, and so every backend, on their CPUs
            local = stack.enter_context(LocalPostgres(durable=True))
        with psycopg.connect(local.dsn(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(CONFIG_DATABASE)))
        yield Target(
            local.dsn(CONFIG_DATABASE),
            True,
            f"throwaway local cluster, durable ({local.binaries.source})",
            _found({name: local.program(name) for name in CLIENT_PROGRAMS}),
            local.program_env(),
            _filesystem_of(local.data_dir),
        )


@contextlib.contextmanager
def pgbench_database(config_dsn: str) -> Iterator[str]:
    """A separate database on the same server for pgbench's tables, dropped afterwards."""
    with scratch_database(config_dsn, f"amira_bench_pgbench_{uuid.uuid4().hex[:8]}") as dsn:
        yield dsn


def bench_keys(count: int) -> list[str]:
    """``count`` realistic dotted keys, spread over 20 services (the same names SQL makes)."""
    return [f"{KEY_PREFIX}svc{i % 20:02d}.setting{i:07d}" for i in range(count)]


# The same keys and a value of each data type in turn (str, int, float, bool, json),
# made by the server: a 1 M key load is one statement per chunk, not 1 M parameters.
# Through the library's table, so its triggers run (versions, history, NOTIFY).
_LOAD_SQL = """
INSERT INTO amira_config.configurations AS c (key, value, data_type, description, updated_by)
SELECT %(prefix)s || 'svc' || lpad((i %% 20)::text, 2, '0') || '.setting' || lpad(i::text, 7, '0'),
       CASE i %% 5 WHEN 0 THEN to_jsonb('value-' || i)
                  WHEN 1 THEN to_jsonb(i)
                  WHEN 2 THEN to_jsonb(i + 0.5)
                  WHEN 3 THEN to_jsonb(i %% 2 = 0)
                  ELSE jsonb_build_object('n', i, 'tags', jsonb_build_array('a', 'b'),
                                          'enabled', true) END,
       (ARRAY['str', 'int', 'float', 'bool', 'json'])[i %% 5 + 1],
       'benchmark key', 'benchmarks'
  FROM generate_series(%(first)s::int, %(last)s::int) AS i
    ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, data_type = EXCLUDED.data_type
"""
_LOAD_CHUNK = 200_000


def str_keys(keys: list[str]) -> list[str]:
    """The keys loaded with a ``str`` value: the write cases update only these."""
    return keys[::5]


def json_keys(keys: list[str]) -> list[str]:
    """The keys loaded with a ``json`` (dict) value."""
    return keys[4::5]


def load_keys(dsn: str, count: int) -> list[str]:
    """Insert ``count`` keys with bulk SQL (chunks of 200k, one transaction each); return them.

    The table is vacuumed and analysed so plans are the steady-state ones.
    """
    with psycopg.connect(dsn, autocommit=True) as conn:
        for first in range(0, count, _LOAD_CHUNK):
            last = min(count, first + _LOAD_CHUNK) - 1
            conn.execute(_LOAD_SQL, {"prefix": KEY_PREFIX, "first": first, "last": last})
        conn.execute("VACUUM ANALYZE amira_config.configurations")
        conn.execute("VACUUM ANALYZE amira_config.configuration_history")
    return bench_keys(count)


def remove_keys(dsn: str) -> None:
    """Delete the benchmark's keys from a database we did not create (``--dsn``)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "DELETE FROM amira_config.configurations WHERE starts_with(key, %s)", (KEY_PREFIX,)
        )


def with_database(dsn: str, name: str) -> str:
    """``dsn`` pointed at database ``name`` of the same server."""
    params = conninfo_to_dict(dsn)
    params["dbname"] = name
    return make_conninfo("", **{k: v for k, v in params.items() if v is not None})


@contextlib.contextmanager
def scratch_database(config_dsn: str, name: str) -> Iterator[str]:
    """A new database on the same server (dropped afterwards); yields its DSN."""
    with psycopg.connect(config_dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield with_database(config_dsn, name)
    finally:
        with psycopg.connect(config_dsn, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
