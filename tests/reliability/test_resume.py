"""A watcher resumes exactly after the last revision it handled, as etcd clients do.

``watch(prefix, since_revision=N)`` yields every change with a revision above N
that is already in the history, then the live ones: nothing missed, nothing
twice, in revision order, also when the listener was killed meanwhile, from a
process that never listened before, and from ``amira-config watch --since N``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import psycopg
import pytest

from amira_data_access import ConfigChange, ConfigDAL
from conftest import TestServer

from .conftest import DEADLINE, connections_refused, eventually, terminate_listeners

pytestmark = pytest.mark.timeout(120)

DB_VARIABLES = {"AMIRA_CONFIG_DSN", "DB_HOST", "DB_PORT", "DB_NAME", "DB_USER", "DB_PASSWORD"}
DB_VARIABLES.add("AMIRA_CONFIG_HOME")

WRITES_WHILE_AWAY = (
    "UPDATE amira_config.configurations SET value = '2' WHERE key = 'r.a'",
    "INSERT INTO amira_config.configurations (key, value, data_type, updated_by)"
    " VALUES ('r.b', '1', 'int', 'raw')",
    "INSERT INTO amira_config.configurations (key, value, data_type, updated_by)"
    " VALUES ('other', '1', 'int', 'raw')",
)


def _shape(changes: list[ConfigChange | None]) -> list[tuple[str, int, str] | None]:
    return [None if c is None else (c.key, c.version, c.operation) for c in changes]


def test_watch_resumes_after_a_revision_across_a_killed_listener(
    dal: ConfigDAL, dsn: str, pg_server: TestServer
) -> None:
    """Changes made while the listener was dead reach the live stream and a resumed one."""
    feed = dal._change_feed()
    with dal.watch("r.") as live, psycopg.connect(dsn, autocommit=True) as writer:
        assert feed.wait_connected(DEADLINE)
        dal.set("r.a", 1, updated_by="ops")
        first = live.next(timeout=DEADLINE)
        assert first is not None
        handled = first.revision  # what a consumer would have stored
        with connections_refused(pg_server, dsn):
            terminate_listeners(pg_server, dsn)
            eventually(lambda: not feed.connected, "the listener to notice it was cut off")
            for statement in WRITES_WHILE_AWAY:
                writer.execute(statement)
        missed = [live.next(timeout=DEADLINE) for _ in range(2)]
        assert _shape(missed) == [("r.a", 2, "update"), ("r.b", 1, "insert")]
        assert [c.revision for c in missed if c] == [handled + 1, handled + 2]

    with dal.watch("r.", since_revision=handled) as resumed:
        replayed = [resumed.next(timeout=DEADLINE) for _ in range(2)]
        assert replayed == missed  # the same changes, from the history
        dal.set("r.c", 1, updated_by="ops")
        assert _shape([resumed.next(timeout=DEADLINE)]) == [("r.c", 1, "insert")]
        dal.set("r.a", 3, updated_by="ops")  # and nothing twice in between
        assert _shape([resumed.next(timeout=DEADLINE)]) == [("r.a", 3, "update")]

    with ConfigDAL(dsn, max_size=1) as fresh, fresh.watch("r.", since_revision=0) as everything:
        got = [everything.next(timeout=DEADLINE) for _ in range(5)]
    assert _shape(got) == [
        ("r.a", 1, "insert"),
        ("r.a", 2, "update"),
        ("r.b", 1, "insert"),
        ("r.c", 1, "insert"),
        ("r.a", 3, "update"),
    ]
    revisions = [c.revision for c in got if c]
    assert revisions == sorted(revisions)


def test_amira_config_watch_since_replays_then_follows(dal: ConfigDAL, dsn: str) -> None:
    """``amira-config watch PREFIX --since N --json`` prints what followed N, then live changes."""
    dal.set("c.a", 1, updated_by="ops")
    since = dal.history("c.a")[0].revision
    dal.set("c.a", 2, updated_by="ops")
    dal.delete("c.a", deleted_by="ops")
    # Only --dsn names the database; colours off.
    env = {k: v for k, v in os.environ.items() if k not in DB_VARIABLES}
    env["NO_COLOR"] = "1"
    watcher = subprocess.Popen(
        [sys.executable, "-m", "amira_data_access.cli", "--dsn", dsn, "watch", "c.",
         "--since", str(since), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )  # fmt: skip
    try:
        assert watcher.stdout is not None
        stdout = watcher.stdout

        def event() -> dict[str, object]:
            line = stdout.readline()
            assert line, f"amira-config watch ended: {watcher.communicate(timeout=30)[1]}"
            return dict(json.loads(line))

        replayed = [event() for _ in range(2)]
        assert [(e["key"], e["version"], e["operation"]) for e in replayed] == [
            ("c.a", 2, "update"),
            ("c.a", 3, "delete"),
        ]
        assert [e["revision"] for e in replayed] == [since + 1, since + 2]
        dal.set("c.b", 1, updated_by="ops")
        live = event()
        assert (live["key"], live["version"], live["revision"]) == ("c.b", 1, since + 3)
    finally:
        watcher.terminate()
        watcher.communicate(timeout=30)
