"""A read cache kept fresh by the change feed, that keeps answering when the database is away.

:class:`CachedConfigDAL` is a :class:`~amira_data_access.dal.ConfigDAL` whose
``get``, ``get_entry`` and ``get_many`` are answered from process memory:

* **Fresh**: every committed change (from any process, or raw SQL) is announced
  by the database and drops the cached key; the cache is used only while the
  listener is connected, and the listener re-reads what it missed on reconnect
  (see :mod:`amira_data_access.watch`), so staleness is bounded by the
  notification delay (measured by ``just bench``). While the listener is down,
  reads go to the database.
* **Read-your-writes**: a write through this DAL updates the cache at once.
* **Stale-on-error**: when the database cannot be reached, cached values keep
  being served and a warning (``outcome="stale"``) says so; a key never seen
  falls back to the caller's or the registered default, else raises
  :class:`~amira_data_access.errors.DatabaseConnectionError`.

A fill that raced with a change is not stored: each key has a generation,
bumped by every change, and a read only fills the cache if the generation did
not move while it was in flight.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Final, TypeVar

from ._calls import Call
from ._operations import Operation
from .codec import encode_json, validate_key
from .dal import _UNSET, ConfigDAL, ConfigTransaction, Health
from .entries import ConfigChange, ConfigEntry, entry_from_row
from .errors import DatabaseConnectionError, InvalidConfigurationError
from .logging import get_logger

__all__ = ["CachedConfigDAL", "ConfigCache"]

T = TypeVar("T")
_MISS: Final = object()
_FORGET: Final = object()  # written(): drop the key, its new version is not known here
_WRITES: Final = frozenset(
    {"config.set", "config.set_default", "config.set_many", "config.delete", "config.rollback"}
)
_IMMUTABLE: Final = (str, int, float, bool, type(None))
_FEED_WAIT_SECONDS: Final = 5.0


@dataclasses.dataclass(frozen=True, slots=True)
class _Cached:
    entry: ConfigEntry | None  # None: the key is known to be absent
    text: str | None  # JSON of a list/dict value: decoded per read so callers get a copy


class ConfigCache:
    """Thread-safe key -> entry store with per-key generations (no I/O).

    A read captures :meth:`generation` before it goes to the database and may
    :meth:`fill` only if nothing moved since: a change announced meanwhile, an
    own write, or a :meth:`reset` (the feed's first sync) all move it. The
    highest version announced per key is remembered, so a write result that
    raced with a newer announced change is not stored over it.
    """

    def __init__(self) -> None:
        self._items: dict[str, _Cached] = {}
        self._generations: dict[str, int] = {}
        self._announced: dict[str, int] = {}  # highest version the feed announced per key
        self._epoch = 0  # bumped by reset(): fills begun before it are void
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def value(self, key: str) -> Any:
        """The cached value of ``key``; ``None`` if known absent; ``_MISS`` if not cached."""
        item = self._items.get(key)  # a dict read is atomic: no lock on the hot path
        if item is None:
            return _MISS
        if item.text is not None:
            return json.loads(item.text)
        return item.entry.value if item.entry is not None else None

    def entry(self, key: str) -> ConfigEntry | object | None:
        """The cached entry of ``key`` (a copy if mutable), None if known absent, or ``_MISS``."""
        item = self._items.get(key)
        if item is None:
            return _MISS
        if item.entry is not None and item.text is not None:
            return dataclasses.replace(item.entry, value=json.loads(item.text))
        return item.entry

    def generation(self, key: str) -> tuple[int, int]:
        """The key's generation now; pass it to :meth:`fill` after reading the database."""
        return self._epoch, self._generations.get(key, 0)

    def fill(self, key: str, entry: ConfigEntry | None, generation: tuple[int, int]) -> None:
        """Store what a read found, unless anything about the key moved while it was in flight."""
        with self._lock:
            if (self._epoch, self._generations.get(key, 0)) == generation:
                self._items[key] = _cached(entry)

    def reset(self) -> None:
        """Forget everything: entries filled while no feed was listening cannot be trusted."""
        with self._lock:
            self._epoch += 1
            self._items.clear()

    def written(self, key: str, entry: ConfigEntry | object | None) -> None:
        """Record our own write (read-your-writes): its entry, or _FORGET to drop the key."""
        with self._lock:
            self._generations[key] = self._generations.get(key, 0) + 1
            current = self._items.get(key)
            if not isinstance(entry, ConfigEntry) or entry.version < self._announced.get(key, 0):
                # Deleted (version unknown), or a newer change was already announced.
                self._items.pop(key, None)
            elif current is None or current.entry is None or current.entry.version <= entry.version:
                self._items[key] = _cached(entry)

    def changed(self, change: ConfigChange) -> None:
        """A change was committed: drop the key unless we already hold that version or newer."""
        with self._lock:
            key = change.key
            self._announced[key] = max(self._announced.get(key, 0), change.version)
            current = self._items.get(key)
            if (
                current is not None
                and current.entry is not None
                and current.entry.version >= change.version
            ):
                return
            self._generations[key] = self._generations.get(key, 0) + 1
            self._items.pop(key, None)


def _remember_write(cache: ConfigCache, call: Call[Any], result: Any) -> None:
    """After a successful write, put its outcome in the cache."""
    name = call.operation.name
    if name not in _WRITES:
        return
    if isinstance(result, ConfigEntry):
        cache.written(result.key, result)
    elif isinstance(result, list):  # set_many
        for entry in result:
            cache.written(entry.key, entry)
    elif name == "config.delete" and call.operation.key is not None:
        cache.written(call.operation.key, _FORGET)


class _RecordingTransaction(ConfigTransaction):
    """A transaction that notes which keys it wrote, so the cache can drop them after."""

    def __init__(self, inner: ConfigTransaction, written: set[str]) -> None:
        super().__init__(inner.connection, inner._queries, inner._secrets)
        self._written = written

    def _run(self, call: Call[T]) -> T:
        result = super()._run(call)
        if call.operation.name in _WRITES:
            if isinstance(result, list):
                self._written.update(entry.key for entry in result)
            elif call.operation.key is not None:
                self._written.add(call.operation.key)
        return result


def _cached(entry: ConfigEntry | None) -> _Cached:
    if entry is None or isinstance(entry.value, _IMMUTABLE):
        return _Cached(entry, None)
    return _Cached(entry, encode_json(entry.value))


class CachedConfigDAL(ConfigDAL):
    """A :class:`ConfigDAL` whose reads are served from a feed-invalidated in-process cache.

    Same constructor as ConfigDAL. Cache hits are not logged one by one (that
    would cost more than the hit); :meth:`health` reports size and age.
    """

    def __init__(self, dsn: str, **options: Any) -> None:
        super().__init__(dsn, **options)
        self._cache = ConfigCache()
        self._subscription: Any = None

    def open(self) -> None:
        """Open the pool and start the change feed that keeps the cache fresh."""
        super().open()
        if self._subscription is None:
            feed = self._change_feed()
            # Entries filled before the feed first listened may have missed a change
            # that nobody will announce again: drop them when it first syncs, and
            # drop what other threads filled before this subscription existed.
            feed.on_first_sync(self._cache.reset)
            self._subscription = feed.subscribe(self._cache.changed)
            self._cache.reset()
            # Serve from cache as soon as the feed is live; until then reads go to
            # the database, so not waiting long here is safe.
            feed.wait_connected(_FEED_WAIT_SECONDS)

    def _feed_live(self) -> bool:
        feed = self._feed
        return feed is not None and feed.connected

    # -- reads -----------------------------------------------------------------------

    def get(self, key: str, default: Any = _UNSET) -> Any:
        """The value of ``key``, from the cache when it is fresh (see the module docstring)."""
        if self._feed_live():
            try:
                value = self._cache.value(key)
            except TypeError:  # unhashable: not a key at all
                validate_key(key)
                raise
            if value is not _MISS:
                if value is None and (entry := self._cache.entry(key)) is None:
                    return self._default_for(key, default)  # known absent
                return value
        try:
            entry = self._read_entry(key)
        except DatabaseConnectionError:  # unreachable, and the key was never cached
            if default is _UNSET and key not in self._defaults:
                raise
            get_logger().warning("config.get", key=key, outcome="default_while_unreachable")
            return self._default_for(key, default)
        if entry is None:
            return self._default_for(key, default)
        assert isinstance(entry, ConfigEntry)
        return entry.value

    def get_entry(self, key: str) -> ConfigEntry | None:
        """The entry of ``key``, from the cache when it is fresh."""
        if self._feed_live():
            cached = self._cache.entry(key)
            if cached is not _MISS:
                return cached  # type: ignore[return-value]  # ConfigEntry | None here
        return self._read_entry(key)  # type: ignore[return-value]  # ConfigEntry | None

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """The values of ``keys``: cached ones from memory, the rest in one round trip."""
        if isinstance(keys, str):
            raise InvalidConfigurationError("get_many takes an iterable of keys, not one str")
        wanted = list(dict.fromkeys(keys))
        found: dict[str, Any] = {}
        missing: list[str] = []
        live = self._feed_live()
        for key in wanted:
            value = self._cache.value(key) if live else _MISS
            if value is _MISS:
                missing.append(validate_key(key))
            elif value is not None or self._cache.entry(key) is not None:
                found[key] = value
        if missing:
            found.update(self._read_many(missing))
        return {key: found[key] for key in wanted if key in found}

    def _read_entry(self, key: str) -> ConfigEntry | object | None:
        """Read through to the database and fill the cache; stale cached entry if unreachable."""
        generation = self._cache.generation(key)
        try:
            entry = super().get_entry(key)
        except DatabaseConnectionError as exc:
            cached = self._cache.entry(key)
            if cached is _MISS:
                raise
            self._warn_stale(key, exc)
            return cached
        self._cache.fill(key, entry, generation)
        return entry

    def _read_many(self, keys: list[str]) -> dict[str, Any]:
        generations = {key: self._cache.generation(key) for key in keys}
        operation = Operation("config.get_many")

        def finish(rows: Any) -> dict[str, Any]:
            entries = {row[0]: entry_from_row(row) for row in rows}
            for key in keys:
                self._cache.fill(key, entries.get(key), generations[key])
            operation.done(requested=len(keys), found=len(entries), cached=False)
            return {key: entry.value for key, entry in entries.items()}

        call = Call(
            operation, "get_configurations", {"keys": keys}, finish, idempotent=True, rows=True
        )
        try:
            return self._run(call)
        except DatabaseConnectionError as exc:
            stale: dict[str, Any] = {}
            for key in keys:
                entry = self._cache.entry(key)
                if entry is _MISS:
                    raise
                if isinstance(entry, ConfigEntry):
                    stale[key] = entry.value
            self._warn_stale(",".join(keys), exc)
            return stale

    # -- defaults and failures --------------------------------------------------------

    def _default_for(self, key: str, default: Any) -> Any:
        return self._defaults.get(key) if default is _UNSET else default

    def _warn_stale(self, key: str, exc: BaseException) -> None:
        get_logger().warning("config.get", key=key, outcome="stale", error=str(exc))

    # -- writes: read-your-writes ------------------------------------------------------

    def _run(self, call: Call[T]) -> T:
        result = super()._run(call)
        _remember_write(self._cache, call, result)
        return result

    @contextmanager
    def transaction(self) -> Iterator[ConfigTransaction]:
        """Like :meth:`ConfigDAL.transaction`; keys written in it are dropped from the cache.

        Dropped when the block ends, committed or not: the next read goes to the
        database, so a committed change is seen at once by this process.
        """
        written: set[str] = set()
        try:
            with super().transaction() as tx:
                yield _RecordingTransaction(tx, written)
        finally:
            for key in written:
                self._cache.written(key, _FORGET)

    # -- health ------------------------------------------------------------------------

    def health(self) -> Health:
        """ConfigDAL.health plus the cache's size and the age of its last resync."""
        report = super().health()
        feed = self._feed
        age = None
        if feed is not None and feed.last_sync is not None:
            age = round(time.monotonic() - feed.last_sync, 3)
        return dataclasses.replace(report, cache_size=len(self._cache), cache_age_seconds=age)
