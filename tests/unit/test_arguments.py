"""Unit tests for the argument checks and parameter builders every operation shares."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from psycopg.types.json import Jsonb

from amira_data_access.codec import decode_value
from amira_data_access.core import operations as ops
from amira_data_access.core.arguments import (
    MAX_LIST_LIMIT,
    list_params,
    prefix_end,
    write_params,
)
from amira_data_access.core.running import Context
from amira_data_access.core.statements import Statement
from amira_data_access.entries import ConfigEntry, entry_from_row
from amira_data_access.errors import InvalidConfigurationError


def bound_json(params: dict[str, Any]) -> str:
    """The JSON text a Jsonb parameter will send to the server."""
    value = params["value"]
    assert isinstance(value, Jsonb)
    assert value.dumps is not None
    text = value.dumps(value.obj)
    assert isinstance(text, str)
    return text


def test_write_params_without_data_type() -> None:
    """Without data_type the parameter is None and the inferred type is given separately."""
    params = write_params("app.retries", 3, data_type=None, description=None, updated_by="alice")
    assert bound_json(params) == "3"
    assert {name: value for name, value in params.items() if name != "value"} == {
        "key": "app.retries",
        "data_type": None,
        "inferred_type": "int",
        "description": None,
        "updated_by": "alice",
    }


def test_write_params_with_data_type() -> None:
    """An explicit data_type is passed on, and an int for a float is sent as a float."""
    params = write_params(
        "app.ratio", 3, data_type="float", description="A ratio.", updated_by="bot"
    )
    assert params["data_type"] == "float"
    assert params["inferred_type"] == "float"
    assert params["description"] == "A ratio."
    assert bound_json(params) == "3.0"


def test_write_params_sends_json_text_unchanged() -> None:
    """The JSON text from the codec is bound as is, not encoded a second time."""
    params = write_params(
        "app.doc", {"big": 1e300, "s": "é"}, data_type=None, description=None, updated_by="a"
    )
    assert params["inferred_type"] == "json"
    assert bound_json(params) == '{"big":1' + "0" * 300 + '.0,"s":"é"}'


def test_write_params_bool_is_not_int() -> None:
    """True is inferred as bool and refused for an int setting."""
    params = write_params("flag", True, data_type=None, description=None, updated_by="a")
    assert params["inferred_type"] == "bool"
    with pytest.raises(InvalidConfigurationError):
        write_params("flag", True, data_type="int", description=None, updated_by="a")


@pytest.mark.parametrize(
    ("key", "value", "data_type", "description", "updated_by"),
    [
        ("", 1, None, None, "alice"),
        ("a b", 1, None, None, "alice"),
        (42, 1, None, None, "alice"),
        ("k", 1, None, None, ""),
        ("k", 1, None, None, "  "),
        ("k", 1, None, None, None),
        ("k", 1, None, 5, "alice"),
        ("k", 1, None, "bad\x00", "alice"),
        ("k", "1", "int", None, "alice"),
        ("k", 1, "integer", None, "alice"),
        ("k", float("nan"), None, None, "alice"),
        ("k", {1: 2}, None, None, "alice"),
    ],
)
def test_write_params_refuses_invalid_input(
    key: Any, value: object, data_type: Any, description: Any, updated_by: Any
) -> None:
    """Bad key, actor, description, value or data type is refused before any I/O."""
    with pytest.raises(InvalidConfigurationError):
        write_params(
            key, value, data_type=data_type, description=description, updated_by=updated_by
        )


def _first_statement(steps: Any) -> Statement[Any]:
    step = next(steps)
    steps.close()
    assert isinstance(step, Statement)
    return step


def test_delete_sends_the_key_and_the_actor() -> None:
    """A valid delete asks for delete_configuration with the key, the actor and the reason."""
    steps = ops.delete(
        Context(), "app.retries", deleted_by="alice", reason=None, expected_version=None
    )
    step = _first_statement(steps)
    assert step.query == "delete_configuration"
    assert step.params == {"key": "app.retries", "deleted_by": "alice", "reason": None}
    assert not step.read_only
    assert not step.resend_safe


@pytest.mark.parametrize(("key", "actor"), [("", "alice"), ("a\nb", "alice"), (None, "alice")])
def test_delete_refuses_bad_key_before_any_statement(key: Any, actor: str) -> None:
    """An invalid key is refused before the operation asks for anything."""
    steps = ops.delete(Context(), key, deleted_by=actor, reason=None, expected_version=None)
    with pytest.raises(InvalidConfigurationError, match="key"):
        next(steps)


@pytest.mark.parametrize("actor", ["", "   ", None, "x" * 256])
def test_delete_refuses_bad_actor(actor: Any) -> None:
    """An invalid deleted_by is refused, naming the deleted_by field."""
    steps = ops.delete(Context(), "k", deleted_by=actor, reason=None, expected_version=None)
    with pytest.raises(InvalidConfigurationError, match="deleted_by"):
        next(steps)


@pytest.mark.parametrize(
    ("prefix", "after", "limit"),
    [("", None, 1), ("app.", "app.a", 100), ("a%_", None, MAX_LIST_LIMIT)],
)
def test_list_params_valid(prefix: str, after: str | None, limit: int) -> None:
    """Valid listing arguments are returned as the query parameters, with the prefix's end."""
    assert list_params(prefix, after, limit) == {
        "prefix": prefix,
        "prefix_end": prefix_end(prefix),
        "after": after,
        "limit": limit,
    }


