"""Behaviour mutation testing found no test holding, pinned against the real server.

Each test names what it guards. The SQL ones run the statements of queries/ and
the triggers of migrations/ directly (raw SQL, as a DBA would); the cache ones
change rows underneath a cache without announcing it, so that only an answer
from memory can pass them.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.types.json import Jsonb

from amira_data_access import CachedConfigDAL, ConfigDAL
from amira_data_access.backends.postgres import load_queries


@contextmanager
def _unannounced(dsn: str) -> Iterator[psycopg.Connection[Any]]:
    """Inside the block, committed changes reach no change feed: the table owner turns the
    doorbell (and the commit stamping) off, and back on when the block ends. To prove what
    a cache answers from memory."""
    trigger = "amira_config.configuration_history {} TRIGGER configuration_history_commit"
    with psycopg.connect(dsn, autocommit=True) as owner:
        owner.execute(f"ALTER TABLE {trigger.format('DISABLE')}")
        try:
            with psycopg.connect(dsn) as conn:
                yield conn
        finally:
            owner.execute(f"ALTER TABLE {trigger.format('ENABLE')}")


def _one_row_per_call(conn: psycopg.Connection[Any], query: str, **params: Any) -> list[Any]:
    return conn.execute(getattr(load_queries(), query).sql, params).fetchall()


# -- the triggers and constraints, by raw SQL --------------------------------------------------


def test_created_at_cannot_be_rewritten_by_raw_sql(dsn: str) -> None:
    """An UPDATE naming created_at keeps the original (configurations_before_write)."""
    with ConfigDAL(dsn) as dal:
        created = dal.set("c", 1, updated_by="t").created_at
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                "UPDATE amira_config.configurations SET value = '2', created_at = '2000-01-01'"
                " WHERE key = 'c'"
            )
        entry = dal.get_entry("c")
    assert entry is not None
    assert (entry.value, entry.created_at) == (2, created)


@pytest.mark.parametrize(
    ("column", "value"), [("version", 0), ("version", -1), ("operation", "rename")]
)
def test_the_history_table_refuses_impossible_rows(dsn: str, column: str, value: object) -> None:
    """Its CHECKs hold even for the owner writing it directly: versions from 1, three operations."""
    row = {"version": 1, "operation": "insert", column: value}
    with psycopg.connect(dsn, autocommit=True) as conn, pytest.raises(psycopg.Error):
        conn.execute(
            "INSERT INTO amira_config.configuration_history"
            " (revision, key, version, operation, value, data_type, changed_by, changed_at)"
            " VALUES (0, 'h', %(version)s, %(operation)s, '1', 'int', 't', now())",
            row,
        )


@pytest.mark.parametrize(
    "key", ["", "x" * 256, "a\u2028b", "a\u3000b", "a\u00a0b", "a\u2009b", "a\u1680b", "a\ufeffb"]
)
def test_the_table_refuses_keys_the_library_refuses(dsn: str, key: str) -> None:
    """configurations_key_length and the key characters hold for raw SQL: empty, too long,
    and the Unicode separators and spaces besides the ASCII space."""
    with (
        psycopg.connect(dsn, autocommit=True) as conn,
        pytest.raises(psycopg.errors.CheckViolation),
    ):
        conn.execute(
            "INSERT INTO amira_config.configurations (key, value, data_type, updated_by)"
            " VALUES (%s, '1', 'int', 't')",
            (key,),
        )


def test_the_actor_of_a_write_does_not_stick_to_the_session(dsn: str) -> None:
    """set_config(…, true): who acted is forgotten with the transaction, so a later raw UPDATE
    on the same (pooled, or the caller's) connection is not attributed to the earlier caller."""
    with ConfigDAL(dsn) as dal, psycopg.connect(dsn) as conn:
        dal.bind(conn).set("who", 1, updated_by="alice")
        conn.commit()
        conn.execute("UPDATE amira_config.configurations SET value = '2' WHERE key = 'who'")
        conn.commit()
        login = conn.execute("SELECT session_user").fetchone()
        latest = dal.history("who")[0]
    assert login is not None
    assert latest.version == 2
    assert latest.changed_by != "alice"
    assert latest.changed_by == login[0]


@pytest.mark.parametrize("applies", [True, False], ids=["applied", "conflict"])
def test_a_conditional_write_answers_exactly_one_row(dsn: str, applies: bool) -> None:
    """replace/insert/delete-if-version return one row, whether or not they applied: the
    fallback read runs only when the write did not (AND NOT EXISTS), not by luck of row order."""
    with ConfigDAL(dsn) as dal:
        dal.set("cw", 1, updated_by="t")
    version = 1 if applies else 7
    common = {"updated_by": "t", "reason": None, "description": None}
    with psycopg.connect(dsn, autocommit=True) as conn:
        replaced = _one_row_per_call(
            conn,
            "replace_configuration_if_version",
            key="cw",
            value=Jsonb(2),
            data_type=None,
            expected_version=version,
            **common,
        )
        inserted = _one_row_per_call(
            conn,
            "insert_configuration_if_absent",
            key="cw" if not applies else "cw2",
            value=Jsonb(3),
            data_type="int",
            **common,
        )
        deleted = _one_row_per_call(
            conn,
            "delete_configuration_if_version",
            key="cw",
            deleted_by="t",
            reason=None,
            expected_version=2 if applies else 7,
        )
    assert [len(replaced), len(inserted), len(deleted)] == [1, 1, 1]
    assert [replaced[0][0], inserted[0][0], deleted[0][0]] == [applies] * 3


def test_reading_entries_returns_only_the_keys_asked_for(dsn: str) -> None:
    """get_configurations (what a cache fills from) reads the given keys, not the table."""
    with ConfigDAL(dsn) as dal:
        dal.set_many({"r.a": 1, "r.b": 2, "r.c": 3}, updated_by="t")
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = _one_row_per_call(conn, "get_configurations", keys=["r.b", "r.zz"])
    assert [row[0] for row in rows] == ["r.b"]
    with CachedConfigDAL(dsn) as cold:  # nothing in memory: read through
        assert cold.get_many(["r.b", "r.zz"]) == {"r.b": 2}


# -- the cache, with changes nobody announces --------------------------------------------------


def test_cache_hits_come_from_memory(dsn: str) -> None:
    """Once read (get, get_entry, get_many) or written, a key is answered from memory; a
    key read as absent is remembered absent."""
    with CachedConfigDAL(dsn) as cache:
        with cache.watch("m.") as changes:
            cache.set_many({"m.a": "a1", "m.b": "b1"}, updated_by="t")
            with ConfigDAL(dsn) as other:
                other.set("m.c", "c1", updated_by="t")
            # Once this watch has every change, the cache has had it too: the feed calls its
            # subscribers in order, and the cache subscribed first, at open(). (A read that
            # filled before the change reached the cache would be dropped by it.)
            seen = {
                change.key for change in (changes.next(timeout=30.0) for _ in range(3)) if change
            }
            assert seen == {"m.a", "m.b", "m.c"}
        assert cache.get("m.c") == "c1"
        assert cache.get("m.absent") is None
        assert cache.get_many(["m.b"]) == {"m.b": "b1"}
        with _unannounced(dsn) as quiet:
            quiet.execute(
                "UPDATE amira_config.configurations SET value = '\"changed\"'"
                " WHERE key IN ('m.a', 'm.b', 'm.c')"
            )
            quiet.execute(
                "INSERT INTO amira_config.configurations (key, value, data_type, updated_by)"
                " VALUES ('m.absent', '\"here\"', 'str', 't')"
            )
            quiet.commit()
        entry = cache.get_entry("m.a")
        assert entry is not None
        assert [
            entry.value,
            cache.get("m.c"),
            cache.get_many(["m.b"]),
            cache.get("m.absent"),
        ] == ["a1", "c1", {"m.b": "b1"}, None]


def test_a_transaction_drops_the_keys_it_wrote(dsn: str) -> None:
    """After a transaction of the cached DAL, its keys are read again at once, without
    waiting for the change feed (here the change is never announced at all)."""
    with CachedConfigDAL(dsn) as cache:
        assert cache._change_feed().wait_connected(30.0)  # until then reads go to the server
        cache.set("t.k", "before", updated_by="t")
        assert cache.get("t.k") == "before"
        with _unannounced(dsn) as quiet:
            quiet.execute(
                "UPDATE amira_config.configurations SET value = '\"elsewhere\"' WHERE key = 't.k'"
            )
            quiet.commit()
            assert cache.get("t.k") == "before"  # from memory: nobody said it changed
            with cache.transaction() as tx:
                tx.set("t.other", 1, updated_by="t")
                tx.set("t.k", "mine", updated_by="t")
        # The transaction's own change: ConfigDAL.transaction() has no entry to fill in,
        # so the key is dropped and read through.
        assert cache.get("t.k") == "mine"


def test_entries_filled_before_the_feed_first_listens_are_dropped_when_it_does(
    pg_server: Any, dsn: str
) -> None:
    """A value read while the feed has never listened may miss a change nobody announces
    again: the feed's first sync empties the cache (on_first_sync), so the next read is fresh.

    The cache logs in as a role allowed one connection, which its pool takes: the
    listener is refused until the limit is raised."""
    role = f"one_conn_{uuid.uuid4().hex[:8]}"
    ident = sql.Identifier(role)
    with psycopg.connect(dsn, autocommit=True) as owner:
        owner.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'one-connection' CONNECTION LIMIT 1").format(
                ident
            )
        )
        owner.execute(sql.SQL("GRANT USAGE ON SCHEMA amira_config TO {}").format(ident))
        owner.execute(
            sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA amira_config TO {}").format(ident)
        )
        owner.execute(
            "INSERT INTO amira_config.configurations (key, value, data_type, updated_by)"
            " VALUES ('f.k', '\"before\"', 'str', 't')"
        )
    dbname = str(conninfo_to_dict(dsn)["dbname"])
    role_dsn = str(pg_server.dsn(dbname, user=role, password="one-connection"))
    try:
        with CachedConfigDAL(role_dsn, min_size=1, max_size=1) as cache:
            assert cache.health().listener_connected is False  # refused: over the limit
            assert cache.get("f.k") == "before"  # read through, and filled
            with psycopg.connect(dsn, autocommit=True) as owner:
                owner.execute(
                    "UPDATE amira_config.configurations SET value = '\"after\"' WHERE key = 'f.k'"
                )  # announced to no one: nobody listens yet
                owner.execute(sql.SQL("ALTER ROLE {} CONNECTION LIMIT 5").format(ident))
            feed = cache._change_feed()
            assert feed.wait_connected(30.0)
            assert cache.get("f.k") == "after"
    finally:
        with psycopg.connect(dsn, autocommit=True) as owner:
            owner.execute(sql.SQL("DROP OWNED BY {}").format(ident))
            owner.execute(sql.SQL("DROP ROLE {}").format(ident))


