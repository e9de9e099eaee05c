"""JSON Schemas per key or prefix, and typed reads: the same on every store.

A schema attached to a key or prefix refuses every write through the store that
it does not accept (set, set_default, set_many, rollback, in a transaction too),
naming the key, the schema and the JSON path, and nothing is written; attaching
one that stored values violate is refused, listing them, unless forced.
``get_as`` returns the type asked for, or raises.
"""

from __future__ import annotations

from typing import Any

import pytest

from amira_data_access import (
    ConfigItem,
    InvalidConfigurationError,
    Keyring,
    MissingConfigurationError,
    SchemaViolationError,
    WrongTypeError,
)

from .conftest import Subject

TURNS = {"type": "integer", "minimum": 1, "maximum": 50}
LIMITS = {
    "type": "object",
    "properties": {
        "tokens": {"type": "integer"},
        "models": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["tokens"],
}


def test_a_key_schema_refuses_a_bad_value_and_writes_nothing(subject: Subject) -> None:
    store = subject.store
    store.set("amira.chat.max_turns", 10, updated_by="ops")
    entry = store.set_schema("amira.chat.max_turns", TURNS, updated_by="ops")
    assert (entry.target, entry.kind, entry.schema, entry.version) == (
        "amira.chat.max_turns",
        "key",
        TURNS,
        1,
    )
    with pytest.raises(SchemaViolationError) as refused:
        store.set("amira.chat.max_turns", 500, updated_by="ops")
    message = str(refused.value)
    assert "'amira.chat.max_turns'" in message
    assert "key 'amira.chat.max_turns'" in message  # the schema
    assert "at $" in message  # the JSON path
    assert "500" not in message  # rules from the schema, never the value
    assert isinstance(refused.value, InvalidConfigurationError)
    [violation] = refused.value.violations
    assert (violation.key, violation.schema, violation.path) == (
        "amira.chat.max_turns",
        "key 'amira.chat.max_turns'",
        "$",
    )
    assert store.get("amira.chat.max_turns") == 10
    assert [r.version for r in store.history("amira.chat.max_turns")] == [1]
    assert store.set("amira.chat.max_turns", 20, updated_by="ops").value == 20


def test_a_prefix_schema_names_the_failing_json_path(subject: Subject) -> None:
    store = subject.store
    store.set_schema("amira.llm.", LIMITS, updated_by="ops")
    assert store.get_schema("amira.llm.") is not None
    assert store.get_schema("amira.llm.", prefix=False) is None
    with pytest.raises(SchemaViolationError) as refused:
        store.set("amira.llm.limits", {"tokens": 5, "models": ["a", 7]}, updated_by="ops")
    [violation] = refused.value.violations
    assert violation.path == "$.models[1]"
    assert violation.schema == "prefix 'amira.llm.'"
    # Keys outside the prefix are not constrained.
    store.set("amira.other", "anything", updated_by="ops")
    store.set("amira.llm.limits", {"tokens": 5, "models": ["a"]}, updated_by="ops")


def test_every_write_path_is_checked(subject: Subject) -> None:
    store = subject.store
    store.set_schema("amira.chat.", {"type": "integer"}, updated_by="ops")
    with pytest.raises(SchemaViolationError):
        store.set_default("amira.chat.a", "text", updated_by="ops")
    with pytest.raises(SchemaViolationError) as refused:
        store.set_many(
            {"amira.chat.b": 1, "amira.chat.c": "x", "amira.chat.d": "y"}, updated_by="ops"
        )
    assert [v.key for v in refused.value.violations] == ["amira.chat.c", "amira.chat.d"]
    with pytest.raises(SchemaViolationError):
        store.set_many([ConfigItem("amira.chat.e", "z")], updated_by="ops")

    def in_a_transaction() -> None:
        with subject.transaction() as tx:
            tx.set("amira.chat.f", 1, updated_by="ops")
            tx.set("amira.chat.g", "no", updated_by="ops")

    with pytest.raises(SchemaViolationError):
        in_a_transaction()
    assert store.list("amira.chat.") == []
    store.set("amira.chat.h", 2, expected_version=0, updated_by="ops")
    with pytest.raises(SchemaViolationError):
        store.set("amira.chat.h", "x", expected_version=1, updated_by="ops")
    assert store.get("amira.chat.h") == 2


def test_a_rollback_to_a_value_the_schema_now_refuses_is_refused(subject: Subject) -> None:
    store = subject.store
    store.set("amira.chat.tone", "loud", updated_by="ops")
    store.set("amira.chat.tone", "formal", updated_by="ops")
    store.set_schema("amira.chat.tone", {"enum": ["formal", "friendly"]}, updated_by="ops")
    with pytest.raises(SchemaViolationError, match="to version 1"):
        store.rollback("amira.chat.tone", to_version=1, updated_by="ops")
    assert store.get_entry("amira.chat.tone").version == 2  # type: ignore[union-attr]
    store.set("amira.chat.tone", "friendly", updated_by="ops")
    assert store.rollback("amira.chat.tone", to_version=2, updated_by="ops").value == "formal"


def test_a_schema_that_stored_values_violate_is_refused_listing_them(subject: Subject) -> None:
    store = subject.store
    store.set_many({"amira.chat.a": 1, "amira.chat.b": "x", "amira.chat.c": "y"}, updated_by="ops")
    with pytest.raises(SchemaViolationError) as refused:
        store.set_schema("amira.chat.", {"type": "integer"}, updated_by="ops")
    assert [v.key for v in refused.value.violations] == ["amira.chat.b", "amira.chat.c"]
    assert "force" in str(refused.value)
    assert store.list_schemas() == []
    forced = store.set_schema("amira.chat.", {"type": "integer"}, updated_by="ops", force=True)
    assert [v.key for v in forced.violations] == ["amira.chat.b", "amira.chat.c"]
    assert [s.target for s in store.list_schemas()] == ["amira.chat."]
    assert [v.key for v in store.check_schemas()] == ["amira.chat.b", "amira.chat.c"]
    assert store.check_schemas("amira.chat.c") == store.check_schemas()[1:]


def test_changing_and_deleting_a_schema(subject: Subject) -> None:
    store = subject.store
    store.set_schema("amira.x", {"type": "string"}, updated_by="ops", description="text")
    with pytest.raises(SchemaViolationError):
        store.set("amira.x", 1, updated_by="ops")
    changed = store.set_schema("amira.x", {"type": "integer"}, updated_by="ops2")
    assert (changed.version, changed.description, changed.updated_by) == (2, "text", "ops2")
    store.set("amira.x", 1, updated_by="ops")  # the new schema, seen at once
    assert store.delete_schema("amira.x", deleted_by="ops") is True
    assert store.delete_schema("amira.x", deleted_by="ops") is False
    store.set("amira.x", "free again", data_type="str", updated_by="ops")
    again = store.set_schema("amira.x", True, updated_by="ops")
    assert again.version == 4  # versions continue across delete and re-create


def test_a_schema_change_from_another_client_is_enforced(subject: Subject) -> None:
    store = subject.store
    store.set("amira.y", 1, updated_by="ops")  # the store has read the (empty) schemas
    subject.other.set_schema("amira.y", {"type": "integer"}, updated_by="ops")
    with pytest.raises(SchemaViolationError):
        store.set("amira.y", "text", data_type="str", updated_by="ops")
    subject.other.delete_schema("amira.y", deleted_by="ops")
    store.set("amira.y", "text", data_type="str", updated_by="ops")


@pytest.mark.parametrize(
    "schema",
    [
        pytest.param([], id="not-an-object"),
        pytest.param({"type": "nonsense"}, id="unknown-type"),
        pytest.param({"minimum": "one"}, id="bad-keyword-value"),
        pytest.param({"x": float("nan")}, id="not-json"),
    ],
)
def test_an_invalid_schema_is_refused(subject: Subject, schema: Any) -> None:
    with pytest.raises(InvalidConfigurationError):
        subject.store.set_schema("amira.z", schema, updated_by="ops")
    assert subject.store.list_schemas() == []


def test_typed_reads(subject: Subject) -> None:
    store = subject.store
    store.set_many(
        {"n": 3, "f": 0.5, "s": "3", "b": True, "j": {"a": [1, 2]}},
        updated_by="ops",
    )
    store.set("null", None, data_type="json", updated_by="ops")
    assert store.get_as("n", int) == 3
    assert store.get_as("f", float) == 0.5
    assert store.get_as("n", float) == 3  # an int is a float
    assert store.get_as("j", dict[str, list[int]]) == {"a": [1, 2]}
    for key, wanted in [("s", int), ("b", int), ("n", bool), ("null", int), ("n", str)]:
        with pytest.raises(WrongTypeError) as wrong:
            store.get_as(key, wanted)
        assert repr(key) in str(wrong.value)
    assert store.get_as("null", int | None) is None  # type: ignore[arg-type]
    with pytest.raises(MissingConfigurationError):
        store.get_as("absent", int)
    assert store.get_as("absent", int, default=7) == 7
    store.register_defaults({"registered": 9})
    assert store.get_as("registered", int) == 9


def test_a_rolled_back_schema_is_forgotten(subject: Subject) -> None:
    """A write inside the transaction read its schema; once rolled back, neither it nor the
    revision it had may stand for the schemas a later change commits."""
    store = subject.store

    def rolled_back() -> None:
        with subject.transaction() as tx:
            tx.set_schema("amira.r", {"type": "string"}, updated_by="ops")
            tx.set("amira.r", "checked against the schema", updated_by="ops")
            raise RuntimeError("roll back")

    with pytest.raises(RuntimeError):
        rolled_back()
    assert store.get_schema("amira.r") is None
    store.set("amira.r", 1, updated_by="ops")  # the rolled-back schema is not enforced
    subject.other.set_schema("amira.r", {"type": "integer"}, updated_by="ops")
    with pytest.raises(SchemaViolationError):
        store.set("amira.r", 2.5, data_type="float", updated_by="ops")


@pytest.mark.store_options(keyring=Keyring({"k1": bytes(range(32))}, active="k1"))
def test_a_secret_is_judged_by_its_plaintext_and_never_shown(subject: Subject) -> None:
    store = subject.store
    store.set_schema("amira.api.token", {"type": "string", "pattern": "^sk-"}, updated_by="ops")
    store.set("amira.api.token", "sk-good", data_type="secret", updated_by="ops")
    with pytest.raises(SchemaViolationError) as refused:
        store.set("amira.api.token", "hunter2", data_type="secret", updated_by="ops")
    assert "hunter2" not in str(refused.value)
    assert store.get("amira.api.token") == "sk-good"
    assert store.check_schemas() == []  # the stored secret, opened, satisfies it
    store.set("amira.api.token", "sk-newer", data_type="secret", updated_by="ops")
    store.rollback("amira.api.token", to_version=1, updated_by="ops")  # judged opened too
