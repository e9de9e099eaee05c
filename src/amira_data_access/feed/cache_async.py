"""A read cache kept fresh by the change feed, that keeps answering when the database is away.

Written once, as async code; ``tools/async_to_sync.py`` generates the sync
form (whose first line says so).

:class:`AsyncCachedConfigDAL` is an :class:`~amira_data_access.AsyncConfigDAL`
whose ``get``, ``get_entry`` and ``get_many`` are answered from process memory:

* **Fresh**: every committed change (from any process, or raw SQL) rings the
  feed's doorbell, the listener reads it from the history and the cached key is
  dropped; the cache is used only while the listener is connected, and the
  listener re-reads what it missed on reconnect (see
  :mod:`amira_data_access.feed.listener`), so staleness is bounded by the
  notification delay (measured by ``just bench``). While the listener is down,
  reads go to the database. Only changes read from the history reach the
  cache: a forged notification costs the listener a read, and can neither drop
  a key for a change that did not happen nor hide one that did.
* **Read-your-writes**: a write through this store updates the cache at once
  (every operation reports what it wrote; keys written in a transaction are
  dropped when it ends).
* **Stale-on-error**: when the database cannot be reached, cached values keep
  being served and a warning (``outcome="stale"``) says so; a key never seen
  falls back to the caller's or the registered default, else raises
  :class:`~amira_data_access.errors.DatabaseConnectionError`.

A fill that raced with a change is not stored: each key has a generation,
bumped by every change, and a read only fills the cache if the generation did
not move while it was in flight (:class:`~.cache_state.ConfigCache`).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol, cast

import psycopg

from .._acompat import call_soon, current_loop, in_thread
from ..core import operations as ops
from ..core import schema_operations as schema_ops
from ..core.arguments import key_list
from ..core.retry import NO_RETRY
from ..core.running import UNSET, Context
from ..dal_async import AsyncConfigDAL, AsyncConfigTransaction
from ..entries import ConfigChange, ConfigEntry, Health
from ..errors import (
    ChangeFeedUnavailableError,
    ConfigurationAccessError,
    DatabaseConnectionError,
    InvalidConfigurationError,
)
from ..logging import get_logger
from .cache_state import ABSENT, FORGET, MISS, ConfigCache, copy_tree, hit
from .listener import ChangeFeed
from .snapshot import Snapshot, SnapshotError, load_snapshot, snapshot_from_rows, write_snapshot
from .streams import Subscription

if TYPE_CHECKING:
    from ..flags import FlagEvaluation
    from .streams import Feed

__all__ = ["AsyncCachedConfigDAL"]

_FEED_WAIT_SECONDS: Final = 5.0
_EntryList = list[ConfigEntry]  # ``list`` is also a method name in the class
_KeyList = list[str]


class _Liveness(Protocol):
    """Whether the feed is live now, read as one attribute on every cache hit."""

    @property
    def _flag(self) -> bool: ...


class _Never:
    """Not following a feed (not opened yet, or closed): reads go to the database."""

    __slots__ = ()
    _flag = False


class _Asked:
    """A feed other than the listener: its ``connected`` is asked at each read."""

    __slots__ = ("_feed",)

    def __init__(self, feed: Feed) -> None:
        self._feed = feed

    @property
    def _flag(self) -> bool:
        return self._feed.connected


_NEVER: Final[_Liveness] = _Never()


def _liveness(feed: Feed) -> _Liveness:
    """What a hit reads to know the feed is live, as cheaply as it can be read.

    The listener's ``connected`` is its ``threading.Event``, set once it has caught
    up and cleared the moment it loses its connection (before anything else is
    done about it): its flag, read directly, is exactly what ``connected`` returns,
    without the two calls (the property, ``Event.is_set``) a hit would otherwise
    cost, a fifth of a str hit.
    """
    event = getattr(feed, "_connected", None) if isinstance(feed, ChangeFeed) else None
    if isinstance(event, threading.Event) and isinstance(getattr(event, "_flag", None), bool):
        return cast(_Liveness, event)
    return _Asked(feed)


class _CacheWrites:
    """Read-your-writes: each change an operation of this store made goes into the cache."""

    __slots__ = ("_cache",)

    def __init__(self, cache: ConfigCache) -> None:
        self._cache = cache

    def written(self, entry: ConfigEntry) -> None:
        self._cache.written(entry.key, entry)

    def removed(self, key: str) -> None:
        self._cache.written(key, FORGET)


class _WrittenKeys:
    """The keys a transaction changed: dropped from the cache once it has ended."""

    __slots__ = ("keys",)

    def __init__(self) -> None:
        self.keys: set[str] = set()

    def written(self, entry: ConfigEntry) -> None:
        self.keys.add(entry.key)

    def removed(self, key: str) -> None:
        self.keys.add(key)


class AsyncCachedConfigDAL(AsyncConfigDAL):
    """A DAL whose reads are served from a feed-invalidated in-process cache.

    Same constructor as the DAL. Cache hits are not logged one by one (that
    would cost more than the hit); :meth:`health` reports size and age.
    """

    def __init__(self, dsn: str, *, snapshot: str | Path | None = None, **options: Any) -> None:
        # A cache serving from memory needs no pooled connection sitting idle: in a
        # fleet each one is a server connection (issue 19: 50 processes needed 101).
        options.setdefault("min_size", 0)
        options.setdefault("max_idle", 60.0)
        super().__init__(dsn, **options)
        self._cache = ConfigCache()
        self._rows = self._cache.rows  # the hit path reads the table itself
        # Whether hits may be served: the feed's state once it is followed, until close().
        self._hits_live = _NEVER
        self._context.observer = _CacheWrites(self._cache)
        self._subscription: Subscription | None = None
        self._serving_stale = False  # logged once when it starts, once when it ends
        # The last-known-good snapshot (see .snapshot): its file, and what it holds.
        self._snapshot_path = Path(snapshot) if snapshot is not None else None
        self._snapshot: Snapshot | None = None
        self._from_snapshot = False  # reads are being answered from the snapshot
        self._snapshot_revision = -1
        self._snapshot_subscription: Subscription | None = None
        self._snapshot_loop: Any = None

    async def open(self) -> None:
        """Open the pool and start the change feed that keeps the cache fresh.

        With ``snapshot=PATH``: the snapshot is written now and after every change, and
        if the database cannot be reached here, the store starts from the snapshot
        instead of failing (:class:`~amira_data_access.feed.snapshot.SnapshotError` if
        the file is corrupt or modified) and goes back to the database when it answers.
        """
        try:
            await super().open()
        except DatabaseConnectionError as exc:
            if self._snapshot_path is None or self._closed:
                raise
            await self._start_from_snapshot(exc)
            return
        await self._follow()
        if self._snapshot_path is not None:
            await self._start_snapshots()

    async def _follow(self) -> None:
        feed = self._change_feed()
        with self._feed_lock:
            if self._subscription is not None:
                return
            # Entries filled before the feed first listened may have missed a change
            # that nobody will announce again: drop them when it first syncs, and
            # drop what other callers filled before this subscription existed.
            feed.on_first_sync(self._cache.reset)
            if isinstance(feed, ChangeFeed):
                # Re-read changed keys the cache holds in one query per change set, on
                # the listener's connection, instead of one miss per key afterwards.
                feed.refresh_keys = self._cache.cached_keys
                feed.refreshed = self._refreshed
            self._subscription = feed.subscribe(self._cache.changed)
            self._cache.reset()
            if not self._closed:
                self._hits_live = _liveness(feed)
        # Serve from cache as soon as the feed is live; until then reads go to
        # the database, so not waiting long here is safe.
        try:
            await in_thread(feed.wait_connected, _FEED_WAIT_SECONDS)
        except ChangeFeedUnavailableError:
            # A cache that can never be fresh is a misconfiguration (a standby, a
            # transaction pooler: see listen_dsn): fail, releasing the pool, since
            # ``with`` will not call close() when open() raises.
            await self.close()
            raise

    def _refreshed(self, entries: dict[str, ConfigEntry | None]) -> None:
        """Entries the feed read back after a change (on its thread): keep the new ones."""
        for key, entry in entries.items():
            self._cache.written(key, FORGET if entry is None else entry)

    # -- the last-known-good snapshot -------------------------------------------------

    async def _start_from_snapshot(self, exc: DatabaseConnectionError) -> None:
        """The database is unreachable at start-up: answer from the snapshot file."""
        assert self._snapshot_path is not None
        try:
            snapshot = await in_thread(load_snapshot, self._snapshot_path)
        except SnapshotError as refused:
            raise refused from exc
        self._snapshot, self._from_snapshot = snapshot, True
        cause = exc.__cause__
        if isinstance(cause, psycopg.Error):
            # Known down from now on: reads fail over at once, a probe notices the return.
            await in_thread(self._reachability.failed, cause)
        get_logger().warning(
            "config.open",
            outcome="snapshot",
            revision=snapshot.revision,
            age_seconds=snapshot.age_seconds(),
            error=str(exc),
        )

    async def _start_snapshots(self) -> None:
        """Write the snapshot now, and again after each committed revision."""
        self._snapshot_loop = current_loop()
        feed = self._change_feed()
        with self._feed_lock:
            if self._snapshot_subscription is None:
                self._snapshot_subscription = feed.subscribe(self._snapshot_changed)
        await self._refresh_snapshot()

    def _snapshot_changed(self, change: ConfigChange) -> None:
        if change.revision != self._snapshot_revision:  # one refresh per revision
            self._snapshot_revision = change.revision
            call_soon(self._snapshot_loop, self._refresh_snapshot_logged)

    async def _refresh_snapshot(self) -> None:
        """Read every row (one statement) and replace the snapshot file with them."""
        assert self._snapshot_path is not None
        revision, rows = await self._run(schema_ops.snapshot_rows)
        snapshot = snapshot_from_rows(revision, rows)
        await in_thread(write_snapshot, self._snapshot_path, snapshot)
        self._snapshot = snapshot
        if self._from_snapshot:
            self._from_snapshot = False
            get_logger().info("config.open", outcome="caught_up", revision=revision)

    async def _refresh_snapshot_logged(self) -> None:
        try:
            await self._refresh_snapshot()
        except (ConfigurationAccessError, OSError) as exc:
            # Kept: the previous file is whole (atomic replace); the next change retries.
            get_logger().warning("config.snapshot", outcome="not_written", error=str(exc))

    def _snapshot_entry(self, key: str) -> ConfigEntry | object | None:
        """The snapshot's entry of ``key`` (None: absent then), or MISS without a snapshot."""
        snapshot = self._snapshot
        if snapshot is None or not isinstance(key, str):
            return MISS
        return snapshot.entry(key)

    # -- reads -----------------------------------------------------------------------

    async def get(self, key: str, default: Any = UNSET) -> Any:
        """The value of ``key``, from the cache when it is fresh (see the module docstring)."""
        if self._hits_live._flag:
            # A hit is the whole cost of the read: one lookup, and the row says what to do.
            try:
                row = self._rows[key]  # a subscript: cheaper than .get() on a hit
            except KeyError:  # a miss: the database's round trip dwarfs the raise
                row = None
            except TypeError:  # unhashable: not a key, which the operation below refuses
                row = None
            if row is not None:
                how = row[1]
                if how is None:  # immutable, not a secret
                    return row[0]
                if how.__class__ is tuple:  # a list or dict: a copy, by its plan
                    return copy_tree(row[0], how)
                value = hit(row)
                if value is ABSENT:
                    return self._default_for(key, default)
                # The cache holds a secret's envelope only: it is opened at each read.
                return self._context.reveal(key, value)
        try:
            entry = await self._read_entry(key)
        except DatabaseConnectionError as exc:  # unreachable, and the key was never cached
            if default is UNSET and key not in self._context.defaults:
                raise
            self._warn_stale(key, exc)
            return self._default_for(key, default)
        if entry is None:
            return self._default_for(key, default)
        return self._context.reveal(key, entry.value)

    async def list(
        self, prefix: str = "", *, after: str | None = None, limit: int = 100
    ) -> _EntryList:
        """The DAL's ``list``; from the snapshot while the database cannot be reached."""
        try:
            return await super().list(prefix, after=after, limit=limit)
        except DatabaseConnectionError as exc:
            snapshot = self._snapshot
            if snapshot is None:
                raise
            self._warn_stale(prefix, exc)
            entries = [e for e in snapshot.entries(prefix) if after is None or e.key > after]
            return entries[:limit]

    async def get_entry(self, key: str) -> ConfigEntry | None:
        """The entry of ``key``, from the cache when it is fresh."""
        if self._hits_live._flag:
            try:
                cached = self._cache.entry(key)
            except TypeError:  # unhashable: refused by the operation below
                cached = MISS
            if cached is not MISS:
                return cached  # type: ignore[return-value]  # ConfigEntry | None here
        return await self._read_entry(key)

    async def evaluate(
        self, flag: str, context: Mapping[str, Any] | None = None, default: Any = None
    ) -> FlagEvaluation:
        """:meth:`AsyncConfigDAL.evaluate`; a flag compiled at the cached version is evaluated
        without copying its document out of the cache (the copy cost more than the rules)."""
        if self._hits_live._flag and (context is None or isinstance(context, Mapping)):
            try:
                stamp = self._cache.stamp(flag)
            except TypeError:  # unhashable: refused by the evaluation below
                stamp = None
            if stamp is not None and stamp[2] == "flag":
                flags = self._flags()
                compiled = flags.compiled_at(flag, stamp[0], stamp[1])
                if compiled is not None:
                    return flags.evaluate_compiled(compiled, flag, stamp[0], context, default)
        return await super().evaluate(flag, context, default)

    async def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """The values of ``keys``: cached ones from memory, the rest in one round trip."""
        if isinstance(keys, str | bytes) or not isinstance(keys, Iterable):
            return await super().get_many(keys)  # refused there, with the usual message
        given = list(keys)  # an iterator can be read only once
        try:
            wanted = key_list(given, what="get_many")
        except InvalidConfigurationError:
            return await super().get_many(given)  # refused there, logged
        found: dict[str, Any] = {}
        missing: list[str] = []
        live = self._hits_live._flag
        for key in wanted:
            value = self._cache.value(key) if live else MISS
            if value is MISS:
                missing.append(key)
            elif value is not ABSENT:
                found[key] = value
        if missing:
            found.update(await self._read_many(missing))
        return {key: self._context.reveal(key, found[key]) for key in wanted if key in found}

    async def _read_entry(self, key: str) -> ConfigEntry | None:
        """Read through to the database and fill the cache; stale cached entry if unreachable."""
        generation = self._generation(key)
        try:
            entry = await super().get_entry(key)
        except DatabaseConnectionError as exc:
            cached = self._cache.entry(key)
            if cached is MISS:
                cached = self._snapshot_entry(key)
            if cached is MISS:
                raise
            self._warn_stale(key, exc)
            return cached  # type: ignore[return-value]  # ConfigEntry | None here
        if generation is not None:
            self._cache.fill(key, entry, generation)
        self._fresh_again()
        return entry

    async def _read_many(self, keys: _KeyList) -> dict[str, Any]:
        generations = {key: self._generation(key) for key in keys}
        try:
            entries = await self._run(ops.get_entries, keys)
        except DatabaseConnectionError as exc:
            stale: dict[str, Any] = {}
            for key in keys:
                entry = self._cache.entry(key)
                if entry is MISS:
                    entry = self._snapshot_entry(key)
                if entry is MISS:
                    raise
                if isinstance(entry, ConfigEntry):
                    stale[key] = entry.value
            self._warn_stale(",".join(keys), exc)
            return stale
        for key, generation in generations.items():
            if generation is not None:
                self._cache.fill(key, entries.get(key), generation)
        self._fresh_again()
        return {key: entry.value for key, entry in entries.items()}

    def _generation(self, key: str) -> tuple[int, int] | None:
        try:
            return self._cache.generation(key)
        except TypeError:  # not a key: the operation refuses it, nothing is filled
            return None

    # -- defaults and failures --------------------------------------------------------

    def _default_for(self, key: str, default: Any) -> Any:
        return self._context.defaults.get(key) if default is UNSET else default

    def _warn_stale(self, key: str, exc: BaseException) -> None:
        """The database cannot be read: say so once, not at every read served meanwhile."""
        if not self._serving_stale:
            self._serving_stale = True
            get_logger().warning("config.get", key=key, outcome="stale", error=str(exc))

    def _fresh_again(self) -> None:
        if self._serving_stale:
            self._serving_stale = False
            get_logger().info("config.get", outcome="fresh")

    # -- writes: read-your-writes ------------------------------------------------------

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConfigTransaction]:
        """A transaction of the DAL; keys written in it are dropped from the cache when it ends.

        Dropped when the block ends, committed or not: the next read goes to the
        database, so a committed change is seen at once by this process.
        """
        written = _WrittenKeys()
        try:
            context = self._context.derive(retry=NO_RETRY, observer=written)
            async with self._transaction(context) as tx:
                yield tx
        finally:
            for key in written.keys:
                self._cache.written(key, FORGET)

    def _transaction_context(self) -> Context:
        # bind(): the caller commits whenever it likes, so drop a key as soon as it
        # is written; the change's notification drops it again after the commit.
        return self._context.derive(retry=NO_RETRY, observer=_CacheWrites(self._cache))

    # -- health ------------------------------------------------------------------------

    async def health(self) -> Health:
        """The DAL's health plus the cache's size and the age of its last resync."""
        report = await super().health()
        feed = self._feed
        age = None
        if feed is not None and feed.last_sync is not None:
            age = round(time.monotonic() - feed.last_sync, 3)
        snapshot = self._snapshot
        return dataclasses.replace(
            report,
            cache_size=len(self._cache),
            cache_age_seconds=age,
            snapshot_age_seconds=snapshot.age_seconds() if snapshot is not None else None,
            serving_from_snapshot=self._from_snapshot,
        )

    async def close(self) -> None:
        """Stop the cache's subscription, close the DAL, and forget every cached entry.

        A closed store refuses to work, like the DAL: it does not serve stale values.
        """
        self._hits_live = _NEVER  # first: a closed store serves nothing from memory
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            subscription.close()
        snapshots, self._snapshot_subscription = self._snapshot_subscription, None
        if snapshots is not None:
            snapshots.close()
        await super().close()
        self._hits_live = _NEVER  # again: an open() racing with this close may have followed
        self._cache.reset()