def test_a_transaction_drops_the_keys_it_deleted(dsn: str) -> None:
    """A delete inside the cached DAL's transaction is seen at once after the commit, even
    though no change feed announces it."""
    with CachedConfigDAL(dsn) as cache:
        cache.set("t.gone", "here", updated_by="t")
        assert cache.get("t.gone") == "here"
        with _unannounced(dsn), cache.transaction() as tx:
            tx.delete("t.gone", deleted_by="t")
        assert cache.get("t.gone") is None


def test_cache_health_reports_the_age_of_its_last_resync(dsn: str) -> None:
    with CachedConfigDAL(dsn) as cache:
        assert cache._change_feed().wait_connected(30.0)
        report = cache.health()
    assert report.cache_age_seconds is not None
    assert 0 <= report.cache_age_seconds < 600


def test_a_rollback_and_a_set_default_are_read_back_at_once(dsn: str) -> None:
    """Read-your-writes for every write, not only set: a rollback and a set_default of the
    cached DAL are answered from memory at once, though no feed announces them."""
    with CachedConfigDAL(dsn) as cache:
        cache.set("r.k", "one", updated_by="t")
        cache.set("r.k", "two", updated_by="t")
        assert (cache.get("r.k"), cache.get("r.new")) == ("two", None)  # held, and held absent
        with _unannounced(dsn):
            cache.rollback("r.k", to_version=1, updated_by="t")
            cache.set_default("r.new", 5, updated_by="t")
        assert (cache.get("r.k"), cache.get("r.new")) == ("one", 5)
