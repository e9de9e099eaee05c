"""The change feed of a store in process memory: announced at commit, never disconnected."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from ..entries import ConfigChange
from .streams import ChangeCallback, Subscribers, Subscription

__all__ = ["LocalFeed"]


class LocalFeed:
    """Hands each committed change of an in-memory store to its subscribers, in commit order.

    The same interface as the PostgreSQL listener (:class:`~.listener.ChangeFeed`),
    so ``watch()`` and ``subscribe()`` work on the fake as on the real thing;
    callbacks run on the thread that committed.
    """

    def __init__(self) -> None:
        self._subscribers = Subscribers()
        self._closed = False
        self.last_sync: float | None = time.monotonic()

    @property
    def connected(self) -> bool:
        """Always, until closed: there is no connection to lose."""
        return not self._closed

    def subscribe(self, callback: ChangeCallback, prefix: str = "") -> Subscription:
        """Call ``callback`` for each change of a key with ``prefix``, committed from now on."""
        subscription = Subscription(self, callback, prefix)
        self._subscribers.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """Stop calling a subscription's callback."""
        self._subscribers.remove(subscription)

    def wait_connected(self, timeout: float) -> bool:
        """Nothing to wait for."""
        return self.connected

    def on_first_sync(self, callback: Callable[[], None]) -> None:
        """There is nothing to catch up with: call it now."""
        callback()

    def publish(self, changes: Iterable[ConfigChange]) -> None:
        """Announce the changes of one committed statement or transaction."""
        if not self._closed:
            for change in changes:
                self._subscribers.dispatch(change)

    def close(self) -> None:
        """Announce nothing more."""
        self._closed = True
