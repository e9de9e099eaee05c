"""The cache's bookkeeping without a database: generations, own writes, announced changes,
the copies a hit hands out, and when the cached DAL may serve a hit at all."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, Final

from amira_data_access import CachedConfigDAL
from amira_data_access.entries import ConfigChange, ConfigEntry
from amira_data_access.feed.cache import _liveness
from amira_data_access.feed.cache_state import ABSENT, FORGET, MISS, ConfigCache
from amira_data_access.feed.listener import ChangeFeed
from amira_data_access.feed.local import LocalFeed

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _entry(key: str, value: object, version: int) -> ConfigEntry:
    data_type = "json" if isinstance(value, dict | list) else "int"
    return ConfigEntry(key, value, data_type, None, version, NOW, NOW, "t")  # type: ignore[arg-type]


def _change(key: str, version: int, operation: str = "update") -> ConfigChange:
    return ConfigChange(key, version, operation, "t", 1)  # type: ignore[arg-type]


def test_a_fill_that_raced_with_a_change_is_not_stored() -> None:
    """A read that started before a change must not put its older result in the cache."""
    cache = ConfigCache()
    generation = cache.generation("k")
    cache.changed(_change("k", 2))  # announced while the read was in flight
    cache.fill("k", _entry("k", 1, 1), generation)
    assert cache.value("k") is MISS


def test_fill_and_absent_keys() -> None:
    """Filled entries and known-absent keys are both answered from memory."""
    cache = ConfigCache()
    cache.fill("k", _entry("k", 5, 1), cache.generation("k"))
    cache.fill("gone", None, cache.generation("gone"))
    assert cache.value("k") == 5
    assert cache.value("gone") is ABSENT
    assert cache.entry("gone") is None
    assert cache.value("never") is MISS


def test_announcements_of_versions_already_held_are_ignored() -> None:
    """Our own write's notification arrives later: it must not drop the newer entry."""
    cache = ConfigCache()
    cache.written("k", _entry("k", 3, 3))
    cache.changed(_change("k", 3))
    assert cache.value("k") == 3
    cache.changed(_change("k", 4))
    assert cache.value("k") is MISS


def test_own_writes_never_go_back_in_version() -> None:
    """An older write result does not replace a newer cached entry; FORGET drops the key."""
    cache = ConfigCache()
    cache.written("k", _entry("k", "new", 5))
    cache.written("k", _entry("k", "old", 4))
    assert cache.value("k") == "new"
    cache.written("k", FORGET)
    assert cache.value("k") is MISS


def test_containers_are_copied_on_every_read() -> None:
    """A caller mutating a cached dict or list does not change the cache."""
    cache = ConfigCache()
    cache.written("k", _entry("k", {"a": [1]}, 1))
    first = cache.value("k")
    first["a"].append(2)
    assert cache.value("k") == {"a": [1]}
    entry = cache.entry("k")
    assert isinstance(entry, ConfigEntry)
    entry.value["a"].append(3)
    assert cache.value("k") == {"a": [1]}


def test_a_reset_voids_fills_that_began_before_it() -> None:
    """The feed's first sync resets the cache; a read started before it must not fill."""
    cache = ConfigCache()
    cache.written("kept", _entry("kept", 1, 1))
    generation = cache.generation("k")
    cache.reset()
    cache.fill("k", _entry("k", 1, 1), generation)
    assert cache.value("k") is MISS
    assert cache.value("kept") is MISS


def test_an_own_write_older_than_an_announced_change_is_not_stored() -> None:
    """Our write returned v2, but v3 was announced first: the cache must not keep v2."""
    cache = ConfigCache()
    cache.changed(_change("k", 3))
    cache.written("k", _entry("k", "mine", 2))
    assert cache.value("k") is MISS
    cache.written("k", _entry("k", "newer", 4))
    assert cache.value("k") == "newer"


