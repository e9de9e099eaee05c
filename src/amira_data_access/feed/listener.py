"""The PostgreSQL change feed: LISTEN for committed changes, and never miss one across reconnects.

The database announces every committed change (migrations/0003). A
:class:`ChangeFeed` keeps one listening connection on a background thread and
hands each :class:`~amira_data_access.entries.ConfigChange` to its subscribers.

Reconnecting without losing changes
-----------------------------------
While the connection is down, announcements are lost, so on every (re)connect
the feed first LISTENs, then takes a snapshot (``pg_current_snapshot()``), and
reads from the history every change *visible in the new snapshot but not in the
snapshot of the previous connection*. That is exactly the set that committed
while we may not have been listening: anything committing later is announced
to the new LISTEN. Visibility is what matters, not revision numbers: a
transaction can draw revision 5, another revision 6 and commit first; "all
revisions after the last one I saw (6)" would skip 5 for ever, while 5 is
simply not visible yet in the snapshot and arrives later by NOTIFY or by the
next resync. A change may be delivered twice around a reconnect (at least once);
duplicates of a (key, version) already delivered are dropped.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg

from ..entries import ConfigChange
from ..logging import get_logger
from ..queries import change_queries
from .streams import ChangeCallback, Subscribers, Subscription

__all__ = ["LISTENER_NAME", "ChangeFeed", "listener_feed"]

CHANNEL = "amira_config_changes"
_POLL_SECONDS = 0.5  # how often the listener checks for stop requests
_PING_AFTER_IDLE = 5.0  # a silent connection is pinged, so a dead one is noticed
_RECONNECT_DELAYS = (0.1, 0.25, 0.5, 1.0, 2.0)
_MAX_REMEMBERED = 100_000  # (key, version) pairs kept to drop duplicates
# A half-open TCP connection (partition, failover without a reset) would keep a
# silent listener "connected" for ~15 min of retransmissions; these end it in ~10 s.
_LIVENESS = {
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
    "tcp_user_timeout": 10_000,
}


def listener_feed(conninfo: str, connect_kwargs: dict[str, Any]) -> ChangeFeed:
    """A feed whose connection names itself, so operators can tell it from pool sessions."""
    return ChangeFeed(conninfo, {**connect_kwargs, **_LIVENESS, "application_name": LISTENER_NAME})


LISTENER_NAME = "amira-data-access listener"


class ChangeFeed:
    """One listening connection on a background thread, reconnecting, fanning out changes.

    ``on_resync`` is called after every (re)connect with the changes found
    missed (possibly none): a cache uses it to know the feed is healthy again.
    """

    def __init__(
        self,
        conninfo: str,
        connect_kwargs: dict[str, Any],
        *,
        on_state: Callable[[bool], None] | None = None,
    ) -> None:
        self._conninfo = conninfo
        self._connect_kwargs = {**connect_kwargs, "autocommit": True}
        self._on_state = on_state
        self._subscribers = Subscribers()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._snapshot: str | None = None  # of the previous connection
        self._delivered: set[tuple[str, int]] = set()  # since that snapshot
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
        cache filled earlier must start over (later reconnects resync instead).
        """
        with self._lock:
            self._first_sync_callbacks.append(callback)

    def subscribe(self, callback: ChangeCallback, prefix: str = "") -> Subscription:
        """Call ``callback`` (on the feed's thread) for each change of a key with ``prefix``."""
        subscription = Subscription(self, callback, prefix)
        self._subscribers.add(subscription)
        self.start()
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """Remove a subscription (no-op if already removed)."""
        self._subscribers.remove(subscription)

    def start(self) -> None:
        """Start the listener thread (idempotent)."""
        with self._lock:
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(
                    target=self._run, name="amira-config-feed", daemon=True
                )
                self._thread.start()

    def close(self) -> None:
        """Stop the listener thread and close its connection."""
        self._stop.set()
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
                get_logger().warning(
                    "config.watch",
                    outcome="disconnected",
                    error=str(exc).strip().splitlines()[0] if str(exc).strip() else "lost",
                )
                delay = _RECONNECT_DELAYS[min(attempt, len(_RECONNECT_DELAYS) - 1)]
                attempt += 1
                self._stop.wait(delay)
        self._set_connected(False)

    def _listen(self, conn: psycopg.Connection[Any]) -> None:
        queries = change_queries()
        queries.listen_for_changes(conn)
        snapshot = queries.current_snapshot(conn)
        missed: list[ConfigChange] = []
        if self._snapshot is not None:
            rows = queries.list_changes_between(conn, since=self._snapshot, until=snapshot)
            missed = [ConfigChange(*row) for row in rows]
        else:
            for callback in self._first_sync_callbacks:
                callback()
        delivered_before = self._delivered
        self._snapshot = snapshot
        self._delivered = set()
        self.last_sync = time.monotonic()
        for change in missed:
            if (change.key, change.version) not in delivered_before:
                self._dispatch(change)
        self._set_connected(True)
        get_logger().info("config.watch", outcome="connected", resynced=len(missed))
        idle_since = time.monotonic()
        while not self._stop.is_set():
            got_any = False
            for notify in conn.notifies(timeout=_POLL_SECONDS):
                got_any = True
                announced = _parse(notify.payload)
                if announced is not None:
                    self._dispatch(announced)
            if got_any:
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since >= _PING_AFTER_IDLE:
                conn.execute("SELECT 1")  # raises if the server went away silently
                idle_since = time.monotonic()

    def _dispatch(self, change: ConfigChange) -> None:
        marker = (change.key, change.version)
        if marker in self._delivered:
            return
        if len(self._delivered) >= _MAX_REMEMBERED:
            # Bounded memory on a connection that lives for months; the cost is
            # possible duplicates at the next resync, which delivery allows.
            self._delivered = set()
        self._delivered.add(marker)
        self._subscribers.dispatch(change)

    def _set_connected(self, connected: bool) -> None:
        was = self._connected.is_set()
        if connected:
            self._connected.set()
        else:
            self._connected.clear()
        if was != connected and self._on_state is not None:
            self._on_state(connected)


def _parse(payload: str) -> ConfigChange | None:
    try:
        data = json.loads(payload)
        return ConfigChange(
            key=data["key"],
            version=int(data["version"]),
            operation=data["operation"],
            changed_by=data["changed_by"],
            revision=int(data["revision"]),
        )
    except (ValueError, KeyError, TypeError):
        get_logger().warning("config.watch", outcome="bad_payload", payload=payload[:200])
        return None
