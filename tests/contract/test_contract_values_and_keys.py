"""Keys a person can tell apart, and values every reader can decode: the same on every store.

A key follows the key grammar (NFC, no invisible character, the letters of one
script; see README "Values and types"); a value is at most ``max_bytes`` of
JSON text and ``max_depth`` levels deep (:class:`~amira_data_access.ValueLimits`,
1 MiB and 64 by default). Both are refused before anything is sent, naming the
key, the limit and how far over it the value is; and the table's constraints
(mirrored by the in-memory twin) refuse what a store configured above them
lets through.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

import pytest

from amira_data_access import ConfigItem, InvalidConfigurationError, ValueLimits

from .conftest import Subject

T = TypeVar("T")
MiB = 1024 * 1024


def nested_lists(depth: int) -> Any:
    """``depth`` lists, each holding the next: ``[[[]]]`` is 3 deep."""
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


def at_stack_depth(frames: int, call: Callable[[], T]) -> T:
    """``call()`` made from ``frames`` more frames down the call stack."""
    if frames <= 0:
        return call()
    return at_stack_depth(frames - 1, call)


LOOKALIKE_KEYS = [
    pytest.param("amira.chat.t\u043ene", id="cyrillic-o-among-latin"),
    pytest.param("amira.chat.caf" + "e\u0301", id="not-nfc"),
    pytest.param("amira.chat\u200f.tone", id="right-to-left-mark"),
    pytest.param("amira.chat.\u202etone", id="right-to-left-override"),
    pytest.param("amira.chat.to\u00adne", id="soft-hyphen"),
    pytest.param("amira.chat.to\u200cne", id="zero-width-non-joiner"),
    pytest.param("amira.chat.to\u2060ne", id="word-joiner"),
    pytest.param("amira.chat.\u2066tone", id="left-to-right-isolate"),
]


@pytest.mark.parametrize("key", LOOKALIKE_KEYS)
def test_keys_a_person_cannot_tell_apart_are_refused(subject: Subject, key: str) -> None:
    """Writes and reads of a key that looks like another are refused: nothing is stored, and
    a read does not quietly answer the default of a key nobody wrote."""
    store = subject.store
    store.set("amira.chat.tone", "formal", updated_by="ops")
    attempts = [
        lambda: store.set(key, "casual", updated_by="ops"),
        lambda: store.set_default(key, "casual", updated_by="ops"),
        lambda: store.set_many([ConfigItem(key, "casual")], updated_by="ops"),
        lambda: store.get(key, default="casual"),
        lambda: store.get_entry(key),
        lambda: store.get_many([key]),
        lambda: store.list(key),
    ]
    for attempt in attempts:
        with pytest.raises(InvalidConfigurationError, match=r"^(key|prefix) "):
            attempt()
    assert [e.key for e in store.list()] == ["amira.chat.tone"]


def test_the_message_names_the_intruding_character_and_the_scripts(subject: Subject) -> None:
    """What the refusal says is part of the contract: people read it to fix the key."""
    with pytest.raises(InvalidConfigurationError) as refused:
        subject.store.set("amira.chat.t\u043ene", 1, updated_by="ops")
    assert str(refused.value) == (
        "key 'amira.chat.t\u043ene' mixes letters of two scripts, Latin and Cyrillic "
        "(U+043E CYRILLIC SMALL LETTER O at position 12): "
        "a key's letters must all be of one script"
    )


def test_keys_of_one_script_are_stored_and_listed_in_code_point_order(subject: Subject) -> None:
    """Single-script keys of each supported script round-trip, in byte (code point) order."""
    store = subject.store
    keys = ["amira.caf\u00e9", "\u043a\u043b\u044e\u0447", "\u8a2d\u5b9a.\u30ad\u30fc", "\uac12"]
    for key in keys:
        store.set(key, key, updated_by="ops")
    assert [(e.key, e.value) for e in store.list()] == [(k, k) for k in sorted(keys)]


def test_a_value_nested_deeper_than_the_limit_is_refused(subject: Subject) -> None:
    """65 levels (and the 900 once accepted) are refused, naming key, limit and excess."""
    store = subject.store
    for depth, over in [(65, 1), (900, 836)]:
        expected = (
            rf"^config\.set 'deep': value is nested {depth} levels deep, "
            rf"over the limit of 64 by {over}"
        )
        with pytest.raises(InvalidConfigurationError, match=expected):
            store.set("deep", nested_lists(depth), updated_by="ops")
    with pytest.raises(InvalidConfigurationError, match=r"^config\.set 'deep': value is nested 65"):
        store.set_many({"deep": nested_lists(65)}, updated_by="ops")
    with pytest.raises(InvalidConfigurationError, match=r"^config\.set 'deep': value is nested 65"):
        store.set_default("deep", {"a": nested_lists(64)}, updated_by="ops")
    assert store.list() == []


def test_a_value_at_the_depth_limit_reads_back_from_a_deep_call_stack(subject: Subject) -> None:
    """What the store accepts, it can give back to a caller already 200 frames deep."""
    store = subject.store
    deepest = {"a": nested_lists(63)}  # 64 levels: the object and 63 lists
    store.set("deep", deepest, updated_by="ops")
    assert at_stack_depth(200, lambda: store.get("deep")) == deepest
    assert at_stack_depth(200, lambda: store.get_many(["deep"])) == {"deep": deepest}
    assert at_stack_depth(200, lambda: store.history("deep"))[0].value == deepest


def test_a_value_larger_than_the_limit_is_refused(subject: Subject) -> None:
    """1 MiB of JSON text (as PostgreSQL prints it) is the default: one byte more is refused."""
    store = subject.store
    at_limit = "x" * (MiB - 2)  # and its two quotes
    assert store.set("big", at_limit, updated_by="ops").value == at_limit
    with pytest.raises(
        InvalidConfigurationError,
        match=r"^config\.set 'big': value is 1048577 bytes of JSON text, "
        r"over the limit of 1048576 by 1",
    ):
        store.set("big", at_limit + "x", updated_by="ops")
    with pytest.raises(
        InvalidConfigurationError, match=r"is at least 52428802 bytes .* by at least 51380226$"
    ):
        store.set("big", "x" * (50 * MiB), updated_by="ops")  # the 50 MB once accepted
    with pytest.raises(InvalidConfigurationError, match=r"is at least \d+ bytes .* by at least"):
        store.set("big", ["x" * MiB] * 50, updated_by="ops")
    assert [r.version for r in store.history("big")] == [1]


@pytest.mark.store_options(limits=ValueLimits(max_bytes=32, max_depth=2))
def test_a_store_takes_its_own_limits(subject: Subject) -> None:
    """A store configured with smaller limits refuses at those, and so do its defaults."""
    store = subject.store
    store.set("k", {"a": [1, 2]}, updated_by="ops")  # 2 deep
    store.set("s", "x" * 30, updated_by="ops")  # 32 bytes
    with pytest.raises(InvalidConfigurationError, match="3 levels deep, over the limit of 2"):
        store.set("k", {"a": [[1]]}, updated_by="ops")
    with pytest.raises(InvalidConfigurationError, match=r"33 bytes .* over the limit of 32 by 1"):
        store.set("s", "x" * 31, updated_by="ops")
    with pytest.raises(InvalidConfigurationError, match="over the limit of 2"):
        store.register_defaults({"d": [[[]]]})  # type: ignore[attr-defined]
    assert [e.version for e in store.list()] == [1, 1]


@pytest.mark.store_options(limits=ValueLimits(max_bytes=4 * MiB, max_depth=100))
def test_the_table_refuses_what_a_store_configured_above_it_lets_through(
    subject: Subject,
) -> None:
    """The table's ceiling (1 MiB, 64 levels unless the DBA changed it) bounds every store."""
    store = subject.store
    for value, constraint in [
        ("x" * (2 * MiB), "larger than the table allows"),
        (nested_lists(80), "nested deeper than the table allows"),
    ]:
        with pytest.raises(InvalidConfigurationError, match=re.escape(constraint)):
            store.set("k", value, updated_by="ops")
    assert store.list() == []
