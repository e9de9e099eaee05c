"""The behaviour every configuration store shares: sync DAL, async DAL, in-memory (sync and async).

Each test runs once per store (see conftest.py); a store that disagrees with
the others fails the same test. This file is the behavioural specification;
tests/integration keeps what only a real server can show (raw SQL, processes,
lost connections, retries).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from structlog.testing import capture_logs

from amira_data_access import (
    ConcurrentModificationError,
    ConfigChange,
    ConfigEntry,
    ConfigItem,
    ConfigRevision,
    ConfigStore,
    ConfigurationAccessError,
    ConflictError,
    DatabaseConnectionError,
    Health,
    InvalidConfigurationError,
    UnexpectedCountError,
)

from .conftest import CACHED, Subject


def _nothing_stored(store: ConfigStore, *keys: str) -> bool:
    return store.list() == [] and all(store.history(key) == [] for key in keys)


def _refused(attempt: Callable[[], object]) -> bool:
    try:
        attempt()
    except InvalidConfigurationError:
        return True
    return False


def _ops(revisions: list[ConfigRevision]) -> list[tuple[int, str, Any, str, str | None]]:
    return [(r.version, r.operation, r.value, r.changed_by, r.change_reason) for r in revisions]


# -- reading and writing -----------------------------------------------------------------


def test_set_returns_the_stored_entry_and_get_reads_it(subject: Subject) -> None:
    """set() returns version 1 with its audit fields; get() and get_entry() read it back."""
    store = subject.store
    entry = store.set("tone", "friendly", description="Default tone", updated_by="ops-anna")
    assert isinstance(entry, ConfigEntry)
    assert (entry.key, entry.value, entry.data_type, entry.description) == (
        "tone",
        "friendly",
        "str",
        "Default tone",
    )
    assert (entry.version, entry.updated_by) == (1, "ops-anna")
    assert entry.created_at == entry.updated_at
    assert entry.created_at.tzinfo is not None
    assert store.get("tone") == "friendly"
    assert store.get_entry("tone") == entry


def test_absent_keys_give_the_default_or_none(subject: Subject) -> None:
    """get() of an absent key gives None or the caller's default; get_entry() None."""
    store = subject.store
    assert store.get("nope") is None
    assert store.get("nope", default=42) == 42
    assert store.get("nope", 42) == 42
    assert store.get_entry("nope") is None


@pytest.mark.parametrize(
    ("value", "data_type"),
    [
        ("en-US", "str"),
        (10**30, "int"),
        (-7, "int"),
        (0.1, "float"),
        (1e300, "float"),
        (5e-324, "float"),
        (False, "bool"),
        ({"nested": [1, 2.5, None, "ü"], "ok": True}, "json"),
        ([], "json"),
        (None, "json"),
        ("text", "json"),
        (3, "json"),
    ],
)
def test_each_type_round_trips_with_its_python_type(
    subject: Subject, value: Any, data_type: str
) -> None:
    """What goes in comes out equal, with the same Python type, and the declared data_type."""
    entry = subject.store.set("k", value, data_type=data_type, updated_by="a")
    got = subject.store.get("k")
    assert got == value
    assert type(got) is type(value)
    assert (entry.value, entry.data_type) == (value, data_type)


@pytest.mark.parametrize(
    ("value", "inferred"),
    [("x", "str"), (1, "int"), (1.5, "float"), (True, "bool"), ({"a": 1}, "json"), (None, "json")],
)
def test_data_type_is_inferred_for_a_new_key(subject: Subject, value: Any, inferred: str) -> None:
    """Without data_type a new key gets the type of its value (bool before int)."""
    assert subject.store.set("k", value, updated_by="a").data_type == inferred


def test_values_come_back_as_jsonb_returns_them(subject: Subject) -> None:
    """Object keys in jsonb order (by length, then bytes) and no negative zero."""
    store = subject.store
    store.set("j", {"ccc": 1, "bb": 2, "é": 3, "a": {"yy": 1, "x": -0.0}}, updated_by="a")
    value = store.get("j")
    assert list(value) == ["a", "bb", "é", "ccc"]
    assert list(value["a"]) == ["x", "yy"]
    assert math.copysign(1.0, value["a"]["x"]) == 1.0
    store.set("f", -0.0, updated_by="a")
    assert math.copysign(1.0, store.get("f")) == 1.0


def test_a_returned_value_is_a_copy(subject: Subject) -> None:
    """Mutating what a read returned does not change the store."""
    store = subject.store
    store.set("j", {"list": [1, 2]}, updated_by="a")
    got = store.get("j")
    got["list"].append(3)
    got["new"] = True
    entry = store.get_entry("j")
    assert entry is not None
    entry.value["list"].clear()
    assert store.get("j") == {"list": [1, 2]}
    assert store.history("j")[0].value == {"list": [1, 2]}


def test_update_bumps_version_and_keeps_type_and_description(subject: Subject) -> None:
    """Each change adds one to the version; omitted type and description are kept."""
    store = subject.store
    store.set("threshold", 0.5, description="Detection threshold", updated_by="a")
    second = store.set("threshold", 0.75, updated_by="b")
    third = store.set("threshold", 1, updated_by="c")  # an int on a float key stays a float
    assert (second.version, third.version) == (2, 3)
    assert (third.data_type, third.value, third.description) == (
        "float",
        1.0,
        "Detection threshold",
    )
    assert isinstance(store.get("threshold"), float)
    assert third.updated_by == "c"
    assert third.created_at == second.created_at
    assert third.updated_at >= second.updated_at >= third.created_at


def test_explicit_data_type_changes_the_type(subject: Subject) -> None:
    """Passing data_type on an update changes the key's type."""
    store = subject.store
    store.set("mode", "fast", updated_by="a")
    entry = store.set("mode", {"speed": 3}, data_type="json", updated_by="a")
    assert entry.data_type == "json"
    assert store.get("mode") == {"speed": 3}
    assert store.set("mode", "any JSON now", updated_by="a").data_type == "json"


@pytest.mark.parametrize(
    ("stored", "value"),
    [("x", 5), (5, 1.5), (5, 2.0), (5, True), (1.5, "no"), (1.5, False), (True, 1), ("x", None)],
)
def test_a_value_not_matching_the_stored_type_is_refused(
    subject: Subject, stored: Any, value: Any
) -> None:
    """Without a new data_type the stored type holds: the write is refused, nothing changes."""
    store = subject.store
    store.set("k", stored, updated_by="a")
    with pytest.raises(InvalidConfigurationError) as info:
        store.set("k", value, updated_by="b")
    assert str(info.value) == (
        "config.set 'k': the value does not match the key's stored data_type; "
        "pass data_type= to change the type"
    )
    entry = store.get_entry("k")
    assert entry is not None
    assert (entry.value, entry.version) == (stored, 1)
    assert len(store.history("k")) == 1


