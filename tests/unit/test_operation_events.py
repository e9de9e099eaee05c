"""The one log event of each operation: its outcome, level and fields (on the in-memory
store, which runs the same operations as the DALs). Mutation testing found these
unpinned: a removed ``op.note``, a conflict no longer logged as one, an answer after a
read logged as a refused input."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from amira_data_access import (
    ConcurrentModificationError,
    ConfigItem,
    InMemoryConfigStore,
    InvalidConfigurationError,
)


@pytest.fixture(autouse=True)
def pristine_structlog() -> Iterator[None]:
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


def _event(logs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    (event,) = [e for e in logs if e["event"] == name]
    return event


def test_set_many_logs_its_count_and_actor() -> None:
    store = InMemoryConfigStore()
    with capture_logs() as logs:
        store.set_many([ConfigItem("a", 1), ConfigItem("b", 2)], updated_by="ops")
    event = _event(logs, "config.set_many")
    assert (event["outcome"], event["count"], event["updated_by"]) == ("ok", 2, "ops")


def test_health_logs_the_server_version() -> None:
    store = InMemoryConfigStore()
    with capture_logs() as logs:
        store.health()
    assert _event(logs, "config.health")["server_version"] == "in-memory"


def test_a_conflict_is_logged_as_an_answer_at_info() -> None:
    store = InMemoryConfigStore()
    store.set("a", 1, updated_by="ops")
    with capture_logs() as logs, pytest.raises(ConcurrentModificationError):
        store.set("a", 5, updated_by="x", expected_version=9)
    event = _event(logs, "config.set")
    assert (event["outcome"], event["log_level"], event["expected_version"]) == (
        "conflict",
        "info",
        9,
    )


def test_a_refusal_after_reading_is_an_answer_not_bad_input() -> None:
    """No such version to roll back to: found out by reading, so logged at info with the
    operation's own outcome, not as a refused argument (a warning, "invalid")."""
    store = InMemoryConfigStore()
    store.set("a", 1, updated_by="ops")
    with capture_logs() as logs, pytest.raises(InvalidConfigurationError):
        store.rollback("a", to_version=99, updated_by="x")
    event = _event(logs, "config.rollback")
    assert (event["outcome"], event["log_level"], event["to_version"]) == (
        "no_such_version",
        "info",
        99,
    )


def test_an_argument_refused_before_anything_is_sent_is_a_warning() -> None:
    store = InMemoryConfigStore()
    with capture_logs() as logs, pytest.raises(InvalidConfigurationError):
        store.set("bad key", 1, updated_by="ops")
    event = _event(logs, "config.set")
    assert (event["outcome"], event["log_level"]) == ("invalid", "warning")


def test_an_unexpected_count_says_what_was_expected_and_found() -> None:
    from amira_data_access import UnexpectedCountError

    error = UnexpectedCountError("config.delete_prefix 'p.'", expected_count=2, found_count=3)
    assert (error.expected_count, error.found_count) == (2, 3)
    assert str(error) == (
        "config.delete_prefix 'p.': expected 2 keys, found 3; nothing was deleted"
    )
