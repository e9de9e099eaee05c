"""The prefix scans stay bounded by the index under a generic plan too.

psycopg prepares a statement after five runs, and PostgreSQL may then use a
generic plan, which cannot read a prefix's end out of ``starts_with()``:
before the fix, a narrow ``list(prefix)`` on a 100 k-key table scanned from the
prefix to the end of the table (97 ms vs 0.05 ms).
"""

from __future__ import annotations

import json
import re
from typing import Any

import psycopg
import pytest

from amira_data_access.backends.postgres import load_queries
from amira_data_access.core.arguments import prefix_end

KEYS = 20_000


def _numbered(sql: str) -> tuple[str, list[str]]:
    """aiosql's ``%(name)s`` placeholders as ``$1…$n`` (for PREPARE), and their names."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    return re.sub(r"%\((\w+)\)s", number, sql).replace("%%", "%"), names


def _generic_plan(conn: psycopg.Connection[Any], query: str, params: dict[str, Any]) -> Any:
    sql, names = _numbered(getattr(load_queries(), query).sql)
    conn.execute("SET plan_cache_mode = force_generic_plan")
    conn.execute(f"PREPARE probe AS {sql}")
    arguments = ", ".join(psycopg.sql.Literal(params[name]).as_string(conn) for name in names)
    (plan,) = conn.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE probe({arguments})").fetchone()
    conn.execute("DEALLOCATE probe")
    return plan[0]["Plan"] if isinstance(plan, list) else json.loads(plan)[0]["Plan"]


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [plan, *(node for child in plan.get("Plans", []) for node in _nodes(child))]


@pytest.mark.parametrize(
    ("query", "params"),
    [
        ("list_configurations", {"after": None, "limit": 100}),
        (
            "delete_configurations_by_prefix",
            {"deleted_by": "t", "reason": None, "expected_count": 0},
        ),
    ],
)
def test_a_narrow_prefix_reads_only_its_keys_under_a_generic_plan(
    dsn: str, query: str, params: dict[str, Any]
) -> None:
    """With a few keys under the prefix and many after it, the index range ends at the prefix."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO amira_config.configurations (key, value, data_type, updated_by) "
            "SELECT 'a.' || lpad(n::text, 6, '0'), to_jsonb(n), 'int', 't' "
            "FROM generate_series(1, %s) AS n",
            (KEYS,),
        )
        conn.execute("ANALYZE amira_config.configurations")
        prefix = "a.000010"  # exactly one key (a.000010), with 19,990 keys after it
        plan = _generic_plan(
            conn, query, {"prefix": prefix, "prefix_end": prefix_end(prefix), **params}
        )
    scans = [node for node in _nodes(plan) if "Index" in node["Node Type"]]
    assert scans, plan
    condition = scans[0].get("Index Cond", "")
    assert "key >=" in condition
    assert "key <" in condition.replace("key >=", "")
    touched = sum(
        node.get("Actual Rows", 0) + node.get("Rows Removed by Filter", 0) for node in scans
    )
    assert touched <= 20, f"the scan read {touched} rows for a prefix of 1 key"


# -- point-in-time reads (migrations/0013) -------------------------------------------------

VERSIONS = 2_000  # of the deep key; its early instant is after version EARLY
EARLY = 20


def _explained(conn: psycopg.Connection[Any], query: str, params: dict[str, Any]) -> Any:
    """The plan PostgreSQL picks for these very values (a custom plan), executed."""
    sql = getattr(load_queries(), query).sql.replace("%%", "%")
    (plan,) = conn.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", params).fetchone()
    return plan[0]["Plan"] if isinstance(plan, list) else json.loads(plan)[0]["Plan"]


def _history_rows_read(plan: dict[str, Any]) -> int:
    """Rows the plan's scans of the history returned or filtered out (over all loops)."""
    return sum(
        (node.get("Actual Rows", 0) + node.get("Rows Removed by Filter", 0))
        * node.get("Actual Loops", 1)
        + node.get("Rows Removed by Index Recheck", 0)
        for node in _nodes(plan)
        if node.get("Relation Name") == "configuration_history"
    )