def test_description_is_kept_when_omitted_and_replaced_when_given(subject: Subject) -> None:
    """description=None keeps the stored text; a new one replaces it."""
    store = subject.store
    store.set("k", 1, description="first", updated_by="a")
    assert store.set("k", 2, updated_by="a").description == "first"
    assert store.set("k", 3, description="second", updated_by="a").description == "second"
    assert store.set("k", 4, description="", updated_by="a").description == ""


def test_delete_reports_whether_the_key_existed(subject: Subject) -> None:
    """delete() is True for an existing key, then False; the key reads as absent."""
    store = subject.store
    store.set("obsolete", 1, updated_by="a")
    assert store.delete("obsolete", deleted_by="b") is True
    assert store.get("obsolete") is None
    assert store.get_entry("obsolete") is None
    assert store.delete("obsolete", deleted_by="b") is False


def test_get_many_returns_the_present_keys(subject: Subject) -> None:
    """get_many maps existing keys to values; absent and repeated keys are fine."""
    store = subject.store
    store.set_many({"a": 1, "b": "two", "c": [3], "f": 2.0}, updated_by="x")
    assert store.get_many(["a", "c", "zzz", "a", "f"]) == {"a": 1, "c": [3], "f": 2.0}
    assert isinstance(store.get_many(["f"])["f"], float)
    assert store.get_many([]) == {}
    assert store.get_many(iter(["b"])) == {"b": "two"}


def test_list_by_prefix_in_key_order_with_keyset_pages(subject: Subject) -> None:
    """list() returns the keys with the prefix, in byte order, a page at a time."""
    store = subject.store
    keys = ["svc.b", "svc.a", "svc.c", "other.x", "svc.d", "svcx", "svc.Z", "svc.é"]
    for key in keys:
        store.set(key, key, updated_by="a")
    first = store.list("svc.", limit=2)
    assert [e.key for e in first] == ["svc.Z", "svc.a"]
    second = store.list("svc.", after=first[-1].key, limit=3)
    assert [e.key for e in second] == ["svc.b", "svc.c", "svc.d"]
    assert [e.key for e in store.list("svc.", after=second[-1].key)] == ["svc.é"]
    assert store.list("svc.", after="svc.é") == []
    assert [e.key for e in store.list()] == sorted(keys)
    assert store.list()[0] == store.get_entry("other.x")


def test_list_prefix_is_literal(subject: Subject) -> None:
    """LIKE wildcards in a prefix match only themselves."""
    store = subject.store
    for key in ["a%b", "axb", "a_c"]:
        store.set(key, 1, updated_by="a")
    assert [e.key for e in store.list("a%")] == ["a%b"]
    assert [e.key for e in store.list("a_")] == ["a_c"]
    assert store.list("zzz") == []


# -- bad input: refused before anything is written, the same error everywhere ---------------


@pytest.mark.parametrize(
    ("value", "data_type"),
    [
        (True, "int"),
        ("5", "int"),
        (1.5, "int"),
        (2**53 + 1, "float"),
        (math.nan, "float"),
        (math.inf, "json"),
        ({1: "a"}, "json"),
        ((1, 2), "json"),
        (b"x", "json"),
        ("a\x00b", "str"),
        ({"k": "\ud800"}, "json"),
        pytest.param(10**4300, "int", id="int-of-4301-digits"),
        ("x", "yaml"),
    ],
)
def test_invalid_values_are_refused(subject: Subject, value: Any, data_type: str) -> None:
    """Bad values raise InvalidConfigurationError naming the key, and write nothing."""
    with pytest.raises(InvalidConfigurationError, match=r"^config\.set 'k': "):
        subject.store.set("k", value, data_type=data_type, updated_by="a")
    assert _nothing_stored(subject.store, "k")


@pytest.mark.parametrize(
    "key", ["", "has space", "tab\tkey", "x" * 256, "nul\x00", "\u2028", 5, ["x"]]
)
def test_invalid_keys_are_refused_by_every_operation(subject: Subject, key: Any) -> None:
    """Every operation taking a key refuses an invalid one."""
    store = subject.store
    when = subject.instant()
    attempts = [
        lambda: store.set(key, 1, updated_by="a"),
        lambda: store.set_default(key, 1, updated_by="a"),
        lambda: store.set_many([ConfigItem(key, 1)], updated_by="a"),
        lambda: store.get(key),
        lambda: store.get_entry(key),
        lambda: store.get_many([key]),
        lambda: store.delete(key, deleted_by="a"),
        lambda: store.history(key),
        lambda: store.get_at(key, when),
        lambda: store.rollback(key, to_version=1, updated_by="a"),
        lambda: store.list(after=key),
        lambda: store.delete_many([key], deleted_by="a"),
    ]
    for attempt in attempts:
        with pytest.raises(InvalidConfigurationError):
            attempt()
    assert store.list() == []


@pytest.mark.parametrize("actor", ["", "   ", None, "x" * 256, "line\nbreak", "nul\x00"])
def test_bad_actors_are_refused(subject: Subject, actor: Any) -> None:
    """Every write needs a short, printable, non-blank actor."""
    store = subject.store
    store.set("k", 1, updated_by="a")
    attempts = [
        lambda: store.set("k", 2, updated_by=actor),
        lambda: store.set_default("new", 2, updated_by=actor),
        lambda: store.set_many({"k": 2}, updated_by=actor),
        lambda: store.delete("k", deleted_by=actor),
        lambda: store.rollback("k", to_version=1, updated_by=actor),
    ]
    for attempt in attempts:
        with pytest.raises(InvalidConfigurationError):
            attempt()
    assert [r.version for r in store.history("k")] == [1]
    assert store.get("new") is None


