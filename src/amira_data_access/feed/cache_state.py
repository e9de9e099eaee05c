"""The cache's bookkeeping, without I/O: entries, per-key generations, announced versions.

Used by the cached DALs (``feed/cache_async.py`` and its generated twin): they
decide when to read through and what to trust; this decides what may be stored
so that a read racing a change never leaves an old value behind.

Kept small and fast, because a cache hit is the whole cost of a read:

* each key is one tuple, a :data:`Row` (not an entry object), that says in its
  second field how a hit hands the value out: as is (str, int, float, bool,
  None: immutable), copied (a list or dict), or opened (a secret's envelope);
  so the cached DAL's ``get`` is one dict lookup and a test of that field;
* a list or dict is held as our own tree with its *copy plan*: which of its
  children are containers themselves. :func:`copy_tree` copies by the plan,
  ``dict.copy()``/``list.copy()`` for every container and nothing for the
  scalars, so a caller who mutates what ``get`` returned never changes the
  cache, for less than half the cost of ``marshal.loads`` (and a seventh of
  ``json.loads``). Values that are not plain JSON trees (never read from the
  database; or nested deeper than :data:`_TREE_DEPTH`) are kept ``marshal``-ed;
* text that repeats from row to row is stored once: data types, actors,
  descriptions, object keys of json values, copy plans (each table bounded);
  and ``created_at`` is ``updated_at``'s object when they are equal.
"""

from __future__ import annotations

import marshal
import threading
from datetime import datetime
from typing import Any, Final

from ..codec import DATA_TYPES, DataType
from ..entries import ConfigChange, ConfigEntry
from ..secrets import SealedSecret

__all__ = ["ABSENT", "FORGET", "MISS", "ConfigCache", "Row", "copy_tree"]

MISS: Final = object()  # not cached
ABSENT: Final = object()  # cached: the key does not exist
FORGET: Final = object()  # written(): drop the key, its new version is not known here
_SHARED_KEPT: Final = 10_000  # distinct texts (or plans) stored once each, per table
# Descriptions repeat only when templated (a few distinct ones); mostly each key has its
# own, which a table could not share but would pay an entry for: keep it small.
_DESCRIPTIONS_KEPT: Final = 1_000
_TREE_DEPTH: Final = 100  # deeper containers are kept marshal-ed (copy_tree recurses)

# A cached row: (value, how, version, data_type, description, created_at, updated_at,
# updated_by). ``how`` says what a hit does with ``value``:
#   None      hand it out as is (immutable: str, int, float, bool, None)
#   a tuple   a list or dict with that copy plan: hand out copy_tree(value, how)
#   _SEALED   a secret's envelope (SealedSecret): the DAL opens it at each read
#   _MARSHAL  bytes of marshal.dumps: hand out marshal.loads(value)
#   _ABSENT   the key does not exist (version 0)
Row = tuple[Any, Any, int, DataType, str | None, datetime, datetime, str]
# A copy plan: (key or index, that child's plan) for each child that is a container.
Plan = tuple[tuple[Any, "Plan"], ...]
_SEALED: Final = "sealed"
_MARSHAL: Final = "marshal"
_ABSENT: Final = "absent"
_SCALARS: Final = frozenset({str, int, float, bool, type(None)})
_NO_TIME: Final = datetime.min
_ABSENT_ROW: Final[Row] = (None, _ABSENT, 0, "json", None, _NO_TIME, _NO_TIME, "")
# The data types' own str objects, so that each row shares them.
_DATA_TYPES: Final[dict[str, DataType]] = {name: name for name in DATA_TYPES}


def copy_tree(value: Any, plan: Plan) -> Any:
    """A deep copy of a list or dict held by the cache, made by its copy plan."""
    out = value.copy()
    for at, inner in plan:
        out[at] = copy_tree(value[at], inner) if inner else value[at].copy()
    return out


class _NotATree(Exception):  # noqa: N818  # internal: "keep it marshal-ed instead"
    """A value that is not a plain JSON tree of dicts, lists and scalars."""


class _Shared:
    """Equal objects stored once: the first one seen is handed out for the others (bounded)."""

    __slots__ = ("_kept", "_limit")

    def __init__(self, limit: int = _SHARED_KEPT) -> None:
        self._kept: dict[Any, Any] = {}
        self._limit = limit

    def __call__(self, obj: Any) -> Any:
        kept = self._kept.get(obj)
        if kept is None:
            kept = obj
            if len(self._kept) < self._limit:
                self._kept[obj] = obj
        return kept


