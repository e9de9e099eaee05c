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
