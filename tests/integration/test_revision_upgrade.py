"""Migration 0006 on a database that already has history written the old way.

The commit-ordered revisions start above every revision drawn before, including
one drawn by a transaction still writing while the migration runs (the
migration waits for it), and the history goes on from there without gaps.
"""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import psycopg
import pytest

from amira_data_access import ConfigDAL
from amira_data_access._resources import sql_dir
from amira_data_access.migrations import migrate

DEADLINE = 30.0
pytestmark = pytest.mark.timeout(120)

INSERT = (
    "INSERT INTO amira_config.configurations (key, value, data_type, updated_by)"
    " VALUES (%s, '1', 'int', 'old')"
)


def _revisions(conn: psycopg.Connection[tuple[object, ...]]) -> list[tuple[str, int]]:
    rows = conn.execute(
        "SELECT key, revision FROM amira_config.configuration_history ORDER BY revision, key"
    ).fetchall()
    return [(str(key), int(str(revision))) for key, revision in rows]


def test_revisions_continue_above_those_drawn_before_0006(empty_dsn: str, tmp_path: Path) -> None:
    """Old revisions (with a rollback's gap) stay; an in-flight old writer is waited for."""
    for path in sorted(sql_dir("migrations").glob("000[1-5]_*.sql")):
        shutil.copy(path, tmp_path / path.name)
    migrate(empty_dsn, directory=tmp_path)
    with psycopg.connect(empty_dsn, autocommit=True) as conn:
        conn.execute(INSERT, ("a",))  # revision 1
        with pytest.raises(RuntimeError), conn.transaction():  # noqa: PT012  (draws 2, rolls back)
            conn.execute(INSERT, ("ghost",))
            raise RuntimeError("roll back")
        conn.execute(INSERT, ("b",))  # revision 3

    shutil.copy(next(sql_dir("migrations").glob("0006_*.sql")), tmp_path)
    with (
        psycopg.connect(empty_dsn) as in_flight,
        psycopg.connect(empty_dsn, autocommit=True) as observer,
    ):
        in_flight.execute(INSERT, ("c",))  # revision 4, drawn the old way, not committed
        migrated: list[object] = []
        runner = threading.Thread(
            target=lambda: migrated.extend(
                migrate(empty_dsn, directory=tmp_path, lock_timeout=None)
            )
        )
        runner.start()
        try:
            waiting = (
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE wait_event_type = 'Lock' AND datname = current_database()"
            )
            deadline = time.monotonic() + DEADLINE
            while observer.execute(waiting).fetchone() != (1,):  # the migration waits for us
                if time.monotonic() > deadline:
                    pytest.fail("the migration never waited for the transaction in flight")
                time.sleep(0.02)
            in_flight.commit()
        finally:
            runner.join(DEADLINE)
        assert not runner.is_alive()
        assert len(migrated) == 1
        assert _revisions(observer) == [("a", 1), ("b", 3), ("c", 4)]

    # The rest of the migrations, which today's DAL needs; none of them draws a revision.
    for path in sorted(sql_dir("migrations").glob("*.sql")):
        shutil.copy(path, tmp_path)
    migrate(empty_dsn, directory=tmp_path)
    with ConfigDAL(empty_dsn, max_size=1) as dal:
        dal.set("d", 1, updated_by="new")
        with dal.transaction() as tx:
            tx.set("e", 1, updated_by="new")
            tx.set("a", 2, updated_by="new")
        assert dal.history("d")[0].revision == 5
        assert [r.revision for r in dal.history("a")] == [6, 1]
        assert dal.history("e")[0].revision == 6
        assert dal.history("d")[0].changed_at > dal.history("c")[0].changed_at
