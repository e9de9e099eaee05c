"""What a change feed hands out: subscriptions, and iterators of changes (sync and async).

A feed (the PostgreSQL listener of :mod:`.listener`, or the in-memory store's
:class:`~.local.LocalFeed`) keeps its :class:`Subscribers` and calls
:meth:`Subscribers.dispatch` for each committed change, in revision order; a
subscription that resumes (``since_revision``) is first handed the history
after that revision by the feed itself. Everything a store offers on top
(``watch()`` iterators, ``subscribe()`` callbacks) is here, the same for every feed.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Protocol, Self

from ..entries import ConfigChange
from ..logging import get_logger

__all__ = [
    "AsyncChangeStream",
    "ChangeCallback",
    "ChangeStream",
    "Feed",
    "Subscribers",
    "Subscription",
]

ChangeCallback = Callable[[ConfigChange], None]


class Feed(Protocol):
    """A source of committed changes, as the stores use it."""

    @property
    def connected(self) -> bool:
        """Whether changes are being received now (a cache may trust it)."""

    @property
    def problem(self) -> str | None:
        """Why changes are not being received now, when they are not (health reports it)."""

    @property
    def last_sync(self) -> float | None:
        """``time.monotonic()`` of the last (re)synchronisation, None before the first."""

    def subscribe(
        self, callback: ChangeCallback, prefix: str = "", since_revision: int | None = None
    ) -> Subscription:
        """Call ``callback`` for each change of a key starting with ``prefix``.

        Those committed from now on; with ``since_revision``, every change with a
        higher revision: those already in the history first, then the live ones.
        """

    def unsubscribe(self, subscription: Subscription) -> None:
        """Stop calling a subscription's callback."""

    def wait_connected(self, timeout: float) -> bool:
        """Block until :attr:`connected` (True) or ``timeout`` seconds passed (False)."""

    def on_first_sync(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once, when the feed first starts receiving changes."""

    def close(self) -> None:
        """Stop; no callback is called afterwards."""


class Subscription:
    """A callback registered on a feed; :meth:`close` unregisters it."""

    def __init__(
        self,
        feed: Feed,
        callback: ChangeCallback,
        prefix: str,
        since_revision: int | None = None,
    ) -> None:
        self._feed = feed
        self.callback = callback
        self.prefix = prefix
        self.since_revision = since_revision  # only changes with a higher revision
        self.active = True  # until closed (a feed may be replaying to it meanwhile)

    def deliver(self, change: ConfigChange) -> None:
        """Call the callback if the change is for it; one that raises is logged, not raised."""
        if not change.key.startswith(self.prefix):
            return
        if self.since_revision is not None and change.revision <= self.since_revision:
            return
        try:
            self.callback(change)
        except Exception as exc:  # one bad callback must not stop the feed
            get_logger().error(
                "config.watch", outcome="callback_failed", key=change.key, error=repr(exc)
            )

    def close(self) -> None:
        """Stop receiving changes."""
        self.active = False
        self._feed.unsubscribe(self)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class Subscribers:
    """A feed's subscriptions, and the fan-out of one change to those whose prefix matches."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscriptions: tuple[Subscription, ...] = ()

    def add(self, subscription: Subscription) -> None:
        """Register ``subscription``."""
        with self._lock:
            self._subscriptions = (*self._subscriptions, subscription)

    def remove(self, subscription: Subscription) -> None:
        """Unregister ``subscription`` (no-op if it is not registered)."""
        with self._lock:
            self._subscriptions = tuple(s for s in self._subscriptions if s is not subscription)

    def dispatch(self, change: ConfigChange) -> None:
        """Call every matching callback; one that raises is logged and the others still run."""
        for subscription in self._subscriptions:  # a tuple replaced on change: no lock needed
            subscription.deliver(change)


class ChangeStream:
    """An iterator of changes (``with store.watch() as changes: for change in changes: …``).

    Created by ``watch()``: it subscribes and waits (up to ``connect_timeout``)
    for the feed, so every change committed after ``watch()`` returns is seen;
    with ``since_revision``, every change with a higher revision is, those in
    the history first.
    """

    def __init__(
        self,
        feed: Feed,
        prefix: str,
        connect_timeout: float,
        since_revision: int | None = None,
    ) -> None:
        self._queue: queue.SimpleQueue[ConfigChange] = queue.SimpleQueue()
        self._subscription = feed.subscribe(self._queue.put, prefix, since_revision)
        feed.wait_connected(connect_timeout)

    def __iter__(self) -> Iterator[ConfigChange]:
        return self

    def __next__(self) -> ConfigChange:
        return self._queue.get()

    def next(self, timeout: float | None = None) -> ConfigChange | None:
        """The next change, waiting at most ``timeout`` seconds (None: no change came)."""
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self) -> None:
        """Stop the stream."""
        self._subscription.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncChangeStream:
    """``async with store.watch() as changes: async for change in changes: …`` on asyncio.

    Changes cross from the feed's thread to the loop with
    ``call_soon_threadsafe``. Entering the block (or the first ``__anext__``)
    subscribes and waits (up to ``connect_timeout``) for the feed, so changes
    committed after that are seen (with ``since_revision``: every change with
    a higher revision, those in the history first).
    """

    def __init__(
        self,
        feed: Feed,
        prefix: str,
        connect_timeout: float,
        since_revision: int | None = None,
    ) -> None:
        self._feed = feed
        self._prefix = prefix
        self._connect_timeout = connect_timeout
        self._since_revision = since_revision
        self._queue: asyncio.Queue[ConfigChange] = asyncio.Queue()
        self._subscription: Subscription | None = None

    async def start(self) -> None:
        """Subscribe and wait for the feed; idempotent."""
        if self._subscription is None:
            loop = asyncio.get_running_loop()
            put = self._queue.put_nowait

            def hand_over(change: ConfigChange) -> None:  # on the feed's thread
                loop.call_soon_threadsafe(put, change)

            self._subscription = self._feed.subscribe(hand_over, self._prefix, self._since_revision)
            await asyncio.to_thread(self._feed.wait_connected, self._connect_timeout)

    def __aiter__(self) -> AsyncChangeStream:
        return self

    async def __anext__(self) -> ConfigChange:
        await self.start()
        return await self._queue.get()

    async def next(self, timeout: float | None = None) -> ConfigChange | None:
        """The next change, waiting at most ``timeout`` seconds (None: no change came)."""
        await self.start()
        try:
            return await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            return None

    async def aclose(self) -> None:
        """Stop the stream."""
        if self._subscription is not None:
            self._subscription.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