def test_other_bad_arguments_are_refused(subject: Subject) -> None:
    """Limits, versions, instants, prefixes, reasons, descriptions and batches are checked."""
    store = subject.store
    store.set("k", 1, updated_by="a")
    naive = datetime(2026, 1, 1)  # naive on purpose
    attempts = [
        lambda: store.list(limit=0),
        lambda: store.list(limit=1001),
        lambda: store.list(limit=True),
        lambda: store.list("\x00"),
        lambda: store.list("x" * 256),
        lambda: store.history("k", limit=0),
        lambda: store.history("k", limit=1001),
        lambda: store.history("k", before_version=0),
        lambda: store.get_at("k", naive),
        lambda: store.get_at("k", "2026-01-01"),
        lambda: store.snapshot_at(naive),
        lambda: store.snapshot_at(subject.instant(), prefix="\x00"),
        lambda: store.set("k", 2, updated_by="a", expected_version=-1),
        lambda: store.set("k", 2, updated_by="a", expected_version=True),
        lambda: store.set("k", 2, updated_by="a", reason="nul\x00"),
        lambda: store.set("k", 2, updated_by="a", description=5),
        lambda: store.set("k", 2, updated_by="a", description="nul\x00"),
        lambda: store.delete("k", deleted_by="a", expected_version=0),
        lambda: store.delete("k", deleted_by="a", reason=5),
        lambda: store.rollback("k", to_version=0, updated_by="a"),
        lambda: store.rollback("k", to_version="1", updated_by="a"),
        lambda: store.get_many("k"),
        lambda: store.set_many({}, updated_by="a"),
        lambda: store.set_many([ConfigItem("a", 1), ConfigItem("a", 2)], updated_by="a"),
        lambda: store.set_many([("a", 1)], updated_by="a"),
        lambda: store.set_many({f"k{i}": i for i in range(1001)}, updated_by="a"),
        # Wrong types and out-of-range numbers (a bigint holds at most 2**63 - 1).
        lambda: store.history("k", before_version=2**70),
        lambda: store.set("k", 2, updated_by="a", expected_version=2**63),
        lambda: store.delete("k", deleted_by="a", expected_version=2**64),
        lambda: store.rollback("k", to_version=2**63, updated_by="a"),
        lambda: store.get_many(5),  # type: ignore[arg-type]
        lambda: store.set_many(None, updated_by="a"),  # type: ignore[arg-type]
        lambda: store.set_many("ab", updated_by="a"),  # type: ignore[arg-type]
        lambda: store.delete_many("k", deleted_by="a"),
        lambda: store.delete_many(5, deleted_by="a"),  # type: ignore[arg-type]
        lambda: store.delete_many(["k"], deleted_by="a", expected_count=-1),
        lambda: store.delete_many(["k"], deleted_by="a", expected_count=True),
        lambda: store.delete_many([f"k{i}" for i in range(1001)], deleted_by="a"),
        lambda: store.delete_prefix("", deleted_by="a"),
        lambda: store.delete_prefix(5, deleted_by="a"),  # type: ignore[arg-type]
        lambda: store.delete_prefix("k", deleted_by=""),
        lambda: store.register_defaults(5),  # type: ignore[attr-defined]
        lambda: store.register_defaults({"bad key": 1}),  # type: ignore[attr-defined]
        lambda: store.register_defaults({"k": float("nan")}),  # type: ignore[attr-defined]
        lambda: store.watch(since_revision=-1),  # type: ignore[attr-defined]
        lambda: store.watch(since_revision=True),  # type: ignore[attr-defined]
        lambda: store.watch(since_revision="1"),  # type: ignore[attr-defined]
        lambda: store.watch(since_revision=2**63),  # type: ignore[attr-defined]
    ]
    accepted = [number for number, attempt in enumerate(attempts) if not _refused(attempt)]
    assert accepted == []
    assert [r.version for r in store.history("k")] == [1]
    assert [e.key for e in store.list()] == ["k"]


def test_error_messages_are_the_same_everywhere(subject: Subject) -> None:
    """The messages of refused input are part of the contract (people read them)."""
    store = subject.store
    cases = [
        (lambda: store.set("k", True, data_type="int", updated_by="a"),
         "config.set 'k': value of type bool does not match data_type 'int'"),
        (lambda: store.set("bad key", 1, updated_by="a"),
         "key 'bad key' contains a whitespace or control character (U+0020 at position 3)"),
        (lambda: store.list(limit=0), "limit must be an int from 1 to 1000"),
        (lambda: store.rollback("k", to_version=0, updated_by="a"),
         "to_version must be an int >= 1, got 0"),
    ]  # fmt: skip
    for attempt, message in cases:
        with pytest.raises(InvalidConfigurationError) as info:
            attempt()
        assert str(info.value) == message


# -- bulk deletes ------------------------------------------------------------------------------


def test_delete_many_is_all_or_nothing_in_one_revision(subject: Subject) -> None:
    """delete_many removes the existing keys among those given, in one revision."""
    store = subject.store
    store.set_many({"a.1": 1, "a.2": 2, "b": 3}, updated_by="t")
    deleted = store.delete_many(["a.2", "missing", "a.1", "a.2"], deleted_by="ops", reason="gone")
    assert deleted == ["a.1", "a.2"]
    assert store.get_many(["a.1", "a.2", "b"]) == {"b": 3}
    assert store.get("a.1") is None
    latest = [store.history(key)[0] for key in ("a.1", "a.2")]
    assert [(r.operation, r.version, r.changed_by, r.change_reason) for r in latest] == [
        ("delete", 2, "ops", "gone"),
        ("delete", 2, "ops", "gone"),
    ]
    assert latest[0].revision == latest[1].revision
    assert store.delete_many([], deleted_by="ops") == []
    assert store.delete_many(["missing"], deleted_by="ops") == []


def test_a_bulk_delete_with_the_wrong_expected_count_deletes_nothing(subject: Subject) -> None:
    """expected_count guards both bulk deletes: a different number of keys found deletes none."""
    store = subject.store
    store.set_many({"p.a": 1, "p.b": 2}, updated_by="t")
    with pytest.raises(UnexpectedCountError) as many:
        store.delete_many(["p.a", "p.b", "p.c"], deleted_by="ops", expected_count=3)
    assert (many.value.expected_count, many.value.found_count) == (3, 2)
    with pytest.raises(UnexpectedCountError) as prefix:
        store.delete_prefix("p.", deleted_by="ops", expected_count=1)
    assert isinstance(prefix.value, ConflictError)
    assert (prefix.value.expected_count, prefix.value.found_count) == (1, 2)
    assert store.get_many(["p.a", "p.b"]) == {"p.a": 1, "p.b": 2}
    assert [r.version for r in store.history("p.a")] == [1]
    assert store.delete_prefix("p.", deleted_by="ops", expected_count=2) == ["p.a", "p.b"]
    assert store.delete_many(["p.a"], deleted_by="ops", expected_count=0) == []


def test_delete_prefix_takes_the_prefix_literally(subject: Subject) -> None:
    """delete_prefix deletes exactly the keys starting with the prefix (no wildcards), in order."""
    store = subject.store
    keys = {"svc.b": 1, "svc.a": 2, "svc%x": 3, "svc_x": 4, "svcx": 5, "other.svc.a": 6}
    store.set_many(keys, updated_by="t")
    assert store.delete_prefix("svc.", deleted_by="ops") == ["svc.a", "svc.b"]
    assert store.delete_prefix("svc%", deleted_by="ops") == ["svc%x"]
    assert store.delete_prefix("nothing.", deleted_by="ops") == []
    assert sorted(e.key for e in store.list()) == ["other.svc.a", "svc_x", "svcx"]
    revisions = {store.history(key)[0].revision for key in ("svc.a", "svc.b")}
    assert len(revisions) == 1


def test_deleted_keys_read_as_absent_at_once(subject: Subject) -> None:
    """A store's own bulk delete is visible to its very next read (caches included)."""
    store = subject.store
    store.set_many({"r.a": 1, "r.b": 2}, updated_by="t")
    assert store.get_many(["r.a", "r.b"]) == {"r.a": 1, "r.b": 2}  # cached now, where there is one
    store.delete_many(["r.a"], deleted_by="ops")
    assert store.get("r.a") is None
    store.delete_prefix("r.", deleted_by="ops")
    assert store.get_entry("r.b") is None
    assert store.get_many(["r.a", "r.b"]) == {}


