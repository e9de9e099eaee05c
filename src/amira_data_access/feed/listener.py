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

Where a feed refuses to run, and how it knows it hears
------------------------------------------------------
A standby cannot LISTEN (``cannot execute LISTEN during recovery``) and a
pooler in transaction mode hands the LISTEN to a server connection it then
gives to other clients, so the listener would never hear a change. Each
connection first asks who serves it (:mod:`~amira_data_access.backends.pooler`):
on a standby, or behind a transaction-mode pooler, the feed stops with a
:class:`~amira_data_access.errors.ChangeFeedUnavailableError` that ``watch()``,
``subscribe()`` and the cache's ``open()`` raise, instead of reconnecting
forever (one process opened 135 sessions in 15 s that way). After a lost
connection the first attempt is made at once (the changes committed meanwhile
wait for it), the next ones after a growing backoff, which starts over only once
a connection has listened, resynced and heard its own heartbeat: a connection
that succeeds and then fails at once is still a failure.

The heartbeat: whenever the connection has heard nothing for a while, the
listener notifies itself on a channel of its own and expects to hear it back.
If it does not, notifications are not arriving (whatever the reason: a pooler
the probe missed, a proxy), so the feed is marked not live (the cache stops
serving from memory, ``health()`` says why) and reconnects. Any notification
heard counts, so in a fleet the listeners' heartbeats keep each other quiet.

Resuming
--------
``subscribe(..., since_revision=N)`` hands that subscription every change with a
revision above N already in the history, then the live ones: the listener
thread reads the history up to the last revision it delivered (on its own
connection, between two deliveries) before the subscription joins the others,
so nothing falls between the two and nothing comes twice.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import psycopg

from ..backends.pooler import identify, transaction_pooling
from ..entries import ConfigChange, ConfigEntry, entry_from_row
from ..errors import ChangeFeedUnavailableError, UnreadableValueError
from ..logging import get_logger
from ..queries import change_queries
from .carry import MAX_CARRIED_BYTES, carried_types, may_carry
from .streams import ChangeCallback, Subscribers, Subscription

__all__ = ["HEARTBEAT_CHANNEL", "LISTENER_NAME", "ChangeFeed", "listener_feed"]

CHANNEL = "amira_config_changes"
HEARTBEAT_CHANNEL = "amira_config_heartbeat"  # queries/scale.sql
LISTENER_NAME = "amira-data-access listener"
_POLL_SECONDS = 0.5  # how often the listener checks for stop requests and resumed subscriptions
_PING_AFTER_IDLE = 5.0  # a silent connection sends itself a heartbeat, so a deaf one is noticed
_HEARTBEAT_TIMEOUT = 5.0  # a heartbeat not heard back by then: notifications do not arrive
# The waits before reconnection attempts. The first attempt is at once: a lost
# connection mostly means a terminated session or a failover, with a server there to
# answer, and every change committed meanwhile waits for the reconnect. A server that
# is down refuses it at once too, and the back-off follows; it starts over only after
# a connection that went live (see _run), so a flapping server is not hammered.
_RECONNECT_DELAYS = (0.0, 0.1, 0.25, 0.5, 1.0, 2.0)
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
    on_connect: Callable[[], None] | None = None,
) -> ChangeFeed:
    """A feed whose connection names itself, so operators can tell it from pool sessions."""
    return ChangeFeed(
        conninfo,
        {**connect_kwargs, **_LIVENESS, "application_name": LISTENER_NAME},
        on_disconnect=on_disconnect,
        on_connect=on_connect,
    )


class _HeartbeatMissed(Exception):  # noqa: N818  # a state of the feed, never raised to callers
    """The listener's own heartbeat did not come back in time."""


