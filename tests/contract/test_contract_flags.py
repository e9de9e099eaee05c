"""Feature flags on every store: data_type "flag", refused at write, evaluate / is_enabled."""

from __future__ import annotations

from typing import Any

import pytest

from amira_data_access import FlagEvaluation, InvalidConfigurationError
from amira_data_access.flags import ErrorCode, Reason

from .conftest import Subject

CHECKOUT: dict[str, Any] = {
    "enabled": True,
    "variants": {"on": True, "off": False},
    "defaultVariant": "off",
    "rules": [
        {
            "if": [{"attribute": "email", "op": "ends_with", "value": "@amira.example"}],
            "variant": "on",
        }
    ],
    "rollout": [{"variant": "on", "weight": 50}, {"variant": "off", "weight": 50}],
}


def _summary(result: FlagEvaluation) -> tuple[Any, str | None, Reason, int | None]:
    return (result.value, result.variant, result.reason, result.version)


def test_a_flag_is_stored_and_evaluated(subject: Subject) -> None:
    store = subject.store
    entry = store.set("checkout.new-flow", CHECKOUT, data_type="flag", updated_by="ops")
    assert (entry.data_type, entry.value) == ("flag", CHECKOUT)
    staff = store.evaluate("checkout.new-flow", {"targetingKey": "u1", "email": "a@amira.example"})
    assert _summary(staff) == (True, "on", Reason.TARGETING_MATCH, 1)
    split = store.evaluate("checkout.new-flow", {"targetingKey": "u1"})
    assert split.reason is Reason.SPLIT
    nobody = store.evaluate("checkout.new-flow", {})
    assert _summary(nobody) == (False, "off", Reason.DEFAULT, 1)
    assert store.is_enabled("checkout.new-flow", {"email": "a@amira.example"}) is True
    assert store.is_enabled("checkout.new-flow", {"email": "a@mail.example"}) is False


def test_every_store_splits_alike(subject: Subject) -> None:
    """The same users get the same variants on every store (the bucketing is the library's)."""
    subject.store.set("checkout.new-flow", CHECKOUT, data_type="flag", updated_by="ops")
    on = [
        key
        for key in (f"user-{n}" for n in range(40))
        if subject.store.is_enabled("checkout.new-flow", {"targetingKey": key})
    ]
    # Pinned (a change of bucketing would reshuffle users): what flagd gives them too
    # (tests/unit/test_flagd_equivalence.py).
    assert on == [
        "user-1", "user-3", "user-5", "user-6", "user-7", "user-10", "user-16", "user-18",
        "user-20", "user-22", "user-23", "user-26", "user-28", "user-31", "user-32", "user-35",
        "user-38",
    ]  # fmt: skip


def test_a_change_is_evaluated_at_once_with_its_version(subject: Subject) -> None:
    store = subject.store
    store.set("checkout.new-flow", CHECKOUT, data_type="flag", updated_by="ops")
    assert store.evaluate("checkout.new-flow", {}).version == 1
    store.set(
        "checkout.new-flow", {**CHECKOUT, "enabled": False}, data_type="flag", updated_by="ops"
    )
    disabled = store.evaluate("checkout.new-flow", {"email": "a@amira.example"}, False)
    assert _summary(disabled) == (False, None, Reason.DISABLED, 2)
    # Another client's change reaches the cached stores through the feed (read-your-writes
    # aside): the version tells which definition answered.
    subject.other.set("checkout.new-flow", CHECKOUT, data_type="flag", updated_by="ops")
    assert store.get_entry("checkout.new-flow") is not None


@pytest.mark.parametrize(
    "document",
    [
        {"enabled": True},
        {**CHECKOUT, "defaultVariant": "maybe"},
        {
            **CHECKOUT,
            "rules": [{"if": [{"attribute": "a", "op": "like", "value": 1}], "variant": "on"}],
        },
        ["not", "an", "object"],
    ],
)
def test_an_invalid_flag_is_refused_at_write(subject: Subject, document: Any) -> None:
    with pytest.raises(InvalidConfigurationError, match=r"checkout\.new-flow"):
        subject.store.set("checkout.new-flow", document, data_type="flag", updated_by="ops")
    assert subject.store.get_entry("checkout.new-flow") is None
    with pytest.raises(InvalidConfigurationError):
        subject.store.set_default("checkout.new-flow", document, data_type="flag", updated_by="o")
    assert subject.store.list() == []


def test_replacing_a_flag_without_its_type_still_needs_a_flag_shape(subject: Subject) -> None:
    """The stored type is kept on update, and the table's CHECK (the fake's twin) holds."""
    subject.store.set("checkout.new-flow", CHECKOUT, data_type="flag", updated_by="ops")
    with pytest.raises(InvalidConfigurationError, match="flag"):
        subject.store.set("checkout.new-flow", {"on": True}, updated_by="ops")
    assert subject.store.get("checkout.new-flow") == CHECKOUT


def test_missing_and_non_flag_keys_give_the_default(subject: Subject) -> None:
    store = subject.store
    missing = store.evaluate("nope", {"targetingKey": "u1"}, "dflt")
    assert (missing.value, missing.reason, missing.error_code, missing.version) == (
        "dflt",
        Reason.ERROR,
        ErrorCode.FLAG_NOT_FOUND,
        None,
    )
    store.set("legacy.toggle", True, updated_by="ops")
    legacy = store.evaluate("legacy.toggle", {}, False)
    assert (legacy.value, legacy.error_code) == (False, ErrorCode.TYPE_MISMATCH)
    assert store.is_enabled("legacy.toggle") is False
    assert store.is_enabled("nope") is False


def test_asking_another_type_gives_the_default(subject: Subject) -> None:
    tone = {"enabled": True, "variants": {"a": "friendly", "b": "formal"}, "defaultVariant": "b"}
    subject.store.set("chat.tone", tone, data_type="flag", updated_by="ops")
    assert subject.store.evaluate("chat.tone").value == "formal"
    mismatch = subject.store.evaluate("chat.tone", None, True)
    assert (mismatch.value, mismatch.error_code) == (True, ErrorCode.TYPE_MISMATCH)
    assert subject.store.is_enabled("chat.tone") is False


def test_a_context_must_be_a_mapping(subject: Subject) -> None:
    with pytest.raises(InvalidConfigurationError, match="mapping"):
        subject.store.evaluate("checkout.new-flow", ["u1"])  # type: ignore[arg-type]


def test_evaluate_in_a_transaction_sees_its_own_write(subject: Subject) -> None:
    with subject.transaction() as tx:
        tx.set("checkout.new-flow", CHECKOUT, data_type="flag", updated_by="ops")
        assert tx.is_enabled("checkout.new-flow", {"email": "x@amira.example"}) is True
    assert subject.store.is_enabled("checkout.new-flow", {"email": "x@amira.example"}) is True
