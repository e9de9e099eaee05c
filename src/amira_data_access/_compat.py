"""The sync side of :mod:`._acompat`: the same names, for code that runs on threads."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Final, ParamSpec, TypeVar

__all__ = ["ASYNC", "Lock", "in_thread", "sleep"]

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