class ChangeFeed:
    """One listening connection on a background thread, reconnecting, fanning out changes.

    ``on_state`` is called with True when the feed has (re)connected and caught
    up, and with False when it lost its connection; ``on_disconnect`` with the
    error each time a connection fails (the DAL's outage state probes then),
    ``on_connect`` each time a connection succeeds, before anything is read on it
    (the server answers: the outage state ends now), and :meth:`wake` ends a wait
    between reconnection attempts (the database is back).
    """

    def __init__(
        self,
        conninfo: str,
        connect_kwargs: dict[str, Any],
        *,
        on_state: Callable[[bool], None] | None = None,
        on_disconnect: Callable[[BaseException], None] | None = None,
        on_connect: Callable[[], None] | None = None,
    ) -> None:
        self._conninfo = conninfo
        self._connect_kwargs = {**connect_kwargs, "autocommit": True}
        self._on_state = on_state
        self._on_disconnect = on_disconnect
        self._on_connect = on_connect
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
        # Connected or refused: what wait_connected waits for.
        self._settled = threading.Event()
        self._refused: ChangeFeedUnavailableError | None = None
        self._synced = False  # this connection listened, resynced and heard itself
        self._problem: str | None = None
        self.heartbeat_every = _PING_AFTER_IDLE
        self.heartbeat_timeout = _HEARTBEAT_TIMEOUT
        # Called with the primary's WAL position after reading changes, before handing
        # them out (a DAL reading from a replica waits for it: see dal_async).
        self.on_position: Callable[[str], None] | None = None
        # A cache's re-read (issue 19): which changed keys it holds, and their entries
        # read back on this connection, one query per page of changes, before the
        # changes are handed out (so the cache keeps them instead of dropping them and
        # re-reading key by key, in every process).
        self.refresh_keys: Callable[[set[str]], list[str]] | None = None
        self.refreshed: Callable[[dict[str, ConfigEntry | None]], None] | None = None

    # -- public --------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Whether the listener is connected and has caught up."""
        return self._connected.is_set()

    @property
    def problem(self) -> str | None:
        """Why the feed is not live, when it is not (None when it is, or before it starts)."""
        if self._connected.is_set():
            return None
        return self._problem

    def wait_connected(self, timeout: float) -> bool:
        """Block until the listener is connected (True) or ``timeout`` passes (False).

        Raises :class:`~amira_data_access.errors.ChangeFeedUnavailableError` if the
        feed refused the server (a standby, a transaction-mode pooler).
        """
        self.start()
        self._settled.wait(timeout)
        refused = self._refused
        if refused is not None:
            raise ChangeFeedUnavailableError(str(refused))
        return self._connected.is_set()

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
                    if self._on_connect is not None:
                        # Before the first change is handed out: whoever reads on
                        # hearing it must find the database up.
                        self._on_connect()
                    self._listen(conn)
            except ChangeFeedUnavailableError as exc:
                self._refuse(exc)
                return
            except (psycopg.Error, _HeartbeatMissed) as exc:
                self._set_connected(False)
                if self._stop.is_set():
                    return
                if self._synced:
                    # Reset only now: a connection that fails right after connecting
                    # (LISTEN refused, resync failed) keeps backing off.
                    attempt, self._synced = 0, False
                self._problem = (
                    f"the listener lost its connection: {_first_line(exc)}"
                    if isinstance(exc, psycopg.Error)
                    else str(exc)
                )
                # The loss is a change of state, logged once; each failed retry is not.
                level = "warning" if attempt == 0 else "debug"
                getattr(get_logger(), level)(
                    "config.watch",
                    outcome="disconnected",
                    attempt=attempt + 1,
                    error=_first_line(exc),
                )
                if self._on_disconnect is not None and isinstance(exc, psycopg.Error):
                    self._on_disconnect(exc)
                delay = _RECONNECT_DELAYS[min(attempt, len(_RECONNECT_DELAYS) - 1)]
                attempt += 1
                self._wake.wait(delay)
                self._wake.clear()
        self._set_connected(False)

    def _check_server(self, conn: psycopg.Connection[Any]) -> None:
        """Refuse a standby and a transaction-mode pooler (see the module docstring)."""
        server = identify(conn)
        if server.in_recovery:
            raise ChangeFeedUnavailableError(
                "the change feed needs the primary: this server is a standby (in recovery), "
                "where LISTEN is impossible; give the DAL the primary as dsn (or listen_dsn) "
                "and the replica as read_dsn"
            )
        if server.behind_pooler:
            conn.prepare_threshold = None  # see backends/pooler.py
            kwargs = {**self._connect_kwargs, "prepare_threshold": None}
            if transaction_pooling(conn, self._conninfo, kwargs):
                raise ChangeFeedUnavailableError(
                    "the change feed needs one server session for its whole life, and this "
                    "connection goes through a pooler in transaction (or statement) mode, "
                    "which would never hand it a notification: give the DAL a direct or "
                    "session-mode DSN as listen_dsn"
                )

    def _listen(self, conn: psycopg.Connection[Any]) -> None:
        queries = change_queries()
        self._check_server(conn)
        queries.listen_for_changes(conn)  # first: a commit after the read below rings here
        queries.listen_for_heartbeats(conn)
        if self._last_revision is None:
            self._last_revision = int(queries.last_revision(conn))
            for callback in self._first_sync_callbacks:
                callback()
        caught_up = self._catch_up(conn, queries)
        # Live only once it has heard itself: LISTEN can succeed where nothing arrives.
        queries.send_heartbeat(conn, token="")
        beat_sent: float | None = time.monotonic()
        idle_since = time.monotonic()
        while not self._stop.is_set():
            heard = list(conn.notifies(timeout=_POLL_SECONDS, stop_after=1))
            if heard:
                # Drain what else is pending: one read answers every doorbell rung so
                # far. One that rings during the read stays pending: read again then.
                heard += conn.notifies(timeout=0)
                idle_since = time.monotonic()
                if beat_sent is not None:  # anything heard proves notifications arrive
                    beat_sent = None
                    if not self._connected.is_set():
                        self._became_live(caught_up)
            rang = any(note.channel == CHANNEL for note in heard)
            if rang or self._resuming:
                self._catch_up(conn, queries)
            now = time.monotonic()
            if beat_sent is not None and now - beat_sent >= self.heartbeat_timeout:
                raise _HeartbeatMissed(
                    f"the listener's heartbeat was not heard back within "
                    f"{self.heartbeat_timeout:g} s: notifications are not arriving (a pooler "
                    "in transaction mode, or a proxy in between?)"
                )
            if beat_sent is None and now - idle_since >= self.heartbeat_every:
                queries.send_heartbeat(conn, token="")  # also raises if the server went away
                beat_sent = idle_since = now

    def _became_live(self, caught_up: int) -> None:
        self.last_sync = time.monotonic()
        self._synced = True
        self._problem = None
        self._set_connected(True)
        get_logger().info("config.watch", outcome="connected", resynced=caught_up)

    def _refuse(self, exc: ChangeFeedUnavailableError) -> None:
        self._refused = exc
        self._problem = str(exc)
        self._set_connected(False)
        self._settled.set()
        get_logger().error("config.watch", outcome="refused", error=str(exc))

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
        refreshing = self.refresh_keys is not None and self.refreshed is not None
        pages = _carried_pages_after if refreshing else _pages_after
        for page, carried in pages(conn, queries, last, None):
            if self.on_position is not None:
                # Before anyone hears of these changes: a read after it never goes to a
                # replica that has not replayed them.
                self.on_position(str(queries.current_wal_lsn(conn)))
            if self.refresh_keys is not None and self.refreshed is not None:
                # The entries that came with the changes; the other held keys re-read in
                # one query (too large, a type never carried, or changed again since).
                wanted = self.refresh_keys({change.key for change in page})
                fresh, missing = _carried_entries(carried, wanted)
                if missing:
                    fresh.update(_entries(conn, queries, missing))
                if fresh:
                    self.refreshed(fresh)
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
        for page, _ in _pages_after(conn, queries, since, until):
            for change in page:
                subscription.deliver(change)
            subscription.since_revision = page[-1].revision  # where to go on after a failure

    def _set_connected(self, connected: bool) -> None:
        was = self._connected.is_set()
        if connected:
            self._connected.set()
            self._settled.set()
        else:
            self._connected.clear()
            if self._refused is None:
                self._settled.clear()
        if was != connected and self._on_state is not None:
            self._on_state(connected)