def test_entries_come_back_whole_and_equal() -> None:
    """What was stored comes back as an equal ConfigEntry, containers included."""
    cache = ConfigCache()
    for key, value in [("s", "text"), ("j", {"a": [1, 2.5, None, "x"], "b": {"c": True}})]:
        entry = _entry(key, value, 4)
        cache.written(key, entry)
        assert cache.entry(key) == entry
        assert cache.value(key) == value
        assert type(cache.value(key)) is type(value)


def test_cached_rows_share_repeated_text() -> None:
    """The data type and the actor are stored once, not once per key (memory per key)."""
    cache = ConfigCache()
    for key in ("a", "b"):
        actor = "".join(["svc-", "chat"])  # a new str object each time, as rows bring them
        cache.written(key, ConfigEntry(key, 1, "".join(["i", "nt"]), None, 1, NOW, NOW, actor))  # type: ignore[arg-type]
    first, second = cache.entry("a"), cache.entry("b")
    assert isinstance(first, ConfigEntry)
    assert isinstance(second, ConfigEntry)
    assert first.updated_by is second.updated_by
    assert first.data_type is second.data_type


def test_a_fill_of_a_key_nobody_touched_is_stored() -> None:
    """A key never written nor announced here: what the read found is kept (a miss
    would send every read of it to the database)."""
    cache = ConfigCache()
    cache.fill("fresh", _entry("fresh", 7, 3), cache.generation("fresh"))
    assert cache.value("fresh") == 7


def test_an_own_write_of_the_announced_version_is_kept() -> None:
    """Our write of version 2, after version 2 itself was announced: that is the newest
    value, so it is held (only an older one than announced is dropped)."""
    cache = ConfigCache()
    cache.changed(_change("k", 2))
    cache.written("k", _entry("k", 20, 2))
    assert cache.value("k") == 20
    cache.written("k", _entry("k", 10, 1))  # older than announced: dropped
    assert cache.value("k") is MISS


def _containers(value: Any) -> Iterator[Any]:
    """Every dict and list in a JSON tree, the tree itself first."""
    if isinstance(value, dict | list):
        yield value
        for item in value.values() if isinstance(value, dict) else value:
            yield from _containers(item)


NESTED: Final = {
    "rules": [{"if": {"in": ["a", [1, 2]]}, "then": [[], {}]}, "x", 1.5, None],
    "flat": {"a": 1, "b": True},
    "empty": [],
}


def test_a_nested_value_is_copied_at_every_depth() -> None:
    """No list or dict handed out, however deep, is the cache's own: mutating any changes
    nothing cached (the copy plan names every container, not only the top one)."""
    cache = ConfigCache()
    cache.written("k", _entry("k", NESTED, 1))
    held = cache.rows["k"][0]
    for got in (cache.value("k"), cache.entry("k").value):  # type: ignore[union-attr]
        assert got == NESTED
        handed = {id(c) for c in _containers(got)}
        assert handed.isdisjoint(id(c) for c in _containers(held))
        assert len(handed) == len(list(_containers(NESTED)))  # none shared twice either
        for container in _containers(got):
            container.clear()
        assert cache.value("k") == NESTED


def test_the_cache_keeps_its_own_copy_of_what_it_was_given() -> None:
    """The entry a write or a read returned to its caller is not the cached tree."""
    cache = ConfigCache()
    value = {"a": [1]}
    cache.fill("k", _entry("k", value, 1), cache.generation("k"))
    value["a"].append(2)
    value["b"] = 0
    assert cache.value("k") == {"a": [1]}


def test_values_that_are_not_plain_json_trees_are_still_copied() -> None:
    """Nested deeper than a tree is kept, or holding a non-JSON type: kept marshal-ed, and
    still equal and a fresh copy at each read."""
    deep: Any = [1]
    for _ in range(300):
        deep = [deep]
    cache = ConfigCache()
    for key, value in [("deep", deep), ("tuple", {"a": (1, 2)}), ("keys", {1: "x"})]:
        cache.written(key, _entry(key, value, 1))
        first = cache.value(key)
        assert first == value
        assert first is not cache.value(key)
        assert cache.entry(key).value == value  # type: ignore[union-attr]


