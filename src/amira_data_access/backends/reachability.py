"""Whether the database answers: one state for a DAL's pool and its change feed.

Without it, every call made while the server is down first waits the pool's
whole timeout (5 s by default) before failing, a cache cannot serve what it
holds without that wait, and after the server is back the pool and the feed
each take their own backoff before they serve again.

So: when a connection fails, :meth:`Reachability.failed` tries one direct
connection at once. If that fails too the database is *down*: from then on
:meth:`check` fails every call immediately (a cache then serves what it holds,
a default answers), and a background thread tries to connect every
``probe_interval`` seconds. The first success marks it *up* again and runs the
recovery callbacks (the DAL checks its pool, the feed reconnects now). Only
these two changes of state are logged, never each failed call.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final

import psycopg
import psycopg_pool

from ..errors import DatabaseUnreachable, first_line, scrub, server_refused_the_session
from ..logging import get_logger

__all__ = ["PROBE_INTERVAL", "AbandonCheckout", "Reachability", "is_connection_failure"]

PROBE_INTERVAL: Final = 0.25  # seconds between probes while down: "serving again within ~1 s"
_PROBE_CONNECT_TIMEOUT: Final = 2  # libpq's minimum: a black-holed host costs 2 s per probe
_SESSION_ENDED: Final = frozenset({"57P01", "57P02", "57P03"})
# libpq prefixes what the server itself said; its own failures (refused, timed out,
# no route) have no such word.
_SERVER_ANSWERED: Final = re.compile(r"\b(FATAL|ERROR):")
# …unless it said it is not serving at all (yet, or any more).
_NOT_SERVING: Final = re.compile(r"shutting down|starting up|not yet accepting connections")


class AbandonCheckout(BaseException):  # a signal to the pool, not an error
    """Raised by a DAL's pool check when the database is known to be down.

    A BaseException because psycopg_pool gives up a checkout at once only for those
    (it treats an Exception from the check as a bad connection, and waits for another
    until its timeout). The DAL turns it into DatabaseUnreachable right away.
    """


def is_connection_failure(exc: BaseException) -> bool:
    """Whether ``exc`` says the server could not be reached or the connection was lost.

    Not a refused login, a timeout or a refused statement: the server answered those.
    """
    if isinstance(exc, psycopg_pool.PoolTimeout):
        return True
    if not isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        return False
    sqlstate = exc.sqlstate
    if sqlstate is None:
        return not server_refused_the_session(str(exc))
    return sqlstate.startswith("08") or sqlstate in _SESSION_ENDED


class Reachability:
    """The database's state as a DAL sees it: up, or down since a moment (thread-safe)."""

    def __init__(
        self,
        conninfo: str,
        connect_kwargs: dict[str, Any],
        secrets: tuple[str, ...],
        *,
        probe_interval: float = PROBE_INTERVAL,
    ) -> None:
        self._conninfo = conninfo
        self._connect_kwargs = {**connect_kwargs, "connect_timeout": _PROBE_CONNECT_TIMEOUT}
        self._secrets = secrets
        self._probe_interval = probe_interval
        self._lock = threading.Lock()
        self._down_since: float | None = None  # time.time() of the first failure
        self._reason = ""
        self._prober: threading.Thread | None = None
        self._stopped = threading.Event()
        self._on_recovered: list[Callable[[], None]] = []

    @property
    def down_since(self) -> float | None:
        """``time.time()`` when the database was found down; None while it answers."""
        return self._down_since

    def on_recovered(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (on the prober's thread) each time the database answers again."""
        with self._lock:
            self._on_recovered.append(callback)

    def check(self) -> None:
        """Raise :class:`~amira_data_access.errors.DatabaseUnreachable` at once while the
        database is known to be down."""
        since = self._down_since
        if since is None:
            return
        moment = datetime.fromtimestamp(since, UTC).strftime("%H:%M:%S")
        raise DatabaseUnreachable(
            f"database unreachable since {moment} UTC ({self._reason}); "
            f"retrying every {self._probe_interval:g} s in the background"
        )

    def failed(self, exc: BaseException) -> None:
        """A connection failed: probe at once, and mark the database down if it does not answer."""
        if not is_connection_failure(exc) or self._down_since is not None:
            return
        if self._probe():
            return  # one lost connection; the server answers
        with self._lock:
            if self._down_since is not None or self._stopped.is_set():
                return
            self._down_since = time.time()
            self._reason = scrub(first_line(exc), self._secrets)
            get_logger().warning("config.database", outcome="unreachable", error=self._reason)
            self._prober = threading.Thread(
                target=self._probe_until_up,
                args=(self._down_since,),  # which outage it probes for
                name="amira-config-probe",
                daemon=True,
            )
            self._prober.start()

    def answered(self) -> None:
        """A new session to this server just succeeded elsewhere (the change feed's): if
        the database was marked down, it is up again now, as if the probe had connected.

        Without it, what the feed hands out right after reconnecting (a change made
        during the outage, say) could not be read back until the probe's next try: a
        read on hearing the change failed with "unreachable" for up to ``probe_interval``.
        """
        if self._down_since is not None:
            self._mark_up()

    def close(self) -> None:
        """Stop probing."""
        self._stopped.set()
        prober = self._prober
        if prober is not None:
            prober.join(timeout=5)

    def _probe(self) -> bool:
        """Whether the server answers: a new session, or a refusal the server itself sent
        (too many connections, a database not accepting connections: it is up)."""
        try:
            psycopg.connect(self._conninfo, **self._connect_kwargs).close()
        except psycopg.Error as exc:
            message = str(exc)
            return bool(_SERVER_ANSWERED.search(message)) and not _NOT_SERVING.search(message)
        return True

    def _probe_until_up(self, outage: float) -> None:
        # Until this outage ends: by this probe, or by answered() (then the next outage,
        # if one began meanwhile, has a prober of its own).
        while not self._stopped.wait(self._probe_interval) and self._down_since == outage:
            if self._probe():
                self._mark_up()
                return

    def _mark_up(self) -> None:
        """The outage is over: log it once and run the recovery callbacks (on this thread)."""
        with self._lock:
            since = self._down_since
            if since is None:  # the probe and answered() both saw it: recovered once
                return
            self._down_since = None
            callbacks = list(self._on_recovered)
        get_logger().info(
            "config.database", outcome="reachable", down_seconds=round(time.time() - since, 3)
        )
        for callback in callbacks:
            try:
                callback()
            except Exception as exc:  # a recovery step must not stop the others
                get_logger().error("config.database", outcome="recovery_failed", error=repr(exc))
