"""The in-memory fake answers like PostgreSQL: the same sampled calls, the same outcomes.

A Hypothesis state machine draws sequences of calls (valid and hostile
arguments mixed: wrong types, out-of-range versions, bad keys, values that do
not match a key's type) and makes each call on a fresh
:class:`InMemoryConfigStore` and on a :class:`ConfigDAL` (under a key prefix of
its own, on a real server). Results
and errors (class and message) must be identical; only what cannot agree is
left out of the comparison: timestamps, and revision numbers, which are
compared by the order in which they first appear.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule, run_state_machine_as_test

from amira_data_access import (
    ConfigDAL,
    ConfigEntry,
    ConfigItem,
    ConfigRevision,
    ConfigStore,
    InMemoryConfigStore,
    Keyring,
    SealedSecret,
)

# Both stores seal and open secrets with it (data_type "secret" is sampled too).
KEYRING = Keyring({"k1": bytes(range(32))})
SLOTS = ("a", "b")  # the keys a sequence works on (few: histories grow), under its own prefix
_prefixes = itertools.count()


@dataclass(frozen=True)
class Key:
    """A key of the sequence, resolved under the prefix of the store's run."""

    slot: str


@dataclass(frozen=True)
class Call:
    """One method call with placeholders for keys."""

    method: str
    args: tuple[Any, ...]
    kwargs: tuple[tuple[str, Any], ...]

    def __repr__(self) -> str:
        shown = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs]
        return f"{self.method}({', '.join(shown)})"


def _resolve(value: Any, prefix: str) -> Any:
    if isinstance(value, Key):
        return prefix + value.slot
    if isinstance(value, list):
        return [_resolve(item, prefix) for item in value]
    if isinstance(value, dict):
        return {_resolve(k, prefix): v for k, v in value.items()}
    if isinstance(value, ConfigItem):
        return ConfigItem(_resolve(value.key, prefix), value.value, value.data_type)
    return value


# -- what the calls are made of ---------------------------------------------------------

keys = st.sampled_from([Key(slot) for slot in SLOTS])
bad_keys = st.sampled_from(
    # ... and keys a person cannot tell from others: a Cyrillic o, e + U+0301, a bidi mark
    ["", "has space", 5, None, ["x"], "x" * 256, "t\u043ene", "caf" + "e\u0301", "to\u200fne"]
)
# Mostly valid arguments, so that sequences build up state to disagree about.
any_key = st.one_of(*[keys] * 6, bad_keys)
values = st.one_of(
    st.text(max_size=5),
    st.integers(-3, 3),
    st.sampled_from([0.5, -2.0, 1e300, 10**20, True, False, None, [1, "x"], {"n": {"m": 1}}]),
)
_too_deep: list[object] = []
for _ in range(64):
    _too_deep = [_too_deep]  # 65 levels, one over the limit
hostile_values = st.sampled_from(
    [float("nan"), (1, 2), b"x", {1: 2}, "nul\x00", 10**5000, _too_deep, "x" * 2**20]
)
any_value = st.one_of(*[values] * 6, hostile_values)
data_types = st.sampled_from(
    [None] * 6 + ["str", "int", "float", "bool", "json", "secret", "yaml", 5]
)
versions = st.one_of(
    st.sampled_from([None, None, 0, 1, 1, 2, 2, 3, 4]),
    st.sampled_from([-1, 2**63, 2**70, True, "1"]),
)
counts = st.sampled_from([None, None, None, 0, 1, 2, 3, -1, True, 2**64])
actors = st.sampled_from(["ops"] * 6 + ["svc", "", " ", None])


def _call(method: str, *args: Any, **kwargs: Any) -> Call:
    return Call(method, args, tuple(kwargs.items()))


calls = st.one_of(
    st.builds(
        lambda k, v, t, e, by: _call("set", k, v, data_type=t, expected_version=e, updated_by=by),
        any_key, any_value, data_types, versions, actors,
    ),
    st.builds(
        lambda k, v, t: _call("set_default", k, v, data_type=t, updated_by="ops"),
        any_key, any_value, data_types,
    ),
    st.builds(
        lambda items: _call("set_many", items, updated_by="ops"),
        st.one_of(
            st.dictionaries(keys, values, max_size=3),
            st.lists(st.builds(ConfigItem, keys, any_value, data_types), max_size=3),
            st.sampled_from([None, "ab", 5]),
        ),
    ),
    st.builds(lambda k: _call("get", k), any_key),
    st.builds(lambda k, d: _call("get", k, default=d), any_key, values),
    st.builds(lambda k: _call("get_entry", k), any_key),
    st.builds(lambda ks: _call("get_many", ks), st.one_of(st.lists(any_key, max_size=4), bad_keys)),
    st.builds(
        lambda k, e, by: _call("delete", k, deleted_by=by, expected_version=e),
        any_key, versions, actors,
    ),
    st.builds(
        lambda ks, n: _call("delete_many", ks, deleted_by="ops", expected_count=n),
        st.one_of(st.lists(any_key, max_size=4), bad_keys), counts,
    ),
    st.builds(lambda n: _call("delete_prefix", "", deleted_by="ops", expected_count=n), counts),
    st.builds(
        lambda k, n, b: _call("history", k, limit=n, before_version=b),
        any_key,
        st.sampled_from([1, 1, 2, 2, 3, 100, 0, 1001, True]),
        st.one_of(st.none(), st.none(), versions),
    ),
    st.builds(
        lambda k, v: _call("rollback", k, to_version=v, updated_by="ops"),
        any_key, versions,
    ),
    st.builds(
        lambda after, n: _call("list", "", after=after, limit=n),
        st.one_of(st.none(), any_key), st.sampled_from([1, 1, 2, 2, 100, 0, True]),
    ),
)  # fmt: skip


