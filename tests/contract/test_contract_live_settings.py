"""Typed, live settings (``bind_settings``) on every store: a validated, frozen model of the keys
under a prefix, swapped on each committed change, the last good one kept when a change does not
validate, and one report naming every bad key at start-up."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from amira_data_access import SettingsValidationError, validate_or_exit

from .conftest import Subject


class Limits(BaseModel):
    tokens: int = 1000
    models: list[str] = []


class ChatSettings(BaseModel):
    max_turns: int
    tone: str = "friendly"
    greeting_text: str = Field(default="Hello", alias="greeting")
    limits: Limits = Limits()


def wait(subject: Subject, event: threading.Event) -> None:
    """Wait for ``event`` (set by a callback), letting an async store's loop run meanwhile."""
    runner: asyncio.Runner | None = getattr(subject.store, "_runner", None)
    if runner is None:
        assert event.wait(30), "no callback"
    else:
        assert runner.run(asyncio.to_thread(event.wait, 30)), "no callback"


def bind(subject: Subject, model: type[Any], prefix: str, **options: Any) -> Any:
    return subject.store.bind_settings(model, prefix=prefix, **options)


def test_fields_from_keys_aliases_nested_models_and_defaults(subject: Subject) -> None:
    store = subject.store
    store.set_many(
        {
            "amira.chat.max_turns": 12,
            "amira.chat.greeting": "Hi",
            "amira.chat.limits": {"tokens": 5, "models": ["a"]},
            "amira.chat.limits.tokens": 7,  # a dotted key refines the json value
            "amira.other.max_turns": 99,  # another prefix
        },
        updated_by="ops",
    )
    chat = bind(subject, ChatSettings, "amira.chat.")
    current = chat.current
    assert isinstance(current, ChatSettings)
    assert current.max_turns == 12
    assert current.tone == "friendly"  # the model's default for an absent key
    assert current.greeting_text == "Hi"
    assert current.limits == Limits(tokens=7, models=["a"])
    assert chat.error is None
    with pytest.raises(ValidationError):
        current.max_turns = 1  # frozen: nobody changes what other readers hold
    chat.close()


def test_a_change_swaps_the_model_and_calls_back_with_old_and_new(subject: Subject) -> None:
    store = subject.store
    store.set("amira.chat.max_turns", 10, updated_by="ops")
    chat = bind(subject, ChatSettings, "amira.chat.")
    seen: list[tuple[int, int]] = []
    changed = threading.Event()

    @chat.on_change
    def record(old: ChatSettings, new: ChatSettings) -> None:
        seen.append((old.max_turns, new.max_turns))
        changed.set()

    subject.other.set("amira.chat.max_turns", 20, updated_by="ops")  # another client
    wait(subject, changed)
    assert seen == [(10, 20)]
    assert chat.current.max_turns == 20
    chat.close()


def test_an_invalid_change_keeps_the_last_good_model_until_a_valid_one(subject: Subject) -> None:
    store = subject.store
    store.set("amira.chat.max_turns", 10, updated_by="ops")
    store.set("amira.chat.tone", "formal", updated_by="ops")
    chat = bind(subject, ChatSettings, "amira.chat.")
    invalid, changed = threading.Event(), threading.Event()
    errors: list[str] = []
    chat.on_invalid(lambda error: (errors.append(error), invalid.set()))
    chat.on_change(lambda old, new: changed.set())

    store.set("amira.chat.max_turns", "many", data_type="str", updated_by="ops")
    wait(subject, invalid)
    assert chat.current.max_turns == 10  # the last good model
    assert chat.error is not None
    assert "amira.chat.max_turns" in chat.error
    assert "many" not in chat.error  # keys named, values never shown
    assert store.health().settings_errors == (chat.error,)

    store.set("amira.chat.max_turns", 30, data_type="int", updated_by="ops")
    wait(subject, changed)
    assert chat.current.max_turns == 30
    assert chat.error is None
    assert store.health().settings_errors == ()
    assert len(errors) == 1
    chat.close()


def test_start_up_names_every_missing_or_invalid_key(
    subject: Subject, capsys: pytest.CaptureFixture[str]
) -> None:
    store = subject.store
    store.set("amira.chat.limits.tokens", "lots", updated_by="ops")
    with pytest.raises(SettingsValidationError) as refused:
        bind(subject, ChatSettings, "amira.chat.")
    assert sorted(refused.value.problems) == [
        "amira.chat.limits.tokens: Input should be a valid integer, "
        "unable to parse string as an integer",
        "amira.chat.max_turns: missing",
    ]

    class Frozen(BaseModel):
        model_config = ConfigDict(frozen=True)
        required: bool

    chat = bind(subject, ChatSettings, "amira.chat.", require_valid=False)
    other = bind(subject, Frozen, "amira.nlu.", require_valid=False)
    with pytest.raises(SettingsValidationError):
        _ = chat.current
    with pytest.raises(SystemExit) as stopped:
        validate_or_exit(chat, other)
    assert stopped.value.code == 78
    report = capsys.readouterr().err
    for key in ("amira.chat.max_turns", "amira.chat.limits.tokens", "amira.nlu.required"):
        assert key in report
    assert "lots" not in report
    chat.close()
    other.close()


def test_a_value_its_json_schema_refuses_is_not_applied(subject: Subject) -> None:
    """A stored value that breaks its schema (raw SQL, or a schema forced over it) keeps the
    last good model, as an invalid one does."""
    store = subject.store
    store.set("amira.chat.max_turns", 40, updated_by="ops")
    chat = bind(subject, ChatSettings, "amira.chat.")
    invalid = threading.Event()
    chat.on_invalid(lambda error: invalid.set())
    store.set_schema("amira.chat.max_turns", {"maximum": 30}, updated_by="ops", force=True)
    store.set("amira.chat.tone", "formal", updated_by="ops")  # a change: the handle re-reads
    wait(subject, invalid)
    assert chat.current.tone == "friendly"  # nothing of the refused state was applied
    assert chat.error is not None
    assert "key 'amira.chat.max_turns'" in chat.error
    chat.close()