# -- defaults, the change feed, health ---------------------------------------------------------


def test_registered_defaults_answer_absent_keys(subject: Subject) -> None:
    """A registered default answers get() of an absent key; a stored or explicit value wins."""
    store: Any = subject.store
    store.register_defaults({"d.tone": "friendly", "d.limit": 10})
    store.set("d.limit", 20, updated_by="t")
    assert store.get("d.tone") == "friendly"
    assert store.get("d.tone", "explicit") == "explicit"
    assert store.get("d.tone", None) is None
    assert store.get("d.limit") == 20
    assert store.get("d.other") is None
    assert store.get_entry("d.tone") is None  # a default is not stored


def test_ensure_defaults_writes_only_the_missing_ones(subject: Subject) -> None:
    """ensure_defaults stores each registered default whose key is absent, and keeps the others."""
    store: Any = subject.store
    store.set("e.limit", 20, updated_by="ops")
    store.register_defaults({"e.tone": "friendly", "e.limit": 10})
    entries = store.ensure_defaults(updated_by="svc")
    assert {(e.key, e.value, e.updated_by) for e in entries} == {
        ("e.tone", "friendly", "svc"),
        ("e.limit", 20, "ops"),
    }
    assert store.get_entry("e.tone").version == 1
    again = store.ensure_defaults(updated_by="svc")  # nothing more to write
    assert {(e.key, e.version) for e in again} == {("e.tone", 1), ("e.limit", 1)}


def test_watch_delivers_each_committed_change_under_its_prefix(subject: Subject) -> None:
    """watch() yields the changes committed after it started, in order, for its prefix only."""
    store: Any = subject.store
    with store.watch("w.") as changes:
        store.set("w.a", 1, updated_by="t")
        store.set("other", 1, updated_by="t")
        store.set_many({"w.b": 2, "w.c": 3}, updated_by="t")
        store.delete("w.a", deleted_by="t")
        got = [changes.next(timeout=10) for _ in range(4)]
        assert changes.next(timeout=0.3) is None
    assert [(c.key, c.version, c.operation, c.changed_by) for c in got] == [
        ("w.a", 1, "insert", "t"),
        ("w.b", 1, "insert", "t"),
        ("w.c", 1, "insert", "t"),
        ("w.a", 2, "delete", "t"),
    ]
    assert got[1].revision == got[2].revision != got[0].revision


def test_a_rolled_back_transaction_announces_nothing(subject: Subject) -> None:
    """Only committed changes reach watchers."""
    store: Any = subject.store
    with store.watch() as changes:
        with pytest.raises(RuntimeError), subject.transaction() as tx:  # noqa: PT012
            tx.set("t.a", 1, updated_by="t")
            raise RuntimeError("roll back")
        store.set("t.b", 1, updated_by="t")
        assert [changes.next(timeout=10).key] == ["t.b"]
        assert changes.next(timeout=0.3) is None


def test_subscribe_calls_back_until_closed(subject: Subject) -> None:
    """subscribe() calls the callback for each change under its prefix; close() stops it."""
    store: Any = subject.store
    seen: list[tuple[str, int]] = []
    arrived = threading.Event()

    def callback(change: ConfigChange) -> None:
        seen.append((change.key, change.version))
        arrived.set()

    subscription = store.subscribe(callback, prefix="s.")
    store.set("other", 1, updated_by="t")
    store.set("s.a", 1, updated_by="t")
    assert arrived.wait(10)
    subscription.close()
    store.set("s.a", 2, updated_by="t")
    with store.watch("s.") as changes:  # a later change, seen by a watcher…
        store.set("s.a", 3, updated_by="t")
        assert changes.next(timeout=10) is not None
    assert seen == [("s.a", 1)]  # …but not by the closed subscription


def test_health_reports_a_reachable_current_store(subject: Subject) -> None:
    """health() says the store is reachable and its schema current, with the feed's state."""
    store: Any = subject.store
    report = store.health()
    assert isinstance(report, Health)
    assert report.reachable
    assert report.schema_up_to_date
    assert report.error is None
    assert report.server_version
    assert report.latency_ms >= 0
    if subject.name in CACHED:
        assert report.listener_connected is True
        assert report.cache_size is not None
    else:
        assert report.cache_size is None


# -- versions and history ---------------------------------------------------------------------


def test_history_records_every_change_newest_first(subject: Subject) -> None:
    """N changes give N revisions, versions 1..N, with operation, actor and reason."""
    store = subject.store
    store.set("k", 1, description="one", updated_by="a")
    store.set("k", 2, updated_by="b", reason="tuning")
    assert store.delete("k", deleted_by="c", reason="cleanup") is True
    entry = store.set("k", 3, updated_by="d", reason="")
    assert entry.version == 4  # re-creating continues the numbering
    assert entry.created_at > store.history("k")[-1].changed_at
    revisions = store.history("k")
    assert _ops(revisions) == [
        (4, "insert", 3, "d", None),  # an empty reason is no reason
        (3, "delete", 2, "c", "cleanup"),  # a deletion keeps what the key held
        (2, "update", 2, "b", "tuning"),
        (1, "insert", 1, "a", None),
    ]
    assert all(isinstance(r, ConfigRevision) for r in revisions)
    deletion = revisions[1]
    assert (deletion.data_type, deletion.description) == ("int", "one")
    assert revisions[3].changed_at == store.history("k")[3].changed_at
    assert [r.changed_at for r in revisions] == sorted(
        (r.changed_at for r in revisions), reverse=True
    )
    assert len({r.revision for r in revisions}) == 4
    assert [r.revision for r in revisions] == sorted((r.revision for r in revisions), reverse=True)


def test_history_pages_with_limit_and_before_version(subject: Subject) -> None:
    """limit and before_version page through a long history, newest first."""
    store = subject.store
    for i in range(7):
        store.set("k", i, updated_by="a")
    first = store.history("k", limit=3)
    assert [r.version for r in first] == [7, 6, 5]
    second = store.history("k", limit=3, before_version=first[-1].version)
    assert [r.version for r in second] == [4, 3, 2]
    assert [r.version for r in store.history("k", before_version=2)] == [1]
    assert store.history("k", before_version=1) == []
    assert store.history("absent") == []


def test_history_of_a_write_matches_the_entry(subject: Subject) -> None:
    """The newest revision holds exactly what set() returned."""
    store = subject.store
    entry = store.set("k", {"a": [1]}, description="d", updated_by="ops", reason="why")
    latest = store.history("k")[0]
    assert (latest.key, latest.version, latest.value, latest.data_type) == (
        "k",
        entry.version,
        entry.value,
        entry.data_type,
    )
    assert (latest.description, latest.changed_by) == ("d", "ops")
    # updated_at is when the write was made (its transaction's start), changed_at when it
    # committed: the same write, the commit no earlier.
    assert latest.changed_at >= entry.updated_at