@pytest.mark.parametrize(
    ("prefix", "end"),
    [
        ("amira.", "amira/"),
        ("a", "b"),
        ("a\U0010ffff", "b"),  # the last code point carries over
        ("x\ud7ff", "x\ue000"),  # surrogates are skipped: no text holds one
        ("é", "ê"),
    ],
)
def test_prefix_end_is_the_first_string_after_the_prefix(prefix: str, end: str) -> None:
    """Every key with the prefix sorts before prefix_end; prefix_end itself does not start so."""
    assert prefix_end(prefix) == end


def test_the_empty_prefix_ends_after_every_key() -> None:
    """No key (255 characters at most, each at most U+10FFFF) reaches the end of ''."""
    assert prefix_end("") > "\U0010ffff" * 255


def test_max_list_limit_is_1000() -> None:
    """The listing page size is capped at 1000."""
    assert MAX_LIST_LIMIT == 1000


@pytest.mark.parametrize("limit", [0, -1, 1001, True, False, "5", 5.0, None])
def test_list_params_refuses_bad_limit(limit: Any) -> None:
    """A limit that is not an int from 1 to 1000 (bools included) is refused."""
    with pytest.raises(InvalidConfigurationError, match="limit"):
        list_params("", None, limit)


@pytest.mark.parametrize("prefix", [None, 5, "x" * 256, "a\x00", "a b", "a\u200f"])
def test_list_params_refuses_bad_prefix(prefix: Any) -> None:
    """An invalid prefix is refused."""
    with pytest.raises(InvalidConfigurationError, match="prefix"):
        list_params(prefix, None, 10)


@pytest.mark.parametrize("after", ["", "a b", 5])
def test_list_params_refuses_bad_after(after: Any) -> None:
    """An `after` cursor that is not a valid key is refused."""
    with pytest.raises(InvalidConfigurationError, match="key"):
        list_params("", after, 10)


def test_decode_value() -> None:
    """A value is decoded according to its data type: an int stored in a float key is a float."""
    assert decode_value("x", "str") == "x"
    result = decode_value(3, "float")
    assert type(result) is float
    assert result == 3.0
    assert decode_value([1, {"a": None}], "json") == [1, {"a": None}]


def test_entry_from_row() -> None:
    """A database row becomes a frozen ConfigEntry with its value decoded."""
    created = datetime(2024, 1, 1, tzinfo=UTC)
    updated = datetime(2024, 1, 2, tzinfo=UTC)
    entry = entry_from_row(("app.ratio", 2, "float", "A ratio.", 3, created, updated, "alice"))
    assert entry == ConfigEntry(
        key="app.ratio",
        value=2.0,
        data_type="float",
        description="A ratio.",
        version=3,
        created_at=created,
        updated_at=updated,
        updated_by="alice",
    )
    assert type(entry.value) is float
    with pytest.raises(AttributeError):
        entry.version = 4  # type: ignore[misc]
