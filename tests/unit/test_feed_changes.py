"""The change feed builds its ConfigChange objects without the dataclass's __init__, and
reconnects at once, then with a growing backoff."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import threading
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from amira_data_access.entries import ConfigChange
from amira_data_access.feed import listener
from amira_data_access.feed.listener import ChangeFeed, _changes

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


# -- reconnecting ----------------------------------------------------------------------


class _RecordedWaits(threading.Event):
    """The feed's wake event: records each wait between attempts, waits for none of them,
    and stops the feed after ``limit`` of them."""

    def __init__(self, feed: ChangeFeed, limit: int) -> None:
        super().__init__()
        self.feed, self.limit, self.waits = feed, limit, list[float | None]()

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout)
        if len(self.waits) >= self.limit:
            self.feed._stop.set()
        return False


def _waits_between_attempts(
    monkeypatch: pytest.MonkeyPatch, live: Callable[[int], bool], limit: int = 7
) -> list[float | None]:
    """Run a feed whose every connection fails, connection n after going live if
    ``live(n)``; the waits before its attempts to reconnect."""
    feed = ChangeFeed("host=nowhere", {})
    waits = _RecordedWaits(feed, limit)
    feed._wake = waits
    attempts = itertools.count(1)

    def connect(*args: Any, **kwargs: Any) -> contextlib.nullcontext[object]:
        return contextlib.nullcontext(object())

    def listen(conn: object) -> None:
        if live(next(attempts)):
            feed._became_live(0)  # listened, resynced and heard its heartbeat
        raise psycopg.OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(listener.psycopg, "connect", connect)
    monkeypatch.setattr(feed, "_listen", listen)
    feed._run()  # on this thread, until the waits stop it
    return waits.waits


def test_a_lost_live_connection_is_retried_at_once_then_with_a_growing_backoff(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The changes committed while the listener is away wait for its reconnect: the first
    attempt goes at once (it waited 0.1 s, most of a catch-up after a terminated session);
    a server that then refuses is tried again after 0.1, 0.25, 0.5, 1, 2 s, not hammered."""
    waits = _waits_between_attempts(monkeypatch, live=lambda attempt: attempt == 1)
    assert waits == [0.0, 0.1, 0.25, 0.5, 1.0, 2.0, 2.0]


def test_each_lost_live_connection_gets_one_attempt_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The backoff starts over after a connection that went live, and only then."""
    waits = _waits_between_attempts(monkeypatch, live=lambda attempt: attempt in (1, 3))
    assert waits == [0.0, 0.1, 0.0, 0.1, 0.25, 0.5, 1.0]


def test_connections_that_never_go_live_keep_backing_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Connecting succeeds and each connection fails before it went live (the 135 sessions
    in 15 s of tests/reliability/test_replicas): one attempt at once, then the backoff."""
    waits = _waits_between_attempts(monkeypatch, live=lambda attempt: False)
    assert waits == [0.0, 0.1, 0.25, 0.5, 1.0, 2.0, 2.0]
