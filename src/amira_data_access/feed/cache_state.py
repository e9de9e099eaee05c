"""The cache's bookkeeping, without I/O: entries, per-key generations, announced versions.

Used by the cached DALs (``feed/cache_async.py`` and its generated twin): they
decide when to read through and what to trust; this decides what may be stored
so that a read racing a change never leaves an old value behind.

Kept small and fast, because a cache hit is the whole cost of a read: each key
is one tuple (not an entry object), text that repeats from row to row (types,
actors) is stored once, and a list or dict value is kept ``marshal``-ed, so a
hit hands out a fresh copy five times faster than decoding JSON again.
"""

from __future__ import annotations

import marshal
import threading
from datetime import datetime
from typing import Any, Final

from ..codec import DATA_TYPES, DataType
from ..entries import ConfigChange, ConfigEntry
from ..secrets import SealedSecret

__all__ = ["ABSENT", "FORGET", "MISS", "ConfigCache"]

MISS: Final = object()  # not cached
ABSENT: Final = object()  # cached: the key does not exist
FORGET: Final = object()  # written(): drop the key, its new version is not known here
# SealedSecret: frozen, and a secret is cached as its envelope only (opened at each get).
_IMMUTABLE: Final = (str, int, float, bool, type(None), SealedSecret)
_ACTORS_KEPT: Final = 10_000  # distinct actor names stored once each

# A cached row: (value, version, data_type, description, created_at, updated_at,
# updated_by). A value of type bytes is a marshal-ed list or dict: configuration
# values are JSON, which has no bytes, so the type says it.
_Row = tuple[Any, int, DataType, str | None, datetime, datetime, str]
# The data types' own str objects, so that each row shares them.
_DATA_TYPES: Final[dict[str, DataType]] = {name: name for name in DATA_TYPES}


class ConfigCache:
    """Thread-safe key -> entry store with per-key generations (no I/O).

    A read captures :meth:`generation` before it goes to the database and may
    :meth:`fill` only if nothing moved since: a change announced meanwhile, an
    own write, or a :meth:`reset` (the feed's first sync) all move it. The
    highest version announced per key is remembered, so a write result that
    raced with a newer announced change is not stored over it.
    """

    def __init__(self) -> None:
        self._items: dict[str, _Row | object] = {}  # a row, or ABSENT
        self._generations: dict[str, int] = {}
        self._announced: dict[str, int] = {}  # highest version the feed announced per key
        self._epoch = 0  # bumped by reset(): fills begun before it are void
        self._lock = threading.Lock()
        self._actors: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self._items)

    def value(self, key: str) -> Any:
        """The cached value of ``key`` (a copy if mutable); ``ABSENT`` if known absent;
        ``MISS`` if not cached."""
        row = self._items.get(key, MISS)  # a dict read is atomic: no lock on the hot path
        if row is MISS or row is ABSENT:
            return row
        value = row[0]  # type: ignore[index]  # a row here
        # marshal.loads only ever reads what _row() dumped in this process: not untrusted input.
        return marshal.loads(value) if type(value) is bytes else value  # noqa: S302

    def stamp(self, key: str) -> tuple[int, datetime, DataType] | None:
        """The cached version, ``updated_at`` and data type of ``key``, without copying its
        value; None if not cached (or known absent). For the flag evaluation's shortcut."""
        row = self._items.get(key, MISS)
        if row is MISS or row is ABSENT:
            return None
        cached: _Row = row  # type: ignore[assignment]  # neither MISS nor ABSENT: a row
        return cached[1], cached[5], cached[2]

    def entry(self, key: str) -> ConfigEntry | object | None:
        """The cached entry of ``key`` (a copy if mutable), None if known absent, or ``MISS``."""
        row = self._items.get(key, MISS)
        if row is MISS:
            return MISS
        if row is ABSENT:
            return None
        cached: _Row = row  # type: ignore[assignment]  # neither MISS nor ABSENT: a row
        value, version, data_type, description, created_at, updated_at, updated_by = cached
        if type(value) is bytes:
            value = marshal.loads(value)  # noqa: S302  # our own dump, see value()
        return ConfigEntry(
            key,
            value,
            data_type,
            description,
            version,
            created_at,
            updated_at,
            updated_by,
        )

    def generation(self, key: str) -> tuple[int, int]:
        """The key's generation now; pass it to :meth:`fill` after reading the database."""
        return self._epoch, self._generations.get(key, 0)

    def cached_keys(self, keys: set[str]) -> list[str]:
        """Those of ``keys`` held now (present or known absent): what a change re-reads."""
        items = self._items
        return [key for key in keys if key in items]

    def fill(self, key: str, entry: ConfigEntry | None, generation: tuple[int, int]) -> None:
        """Store what a read found, unless anything about the key moved while it was in flight."""
        with self._lock:
            if (self._epoch, self._generations.get(key, 0)) == generation:
                self._items[key] = self._row(entry)

    def reset(self) -> None:
        """Forget everything: entries filled while no feed was listening cannot be trusted."""
        with self._lock:
            self._epoch += 1
            self._items.clear()

    def written(self, key: str, entry: ConfigEntry | object | None) -> None:
        """Record our own write (read-your-writes): its entry, or FORGET to drop the key."""
        with self._lock:
            self._generations[key] = self._generations.get(key, 0) + 1
            current = self._items.get(key)
            if not isinstance(entry, ConfigEntry) or entry.version < self._announced.get(key, 0):
                # Deleted (version unknown), or a newer change was already announced.
                self._items.pop(key, None)
            elif _version(current) <= entry.version:
                self._items[key] = self._row(entry)

    def changed(self, change: ConfigChange) -> None:
        """A change was committed: drop the key unless we already hold that version or newer."""
        with self._lock:
            key = change.key
            self._announced[key] = max(self._announced.get(key, 0), change.version)
            if _version(self._items.get(key)) >= change.version:
                return
            self._generations[key] = self._generations.get(key, 0) + 1
            self._items.pop(key, None)

    def _row(self, entry: ConfigEntry | None) -> _Row | object:
        if entry is None:
            return ABSENT
        value = entry.value
        if not isinstance(value, _IMMUTABLE):
            value = marshal.dumps(value)
        actor = self._actors.get(entry.updated_by)
        if actor is None:
            actor = entry.updated_by
            if len(self._actors) < _ACTORS_KEPT:
                self._actors[actor] = actor
        return (
            value,
            entry.version,
            _DATA_TYPES[entry.data_type],
            entry.description,
            entry.created_at,
            entry.updated_at,
            actor,
        )


def _version(row: _Row | object | None) -> int:
    """The version a cached row holds; 0 when nothing (or only absence) is cached."""
    return row[1] if isinstance(row, tuple) else 0
