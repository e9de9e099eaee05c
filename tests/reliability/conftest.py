"""Fixtures for the fault tests: a server they may stop and restart, held locks, killed sessions.

Every test here is bounded in time. ``AMIRA_CONFIG_SOAK=1`` (``just soak``) runs
the long versions: :func:`scaled` gives each test its short (CI) or long size.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest

SOAK = os.environ.get("AMIRA_CONFIG_SOAK") == "1"


def scaled(short: int, long: int) -> int:
    """``long`` under ``just soak``, else ``short`` (what CI runs)."""
    return long if SOAK else short


@pytest.fixture
def restartable(pg_server: Any) -> Any:
    """The test server, which this test may stop and start again.

    Only a server this test session started itself can be restarted; with
    AMIRA_CONFIG_TEST_DSN or testcontainers the test says so instead of passing.
    """
    if pg_server.local is None:
        reason = (
            f"restarts the server, and the {pg_server.source} server is not ours to restart: "
            "unset AMIRA_CONFIG_TEST_DSN to run it on a local cluster"
        )
        if os.environ.get("AMIRA_CONFIG_REQUIRE_DB") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return pg_server


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
