"""The cache's bookkeeping, without I/O: entries, per-key generations, announced versions.

Used by the cached DALs (``feed/cache_async.py`` and its generated twin): they
decide when to read through and what to trust; this decides what may be stored
so that a read racing a change never leaves an old value behind.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from typing import Any, Final

from ..codec import encode_json
from ..entries import ConfigChange, ConfigEntry

__all__ = ["FORGET", "MISS", "ConfigCache"]

MISS: Final = object()  # not cached
FORGET: Final = object()  # written(): drop the key, its new version is not known here
_IMMUTABLE: Final = (str, int, float, bool, type(None))


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
        """The cached value of ``key``; ``None`` if known absent; ``MISS`` if not cached."""
        item = self._items.get(key)  # a dict read is atomic: no lock on the hot path
        if item is None:
            return MISS
        if item.text is not None:
            return json.loads(item.text)
        return item.entry.value if item.entry is not None else None

    def entry(self, key: str) -> ConfigEntry | object | None:
        """The cached entry of ``key`` (a copy if mutable), None if known absent, or ``MISS``."""
        item = self._items.get(key)
        if item is None:
            return MISS
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
        """Record our own write (read-your-writes): its entry, or FORGET to drop the key."""
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


def _cached(entry: ConfigEntry | None) -> _Cached:
    if entry is None or isinstance(entry.value, _IMMUTABLE):
        return _Cached(entry, None)
    return _Cached(entry, encode_json(entry.value))
