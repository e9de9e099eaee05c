"""The cache's bookkeeping without a database: generations, own writes, announced changes."""

from __future__ import annotations

from datetime import UTC, datetime

from amira_data_access.entries import ConfigChange, ConfigEntry
from amira_data_access.feed.cache_state import ABSENT, FORGET, MISS, ConfigCache

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