def test_immutable_values_are_handed_out_without_a_copy() -> None:
    """str, int, float, bool and None need no copy: a hit returns the stored object."""
    cache = ConfigCache()
    for key, value in [("s", "".join(["te", "xt"])), ("i", 10**20), ("f", 2.5), ("n", None)]:
        cache.written(key, _entry(key, value, 1))
        assert cache.value(key) is cache.value(key) is cache.rows[key][0]


def test_rows_share_equal_timestamps_descriptions_and_object_keys() -> None:
    """Memory per key: created_at is updated_at's object when equal; descriptions and the
    object keys of json values are stored once across rows."""
    cache = ConfigCache()
    for key in ("a", "b"):
        description = "".join(["shared ", "text"])
        name = "".join(["ena", "bled"])
        created = datetime(2026, 1, 1, tzinfo=UTC)
        entry = ConfigEntry(key, {name: True}, "json", description, 1, created, NOW, "t")
        cache.written(key, entry)
    first, second = cache.entry("a"), cache.entry("b")
    assert isinstance(first, ConfigEntry)
    assert isinstance(second, ConfigEntry)
    assert first.created_at is first.updated_at
    assert first.description is second.description
    assert next(iter(cache.rows["a"][0])) is next(iter(cache.rows["b"][0]))
    changed = datetime(2026, 2, 1, tzinfo=UTC)
    cache.written("c", ConfigEntry("c", 1, "int", None, 1, NOW, changed, "t"))
    third = cache.entry("c")
    assert isinstance(third, ConfigEntry)
    assert (third.created_at, third.updated_at) == (NOW, changed)


# -- the cached DAL's hit path, without a database ---------------------------------------


def _offline_dal(read: list[str]) -> CachedConfigDAL:
    """A cached DAL that never connects: a read-through answers "from the database"."""
    dal = CachedConfigDAL("host=/nonexistent dbname=none")

    def read_entry(key: str) -> ConfigEntry | None:
        read.append(key)
        return _entry(key, "from the database", 9)

    dal._read_entry = read_entry  # type: ignore[method-assign]
    return dal


def test_hits_are_served_only_while_the_listener_is_live() -> None:
    """The hit path reads the listener's state itself: a hit while it is connected, the
    database the moment it is not, and never after close() (whatever the feed says)."""
    read: list[str] = []
    dal = _offline_dal(read)
    cache = dal._cache
    cache.fill("s", _entry("s", "cached", 1), cache.generation("s"))
    cache.fill("j", _entry("j", {"a": [1]}, 1), cache.generation("j"))
    cache.fill("gone", None, cache.generation("gone"))
    feed = ChangeFeed("host=/nonexistent", {})  # never started: its state is set by hand
    assert dal.get("s") == "from the database"  # not following a feed yet
    dal._hits_live = _liveness(feed)
    assert dal.get("s") == "from the database"  # followed, not connected yet
    feed._set_connected(True)
    read.clear()
    assert dal.get("s") == "cached"
    got = dal.get("j")
    got["a"].append(2)
    assert dal.get("j") == {"a": [1]}
    assert dal.get("gone", default="d") == "d"
    assert dal.get_many(["s", "gone"]) == {"s": "cached"}
    assert read == []
    feed._set_connected(False)  # the listener lost its connection
    assert dal.get("s") == "from the database"
    assert dal.get("gone", default="d") == "from the database"
    feed._set_connected(True)
    assert dal.get("s") == "cached"
    dal.close()
    assert dal.get("s") == "from the database"


def test_the_liveness_of_another_feed_is_asked_at_each_read() -> None:
    """A feed that is not the listener (the in-memory store's) is asked ``connected``."""
    feed = LocalFeed(lambda _revision: [], threading.RLock())
    live = _liveness(feed)
    assert live._flag
    feed.close()
    assert not live._flag