# -- rollback ---------------------------------------------------------------------------------


def test_rollback_writes_a_new_version_with_the_old_content(subject: Subject) -> None:
    """rollback copies value, type and description of an old version into a new one."""
    store = subject.store
    store.set("mode", "fast", updated_by="a")  # no description
    store.set("mode", {"speed": 9}, data_type="json", description="second", updated_by="b")
    entry = store.rollback("mode", to_version=1, updated_by="ops", reason="bad deploy")
    assert (entry.value, entry.data_type, entry.description) == ("fast", "str", None)
    assert (entry.version, entry.updated_by) == (3, "ops")
    assert _ops(store.history("mode")) == [
        (3, "update", "fast", "ops", "bad deploy"),
        (2, "update", {"speed": 9}, "b", None),
        (1, "insert", "fast", "a", None),
    ]
    assert store.get_entry("mode") == entry


def test_rollback_restores_a_deleted_key(subject: Subject) -> None:
    """Rolling back to a version from before a delete re-creates the key."""
    store = subject.store
    store.set("k", 5, description="five", updated_by="a")
    store.delete("k", deleted_by="a")
    entry = store.rollback("k", to_version=1, updated_by="ops")
    assert (entry.value, entry.version, entry.description) == (5, 3, "five")
    assert [r.operation for r in store.history("k")] == ["insert", "delete", "insert"]


@pytest.mark.parametrize("to_version", [2, 3, 99])
def test_rollback_to_a_missing_or_deletion_version_is_refused(
    subject: Subject, to_version: int
) -> None:
    """A version that never existed, or is a deletion, cannot be rolled back to."""
    store = subject.store
    store.set("k", 1, updated_by="a")
    store.delete("k", deleted_by="a")  # version 2 is the deletion
    with pytest.raises(InvalidConfigurationError) as info:
        store.rollback("k", to_version=to_version, updated_by="ops")
    assert str(info.value) == (
        f"'k' has no version {to_version} to roll back to "
        "(it never existed, or that version is a deletion)"
    )
    assert store.get("k") is None
    assert len(store.history("k")) == 2
    with pytest.raises(InvalidConfigurationError, match="no version 1"):
        store.rollback("never", to_version=1, updated_by="ops")


# -- revisions: commit order, no gaps, resumable ----------------------------------------------


def _shapes(changes: list[Any]) -> list[tuple[str, int, str] | None]:
    return [None if c is None else (c.key, c.version, c.operation) for c in changes]


def test_revisions_follow_commit_order_across_interleaved_transactions(subject: Subject) -> None:
    """A transaction that writes first and commits last takes the last revision, gap-free.

    Revisions are given at commit, one commit after the other: commit order,
    revision order, the order of the instants and of delivery all agree.
    """
    store, other = subject.store, subject.other
    base = store.set("i.base", 0, updated_by="t")
    first_revision = store.history("i.base")[0].revision
    with store.watch("i.", since_revision=first_revision) as changes:  # type: ignore[attr-defined]
        with subject.transaction() as first:
            first.set("i.first", 1, updated_by="t")  # written first…
            other.set("i.second", 1, updated_by="t")  # …while another client commits,
            with other.transaction() as third:  # twice
                third.set("i.third", 1, updated_by="t")
                third.set("i.third", 2, updated_by="t")
            first.set("i.first", 2, updated_by="t")
        # …and committed last
        delivered = [changes.next(timeout=10) for _ in range(5)]
        assert changes.next(timeout=0.3) is None
    assert _shapes(delivered) == [
        ("i.second", 1, "insert"),
        ("i.third", 1, "insert"),
        ("i.third", 2, "update"),
        ("i.first", 1, "insert"),
        ("i.first", 2, "update"),
    ]
    expected = [first_revision + n for n in (1, 2, 2, 3, 3)]
    assert [c.revision for c in delivered] == expected
    history = [
        store.history(key, limit=1)[0] for key in ("i.base", "i.second", "i.third", "i.first")
    ]
    assert [r.revision for r in history] == [first_revision + n for n in range(4)]
    stamps = [r.changed_at for r in history]
    assert stamps == sorted(stamps)
    assert base.updated_at <= stamps[0]


def test_a_rolled_back_transaction_or_failed_write_leaves_no_gap(subject: Subject) -> None:
    """Revisions go up by one per committed change set: what did not commit took none."""
    store = subject.store
    store.set("g.a", 1, updated_by="t")
    before = store.history("g.a")[0].revision
    with pytest.raises(RuntimeError), subject.transaction() as tx:  # noqa: PT012
        tx.set("g.b", 1, updated_by="t")
        tx.delete("g.a", deleted_by="t")
        raise RuntimeError("roll back")
    with pytest.raises(InvalidConfigurationError, match="stored data_type"):
        store.set("g.a", "not an int", updated_by="t")  # refused by the database itself
    assert store.delete("g.none", deleted_by="t") is False  # nothing changed: no revision
    with subject.transaction() as tx:
        assert tx.get("g.a") == 1  # a transaction that only reads
    store.set("g.c", 1, updated_by="t")
    assert store.history("g.c")[0].revision == before + 1
    assert [len(store.history(key)) for key in ("g.a", "g.b")] == [1, 0]


def test_watch_since_a_revision_replays_what_followed_then_goes_live(subject: Subject) -> None:
    """watch(since_revision=N): every change after N from the history, then live ones, once."""
    store: Any = subject.store
    store.set("s.a", 1, updated_by="t")
    since = store.history("s.a")[0].revision
    store.set("s.a", 2, updated_by="t")
    store.set("other", 1, updated_by="t")
    store.set_many({"s.c": 1, "s.b": 1}, updated_by="t")
    store.delete("s.a", deleted_by="t")
    with store.watch("s.", since_revision=since) as changes:
        replayed = [changes.next(timeout=10) for _ in range(4)]
        store.set("s.d", 1, updated_by="t")
        live = changes.next(timeout=10)
        assert changes.next(timeout=0.3) is None
    assert _shapes(replayed) == [
        ("s.a", 2, "update"),
        ("s.b", 1, "insert"),
        ("s.c", 1, "insert"),
        ("s.a", 3, "delete"),
    ]
    assert [c.revision for c in replayed] == [since + 1, since + 3, since + 3, since + 4]
    assert (_shapes([live]), live.revision) == ([("s.d", 1, "insert")], since + 5)
    assert isinstance(live, ConfigChange)

    with store.watch("s.", since_revision=0) as everything:
        assert _shapes([everything.next(timeout=10)]) == [("s.a", 1, "insert")]
    with store.watch("s.", since_revision=since + 7) as ahead:  # a revision still to come
        for value in range(3):
            store.set("s.e", value, updated_by="t")  # since + 6, 7 and 8
        got = ahead.next(timeout=10)
        assert (_shapes([got]), got.revision) == ([("s.e", 3, "update")], since + 8)


