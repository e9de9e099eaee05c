"""The change feed of a store in process memory: announced at commit, never disconnected."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

from ..entries import ConfigChange
from .streams import ChangeCallback, Subscribers, Subscription

__all__ = ["LocalFeed"]

# The committed changes with a revision above the given one, in revision order.
History = Callable[[int], Iterable[ConfigChange]]


class LocalFeed:
    """Hands each committed change of an in-memory store to its subscribers, in commit order.

    The same interface as the PostgreSQL listener (:class:`~.listener.ChangeFeed`),
    so ``watch()`` and ``subscribe()`` work on the fake as on the real thing;
    callbacks run on the thread that committed. ``history`` and ``lock`` are the
    database's: a subscription that resumes (``since_revision``) is replayed the
    history and joins the live ones under the lock commits publish under, so
    nothing falls between the two.
    """

    def __init__(self, history: History, lock: threading.RLock) -> None:
        self._history = history
        self._lock = lock
        self._subscribers = Subscribers()
        self._closed = False
        self.last_sync: float | None = time.monotonic()
        self.problem: str | None = None  # never degraded: nothing can fail to arrive

    @property
    def connected(self) -> bool:
        """Always, until closed: there is no connection to lose."""
        return not self._closed

    def subscribe(
        self, callback: ChangeCallback, prefix: str = "", since_revision: int | None = None
    ) -> Subscription:
        """Call ``callback`` for each change of a key with ``prefix``, committed from now on.

        With ``since_revision``: first for each change in the history with a
        higher revision (on this thread, before returning), then as above.
        """
        subscription = Subscription(self, callback, prefix, since_revision)
        if since_revision is None:
            self._subscribers.add(subscription)
            return subscription
        with self._lock:
            for change in self._history(since_revision):
                subscription.deliver(change)
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
