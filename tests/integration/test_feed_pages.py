"""The feed's catch-up pages: every change once, in order, by whole revisions, streamed.

After a reconnect the listener reads what it missed page by page
(``list_changes_after``, and ``list_changes_with_values_after`` for a cache);
each page was sorted before its first row left the server (125-230 ms for one
revision of 100 k changes) until migrations/0016 indexed the history on
(revision, key, version).
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import psycopg
import pytest

from amira_data_access.backends.postgres import load_queries
from amira_data_access.feed import listener
from amira_data_access.queries import change_queries


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [plan, *(node for child in plan.get("Plans", []) for node in _nodes(child))]


PAGE = 3  # small, so that revisions straddle pages


def _history(dsn: str) -> tuple[int, list[tuple[Any, ...]]]:
    """Write revisions of 5, 1, 2 (one key twice), 4 (one a delete) and 1 changes; return
    the revision before them and every change after it as the history orders them."""
    with psycopg.connect(dsn) as conn:
        before = conn.execute(
            "SELECT coalesce(max(revision), 0) FROM amira_config.configuration_history"
        ).fetchone()
        assert before is not None
        insert = (
            "INSERT INTO amira_config.configurations (key, value, data_type, updated_by)"
            " VALUES (%s, %s, 'int', 't')"
        )
        update = "UPDATE amira_config.configurations SET value = %s WHERE key = %s"
        for key in ("k.e", "k.a", "k.d", "k.b", "k.c"):  # not in key order
            conn.execute(insert, (key, "1"))
        conn.commit()
        conn.execute(update, ("2", "k.c"))
        conn.commit()
        conn.execute(update, ("3", "k.b"))
        conn.execute(update, ("4", "k.b"))  # twice in one revision: versions 2 and 3
        conn.commit()
        conn.execute(update, ("5", "k.a"))
        conn.execute("DELETE FROM amira_config.configurations WHERE key = 'k.d'")
        conn.execute(update, ("6", "k.e"))
        conn.execute(insert, ("k.f", "1"))
        conn.commit()
        conn.execute(update, ("7", "k.a"))
        conn.commit()
        rows = conn.execute(
            "SELECT key, version, operation, changed_by, revision"
            "  FROM amira_config.configuration_history WHERE revision > %s"
            " ORDER BY revision, key, version",
            before,
        ).fetchall()
    return before[0], rows


@pytest.mark.parametrize("carried", [False, True], ids=["plain", "carried"])
def test_pages_hold_every_change_once_in_order_by_whole_revisions(
    dsn: str, monkeypatch: pytest.MonkeyPatch, carried: bool
) -> None:
    before, expected = _history(dsn)
    assert len(expected) == 13
    monkeypatch.setattr(listener, "_PAGE", PAGE)
    pages_after = listener._carried_pages_after if carried else listener._pages_after
    with psycopg.connect(dsn, autocommit=True) as conn:
        pages = list(pages_after(conn, change_queries(), before, None))
        until = expected[8][4]  # the 4-change revision
        bounded = list(pages_after(conn, change_queries(), before, until))
    got = [
        (c.key, c.version, c.operation, c.changed_by, c.revision) for page, _ in pages for c in page
    ]
    assert got == expected
    revisions = [[c.revision for c in page] for page, _ in pages]
    assert all(revisions), "no page is empty"
    for page, following in itertools.pairwise(revisions):
        assert page[-1] < following[0], "a revision is split between pages"
    # A page is at least PAGE changes unless it is the last; the 5-change revision is one page.
    assert [len(page) for page in revisions] == [5, 3, 4, 1]
    assert [c.revision for page, _ in bounded for c in page] == [r[4] for r in expected[:12]]


def test_carried_entries_only_for_a_keys_current_version(
    dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """k.b changed twice in one revision: its row of version 3 carries the entry; k.a's
    change in the 4-change revision is not its current version any more (re-read, never an
    old value kept); k.d deleted; a key a page does not change is re-read."""
    before, _ = _history(dsn)
    monkeypatch.setattr(listener, "_PAGE", PAGE)
    with psycopg.connect(dsn, autocommit=True) as conn:
        pages = list(listener._carried_pages_after(conn, change_queries(), before, None))
    (_, first), (_, second), (_, third), (_, fourth) = pages
    wanted = ["k.a", "k.b", "k.c", "k.d", "k.e", "k.f"]
    fresh, missing = listener._carried_entries(first, wanted)
    assert fresh == {}  # every key of the first revision changed again later
    assert missing == wanted
    fresh, missing = listener._carried_entries(second, wanted)
    assert {key: entry.value for key, entry in fresh.items() if entry} == {"k.b": 4, "k.c": 2}
    fresh, missing = listener._carried_entries(third, wanted)
    assert fresh["k.d"] is None  # deleted
    assert {key: entry.value for key, entry in fresh.items() if entry} == {"k.e": 6, "k.f": 1}
    assert "k.a" in missing  # version 2 is not current: re-read, never an old value kept
    fresh, missing = listener._carried_entries(fourth, wanted)
    assert fresh["k.a"] is not None
    assert fresh["k.a"].value == 7
    assert missing == ["k.b", "k.c", "k.d", "k.e", "k.f"]  # not in this page at all


# -- the plans: in order from the index, no sort ------------------------------------------

MISSED = 20_000


def _sorts(plan: dict[str, Any]) -> list[str]:
    return [node["Node Type"] for node in _nodes(plan) if "Sort" in node["Node Type"]]


def test_a_big_missed_revision_streams_from_the_index(dsn: str) -> None:
    """One transaction of MISSED changes after an older history: the page comes from the
    (revision, key, version) index in order; before migrations/0016 and 0017 it was sorted.

    A custom plan, as a catch-up after a reconnect runs it (once or twice on a new
    connection: psycopg prepares a statement after five runs).
    """
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET synchronous_commit = off")
        conn.execute(
            "INSERT INTO amira_config.configurations (key, value, data_type, updated_by) "
            "SELECT 'a.' || lpad(n::text, 6, '0'), to_jsonb(n), 'int', 't' "
            "FROM generate_series(1, %s) AS n",
            (MISSED,),
        )
        for writer in ("u1", "u2"):  # an older history below the missed revision
            conn.execute("UPDATE amira_config.configurations SET updated_by = %s", (writer,))
        conn.execute("UPDATE amira_config.configurations SET updated_by = 'missed'")
        # Analyzed, not vacuumed: the missed revision is not all-visible yet, as after
        # a real outage. With the index of revision alone still there, the planner
        # took it and sorted each page (until migrations/0017 dropped it).
        conn.execute("ANALYZE amira_config.configurations")
        conn.execute("ANALYZE amira_config.configuration_history")
        row = conn.execute(
            "SELECT max(revision) FROM amira_config.configuration_history"
        ).fetchone()
        assert row is not None
        params: dict[str, Any] = {
            "after": row[0] - 1,
            "until": None,
            "limit": 1000,
        }
        sql = load_queries().list_changes_after.sql.replace("%%", "%")
        (explained,) = conn.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", params).fetchone()
        plan = (explained if isinstance(explained, list) else json.loads(explained))[0]["Plan"]
    assert plan["Actual Rows"] == MISSED
    assert _sorts(plan) == [], plan
    indexes = {node.get("Index Name") for node in _nodes(plan)}
    assert "configuration_history_revision_key_version" in indexes, plan
