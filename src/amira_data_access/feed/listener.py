"""The PostgreSQL change feed: every committed change, exactly once, in revision order.

A :class:`ChangeFeed` keeps one listening connection on a background thread and
hands each :class:`~amira_data_access.entries.ConfigChange` to its subscribers.

A notification is a doorbell, never a message
---------------------------------------------
Any role that can connect may ``pg_notify`` on the channel, so a payload proves
nothing: trusted, a forged "amira.flag is at version 2" would be delivered, and
the real version 2 then dropped as a duplicate. The feed reads what changed
from the history instead, which only the triggers write: on every (re)connect,
and whenever the doorbell rings (all pending notifications drained first, then
one query), it reads the changes with a revision above the last one it
delivered, in revision order. A forged notification costs one read that finds
nothing new.

This is exact because revisions are given at commit, one commit after the
other, in commit order (migrations/0006): whoever sees revision N sees every
revision below it, so "above the last one delivered" can never skip a change
that commits later with a lower number, and nothing is delivered twice. On
(re)connect the feed LISTENs first and reads second, so a commit falls either in
the read or after the LISTEN, where its doorbell rings.

Resuming
--------
``subscribe(..., since_revision=N)`` hands that subscription every change with a
revision above N already in the history, then the live ones: the listener
thread reads the history up to the last revision it delivered (on its own
connection, between two deliveries) before the subscription joins the others,
so nothing falls between the two and nothing comes twice.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import psycopg

from ..entries import ConfigChange
from ..logging import get_logger
from ..queries import change_queries
from .streams import ChangeCallback, Subscribers, Subscription

__all__ = ["LISTENER_NAME", "ChangeFeed", "listener_feed"]

CHANNEL = "amira_config_changes"
LISTENER_NAME = "amira-data-access listener"
_POLL_SECONDS = 0.5  # how often the listener checks for stop requests and resumed subscriptions
_PING_AFTER_IDLE = 5.0  # a silent connection is pinged, so a dead one is noticed
_RECONNECT_DELAYS = (0.1, 0.25, 0.5, 1.0, 2.0)
_PAGE = 1000  # changes read per query (whole revisions): bounded memory after a long outage
# A half-open TCP connection (partition, failover without a reset) would keep a
# silent listener "connected" for ~15 min of retransmissions; these end it in ~10 s.
_LIVENESS = {
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
    "tcp_user_timeout": 10_000,
}


def listener_feed(
    conninfo: str,
    connect_kwargs: dict[str, Any],
    *,
    on_disconnect: Callable[[BaseException], None] | None = None,
) -> ChangeFeed:
    """A feed whose connection names itself, so operators can tell it from pool sessions."""
    return ChangeFeed(
        conninfo,
        {**connect_kwargs, **_LIVENESS, "application_name": LISTENER_NAME},
        on_disconnect=on_disconnect,
    )


class ChangeFeed:
    """One listening connection on a background thread, reconnecting, fanning out changes.

    ``on_state`` is called with True when the feed has (re)connected and caught
    up, and with False when it lost its connection; ``on_disconnect`` with the
    error each time a connection fails (the DAL's outage state probes then), and
    :meth:`wake` ends a wait between reconnection attempts (the database is back).
    """

    def __init__(
        self,
        conninfo: str,
        connect_kwargs: dict[str, Any],
        *,
        on_state: Callable[[bool], None] | None = None,
        on_disconnect: Callable[[BaseException], None] | None = None,
    ) -> None:
        self._conninfo = conninfo
        self._connect_kwargs = {**connect_kwargs, "autocommit": True}
        self._on_state = on_state
        self._on_disconnect = on_disconnect
        self._wake = threading.Event()
        self._subscribers = Subscribers()
        self._resuming: list[Subscription] = []  # since_revision: replayed by the thread first
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # The last revision delivered; None until the first connection said where to start.
        self._last_revision: int | None = None
        self._connected = threading.Event()
        self._first_sync_callbacks: list[Callable[[], None]] = []
        self.last_sync: float | None = None  # monotonic time of the last (re)connect

    # -- public --------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Whether the listener is connected and has caught up."""
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        """Block until the listener is connected (True) or ``timeout`` passes (False)."""
        self.start()
        return self._connected.wait(timeout)

    def on_first_sync(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once the first connection listens, before it reports connected.

        Changes committed before that were never announced to anyone here: a
        cache filled earlier must start over (later reconnects catch up instead).
        """
        with self._lock:
            self._first_sync_callbacks.append(callback)

    def subscribe(
        self, callback: ChangeCallback, prefix: str = "", since_revision: int | None = None
    ) -> Subscription:
        """Call ``callback`` (on the feed's thread) for each change of a key with ``prefix``.

        From now on; or, with ``since_revision``, for every change with a higher
        revision, those in the history first (see the module docstring).
        """
        subscription = Subscription(self, callback, prefix, since_revision)
        if since_revision is None:
            self._subscribers.add(subscription)
        else:
            with self._lock:
                self._resuming.append(subscription)
        self.start()
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """Remove a subscription (no-op if already removed)."""
        with self._lock:
            subscription.active = False
            if subscription in self._resuming:
                self._resuming.remove(subscription)
        self._subscribers.remove(subscription)

    def start(self) -> None:
        """Start the listener thread (idempotent)."""
        with self._lock:
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(
                    target=self._run, name="amira-config-feed", daemon=True
                )
                self._thread.start()

    def wake(self) -> None:
        """Try to reconnect now, not after the rest of the backoff (the database is back)."""
        self._wake.set()

    def close(self) -> None:
        """Stop the listener thread and close its connection."""
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout=10)

    # -- the listener thread -------------------------------------------------------

    def _run(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._conninfo, **self._connect_kwargs) as conn:
                    attempt = 0
                    self._listen(conn)
            except psycopg.Error as exc:
                self._set_connected(False)
                if self._stop.is_set():
                    return
                # The loss is a change of state, logged once; each failed retry is not.
                level = "warning" if attempt == 0 else "debug"
                getattr(get_logger(), level)(
                    "config.watch",
                    outcome="disconnected",
                    attempt=attempt + 1,
                    error=str(exc).strip().splitlines()[0] if str(exc).strip() else "lost",
                )
                if self._on_disconnect is not None:
                    self._on_disconnect(exc)
                delay = _RECONNECT_DELAYS[min(attempt, len(_RECONNECT_DELAYS) - 1)]
                attempt += 1
                self._wake.wait(delay)
                self._wake.clear()
        self._set_connected(False)

    def _listen(self, conn: psycopg.Connection[Any]) -> None:
        queries = change_queries()
        queries.listen_for_changes(conn)  # first: a commit after the read below rings here
        if self._last_revision is None:
            self._last_revision = int(queries.last_revision(conn))
            for callback in self._first_sync_callbacks:
                callback()
        caught_up = self._catch_up(conn, queries)
        self.last_sync = time.monotonic()
        self._set_connected(True)
        get_logger().info("config.watch", outcome="connected", resynced=caught_up)
        idle_since = time.monotonic()
        while not self._stop.is_set():
            rang = list(conn.notifies(timeout=_POLL_SECONDS, stop_after=1))
            if rang:
                # Drain what else is pending: one read answers every doorbell rung so
                # far. One that rings during the read stays pending: read again then.
                for _ in conn.notifies(timeout=0):
                    pass
                idle_since = time.monotonic()
            if rang or self._resuming:
                self._catch_up(conn, queries)
            elif time.monotonic() - idle_since >= _PING_AFTER_IDLE:
                conn.execute("SELECT 1")  # raises if the server went away silently
                idle_since = time.monotonic()

    def _catch_up(self, conn: psycopg.Connection[Any], queries: Any) -> int:
        """Replay the history to resuming subscriptions, then deliver what is new; how many."""
        last = self._last_revision
        assert last is not None  # set by the first connection before any catch-up
        with self._lock:
            resuming, self._resuming = self._resuming, []
        try:
            while resuming:
                subscription = resuming[0]
                self._replay(conn, queries, subscription, until=last)
                resuming.pop(0)
                with self._lock:  # unless it was closed meanwhile
                    if subscription.active:
                        self._subscribers.add(subscription)
        finally:  # the connection failed: the rest resume after the next connect
            with self._lock:
                self._resuming[:0] = resuming
        delivered = 0
        for page in _pages_after(conn, queries, last, None):
            for change in page:
                self._subscribers.dispatch(change)
            self._last_revision = page[-1].revision
            delivered += len(page)
        return delivered

    def _replay(
        self, conn: psycopg.Connection[Any], queries: Any, subscription: Subscription, until: int
    ) -> None:
        """Hand ``subscription`` the history after its since_revision, up to ``until``."""
        since = subscription.since_revision
        assert since is not None
        if since >= until:
            return  # nothing in the history yet: the live changes are all it needs
        for page in _pages_after(conn, queries, since, until):
            for change in page:
                subscription.deliver(change)
            subscription.since_revision = page[-1].revision  # where to go on after a failure

    def _set_connected(self, connected: bool) -> None:
        was = self._connected.is_set()
        if connected:
            self._connected.set()
        else:
            self._connected.clear()
        if was != connected and self._on_state is not None:
            self._on_state(connected)


def _pages_after(
    conn: psycopg.Connection[Any], queries: Any, after: int, until: int | None
) -> Iterator[list[ConfigChange]]:
    """The committed changes with a revision in (after, until], in revision order.

    By pages of whole revisions (so that whoever stops after a page knows where
    to go on); none is empty.
    """
    while True:
        # fetchall(): the rows are loaded in one call into libpq's result; iterating
        # aiosql's select generator fetched them one Python call each.
        with queries.list_changes_after_cursor(conn, after=after, until=until, limit=_PAGE) as cur:
            page = _changes(cur.fetchall())
        if page:
            yield page
        if len(page) < _PAGE:
            return
        after = page[-1].revision


# A catch-up after a long outage builds one ConfigChange per missed change (100 k
# for one big transaction). The frozen dataclass's __init__ sets each field with
# object.__setattr__; setting the slots directly builds the same object (same
# fields, equality, hash, still frozen) in about half the time. The slots are
# taken in field order, list_changes_after's column order (as ConfigChange(*row)
# assumed); a field added to ConfigChange makes this unpacking fail at import.
_SET_KEY, _SET_VERSION, _SET_OPERATION, _SET_CHANGED_BY, _SET_REVISION = (
    getattr(ConfigChange, field.name).__set__ for field in dataclasses.fields(ConfigChange)
)


def _changes(rows: Sequence[tuple[Any, ...]]) -> list[ConfigChange]:
    """``[ConfigChange(*row) for row in rows]``, without the dataclass's __init__."""
    new = object.__new__
    changes: list[ConfigChange] = []
    append = changes.append
    for key, version, operation, changed_by, revision in rows:
        change = new(ConfigChange)
        _SET_KEY(change, key)
        _SET_VERSION(change, version)
        _SET_OPERATION(change, operation)
        _SET_CHANGED_BY(change, changed_by)
        _SET_REVISION(change, revision)
        append(change)
    return changes
