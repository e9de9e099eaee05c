"""A notification is a doorbell: a forged one costs a re-read, never a missed or invented change.

Reproduces the reported failure: any role that can connect may ``pg_notify`` on
the feed's channel. A payload announcing ``amira.flag`` version 2 used to be
delivered as a change, after which the real version 2 was dropped as a
duplicate by ``watch()`` and never reached ``CachedConfigDAL``, which kept
serving the old value, even after the listener reconnected.
"""

from __future__ import annotations

import psycopg
import pytest

from amira_data_access import CachedConfigDAL, ConfigChange, ConfigDAL
from conftest import TestServer

from .conftest import (
    DEADLINE,
    connections_refused,
    eventually,
    forge_notification,
    listener_pids,
    terminate_listeners,
)

pytestmark = pytest.mark.timeout(120)

KEY = "amira.flag"
FORGED = '{"key":"amira.flag","version":2,"operation":"update","changed_by":"x","revision":1}'
REAL_UPDATE = "UPDATE amira_config.configurations SET value = '\"new\"' WHERE key = 'amira.flag'"
BARRIER = (
    "INSERT INTO amira_config.configurations (key, value, data_type, updated_by)"
    " VALUES ('amira.barrier', '1', 'int', 'barrier')"
)


def _summary(change: ConfigChange | None) -> tuple[str, int, str] | None:
    return None if change is None else (change.key, change.version, change.changed_by)


def test_watch_delivers_the_real_change_and_not_the_forged_one(dal: ConfigDAL, dsn: str) -> None:
    """A forged announcement of version 2 is not delivered; the real version 2 is, once."""
    dal.set(KEY, "old", updated_by="ops")
    with dal.watch("amira.") as changes:
        assert dal._change_feed().wait_connected(DEADLINE)
        forge_notification(dsn, FORGED)
        dal.set(KEY, "new", updated_by="ops")
        got = changes.next(timeout=DEADLINE)
        assert _summary(got) == (KEY, 2, "ops")
        assert got is not None
        assert got.revision == dal.history(KEY)[0].revision
        dal.set("amira.after", 1, updated_by="ops")  # nothing else came in between
        assert _summary(changes.next(timeout=DEADLINE)) == ("amira.after", 1, "ops")


def test_watch_survives_a_forged_notification_and_a_listener_reconnect(
    dal: ConfigDAL, dsn: str, pg_server: TestServer
) -> None:
    """After a forged announcement, the real change made while the listener was away arrives."""
    dal.set(KEY, "old", updated_by="ops")
    feed = dal._change_feed()
    with dal.watch("amira.") as changes, psycopg.connect(dsn, autocommit=True) as writer:
        assert feed.wait_connected(DEADLINE)
        forge_notification(dsn, FORGED)
        writer.execute(BARRIER)  # a real change: everything announced before it was handled
        assert _summary(changes.next(timeout=DEADLINE)) == ("amira.barrier", 1, "barrier")
        with connections_refused(pg_server, dsn):
            terminate_listeners(pg_server, dsn)
            eventually(lambda: not feed.connected, "the listener to notice it was cut off")
            writer.execute(REAL_UPDATE)  # the real version 2, while nobody listens
        eventually(lambda: feed.connected, "the listener to reconnect")
        got = changes.next(timeout=DEADLINE)
        assert got is not None
        assert (got.key, got.version, got.operation) == (KEY, 2, "update")
        assert got.changed_by != "x"


def test_the_cache_sees_the_real_change_after_a_forged_notification(
    dsn: str, pg_server: TestServer
) -> None:
    """The cache drops the key for the real version 2 (announced or missed while away)."""
    with (
        CachedConfigDAL(dsn, max_size=2) as cached,
        psycopg.connect(dsn, autocommit=True) as writer,
    ):
        cached.set(KEY, "old", updated_by="ops")
        assert cached.get(KEY) == "old"
        barriers: list[ConfigChange] = []
        with cached.subscribe(barriers.append, prefix="amira.barrier"):
            forge_notification(dsn, FORGED)
            writer.execute(BARRIER)
            eventually(lambda: bool(barriers), "the feed to handle what came before the barrier")
        assert cached.get(KEY) == "old"  # read again (and cached again) if the forgery dropped it
        writer.execute(REAL_UPDATE)
        eventually(lambda: cached.get(KEY) == "new", "the cache to see the real version 2")

        # The same across a reconnect: the next real change is made while the listener is away.
        feed = cached._change_feed()
        forge_notification(dsn, FORGED.replace('"version":2', '"version":3'))
        with connections_refused(pg_server, dsn):
            before = listener_pids(pg_server, dsn)
            terminate_listeners(pg_server, dsn)
            eventually(lambda: not feed.connected, "the listener to notice it was cut off")
            assert cached.get(KEY) == "new"  # the feed is down: read from the database
            writer.execute(REAL_UPDATE.replace('"new"', '"newer"'))
        eventually(
            lambda: feed.connected and listener_pids(pg_server, dsn) - before != set(),
            "the listener to reconnect",
        )
        eventually(lambda: cached.get(KEY) == "newer", "the cache to see the missed version 3")
        entry = cached.get_entry(KEY)
        assert entry is not None
        assert entry.version == 3
