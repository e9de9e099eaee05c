"""Every private name of amira_data_access the benchmarks touch, in one place.

The library's internals are being renamed: when one of these moves, this module
is the only file to edit, and each accessor fails with a message naming what it
looked for (the case using it is then reported as an error, the others run).

Touched (module: name):

* ``amira_data_access.dal``: ``ConfigDAL._pool`` (the DAL's own psycopg_pool
  ``ConnectionPool``), for the "+ pool checkout" rung of the get ladder, and
  ``ConfigDAL._run`` with ``amira_data_access.core.operations.get``, for its rung of
  the general path (what a ``get`` runs when an event would be logged);
* ``amira_data_access.dal``: ``ConfigDAL._feed`` (its ``ChangeFeed``) and
  ``amira_data_access.feed.listener``: ``ChangeFeed.last_sync``, to check that the
  changes of the catch-up case were really missed and re-read on reconnect
  rather than announced;
* ``amira_data_access.feed.listener``: ``LISTENER_NAME``, the listener's
  ``application_name``, to find and terminate its session.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from psycopg_pool import ConnectionPool

from amira_data_access import ConfigDAL
from amira_data_access.feed.listener import LISTENER_NAME

__all__ = ["LISTENER_APPLICATION_NAME", "feed_last_sync", "general_get", "pool_of"]


LISTENER_APPLICATION_NAME = LISTENER_NAME


def pool_of(dal: ConfigDAL) -> ConnectionPool[Any]:
    """The DAL's own connection pool."""
    pool = getattr(dal, "_pool", None)
    if not isinstance(pool, ConnectionPool):
        raise RuntimeError("ConfigDAL._pool is gone: update benchmarks/_internals.py")
    return pool


def general_get(dal: ConfigDAL) -> Callable[[str], Any]:
    """``get`` as the DAL runs it when it cannot take its fast path (the whole operation)."""
    from amira_data_access.core import operations
    from amira_data_access.core.running import UNSET

    run = getattr(dal, "_run", None)
    if run is None or not hasattr(operations, "get"):
        raise RuntimeError(
            "ConfigDAL._run or operations.get is gone: update benchmarks/_internals.py"
        )
    return lambda key: run(operations.get, key, UNSET)


def feed_last_sync(dal: ConfigDAL) -> float | None:
    """``time.monotonic()`` of the change feed's last (re)connect, None before the first."""
    feed = getattr(dal, "_feed", None)
    if feed is None or not hasattr(feed, "last_sync"):
        raise RuntimeError("ConfigDAL._feed.last_sync is gone: update benchmarks/_internals.py")
    value = feed.last_sync
    return None if value is None else float(value)
