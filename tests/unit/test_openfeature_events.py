"""The provider's feed-state events (pure logic: a store whose health() is scripted)."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("openfeature")

from openfeature.event import ProviderEvent, ProviderEventDetails

from amira_data_access.openfeature import AmiraFlagProvider


class ScriptedStore:
    """Answers health() with the next scripted feed state (or raises it)."""

    def __init__(self, states: list[Any]) -> None:
        self.states = states

    def evaluate(self, flag: str, context: Any = None, default: Any = None) -> Any:
        raise AssertionError("not evaluated here")

    def health(self) -> Any:
        state = self.states.pop(0)
        if isinstance(state, Exception):
            raise state

        class Health:
            listener_connected = state

        return Health()


def test_stale_when_the_feed_goes_down_ready_when_back_error_when_unknown() -> None:
    provider = AmiraFlagProvider(ScriptedStore([True, False, False, True, RuntimeError("boom")]))
    events: list[tuple[ProviderEvent, ProviderEventDetails]] = []
    provider.attach(lambda _provider, event, details: events.append((event, details)))
    for _ in range(5):
        provider.check_feed()
    assert [event for event, _ in events] == [
        ProviderEvent.PROVIDER_STALE,
        ProviderEvent.PROVIDER_READY,
        ProviderEvent.PROVIDER_ERROR,
    ]
    assert "cache" in (events[0][1].message or "")
    assert events[2][1].message == "boom"
