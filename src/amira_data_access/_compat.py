"""The sync side of :mod:`._acompat`: the same names, for code that runs on threads."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Final, ParamSpec, TypeVar

__all__ = ["ASYNC", "Lock", "Slots", "call_soon", "current_loop", "in_thread", "sleep"]

P = ParamSpec("P")
T = TypeVar("T")

ASYNC: Final = False

# Reentrant: a thread inside a transaction of the in-memory store may still write
# outside it (to other keys), as a second pooled connection could.
Lock = threading.RLock


def sleep(seconds: float) -> None:
    """Wait ``seconds``."""
    time.sleep(seconds)


def in_thread(function: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """Run ``function`` here: sync code is already on a thread of its own."""
    return function(*args, **kwargs)


class Slots:
    """At most ``count`` holders at once; waiting for one gives up after a timeout."""

    def __init__(self, count: int) -> None:
        self._semaphore = threading.BoundedSemaphore(count)

    def acquire(self, timeout: float) -> bool:
        """Take a slot within ``timeout`` seconds (True), or give up (False)."""
        return self._semaphore.acquire(timeout=timeout)

    def release(self) -> None:
        """Give the slot back."""
        self._semaphore.release()


def current_loop() -> Any:
    """No event loop: :func:`call_soon` runs the work where it is called."""
    return


def call_soon(loop: Any, function: Callable[[], Any]) -> None:
    """Run ``function()`` now, on the calling thread (a feed's)."""
    function()
