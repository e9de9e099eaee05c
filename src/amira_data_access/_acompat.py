"""What the hand-written async modules use where their generated sync twins differ.

``tools/async_to_sync.py`` renames this module to :mod:`._compat`, which has the
same names for threads: so ``await sleep(s)`` becomes ``sleep(s)`` there, and a
``Lock`` is an ``asyncio.Lock`` here and a ``threading.RLock`` there. ``if
ASYNC:`` marks a block that exists only here (its ``else:`` is the sync code).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Final, ParamSpec, TypeVar

__all__ = ["ASYNC", "Lock", "Slots", "in_thread", "sleep"]

P = ParamSpec("P")
T = TypeVar("T")

ASYNC: Final = True

Lock = asyncio.Lock


async def sleep(seconds: float) -> None:
    """Wait ``seconds`` without blocking the event loop."""
    await asyncio.sleep(seconds)


async def in_thread(function: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """Run blocking ``function`` (the listener's waits, the migration runner) off the loop."""
    return await asyncio.to_thread(function, *args, **kwargs)


class Slots:
    """At most ``count`` holders at once; waiting for one gives up after a timeout."""

    def __init__(self, count: int) -> None:
        self._semaphore = asyncio.BoundedSemaphore(count)

    async def acquire(self, timeout: float) -> bool:
        """Take a slot within ``timeout`` seconds (True), or give up (False)."""
        try:
            await asyncio.wait_for(self._semaphore.acquire(), timeout)
        except TimeoutError:
            return False
        return True

    def release(self) -> None:
        """Give the slot back."""
        self._semaphore.release()
