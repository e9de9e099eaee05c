"""Every public method of every store refuses a wrong argument type with InvalidConfigurationError.

Reproduced before the fix: raw ``TypeError`` escaped ``get(["x"])`` (the
defaults lookup ran before validation), ``get_many(5)`` and ``set_many(None)``
in the sync, cached and async DALs, and an ``expected_version`` above 2**63 was
accepted and reported as a conflict. Each row below is one parameter given one
wrong value, every other argument valid; nothing may be written.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from amira_data_access import ConfigItem, InvalidConfigurationError

from .conftest import Subject

NOW = datetime(2026, 1, 1, tzinfo=UTC)
WRONG = object()  # a value of no type any parameter takes

# method name -> (a valid call's arguments, {parameter: wrong values})
Call = tuple[tuple[Any, ...], dict[str, Any]]
VALID: dict[str, Call] = {
    "get": (("k",), {}),
    "get_entry": (("k",), {}),
    "get_many": ((["k"],), {}),
    "list": (("",), {"after": None, "limit": 10}),
    "history": (("k",), {"limit": 10, "before_version": None}),
    "get_at": (("k", NOW), {}),
    "snapshot_at": ((NOW, ""), {}),
    "set": (("k", 1), {"updated_by": "t", "data_type": None, "description": None,
                       "reason": None, "expected_version": None}),
    "set_default": (("k", 1), {"updated_by": "t", "data_type": None, "description": None}),
    "set_many": (({"k": 1},), {"updated_by": "t", "reason": None}),
    "delete": (("k",), {"deleted_by": "t", "reason": None, "expected_version": None}),
    "delete_many": ((["k"],), {"deleted_by": "t", "reason": None, "expected_count": None}),
    "delete_prefix": (("k",), {"deleted_by": "t", "reason": None, "expected_count": None}),
    "rollback": (("k",), {"to_version": 1, "updated_by": "t", "reason": None}),
    "register_defaults": (({"k": 1},), {}),
    "ensure_defaults": ((), {"updated_by": "t"}),
}  # fmt: skip

KEYS = [5, None, b"k", ["k"], WRONG, 1.5]
TEXTS = [5, b"x", ["x"], WRONG]
ACTORS = [5, None, b"t", ["t"], WRONG]
NUMBERS = ["1", 1.0, True, WRONG, 2**63, -1]
WRONG_TYPES: list[tuple[str, int | str, list[Any]]] = [
    ("get", 0, KEYS),
    ("get_entry", 0, KEYS),
    ("get_many", 0, [5, None, "k", b"k", WRONG, [5], [None]]),
    ("list", 0, [5, None, b"", WRONG]),
    ("list", "after", [5, b"k", ["k"], WRONG]),
    ("list", "limit", ["10", 10.0, True, None, WRONG]),
    ("history", 0, KEYS),
    ("history", "limit", ["10", 10.0, True, None, WRONG]),
    ("history", "before_version", NUMBERS),
    ("get_at", 0, KEYS),
    ("get_at", 1, ["2026-01-01", 0, None, datetime(2026, 1, 1), WRONG]),
    ("snapshot_at", 0, ["2026-01-01", 0, None, datetime(2026, 1, 1), WRONG]),
    ("snapshot_at", 1, [5, None, b"", WRONG]),
    ("set", 0, KEYS),
    ("set", 1, [WRONG, b"x", (1,), {1, 2}, float("nan")]),
    ("set", "data_type", [5, "text", b"str", WRONG]),
    ("set", "description", TEXTS),
    ("set", "updated_by", ACTORS),
    ("set", "reason", TEXTS),
    ("set", "expected_version", NUMBERS),
    ("set_default", 0, KEYS),
    ("set_default", 1, [WRONG, b"x", (1,)]),
    ("set_default", "data_type", [5, "text", WRONG]),
    ("set_default", "description", TEXTS),
    ("set_default", "updated_by", ACTORS),
    ("set_many", 0, [None, 5, "k", b"k", WRONG, [("k", 1)], [ConfigItem(5, 1)]]),  # type: ignore[arg-type]
    ("set_many", "updated_by", ACTORS),
    ("set_many", "reason", TEXTS),
    ("delete", 0, KEYS),
    ("delete", "deleted_by", ACTORS),
    ("delete", "reason", TEXTS),
    ("delete", "expected_version", NUMBERS),
    ("delete_many", 0, [None, 5, "k", b"k", WRONG, [5]]),
    ("delete_many", "deleted_by", ACTORS),
    ("delete_many", "reason", TEXTS),
    ("delete_many", "expected_count", NUMBERS),
    ("delete_prefix", 0, [5, None, b"k", ["k"], WRONG, ""]),
    ("delete_prefix", "deleted_by", ACTORS),
    ("delete_prefix", "reason", TEXTS),
    ("delete_prefix", "expected_count", NUMBERS),
    ("rollback", 0, KEYS),
    ("rollback", "to_version", NUMBERS),
    ("rollback", "updated_by", ACTORS),
    ("rollback", "reason", TEXTS),
    ("register_defaults", 0, [None, 5, "k", [("k", 1)], WRONG, {5: 1}, {"k": WRONG}]),
    ("ensure_defaults", "updated_by", ACTORS),
]
CASES = [
    pytest.param(method, parameter, values, id=f"{method}-{parameter}")
    for method, parameter, values in WRONG_TYPES
]


def _call_with(method: str, parameter: int | str, value: Any) -> Callable[[Any], Any]:
    args, kwargs = VALID[method]
    args, kwargs = list(args), dict(kwargs)
    if isinstance(parameter, int):
        args[parameter] = value
    else:
        kwargs[parameter] = value
    return lambda store: getattr(store, method)(*args, **kwargs)


def test_every_method_of_the_table_is_a_store_method(subject: Subject) -> None:
    """The table covers every public read, write and defaults method (and only real ones)."""
    for method in VALID:
        assert callable(getattr(subject.store, method))
    assert {method for method, _, _ in WRONG_TYPES} == set(VALID)


@pytest.mark.parametrize(("method", "parameter", "values"), CASES)
def test_a_wrong_argument_type_is_refused(
    subject: Subject, method: str, parameter: int | str, values: list[Any]
) -> None:
    """InvalidConfigurationError (never a raw TypeError or a conflict), and nothing written."""
    store = subject.store
    accepted = []
    for value in values:
        try:
            _call_with(method, parameter, value)(store)
        except InvalidConfigurationError:
            continue
        accepted.append(value)
    assert accepted == []
    assert store.list() == []
    assert store.history("k") == []