# -- running a sequence and comparing ---------------------------------------------------


class _Revisions:
    """Revision numbers by order of first appearance (each store numbers its own)."""

    def __init__(self) -> None:
        self._seen: dict[int, int] = {}

    def __call__(self, revision: int) -> int:
        return self._seen.setdefault(revision, len(self._seen) + 1)


def _normal(result: Any, prefix: str, revisions: _Revisions) -> Any:
    """A result with the prefix removed, timestamps dropped and revisions renumbered."""
    if isinstance(result, str) and result.startswith(prefix):
        return "~" + result.removeprefix(prefix)
    if isinstance(result, SealedSecret):  # random data keys and nonces: compare what opens
        return ("sealed", result.key_id)
    if isinstance(result, ConfigEntry):
        key = _normal(result.key, prefix, revisions)
        value = _normal(result.value, prefix, revisions)
        return ("entry", key, value, result.data_type, result.description, result.version)
    if isinstance(result, ConfigRevision):
        return (
            "revision",
            _normal(result.key, prefix, revisions),
            result.version,
            revisions(result.revision),
            result.operation,
            _normal(result.value, prefix, revisions),
            result.data_type,
            result.changed_by,
            result.change_reason,
        )
    if isinstance(result, list):
        return [_normal(item, prefix, revisions) for item in result]
    if isinstance(result, dict):
        return {_normal(k, prefix, revisions): v for k, v in result.items()}
    return result


def _outcome(store: ConfigStore, call: Call, prefix: str, revisions: _Revisions) -> Any:
    """What ``call`` gave on ``store``: its normalised result, or its error's class and message."""
    args = [_resolve(a, prefix) for a in call.args]
    kwargs = {name: _resolve(v, prefix) for name, v in call.kwargs}
    if call.method in ("delete_prefix", "list"):
        args[0] = prefix  # the machine's own keys only
    method: Callable[..., Any] = getattr(store, call.method)
    try:
        return ("ok", _normal(method(*args, **kwargs), prefix, revisions))
    except Exception as exc:  # every failure is compared, class and message
        return ("raised", type(exc).__name__, str(exc).replace(prefix, "~"))


class FakeVersusPostgres(RuleBasedStateMachine):
    """Each step makes the same call on a fresh fake and on PostgreSQL and compares."""

    dal: ClassVar[ConfigDAL]  # set by the test: one DAL, a key prefix per run

    def __init__(self) -> None:
        super().__init__()
        self.prefix = f"sample{next(_prefixes)}."
        self.fake = InMemoryConfigStore(keyring=KEYRING)
        self.fake_revisions = _Revisions()
        self.real_revisions = _Revisions()
        self.calls: list[Call] = []

    @rule(call=calls)
    def the_same_call_gives_the_same_outcome(self, call: Call) -> None:
        self.calls.append(call)
        want = _outcome(self.fake, call, self.prefix, self.fake_revisions)
        got = _outcome(self.dal, call, self.prefix, self.real_revisions)
        assert got == want, f"{call!r} (call {len(self.calls)}): PostgreSQL {got}, the fake {want}"

    def teardown(self) -> None:
        self.fake.close()


@pytest.fixture
def dal_for_sampling(dsn: str) -> Iterator[ConfigDAL]:
    """One DAL for every run of the machine (each run uses a key prefix of its own)."""
    with ConfigDAL(dsn, max_size=2, keyring=KEYRING) as dal:
        yield dal


def test_the_fake_answers_every_sampled_call_as_postgresql_does(
    dal_for_sampling: ConfigDAL,
) -> None:
    """Sequences of calls give the same results and the same errors on both stores."""
    FakeVersusPostgres.dal = dal_for_sampling
    run_state_machine_as_test(
        FakeVersusPostgres,
        settings=settings(
            max_examples=60,
            stateful_step_count=50,
            deadline=None,
            # No shrinking: the failing call is named anyway, and shrinking a long
            # sequence against a real server takes minutes.
            phases=[Phase.explicit, Phase.reuse, Phase.generate],
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
