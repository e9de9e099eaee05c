"""ConfigDAL against a real PostgreSQL server: every operation, and bad input writing nothing."""

from __future__ import annotations

import math
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.conninfo import conninfo_to_dict

from amira_data_access import ConfigDAL, ConfigEntry, InvalidConfigurationError


def _count_rows(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM amira_config.configurations").fetchone()
        assert row is not None
        return int(row[0])


def test_set_then_get_returns_the_value(dal: ConfigDAL) -> None:
    """A value written with set() is what get() returns."""
    dal.set("default_language", "en-US", data_type="str", updated_by="john")
    assert dal.get("default_language") == "en-US"


def test_get_of_absent_key_returns_default(dal: ConfigDAL) -> None:
    """An absent key gives None, or the default the caller passes."""
    assert dal.get("nope") is None
    assert dal.get("nope", default=42) == 42
    assert dal.get_entry("nope") is None


def test_set_returns_entry_with_audit_fields(dal: ConfigDAL) -> None:
    """set() returns the stored row: version 1, description, author and timestamps."""
    entry = dal.set("tone", "friendly", description="Default response tone", updated_by="ops-anna")
    assert isinstance(entry, ConfigEntry)
    assert (entry.key, entry.value, entry.data_type) == ("tone", "friendly", "str")
    assert entry.description == "Default response tone"
    assert entry.version == 1
    assert entry.updated_by == "ops-anna"
    assert entry.created_at == entry.updated_at
    assert entry.created_at.tzinfo is not None
    assert dal.get_entry("tone") == entry


def test_update_bumps_version_and_keeps_type_and_description(dal: ConfigDAL) -> None:
    """Each change adds one to the version; omitted type and description are kept."""
    dal.set("threshold", 0.5, description="Detection threshold", updated_by="a")
    second = dal.set("threshold", 0.75, updated_by="b")
    third = dal.set("threshold", 1, updated_by="c")  # an int on a float key stays a float
    assert (second.version, third.version) == (2, 3)
    assert third.data_type == "float"
    assert third.value == 1.0
    assert isinstance(dal.get("threshold"), float)
    assert third.description == "Detection threshold"
    assert third.updated_by == "c"
    assert third.updated_at >= second.updated_at >= third.created_at


def test_explicit_data_type_change_is_allowed(dal: ConfigDAL) -> None:
    """Passing data_type on update changes the key's type."""
    dal.set("mode", "fast", updated_by="a")
    entry = dal.set("mode", {"speed": 3}, data_type="json", updated_by="a")
    assert entry.data_type == "json"
    assert dal.get("mode") == {"speed": 3}


def test_value_not_matching_stored_type_is_refused_and_nothing_changes(
    dal: ConfigDAL,
) -> None:
    """A str key given an int without a new data_type is refused by the database."""
    dal.set("language", "en", updated_by="a")
    with pytest.raises(InvalidConfigurationError, match="stored data_type"):
        dal.set("language", 5, updated_by="a")
    entry = dal.get_entry("language")
    assert entry is not None
    assert (entry.value, entry.version) == ("en", 1)


@pytest.mark.parametrize(
    ("value", "data_type"),
    [
        (True, "int"),  # bool is not an int
        ("5", "int"),
        (1.5, "int"),
        (math.nan, "float"),
        (math.inf, "json"),
        ({1: "a"}, "json"),  # non-string object key
        ((1, 2), "json"),  # a tuple is not JSON
        (b"x", "json"),
        ("a\x00b", "str"),
        ("x", "yaml"),
    ],
)
def test_invalid_values_write_nothing(dal: ConfigDAL, dsn: str, value: Any, data_type: str) -> None:
    """Bad values raise InvalidConfigurationError and leave the table untouched."""
    with pytest.raises(InvalidConfigurationError):
        dal.set("k", value, data_type=data_type, updated_by="a")
    assert _count_rows(dsn) == 0


@pytest.mark.parametrize("key", ["", "has space", "tab\tkey", "x" * 256, "nul\x00", "\u2028"])
def test_invalid_keys_are_refused_everywhere(dal: ConfigDAL, dsn: str, key: str) -> None:
    """Every operation refuses an invalid key before any SQL runs."""
    with pytest.raises(InvalidConfigurationError):
        dal.set(key, 1, updated_by="a")
    with pytest.raises(InvalidConfigurationError):
        dal.get(key)
    with pytest.raises(InvalidConfigurationError):
        dal.delete(key, deleted_by="a")
    assert _count_rows(dsn) == 0


@pytest.mark.parametrize("actor", ["", "   ", None, "x" * 256, "line\nbreak"])
def test_missing_or_bad_actor_is_refused(dal: ConfigDAL, dsn: str, actor: Any) -> None:
    """An empty or unprintable updated_by is refused; nothing is written."""
    with pytest.raises(InvalidConfigurationError):
        dal.set("k", 1, updated_by=actor)
    assert _count_rows(dsn) == 0


def test_database_constraints_back_up_the_python_checks(dsn: str) -> None:
    """Raw SQL that breaks the rules is refused by the table's own constraints."""
    bad_rows = [
        ("bad key", '"x"', "str"),
        ("k1", "5", "str"),
        ("k2", "1.5", "int"),
        ("k3", '"x"', "yaml"),
        ("k4", '"x"', "bool"),
    ]
    with psycopg.connect(dsn, autocommit=True) as conn:
        for key, value, data_type in bad_rows:
            with pytest.raises(psycopg.errors.CheckViolation):
                conn.execute(
                    "INSERT INTO amira_config.configurations (key, value, data_type, updated_by)"
                    " VALUES (%s, %s::jsonb, %s, 'dba')",
                    (key, value, data_type),
                )
        # A blank author from raw SQL is not stored blank: the trigger records the
        # database user who ran it.
        row = conn.execute(
            "INSERT INTO amira_config.configurations (key, value, data_type, updated_by)"
            " VALUES ('k5', '1', 'int', ' ') RETURNING updated_by, session_user"
        ).fetchone()
        assert row is not None
        assert row[0] == row[1]


def test_delete_reports_whether_a_row_went(dal: ConfigDAL) -> None:
    """delete() is True for an existing key, False afterwards."""
    dal.set("obsolete", 1, updated_by="a")
    assert dal.delete("obsolete", deleted_by="a") is True
    assert dal.get("obsolete") is None
    assert dal.delete("obsolete", deleted_by="a") is False


def test_list_by_prefix_with_keyset_pagination(dal: ConfigDAL) -> None:
    """list() returns keys with the prefix, ordered, a page at a time."""
    for name in ["svc.b", "svc.a", "svc.c", "other.x", "svc.d", "svcx"]:
        dal.set(name, name, updated_by="a")
    first = dal.list("svc.", limit=2)
    assert [e.key for e in first] == ["svc.a", "svc.b"]
    second = dal.list("svc.", after=first[-1].key, limit=2)
    assert [e.key for e in second] == ["svc.c", "svc.d"]
    assert dal.list("svc.", after=second[-1].key, limit=2) == []
    assert [e.key for e in dal.list()] == sorted(
        ["svc.b", "svc.a", "svc.c", "other.x", "svc.d", "svcx"]
    )


def test_list_prefix_is_literal_not_a_pattern(dal: ConfigDAL) -> None:
    """LIKE wildcards in a prefix match only themselves."""
    dal.set("a%b", 1, updated_by="a")
    dal.set("axb", 2, updated_by="a")
    dal.set("a_c", 3, updated_by="a")
    assert [e.key for e in dal.list("a%")] == ["a%b"]
    assert [e.key for e in dal.list("a_")] == ["a_c"]


@pytest.mark.parametrize("limit", [0, -1, 1001])
def test_list_refuses_bad_limits(dal: ConfigDAL, limit: int) -> None:
    """limit must be between 1 and 1000."""
    with pytest.raises(InvalidConfigurationError):
        dal.list(limit=limit)


def test_seed_style_typed_values(dal: ConfigDAL) -> None:
    """Each data type stores and returns its natural Python type."""
    values: dict[str, tuple[Any, str]] = {
        "s": ("en-US", "str"),
        "i": (10**30, "int"),
        "f": (0.1, "float"),
        "b": (False, "bool"),
        "j": ({"nested": [1, 2.5, None, "ü"], "ok": True}, "json"),
    }
    for key, (value, data_type) in values.items():
        dal.set(key, value, data_type=data_type, updated_by="a")
    for key, (value, _) in values.items():
        got = dal.get(key)
        assert got == value
        assert type(got) is type(value)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**60), max_value=10**60)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.text(
                alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                max_size=8,
            ),
            children,
            max_size=4,
        )
    ),
    max_leaves=12,
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(value=json_values)
def test_any_json_value_round_trips_exactly(dal: ConfigDAL, value: Any) -> None:
    """Whatever JSON value goes in comes out equal, with the same Python types."""
    dal.set("roundtrip", value, data_type="json", updated_by="hypothesis")
    got = dal.get("roundtrip")
    assert got == value
    assert _types(got) == _types(value)


def _types(value: Any) -> Any:
    if isinstance(value, list):
        return [_types(v) for v in value]
    if isinstance(value, dict):
        return {k: _types(v) for k, v in value.items()}
    return type(value)


def test_dal_is_a_context_manager_and_refuses_use_after_close(dsn: str) -> None:
    """Leaving the with block closes the pool; later calls fail clearly."""
    with ConfigDAL(dsn) as store:
        store.set("k", 1, updated_by="a")
    from amira_data_access import DatabaseConnectionError

    with pytest.raises(DatabaseConnectionError):
        store.get("k")


def test_target_describes_server_without_password(dal: ConfigDAL, dsn: str) -> None:
    """target names host, port, database and user, in that order, and nothing else."""
    parts = conninfo_to_dict(dsn)
    assert dal.target == (
        f"host={parts['host']} port={parts['port']} dbname={parts['dbname']} user={parts['user']}"
    )
    assert "password" not in dal.target
