"""Flags written by raw SQL: what the table refuses, and how a store evaluates the rest.

The library checks a flag against its JSON Schema before writing; the table (migrations
/0012) checks the top-level shape, so raw SQL cannot store a flag that is not one. A
flag the table lets through but the schema refuses evaluates to the caller's default
with reason ERROR, logged once (not once per evaluation).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from structlog.testing import capture_logs

from amira_data_access import CachedConfigDAL, ConfigDAL
from amira_data_access.backends.memory_sql import _shaped_like_a_flag
from amira_data_access.flags import ErrorCode, Reason

pytestmark = pytest.mark.integration

INSERT = (
    "INSERT INTO amira_config.configurations (key, value, data_type, updated_by)"
    " VALUES (%s, %s::jsonb, %s, 'dba')"
)
GOOD: dict[str, Any] = {
    "enabled": True,
    "variants": {"on": True, "off": False},
    "defaultVariant": "on",
}

SHAPES: list[tuple[Any, bool]] = [
    (GOOD, True),
    ({**GOOD, "rules": [], "rollout": [], "segments": {}}, True),
    ([1, 2], False),
    ("on", False),
    ({k: v for k, v in GOOD.items() if k != "enabled"}, False),
    ({**GOOD, "enabled": "yes"}, False),
    ({**GOOD, "variants": {}}, False),
    ({**GOOD, "variants": ["on"]}, False),
    ({**GOOD, "defaultVariant": "maybe"}, False),
    ({**GOOD, "defaultVariant": 1}, False),
    ({**GOOD, "rules": {}}, False),
    ({**GOOD, "rollout": {"on": 1}}, False),
    ({**GOOD, "segments": []}, False),
]


@pytest.fixture
def conn(dsn: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(dsn, autocommit=True) as connection:
        yield connection


def _table_accepts(conn: psycopg.Connection[Any], value: Any, data_type: str = "flag") -> bool:
    refused_by = None
    try:
        with conn.transaction(force_rollback=True):
            conn.execute(INSERT, ("f", json.dumps(value), data_type))
    except psycopg.errors.CheckViolation as exc:
        refused_by = exc.diag.constraint_name
    assert refused_by in (None, "configurations_flag_document", "configurations_data_type_known")
    return refused_by is None


@pytest.mark.parametrize(("value", "accepted"), SHAPES)
def test_the_table_and_the_fake_check_the_same_shape(
    conn: psycopg.Connection[Any], value: Any, accepted: bool
) -> None:
    assert _table_accepts(conn, value) is accepted
    assert _shaped_like_a_flag(value) is accepted


def test_the_table_knows_the_type_flag_and_no_other_new_one(conn: psycopg.Connection[Any]) -> None:
    assert _table_accepts(conn, GOOD, "flag")
    assert not _table_accepts(conn, GOOD, "feature")
    assert _table_accepts(conn, {"anything": 1}, "json")  # other types are not held to it


@pytest.mark.parametrize("cached", [False, True])
def test_a_raw_sql_flag_the_schema_refuses_evaluates_to_error_logged_once(
    dsn: str, conn: psycopg.Connection[Any], cached: bool
) -> None:
    key = f"raw.flag.{int(cached)}"
    broken = {
        **GOOD,
        "rules": [{"if": [{"attribute": "a", "op": "like", "value": 1}], "variant": "on"}],
    }
    conn.execute(INSERT, (key, json.dumps(broken), "flag"))
    with (
        (CachedConfigDAL if cached else ConfigDAL)(dsn, max_size=2) as store,
        capture_logs() as logs,
    ):
        results = [store.evaluate(key, {"a": 1}, False) for _ in range(5)]
        assert store.is_enabled(key) is False
    assert {(r.value, r.reason, r.error_code, r.version) for r in results} == {
        (False, Reason.ERROR, ErrorCode.PARSE_ERROR, 1)
    }
    assert "rules/0/if/0" in (results[0].error_message or "")
    warnings = [e for e in logs if e["event"] == "flag.invalid"]
    assert len(warnings) == 1
    assert (warnings[0]["key"], warnings[0]["version"], warnings[0]["log_level"]) == (
        key,
        1,
        "warning",
    )
    # Fixed by a DBA: evaluated again at the new version, without a restart.
    conn.execute(
        "UPDATE amira_config.configurations SET value = %s::jsonb WHERE key = %s",
        (json.dumps(GOOD), key),
    )
    with (CachedConfigDAL if cached else ConfigDAL)(dsn, max_size=2) as store:
        fixed = store.evaluate(key, {}, False)
    assert (fixed.value, fixed.reason, fixed.version) == (True, Reason.STATIC, 2)
