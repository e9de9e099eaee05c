"""What the hand-written async modules use where their generated sync twins differ.

``tools/async_to_sync.py`` renames this module to :mod:`._compat`, which has the
same names for threads: so ``await sleep(s)`` becomes ``sleep(s)`` there, and a
``Lock`` is an ``asyncio.Lock`` here and a ``threading.RLock`` there. ``if
ASYNC:`` marks a block that exists only here (its ``else:`` is the sync code).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Final, ParamSpec, TypeVar

__all__ = ["ASYNC", "Lock", "Slots", "call_soon", "current_loop", "in_thread", "sleep"]

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


# Tasks started by call_soon: the loop keeps only weak references to its tasks.
_BACKGROUND: set[asyncio.Task[Any]] = set()


def current_loop() -> asyncio.AbstractEventLoop | None:
    """The running event loop (where :func:`call_soon` sends work back to)."""
    return asyncio.get_running_loop()


def call_soon(
    loop: asyncio.AbstractEventLoop | None, function: Callable[[], Awaitable[Any]]
) -> None:
    """From any thread (a feed's): run ``function()`` as a task on ``loop``."""
    if loop is None or loop.is_closed():
        return

    def start() -> None:
        task = asyncio.ensure_future(function())
        _BACKGROUND.add(task)
        task.add_done_callback(_BACKGROUND.discard)

    loop.call_soon_threadsafe(start)