# A page of changes, and per key whose value came with them (carried): its row of
# list_changes_with_values_after, or None when its last change in the page deleted it.
_Page = tuple[list[ConfigChange], dict[str, tuple[Any, ...] | None]]


def _pages_after(
    conn: psycopg.Connection[Any], queries: Any, after: int, until: int | None
) -> Iterator[_Page]:
    """The committed changes with a revision in (after, until], in revision order.

    By pages of whole revisions (so that whoever stops after a page knows where
    to go on); none is empty. Nothing carried (see :func:`_carried_pages_after`).
    """
    while True:
        # fetchall(): the rows are loaded in one call into libpq's result; iterating
        # aiosql's select generator fetched them one Python call each.
        with queries.list_changes_after_cursor(conn, after=after, until=until, limit=_PAGE) as cur:
            page = _changes(cur.fetchall())
        if page:
            yield page, {}
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


def _carried_pages_after(
    conn: psycopg.Connection[Any], queries: Any, after: int, until: int | None
) -> Iterator[_Page]:
    """:func:`_pages_after`, with the row of each changed key whose entry came with it
    (:mod:`.carry`): None for a key whose last change in the page deleted it.

    The entries are built later, only for the keys a cache holds
    (:func:`_carried_entries`): a page of 1,000 changes may concern none of them.
    """
    new = object.__new__
    while True:
        with queries.list_changes_with_values_after_cursor(
            conn,
            after=after,
            until=until,
            limit=_PAGE,
            carried_types=carried_types(),
            max_bytes=MAX_CARRIED_BYTES,
        ) as cur:
            rows = cur.fetchall()
        page: list[ConfigChange] = []
        append = page.append
        carried: dict[str, tuple[Any, ...] | None] = {}
        for row in rows:
            # ConfigChange(*row[:5]), built as _changes builds it.
            key, operation = row[0], row[2]
            change = new(ConfigChange)
            _SET_KEY(change, key)
            _SET_VERSION(change, row[1])
            _SET_OPERATION(change, operation)
            _SET_CHANGED_BY(change, row[3])
            _SET_REVISION(change, row[4])
            append(change)
            carried.pop(key, None)  # only the key's last change in the page counts
            if operation == "delete":
                carried[key] = None
            elif row[5] is not None:
                carried[key] = row
        if page:
            yield page, carried
        if len(page) < _PAGE:
            return
        after = page[-1].revision