def test_point_in_time_reads_see_a_change_from_its_commit(subject: Subject) -> None:
    """Until a transaction commits, get_at() answers the old value, as every reader saw."""
    store = subject.store
    store.set("p", "old", updated_by="t")
    with subject.transaction() as tx:
        written = tx.set("p", "new", updated_by="t")
        during = subject.instant()
    after = subject.instant()
    assert store.get_at("p", during) == "old"
    assert store.snapshot_at(during, prefix="p") == {"p": "old"}
    assert store.get_at("p", after) == "new"
    committed = store.history("p")[0]
    assert during < committed.changed_at < after
    assert written.updated_at < during  # updated_at: when the transaction wrote it


# -- point-in-time reads ----------------------------------------------------------------------


def test_get_at_and_snapshot_at_see_each_instant(subject: Subject) -> None:
    """Point-in-time reads see each key as it was between its changes (store's own clock)."""
    store = subject.store
    before_all = subject.instant()
    store.set("svc.lang", "en", updated_by="a")
    store.set("svc.tone", "formal", updated_by="a")
    store.set("other", 1, updated_by="a")
    t1 = subject.instant()
    store.set("svc.lang", "fr", updated_by="a")
    store.delete("svc.tone", deleted_by="a")
    t2 = subject.instant()
    store.rollback("svc.tone", to_version=1, updated_by="a")
    t3 = subject.instant()

    assert store.get_at("svc.lang", before_all) is None
    assert store.get_at("svc.lang", t1) == "en"
    assert store.get_at("svc.lang", t2) == "fr"
    assert store.get_at("svc.tone", t1) == "formal"
    assert store.get_at("svc.tone", t2) is None  # deleted by then
    assert store.get_at("svc.tone", t3) == "formal"
    assert store.get_at("never", t3) is None
    assert store.snapshot_at(before_all) == {}
    assert store.snapshot_at(t1, prefix="svc.") == {"svc.lang": "en", "svc.tone": "formal"}
    assert store.snapshot_at(t2) == {"other": 1, "svc.lang": "fr"}
    assert list(store.snapshot_at(t3)) == ["other", "svc.lang", "svc.tone"]
    assert store.snapshot_at(t3 + timedelta(days=1), prefix="svc.t") == {"svc.tone": "formal"}


def test_point_in_time_reads_keep_types(subject: Subject) -> None:
    """A float key written with an int reads back as a float, also in the past."""
    store = subject.store
    store.set("f", 1.5, updated_by="a")
    store.set("f", 2, updated_by="a")
    now = subject.instant()
    assert isinstance(store.get_at("f", now), float)
    assert isinstance(store.snapshot_at(now)["f"], float)


# -- optimistic concurrency -------------------------------------------------------------------


def test_expected_version_conflicts_report_the_current_version(subject: Subject) -> None:
    """A stale expected_version is refused with the version found, and changes nothing."""
    store = subject.store
    store.set("k", 1, updated_by="a")
    store.set("k", 2, updated_by="a")
    with pytest.raises(ConcurrentModificationError) as info:
        store.set("k", 3, updated_by="b", expected_version=1)
    error = info.value
    assert (error.key, error.expected_version, error.current_version) == ("k", 1, 2)
    assert (
        str(error) == "'k' is at version 2, not at the expected version 1: read it again and retry"
    )
    assert isinstance(error, ConfigurationAccessError)
    entry = store.set("k", 3, description="d", updated_by="b", expected_version=2, reason="r")
    assert (entry.value, entry.version, entry.description) == (3, 3, "d")
    assert store.history("k")[0].change_reason == "r"
    assert len(store.history("k")) == 3


def test_expected_version_zero_means_create_only(subject: Subject) -> None:
    """expected_version=0 creates the key, and refuses if it exists."""
    store = subject.store
    entry = store.set("k", 1, description="d", updated_by="a", expected_version=0)
    assert (entry.version, entry.data_type, entry.description) == (1, "int", "d")
    with pytest.raises(ConcurrentModificationError) as info:
        store.set("k", 2, updated_by="b", expected_version=0)
    assert (info.value.expected_version, info.value.current_version) == (0, 1)
    assert store.get("k") == 1
    store.delete("k", deleted_by="a")
    assert store.set("k", "x", updated_by="a", expected_version=0).version == 3


def test_expected_version_on_an_absent_key_finds_version_zero(subject: Subject) -> None:
    """Replacing or deleting an absent key at a version is a conflict at 0."""
    store = subject.store
    with pytest.raises(ConcurrentModificationError) as info:
        store.set("ghost", 1, updated_by="a", expected_version=3)
    assert (info.value.expected_version, info.value.current_version) == (3, 0)
    assert str(info.value) == (
        "'ghost' does not exist, not at the expected version 3: read it again and retry"
    )
    with pytest.raises(ConcurrentModificationError) as info:
        store.delete("ghost", deleted_by="a", expected_version=1)
    assert (info.value.expected_version, info.value.current_version) == (1, 0)
    assert _nothing_stored(store, "ghost")


def test_conditional_delete(subject: Subject) -> None:
    """delete with expected_version removes only the version the caller saw."""
    store = subject.store
    store.set("k", 1, updated_by="a")
    store.set("k", 2, updated_by="a")
    with pytest.raises(ConcurrentModificationError) as info:
        store.delete("k", deleted_by="a", expected_version=1)
    assert (info.value.expected_version, info.value.current_version) == (1, 2)
    assert store.delete("k", deleted_by="b", expected_version=2, reason="gone") is True
    assert _ops(store.history("k", limit=1)) == [(3, "delete", 2, "b", "gone")]


def test_expected_version_checks_the_version_before_the_type(subject: Subject) -> None:
    """A stale version is a conflict even when the value would not fit the stored type."""
    store = subject.store
    store.set("k", "text", updated_by="a")
    with pytest.raises(ConcurrentModificationError):
        store.set("k", 5, updated_by="a", expected_version=7)
    with pytest.raises(InvalidConfigurationError, match="stored data_type"):
        store.set("k", 5, updated_by="a", expected_version=1)
    entry = store.set("k", 5, data_type="int", updated_by="a", expected_version=1)
    assert (entry.value, entry.data_type, entry.version) == (5, "int", 2)


# -- set_default and set_many -----------------------------------------------------------------


def test_set_default_inserts_once_and_returns_the_stored_entry(subject: Subject) -> None:
    """set_default writes only when absent and returns what is stored, unchanged."""
    store = subject.store
    first = store.set_default("lang", "en", description="Language", updated_by="a")
    assert (first.version, first.description, first.updated_by) == (1, "Language", "a")
    assert store.set_default("lang", 5, data_type="int", updated_by="b") == first
    assert store.get("lang") == "en"
    assert [r.version for r in store.history("lang")] == [1]
    store.delete("lang", deleted_by="a")
    assert store.set_default("lang", 1.0, updated_by="c").version == 3
    assert store.get_entry("lang").data_type == "float"  # type: ignore[union-attr]