@pytest.fixture
def deep_history(dsn: str) -> dict[str, Any]:
    """KEYS keys, one of them ('deep') changed VERSIONS times, one commit per change."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET synchronous_commit = off")
        conn.execute(
            "INSERT INTO amira_config.configurations (key, value, data_type, updated_by) "
            "SELECT 'a.' || lpad(n::text, 6, '0'), to_jsonb(n), 'int', 't' "
            "FROM generate_series(1, %s) AS n",
            (KEYS,),
        )
        conn.execute(
            "INSERT INTO amira_config.configurations (key, value, data_type, updated_by)"
            " VALUES ('deep', '1', 'int', 't')"
        )
        # One commit per version, through the real triggers: changed_at as in production.
        conn.execute(
            f"DO $$ BEGIN FOR i IN 2..{VERSIONS} LOOP"
            " UPDATE amira_config.configurations SET value = to_jsonb(i) WHERE key = 'deep';"
            " COMMIT; END LOOP; END $$"
        )
        conn.execute("VACUUM ANALYZE amira_config.configurations")
        conn.execute("VACUUM ANALYZE amira_config.configuration_history")
        row = conn.execute(
            "SELECT changed_at FROM amira_config.configuration_history"
            " WHERE key = 'deep' AND version = %s",
            (EARLY,),
        ).fetchone()
        assert row is not None
        now = conn.execute("SELECT clock_timestamp()").fetchone()
        assert now is not None
    return {"early": row[0], "now": now[0]}


@pytest.mark.parametrize("generic", [False, True], ids=["custom", "generic"])
def test_get_at_an_early_instant_reads_one_history_row(
    dsn: str, deep_history: dict[str, Any], generic: bool
) -> None:
    """get_value_at finds the last change before the instant on the index, not by a walk.

    On the primary key it walked back from the newest version through every change
    after the instant (124 ms for 99,000 of them).
    """
    params = {"key": "deep", "at": deep_history["early"]}
    with psycopg.connect(dsn, autocommit=True) as conn:
        plan = (
            _generic_plan(conn, "get_value_at", params)
            if generic
            else _explained(conn, "get_value_at", params)
        )
        row = conn.execute(load_queries().get_value_at.sql, params).fetchone()
    assert row is not None
    assert row[1] == EARLY
    scans = [node for node in _nodes(plan) if node.get("Relation Name") == "configuration_history"]
    by_index = {node.get("Index Name"): node.get("Index Cond", "") for node in scans}
    assert "changed_at <=" in by_index.pop("configuration_history_key_changed_at"), plan
    assert all("version =" in condition for condition in by_index.values()), plan
    assert _history_rows_read(plan) <= 2, plan


@pytest.mark.parametrize("query", ["get_snapshot_chunks_at", "get_snapshot_at"])
@pytest.mark.parametrize("generic", [False, True], ids=["custom", "generic"])
def test_a_snapshot_now_does_not_read_the_whole_history(
    dsn: str, deep_history: dict[str, Any], generic: bool, query: str
) -> None:
    """get_snapshot_at reads the current rows, and only the changes after the instant.

    The DISTINCT ON over the whole history sorted every history row (an external
    sort of 1.1 M rows, 2 s).
    """
    params = {"prefix": "", "prefix_end": prefix_end(""), "at": deep_history["now"]}
    with psycopg.connect(dsn, autocommit=True) as conn:
        plan = _generic_plan(conn, query, params) if generic else _explained(conn, query, params)
    chunks = -(-(KEYS + 1) // 250)  # get_snapshot_chunks_at: a row per 250 keys
    assert plan["Actual Rows"] == (chunks if query == "get_snapshot_chunks_at" else KEYS + 1)
    history = KEYS + VERSIONS
    assert _history_rows_read(plan) <= 10, f"read {_history_rows_read(plan)} of {history}"


@pytest.mark.parametrize("query", ["get_snapshot_chunks_at", "get_snapshot_at"])
@pytest.mark.parametrize("generic", [False, True], ids=["custom", "generic"])
def test_a_narrow_snapshot_reads_only_its_keys(
    dsn: str, deep_history: dict[str, Any], generic: bool, query: str
) -> None:
    """A snapshot of one key's prefix reads that key's rows, not the table from the prefix on.

    Without :prefix_end a generic plan scanned from the prefix to the end of the
    current table (starts_with() gives it no upper bound).
    """
    prefix = "a.000010"  # exactly one key (a.000010), with 19,990 keys after it
    params = {"prefix": prefix, "prefix_end": prefix_end(prefix), "at": deep_history["early"]}
    with psycopg.connect(dsn, autocommit=True) as conn:
        plan = _generic_plan(conn, query, params) if generic else _explained(conn, query, params)
    scans = [
        node
        for node in _nodes(plan)
        if node.get("Relation Name") == "configurations" and "Index" in node["Node Type"]
    ]
    assert scans, plan
    condition = scans[0].get("Index Cond", "")
    assert "key >=" in condition
    assert "key <" in condition.replace("key >=", "")
    touched = sum(
        (node.get("Actual Rows", 0) + node.get("Rows Removed by Filter", 0))
        * node.get("Actual Loops", 1)
        for node in _nodes(plan)
        if node.get("Relation Name") in ("configurations", "configuration_history")
    )
    assert touched <= 20, f"the scans read {touched} rows for a prefix of 1 key"