def _carried_entries(
    carried: dict[str, tuple[Any, ...] | None], wanted: list[str]
) -> tuple[dict[str, ConfigEntry | None], list[str]]:
    """The entries of the ``wanted`` keys that came with their changes, and the others.

    Those others (not carried: too large, a type never carried, changed again
    since, or a value Python cannot decode) are to be re-read by the key.
    """
    fresh: dict[str, ConfigEntry | None] = {}
    missing: list[str] = []
    for key in wanted:
        if key not in carried:
            missing.append(key)
            continue
        row = carried[key]
        if row is None:  # deleted by its last change in the page
            fresh[key] = None
        elif may_carry(row[7], 0):
            try:
                fresh[key] = entry_from_row(row[5:])
            except UnreadableValueError:  # re-read, reported there
                missing.append(key)
        else:
            missing.append(key)
    return fresh, missing


def _entries(
    conn: psycopg.Connection[Any], queries: Any, keys: list[str]
) -> dict[str, ConfigEntry | None]:
    """The stored entries of ``keys`` (None: absent, or a value Python cannot decode)."""
    found: dict[str, ConfigEntry | None] = dict.fromkeys(keys)
    for row in queries.get_configurations(conn, keys=keys):
        # One Python cannot decode stays None: dropped from the cache, the next read reports it.
        with contextlib.suppress(UnreadableValueError):
            found[row[0]] = entry_from_row(row)
    return found


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "lost"