class ConfigCache:
    """Thread-safe key -> entry store with per-key generations (no I/O).

    A read captures :meth:`generation` before it goes to the database and may
    :meth:`fill` only if nothing moved since: a change announced meanwhile, an
    own write, or a :meth:`reset` (the feed's first sync) all move it. The
    highest version announced per key is remembered, so a write result that
    raced with a newer announced change is not stored over it.

    :attr:`rows` is the table itself, for the cached DAL's hit path (read it,
    never write it: only this class does, under its lock; it is never replaced).
    """

    def __init__(self) -> None:
        self.rows: Final[dict[str, Row]] = {}
        self._generations: dict[str, int] = {}
        self._announced: dict[str, int] = {}  # highest version the feed announced per key
        self._epoch = 0  # bumped by reset(): fills begun before it are void
        self._lock = threading.Lock()
        self._actors = _Shared()
        self._descriptions = _Shared(_DESCRIPTIONS_KEPT)
        self._names = _Shared()  # object keys of json values
        self._plans = _Shared()

    def __len__(self) -> int:
        return len(self.rows)

    def value(self, key: str) -> Any:
        """The cached value of ``key`` (a copy if mutable); ``ABSENT`` if known absent;
        ``MISS`` if not cached."""
        row = self.rows.get(key)  # a dict read is atomic: no lock on the hot path
        if row is None:
            return MISS
        return hit(row)

    def stamp(self, key: str) -> tuple[int, datetime, DataType] | None:
        """The cached version, ``updated_at`` and data type of ``key``, without copying its
        value; None if not cached (or known absent). For the flag evaluation's shortcut."""
        row = self.rows.get(key)
        if row is None or row[1] is _ABSENT:
            return None
        return row[2], row[6], row[3]

    def entry(self, key: str) -> ConfigEntry | object | None:
        """The cached entry of ``key`` (a copy if mutable), None if known absent, or ``MISS``."""
        row = self.rows.get(key)
        if row is None:
            return MISS
        if row[1] is _ABSENT:
            return None
        _, _, version, data_type, description, created_at, updated_at, updated_by = row
        return ConfigEntry(
            key,
            hit(row),
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
        rows = self.rows
        return [key for key in keys if key in rows]

    def fill(self, key: str, entry: ConfigEntry | None, generation: tuple[int, int]) -> None:
        """Store what a read found, unless anything about the key moved while it was in flight."""
        row = self._row(entry)  # outside the lock: copying a large value takes a while
        with self._lock:
            if (self._epoch, self._generations.get(key, 0)) == generation:
                self.rows[key] = row

    def reset(self) -> None:
        """Forget everything: entries filled while no feed was listening cannot be trusted."""
        with self._lock:
            self._epoch += 1
            self.rows.clear()

    def written(self, key: str, entry: ConfigEntry | object | None) -> None:
        """Record our own write (read-your-writes): its entry, or FORGET to drop the key."""
        with self._lock:
            self._generations[key] = self._generations.get(key, 0) + 1
            current = self.rows.get(key)
            if not isinstance(entry, ConfigEntry) or entry.version < self._announced.get(key, 0):
                # Deleted (version unknown), or a newer change was already announced.
                self.rows.pop(key, None)
            elif _version(current) <= entry.version:
                self.rows[key] = self._row(entry)

    def changed(self, change: ConfigChange) -> None:
        """A change was committed: drop the key unless we already hold that version or newer."""
        with self._lock:
            key = change.key
            self._announced[key] = max(self._announced.get(key, 0), change.version)
            if _version(self.rows.get(key)) >= change.version:
                return
            self._generations[key] = self._generations.get(key, 0) + 1
            self.rows.pop(key, None)

    def _row(self, entry: ConfigEntry | None) -> Row:
        if entry is None:
            return _ABSENT_ROW
        value = entry.value
        how: Any = None
        cls = value.__class__
        if cls is SealedSecret:
            how = _SEALED  # frozen: cached as its envelope only, opened at each get
        elif cls not in _SCALARS:
            try:
                value, how = self._tree(value, 0)
            except _NotATree:
                value, how = marshal.dumps(value), _MARSHAL
        updated_at = entry.updated_at
        created_at = entry.created_at
        if created_at == updated_at:
            created_at = updated_at  # one object for both: a key never changed since
        description = entry.description
        return (
            value,
            how,
            entry.version,
            _DATA_TYPES[entry.data_type],
            None if description is None else self._descriptions(description),
            created_at,
            updated_at,
            self._actors(entry.updated_by),
        )

    def _tree(self, value: Any, depth: int) -> tuple[Any, Plan]:
        """Our own copy of a JSON container, and its copy plan (see :func:`copy_tree`)."""
        if depth > _TREE_DEPTH:
            raise _NotATree
        plan: list[tuple[Any, Plan]] = []
        out: Any
        cls = value.__class__
        if cls is dict:
            out = {}
            for name, item in value.items():
                if name.__class__ is not str:
                    raise _NotATree
                name = self._names(name)
                if item.__class__ not in _SCALARS:
                    item, inner = self._tree(item, depth + 1)
                    plan.append((name, inner))
                out[name] = item
        elif cls is list:
            out = value.copy()  # sized exactly (appending would over-allocate)
            for index, item in enumerate(value):
                if item.__class__ not in _SCALARS:
                    out[index], inner = self._tree(item, depth + 1)
                    plan.append((index, inner))
        else:
            raise _NotATree
        return out, self._plans(tuple(plan))


def hit(row: Row) -> Any:
    """What a hit on ``row`` hands out: the value (a copy if mutable; a secret's envelope,
    to be opened), or ``ABSENT``. The cached DAL's ``get`` inlines the common cases."""
    how = row[1]
    if how is None:
        return row[0]
    if how.__class__ is tuple:
        return copy_tree(row[0], how)
    if how is _SEALED:
        return row[0]
    if how is _MARSHAL:
        return marshal.loads(row[0])  # noqa: S302  # our own dump of a value read or written
    return ABSENT


def _version(row: Row | None) -> int:
    """The version a cached row holds; 0 when nothing (or only absence) is cached."""
    return 0 if row is None else row[2]
