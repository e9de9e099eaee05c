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
from psycopg.types.json import Jsonb

from amira_data_access._dev.local_postgres import LocalPostgres, PostgresBinaries, find_binaries

__all__ = ["KEY_PREFIX", "Target", "load_keys", "remove_keys", "target"]

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
    """Where the benchmarks run and how to reach pgbench."""

    dsn: str
    started_here: bool
    description: str
    pgbench: Path | None = None
    pgbench_env: dict[str, str] = field(default_factory=dict)
    data_dir_filesystem: str | None = None

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


def _client_binaries() -> tuple[Path | None, dict[str, str]]:
    """pgbench from the same places the local server's binaries come from (for ``--dsn``)."""
    try:
        binaries: PostgresBinaries = find_binaries()
    except Exception:  # no PostgreSQL binaries at all: the pgbench case says so
        return None, {}
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    if binaries.library_dir is not None:
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            filter(None, [str(binaries.library_dir), env.get("LD_LIBRARY_PATH")])
        )
    program = binaries.program("pgbench")
    return (program if program.exists() else None), env


@contextlib.contextmanager
def target(dsn: str | None) -> Iterator[Target]:
    """The server to measure: ``dsn`` as given, or a durable throwaway cluster started here.

    ``durable=True``: fsync, synchronous_commit and full_page_writes stay on, so a
    write pays for its WAL flush as it would in production, and as pgbench does.
    """
    if dsn is not None:
        program, env = _client_binaries()
        yield Target(dsn, False, "existing server (--dsn)", program, env)
        return
    with LocalPostgres(durable=True) as local:
        with psycopg.connect(local.dsn(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(CONFIG_DATABASE)))
        program = local.program("pgbench")
        yield Target(
            local.dsn(CONFIG_DATABASE),
            True,
            f"throwaway local cluster, durable ({local.binaries.source})",
            program if program.exists() else None,
            local.program_env(),
            _filesystem_of(local.data_dir),
        )


@contextlib.contextmanager
def pgbench_database(config_dsn: str) -> Iterator[str]:
    """A separate database on the same server for pgbench's tables, dropped afterwards."""
    name = f"amira_bench_pgbench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(config_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    params = conninfo_to_dict(config_dsn)
    params["dbname"] = name
    try:
        yield make_conninfo("", **{k: v for k, v in params.items() if v is not None})
    finally:
        with psycopg.connect(config_dsn, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def bench_keys(count: int) -> list[str]:
    """``count`` realistic dotted keys, spread over 20 services."""
    return [f"{KEY_PREFIX}svc{i % 20:02d}.setting{i:05d}" for i in range(count)]


def _typed_value(i: int) -> tuple[object, str]:
    """A value of each data type in turn, so reads decode a realistic mix."""
    kind = i % 5
    if kind == 0:
        return f"value-{i}", "str"
    if kind == 1:
        return i, "int"
    if kind == 2:
        return i + 0.5, "float"
    if kind == 3:
        return i % 2 == 0, "bool"
    return {"n": i, "tags": ["a", "b"], "enabled": True}, "json"


def str_keys(keys: list[str]) -> list[str]:
    """The keys loaded with a ``str`` value: the write cases update only these."""
    return keys[::5]


def load_keys(dsn: str, count: int) -> list[str]:
    """Insert ``count`` keys in one transaction (raw SQL: 10k durable commits would take long).

    Returns the keys. The table is vacuumed and analysed so plans are the steady-state ones.
    """
    keys = bench_keys(count)
    rows = []
    for i, key in enumerate(keys):
        value, data_type = _typed_value(i)
        rows.append((key, Jsonb(value), data_type))
    with psycopg.connect(dsn, autocommit=True) as conn:
        with conn.transaction(), conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO amira_config.configurations"
                " (key, value, data_type, description, updated_by)"
                " VALUES (%s, %s, %s, 'benchmark key', 'benchmarks')"
                " ON CONFLICT (key) DO UPDATE"
                " SET value = EXCLUDED.value, data_type = EXCLUDED.data_type",
                rows,
            )
        conn.execute("VACUUM ANALYZE amira_config.configurations")
    return keys


def remove_keys(dsn: str) -> None:
    """Delete the benchmark's keys from a database we did not create (``--dsn``)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "DELETE FROM amira_config.configurations WHERE starts_with(key, %s)", (KEY_PREFIX,)
        )