def test_set_many_is_all_or_nothing_in_one_revision(subject: Subject) -> None:
    """set_many writes every item in one revision, in key order; a bad item writes nothing."""
    store = subject.store
    entries = store.set_many(
        [ConfigItem("b", 2.5, data_type="float", description="bee"), ConfigItem("a", "x")],
        updated_by="ops",
        reason="release 7",
    )
    assert [(e.key, e.value, e.version, e.description) for e in entries] == [
        ("a", "x", 1, None),
        ("b", 2.5, 1, "bee"),
    ]
    assert entries[0].updated_at == entries[1].updated_at
    history = [store.history(key)[0] for key in ("a", "b")]
    assert history[0].revision == history[1].revision
    assert [r.change_reason for r in history] == ["release 7", "release 7"]

    with pytest.raises(InvalidConfigurationError):
        store.set_many({"a": "y", "c": float("nan")}, updated_by="ops")
    with pytest.raises(InvalidConfigurationError, match="stored data_type"):
        store.set_many({"a": "y", "b": "not a float", "c": 1}, updated_by="ops")
    assert store.get_many(["a", "b", "c"]) == {"a": "x", "b": 2.5}
    assert [len(store.history(key)) for key in ("a", "b", "c")] == [1, 1, 0]

    updated = store.set_many({"b": 3, "c": True}, updated_by="ops")  # b stays a float
    assert [(e.key, e.value, e.data_type, e.version) for e in updated] == [
        ("b", 3.0, "float", 2),
        ("c", True, "bool", 1),
    ]
    assert updated[0].description == "bee"
    assert store.history("b")[0].revision > history[0].revision


# -- transactions -----------------------------------------------------------------------------


def test_a_transaction_commits_together_with_one_revision(subject: Subject) -> None:
    """Changes in a transaction appear together, share a revision and an instant."""
    store = subject.store
    store.set("b", 0, updated_by="ops")
    with subject.transaction() as tx:
        tx.set("a", 1, updated_by="ops")
        tx.set("b", 2, updated_by="ops", reason="batch")
        tx.set("a", 3, updated_by="ops")
        assert tx.get("a") == 3  # its own writes are visible inside
        assert tx.get_entry("a").version == 2  # type: ignore[union-attr]
        assert [r.version for r in tx.history("a")] == [2, 1]
        assert store.get("a") is None  # and nowhere else until the end
    assert store.get_many(["a", "b"]) == {"a": 3, "b": 2}
    changes = store.history("a") + store.history("b")[:1]
    assert len({r.revision for r in changes}) == 1
    assert len({r.changed_at for r in changes}) == 1
    assert store.history("b")[1].revision < changes[0].revision
    store.set("c", 1, updated_by="ops")
    assert store.history("c")[0].revision > changes[0].revision


def test_a_transaction_rolls_back_on_an_exception(subject: Subject) -> None:
    """An exception in the block discards every change made in it."""
    store = subject.store
    store.set("a", 1, updated_by="ops")
    store.set("b", 2, updated_by="ops")

    def change_then_fail() -> None:
        with subject.transaction() as tx:
            tx.set("a", 10, updated_by="ops")
            tx.delete("b", deleted_by="ops")
            tx.set_many({"c": 1, "d": 2}, updated_by="ops")
            raise RuntimeError("abort")

    with pytest.raises(RuntimeError, match="abort"):
        change_then_fail()
    assert store.get_many(["a", "b", "c", "d"]) == {"a": 1, "b": 2}
    assert [len(store.history(key)) for key in "abcd"] == [1, 1, 0, 0]
    assert store.set("a", 11, updated_by="ops").version == 2


def test_a_failed_statement_aborts_the_transaction(subject: Subject) -> None:
    """After a statement failed inside a transaction the rest are refused; nothing is applied."""
    store = subject.store
    store.set("s", "text", updated_by="ops")
    with subject.transaction() as tx:
        tx.set("a", 1, updated_by="ops")
        with pytest.raises(InvalidConfigurationError, match="stored data_type"):
            tx.set("s", 5, updated_by="ops")
        with pytest.raises(ConfigurationAccessError) as info:
            tx.get("a")
        assert str(info.value) == (
            "config.get 'a' failed: current transaction is aborted, "
            "commands ignored until end of transaction block"
        )
        assert tx.get_many([]) == {}  # nothing sent, nothing refused
    assert store.get_many(["a", "s"]) == {"s": "text"}


def test_refused_input_does_not_abort_a_transaction(subject: Subject) -> None:
    """Input refused before any SQL, conflicts and missing versions leave the transaction usable."""
    store = subject.store
    store.set("k", 1, updated_by="ops")
    with subject.transaction() as tx:
        with pytest.raises(InvalidConfigurationError):
            tx.set("bad key", 1, updated_by="ops")
        with pytest.raises(ConcurrentModificationError):
            tx.set("k", 2, updated_by="ops", expected_version=5)
        with pytest.raises(InvalidConfigurationError, match="no version 9"):
            tx.rollback("k", to_version=9, updated_by="ops")
        assert tx.set_default("k", 0, updated_by="ops").value == 1
        tx.set("k", 2, updated_by="ops", expected_version=1)
    assert store.get("k") == 2


# -- lifecycle and logging --------------------------------------------------------------------


def test_a_closed_store_refuses_to_work(subject: Subject) -> None:
    """After close(), calls raise DatabaseConnectionError."""
    subject.store.set("k", 1, updated_by="a")
    subject.close()
    with pytest.raises(DatabaseConnectionError):
        subject.store.get("k")
    with pytest.raises(DatabaseConnectionError):
        subject.store.set("k", 2, updated_by="a")


def test_each_operation_logs_one_event(subject: Subject) -> None:
    """The same structured events, with the same outcomes, whatever the store."""
    store = subject.store
    with capture_logs() as logs:
        store.set("k", 1, updated_by="a")
        store.get("k")
        store.get("absent")
        with pytest.raises(ConcurrentModificationError):
            store.set("k", 2, updated_by="a", expected_version=0)
        with pytest.raises(InvalidConfigurationError):
            store.set("k", "x", updated_by="a")
        store.delete("k", deleted_by="a")
    events = [(e["event"], e["outcome"]) for e in logs if e["event"] != "config.open"]
    if subject.name in CACHED:
        # A cache hit is not logged (it would cost more than the hit); a miss reads
        # the entry through, to fill the cache.
        reads = [("config.get_entry", "miss")]
    else:
        reads = [("config.get", "hit"), ("config.get", "miss")]
    assert events == [
        ("config.set", "ok"),
        *reads,
        ("config.set", "conflict"),
        ("config.set", "error"),
        ("config.delete", "deleted"),
    ]


