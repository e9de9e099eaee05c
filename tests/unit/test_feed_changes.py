"""The change feed builds its ConfigChange objects without the dataclass's __init__."""

from __future__ import annotations

import dataclasses

import pytest

from amira_data_access.entries import ConfigChange
from amira_data_access.feed.listener import _changes

ROWS = [
    ("a.b", 1, "insert", "ops", 7),
    ("a.c", 12, "update", "deploy-bot", 7),
    ("z", 3, "delete", "ops", 8),
]


def test_the_fast_path_builds_what_the_constructor_builds() -> None:
    """Same fields, equality, hash and repr as ``ConfigChange(*row)``."""
    built = _changes(ROWS)
    expected = [ConfigChange(*row) for row in ROWS]  # type: ignore[arg-type]
    assert built == expected
    assert [hash(change) for change in built] == [hash(change) for change in expected]
    assert [repr(change) for change in built] == [repr(change) for change in expected]
    assert all(type(change) is ConfigChange for change in built)


def test_changes_built_fast_stay_frozen() -> None:
    """A subscriber cannot alter a change another subscriber is handed too."""
    (change,) = _changes(ROWS[:1])
    with pytest.raises(dataclasses.FrozenInstanceError):
        change.key = "other"  # type: ignore[misc]


def test_no_rows_no_changes() -> None:
    """An empty page is an empty list."""
    assert _changes([]) == []
