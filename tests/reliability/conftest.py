"""What the reliability tests share: a server they may restart, held locks, killed
sessions, waiting with a deadline, and disturbing the change feed.

These tests reproduce reported failures against a real server, each bounded in
time (``pytest.mark.timeout``): a wait is "until it happens, or fail after a
generous deadline", never an assertion on how fast something happened.
``AMIRA_CONFIG_SOAK=1`` (``just soak``) runs the long versions: :func:`scaled`
gives each test its short (CI) or long size.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from amira_data_access.feed.listener import LISTENER_NAME
from conftest import TestServer

SOAK = os.environ.get("AMIRA_CONFIG_SOAK") == "1"
REPORT_ENV = "AMIRA_CONFIG_RELIABILITY_REPORT"  # append each scenario's figures (JSON lines)


def report(scenario: str, **figures: Any) -> None:
    """Print the scenario's figures on one line (``-s`` shows it); append them to the JSON
    lines file AMIRA_CONFIG_RELIABILITY_REPORT names, from which tests/reliability/README.md
    is filled."""
    shown = " ".join(
        f"{name}={value:.3f}" if isinstance(value, float) else f"{name}={value}"
        for name, value in figures.items()
    )
    print(f"{scenario}: {shown}")
    path = os.environ.get(REPORT_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps({"scenario": scenario, "soak": SOAK, **figures}) + "\n")


def scaled(short: int, long: int) -> int:
    """``long`` under ``just soak``, else ``short`` (what CI runs)."""
    return long if SOAK else short


@contextmanager
def held_row_lock(dsn: str, key: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """Another session holding ``SELECT … FOR UPDATE`` on ``key`` until the block ends."""
    with psycopg.connect(dsn) as conn:
        conn.execute("SELECT 1 FROM amira_config.configurations WHERE key = %s FOR UPDATE", (key,))
        try:
            yield conn
        finally:
            conn.rollback()


def terminate_sessions(dsn: str, application_name: str) -> int:
    """pg_terminate_backend every session of ``application_name``; how many there were."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = %s AND pid <> pg_backend_pid()",
            (application_name,),
        ).fetchall()
    return len(rows)


DEADLINE = 20.0  # seconds: long enough for a loaded machine, short enough to fail a test


def eventually(check: Callable[[], bool], what: str, deadline: float = DEADLINE) -> None:
    """Return once ``check()`` is true; fail the test if it is still false after ``deadline``."""
    end = time.monotonic() + deadline
    while not check():
        if time.monotonic() > end:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def _dbname(dsn: str) -> str:
    return str(conninfo_to_dict(dsn)["dbname"])


def listener_pids(pg_server: TestServer, dsn: str) -> set[int]:
    """The backends of this database's change-feed listeners (by their application_name)."""
    with psycopg.connect(pg_server.dsn("postgres"), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND datname = %s",
            (LISTENER_NAME, _dbname(dsn)),
        ).fetchall()
    return {int(pid) for (pid,) in rows}


def terminate_listeners(pg_server: TestServer, dsn: str) -> None:
    """Kill the listeners' sessions on the server (pg_terminate_backend), as a failover would."""
    with psycopg.connect(pg_server.dsn("postgres"), autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = %s AND datname = %s",
            (LISTENER_NAME, _dbname(dsn)),
        )


@contextmanager
def connections_refused(pg_server: TestServer, dsn: str) -> Iterator[None]:
    """No new session may connect to the database inside the block (open ones stay)."""
    dbname = _dbname(dsn)

    def allow(allowed: bool) -> None:
        with psycopg.connect(pg_server.dsn("postgres"), autocommit=True) as conn:
            conn.execute(
                sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS {}").format(
                    sql.Identifier(dbname), sql.Literal(allowed)
                )
            )

    allow(False)
    try:
        yield
    finally:
        allow(True)


def forge_notification(dsn: str, payload: str) -> None:
    """What any role that can connect may do: announce a change that never happened."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_notify('amira_config_changes', %s)", (payload,))