# -- what mutation testing found no test holding (each reads as a specification) ---------------


def test_set_default_stores_the_explicit_data_type(subject: Subject) -> None:
    """set_default(data_type=…) is the type the new key gets, not the value's inferred one."""
    entry = subject.store.set_default("sd.ratio", 1, data_type="float", updated_by="a")
    assert (entry.data_type, entry.value, type(entry.value)) == ("float", 1.0, float)
    assert subject.store.get("sd.ratio") == 1.0


def test_set_many_stores_each_items_explicit_data_type(subject: Subject) -> None:
    """A ConfigItem's data_type is the type its key gets (an int value as a float here)."""
    entries = subject.store.set_many(
        [ConfigItem("sm.f", 1, data_type="float"), ConfigItem("sm.j", 2, data_type="json")],
        updated_by="a",
    )
    assert [(e.key, e.data_type, e.value) for e in entries] == [
        ("sm.f", "float", 1.0),
        ("sm.j", "json", 2),
    ]
    assert type(subject.store.get_many(["sm.f"])["sm.f"]) is float


def test_set_many_takes_one_item_and_a_thousand(subject: Subject) -> None:
    """The batch bounds are inclusive: 1 and 1000 items are accepted (0 and 1001 are not)."""
    store = subject.store
    assert [e.key for e in store.set_many({"one": 1}, updated_by="a")] == ["one"]
    thousand = store.set_many({f"t.{i:04d}": i for i in range(1000)}, updated_by="a")
    assert len(thousand) == 1000
    assert len(store.list("t.", limit=1000)) == 1000


def test_history_and_list_take_a_page_of_a_thousand(subject: Subject) -> None:
    """limit=1000 is the largest page, accepted by history and list alike."""
    store = subject.store
    store.set("h", 1, updated_by="a")
    assert len(store.history("h", limit=1000)) == 1
    assert len(store.list(limit=1000)) == 1


def test_a_delete_conflict_names_its_key(subject: Subject) -> None:
    """ConcurrentModificationError of a conditional delete carries the key and both versions."""
    store = subject.store
    store.set("dc", 1, updated_by="a")
    store.set("dc", 2, updated_by="a")
    with pytest.raises(ConcurrentModificationError) as info:
        store.delete("dc", deleted_by="a", expected_version=1)
    assert (info.value.key, info.value.expected_version, info.value.current_version) == (
        "dc",
        1,
        2,
    )


EVENTS_OF_EVERY_OPERATION = [
    # (call, event, outcome, fields that must be there with these values)
    (lambda s, t: s.get_entry("e.a"), "config.get_entry", "hit", {"key": "e.a"}),
    (
        lambda s, t: s.get_many(["e.a", "e.z"]),
        "config.get_many",
        "ok",
        {"requested": 2, "found": 1},
    ),
    (lambda s, t: s.list("e."), "config.list", "ok", {"key": "e.", "count": 4}),
    (lambda s, t: s.history("e.a"), "config.history", "ok", {"key": "e.a", "count": 1}),
    (lambda s, t: s.get_at("e.a", t), "config.get_at", "hit", {"key": "e.a"}),
    (lambda s, t: s.snapshot_at(t, "e."), "config.snapshot_at", "ok", {"count": 4}),
    (
        lambda s, t: s.set_default("e.c", 3, updated_by="ops"),
        "config.set_default",
        "inserted",
        {"key": "e.c", "log_level": "info"},
    ),
    (
        lambda s, t: s.set_many({"e.d": 4, "e.e": 5}, updated_by="ops"),
        "config.set_many",
        "ok",
        {"count": 2, "updated_by": "ops", "log_level": "info"},
    ),
    (
        lambda s, t: s.rollback("e.a", to_version=1, updated_by="ops"),
        "config.rollback",
        "ok",
        {"key": "e.a", "to_version": 1, "version": 2, "log_level": "info"},
    ),
    (
        lambda s, t: s.delete_many(["e.d", "e.zz"], deleted_by="ops"),
        "config.delete_many",
        "ok",
        {"count": 1, "log_level": "info"},
    ),
    (
        lambda s, t: s.delete_prefix("e.e", deleted_by="ops"),
        "config.delete_prefix",
        "ok",
        {"key": "e.e", "count": 1, "log_level": "info"},
    ),
]


@pytest.mark.parametrize(
    ("call", "event", "outcome", "fields"),
    EVENTS_OF_EVERY_OPERATION,
    ids=[case[1] for case in EVENTS_OF_EVERY_OPERATION],
)
def test_every_operation_logs_its_event_with_its_fields(
    subject: Subject, call: Callable[..., object], event: str, outcome: str, fields: dict[str, Any]
) -> None:
    """Each operation's one event: its name, outcome, level and the fields it promises."""
    store = subject.store
    store.set_many({"e.a": 1, "e.b": 2, "e.d": 3, "e.e": 4}, updated_by="ops")
    when = subject.instant()
    with capture_logs() as logs:
        call(store, when)
    matching = [e for e in logs if e["event"] == event]
    if subject.name in CACHED and event == "config.get_entry":
        assert matching == []  # a cache hit is not logged: it would cost more than the hit
        return
    if subject.name in CACHED and event == "config.get_many":
        fields = {"requested": 1, "found": 0}  # only the key not in memory is read through
    assert len(matching) == 1, logs
    logged = matching[0]
    assert logged["outcome"] == outcome
    assert isinstance(logged["duration_ms"], float)
    for name, value in fields.items():
        assert logged.get(name) == value, (name, logged)


def test_point_in_time_reads_of_a_key_changed_twice_in_one_commit(subject: Subject) -> None:
    """One commit changing a key twice: its versions share an instant, the last one counts.

    The point-in-time index orders a key's changes by instant, then version: the
    tie of one transaction's changes goes to its last (migrations/0013).
    """
    store = subject.store
    store.set("tie.a", "first", updated_by="t")
    store.set("tie.b", "kept", updated_by="t")
    before = subject.instant()
    with subject.transaction() as tx:
        tx.set("tie.a", "second", updated_by="t")
        tx.set("tie.a", "third", updated_by="t")
        tx.delete("tie.b", deleted_by="t")
        tx.set("tie.b", "again", updated_by="t")
    after = subject.instant()
    versions = store.history("tie.a")
    assert [v.version for v in versions] == [3, 2, 1]
    assert versions[0].changed_at == versions[1].changed_at
    assert store.get_at("tie.a", before) == "first"
    assert store.get_at("tie.a", after) == "third"
    assert store.get_at("tie.b", before) == "kept"
    assert store.get_at("tie.b", after) == "again"
    assert store.snapshot_at(before, prefix="tie.") == {"tie.a": "first", "tie.b": "kept"}
    assert store.snapshot_at(after, prefix="tie.") == {"tie.a": "third", "tie.b": "again"}
