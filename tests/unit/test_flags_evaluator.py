"""The flag evaluator (amira_data_access.flags): pure logic, no database."""

from __future__ import annotations

import copy
from typing import Any

import cbor2
import mmh3
import pytest
import semver
from hypothesis import given
from hypothesis import strategies as st

from amira_data_access.errors import InvalidConfigurationError
from amira_data_access.flags import (
    ErrorCode,
    Reason,
    bucket_of,
    compile_flag,
    parse_semver,
    to_flagd,
    validate_flag,
)
from amira_data_access.flags._bucketing import cbor_text_pair

BOOL_FLAG: dict[str, Any] = {
    "enabled": True,
    "variants": {"on": True, "off": False},
    "defaultVariant": "off",
}


def flag(**members: Any) -> dict[str, Any]:
    return {**copy.deepcopy(BOOL_FLAG), **members}


def cond(attribute: str, op: str, value: Any) -> dict[str, Any]:
    key = "values" if op in ("in", "not_in") else "value"
    return {"attribute": attribute, "op": op, key: value}


# -- bucketing: the same bytes and the same hash as flagd --------------------------------


@given(st.text(), st.text())
def test_cbor_pair_is_cbor2_canonical(first: str, second: str) -> None:
    assert cbor_text_pair(first, second) == cbor2.dumps([first, second], canonical=True)


@given(st.text(min_size=1), st.text(min_size=1), st.integers(1, 2_147_483_647))
def test_bucket_is_flagds_arithmetic(flag_key: str, targeting_key: str, total: int) -> None:
    digest = mmh3.hash(cbor2.dumps([flag_key, targeting_key], canonical=True), signed=False)
    bucket = bucket_of(flag_key, targeting_key, total)
    assert bucket == (digest * total) >> 32
    assert 0 <= bucket < total


def test_long_keys_use_longer_cbor_headers() -> None:
    for size in (23, 24, 255, 256, 65_535, 65_536):
        text = "k" * size
        assert cbor_text_pair(text, "u") == cbor2.dumps([text, "u"], canonical=True)


# -- semver: the precedence of the semver package flagd uses -----------------------------

_IDENT = st.from_regex(r"\A(0|[1-9][0-9]{0,2}|[a-z][a-z0-9-]{0,3})\Z")
_VERSION = st.builds(
    lambda major, minor, patch, pre: (
        f"{major}.{minor}.{patch}" + (f"-{'.'.join(pre)}" if pre else "")
    ),
    st.integers(0, 5),
    st.integers(0, 5),
    st.integers(0, 5),
    st.lists(_IDENT, max_size=3),
)


@given(_VERSION, _VERSION)
def test_semver_order_is_semvers(a: str, b: str) -> None:
    key_a, key_b = parse_semver(a), parse_semver(b)
    assert key_a is not None
    assert key_b is not None
    expected = semver.Version.parse(a).compare(b)
    assert (key_a > key_b) - (key_a < key_b) == expected


def test_semver_padding_and_prefix_like_flagd() -> None:
    assert parse_semver("v2") == parse_semver("2.0.0")
    assert parse_semver("1.2") == parse_semver("1.2.0")
    assert parse_semver("1.2.3+build.5") == parse_semver("1.2.3")
    assert parse_semver("1.2.3-beta") is not None
    for bad in ("", "x", "1.2.3.4", "01.2.3", "1.2.3-"):
        assert parse_semver(bad) is None


# -- reasons ------------------------------------------------------------------------------


def test_static_when_no_targeting() -> None:
    result = compile_flag("f", flag(defaultVariant="on")).evaluate({}, version=3)
    assert (result.value, result.variant, result.reason, result.version) == (
        True,
        "on",
        Reason.STATIC,
        3,
    )


def test_disabled_gives_the_callers_default() -> None:
    result = compile_flag("f", flag(enabled=False, defaultVariant="on")).evaluate({}, False)
    assert (result.value, result.variant, result.reason) == (False, None, Reason.DISABLED)


def test_targeting_match_then_default() -> None:
    compiled = compile_flag(
        "f", flag(rules=[{"if": [cond("plan", "equals", "pro")], "variant": "on"}])
    )
    hit = compiled.evaluate({"plan": "pro"})
    miss = compiled.evaluate({"plan": "free"})
    assert (hit.variant, hit.reason) == ("on", Reason.TARGETING_MATCH)
    assert (miss.variant, miss.reason) == ("off", Reason.DEFAULT)


def test_split_needs_a_targeting_key() -> None:
    compiled = compile_flag("f", flag(rollout=[{"variant": "on", "weight": 1}]))
    assert compiled.evaluate({"targetingKey": "u1"}).reason is Reason.SPLIT
    for context in ({}, {"targetingKey": ""}, {"targetingKey": 7}, None):
        result = compiled.evaluate(context)
        assert (result.variant, result.reason) == ("off", Reason.DEFAULT)


def test_a_rules_rollout_is_a_split() -> None:
    compiled = compile_flag(
        "f",
        flag(
            rules=[
                {
                    "if": [],
                    "rollout": [{"variant": "on", "weight": 0}, {"variant": "off", "weight": 5}],
                }
            ]
        ),
    )
    result = compiled.evaluate({"targetingKey": "anyone"})
    assert (result.variant, result.reason) == ("off", Reason.SPLIT)


def test_type_mismatch_gives_the_default() -> None:
    strings = {"enabled": True, "variants": {"a": "x"}, "defaultVariant": "a"}
    result = compile_flag("f", strings).evaluate({}, True)
    assert (result.value, result.reason, result.error_code) == (
        True,
        Reason.ERROR,
        ErrorCode.TYPE_MISMATCH,
    )
    assert compile_flag("f", strings).evaluate({}, "dflt").value == "x"
    assert compile_flag("f", strings).evaluate({}).value == "x"  # None asks no type


@given(st.text(min_size=1), st.integers(0, 100))
def test_deterministic_and_weight_monotone(targeting_key: str, percent: int) -> None:
    """The same key gets the same variant; raising the percentage never takes it away."""

    def rollout(p: int) -> Any:
        doc = flag(rollout=[{"variant": "on", "weight": p}, {"variant": "off", "weight": 100 - p}])
        return compile_flag("flag.x", doc).evaluate({"targetingKey": targeting_key})

    first = rollout(percent)
    assert rollout(percent) == first
    if first.value is True and percent < 100:
        assert rollout(percent + 1).value is True


# -- operators -----------------------------------------------------------------------------

CASES: list[tuple[dict[str, Any], dict[str, Any], bool]] = [
    (cond("a", "equals", "x"), {"a": "x"}, True),
    (cond("a", "equals", 1), {"a": True}, False),
    (cond("a", "equals", 1), {"a": 1.0}, True),
    (cond("a", "equals", "x"), {}, False),
    (cond("a", "not_equals", "x"), {}, True),
    (cond("a", "not_equals", "x"), {"a": "y"}, True),
    (cond("a", "in", ["x", 2, True]), {"a": "x"}, True),
    (cond("a", "in", ["x", 2, True]), {"a": 2.0}, True),
    (cond("a", "in", ["x", 2]), {"a": True}, False),
    (cond("a", "in", ["x", 1]), {"a": True}, False),
    (cond("a", "in", ["x"]), {"a": ["x"]}, False),
    (cond("a", "not_in", ["x"]), {"a": "y"}, True),
    (cond("a", "not_in", ["x"]), {"a": "x"}, False),
    (cond("a", "not_in", ["x"]), {}, True),
    (cond("a", "starts_with", "ab"), {"a": "abc"}, True),
    (cond("a", "starts_with", "ab"), {"a": 12}, False),
    (cond("a", "ends_with", "@x.io"), {"a": "me@x.io"}, True),
    (cond("a", "ends_with", "@x.io"), {"a": "me@y.io"}, False),
    (cond("a", "lt", 18), {"a": 17}, True),
    (cond("a", "lt", 18), {"a": 18}, False),
    (cond("a", "lte", 18), {"a": 18}, True),
    (cond("a", "gt", 1.5), {"a": 2}, True),
    (cond("a", "gte", 2), {"a": 2}, True),
    (cond("a", "gt", 0), {"a": True}, False),
    (cond("a", "gt", 0), {"a": "5"}, False),
    (cond("v", "semver_gte", "2.1.0"), {"v": "2.10.0"}, True),
    (cond("v", "semver_gte", "2.1.0"), {"v": "2.1.0-rc.1"}, False),
    (cond("v", "semver_lt", "2.1.0"), {"v": "2.1.0-rc.1"}, True),
    (cond("v", "semver_eq", "2.1.0"), {"v": "v2.1"}, True),
    (cond("v", "semver_ne", "2.1.0"), {"v": "2.1.1"}, True),
    (cond("v", "semver_lte", "2.1.0"), {"v": "2.1.0"}, True),
    (cond("v", "semver_gt", "2.1.0"), {"v": "2.1.0"}, False),
    (cond("v", "semver_caret", "2.0.0"), {"v": "2.9.9"}, True),
    (cond("v", "semver_caret", "2.0.0"), {"v": "3.0.0"}, False),
    (cond("v", "semver_tilde", "2.1.0"), {"v": "2.1.7"}, True),
    (cond("v", "semver_tilde", "2.1.0"), {"v": "2.2.0"}, False),
    (cond("v", "semver_gte", "2.0.0"), {"v": "not a version"}, False),
    (cond("v", "semver_gte", "2.0.0"), {"v": 3}, True),
    (cond("v", "semver_gte", "2.0.0"), {}, False),
]


@pytest.mark.parametrize(("condition", "context", "matches"), CASES)
def test_operator(condition: dict[str, Any], context: dict[str, Any], matches: bool) -> None:
    compiled = compile_flag("f", flag(rules=[{"if": [condition], "variant": "on"}]))
    assert (compiled.evaluate(context).variant == "on") is matches


def test_all_conditions_of_a_rule_and_of_a_segment_must_match() -> None:
    doc = flag(
        segments={"staff": [cond("email", "ends_with", "@a.io"), cond("active", "equals", True)]},
        rules=[{"if": [{"segment": "staff"}, cond("country", "equals", "FR")], "variant": "on"}],
    )
    compiled = compile_flag("f", doc)
    assert compiled.evaluate({"email": "x@a.io", "active": True, "country": "FR"}).value is True
    assert compiled.evaluate({"email": "x@a.io", "active": False, "country": "FR"}).value is False
    assert compiled.evaluate({"email": "x@a.io", "active": True, "country": "DE"}).value is False


def test_first_matching_rule_wins() -> None:
    doc = {
        "enabled": True,
        "variants": {"a": "A", "b": "B", "c": "C"},
        "defaultVariant": "c",
        "rules": [
            {"if": [cond("n", "gt", 10)], "variant": "a"},
            {"if": [cond("n", "gt", 5)], "variant": "b"},
        ],
    }
    compiled = compile_flag("f", doc)
    assert [compiled.evaluate({"n": n}).variant for n in (11, 6, 1)] == ["a", "b", "c"]


# -- refusals ------------------------------------------------------------------------------

INVALID: list[tuple[Any, str]] = [
    ([], "must be a JSON object"),
    ({}, "'enabled' is a required property"),
    (flag(enabled="yes"), "enabled"),
    (flag(variants={}), "variants"),
    (flag(variants={"on": True, "off": "no"}), "variants"),
    (flag(defaultVariant="maybe"), "defaultVariant names variant 'maybe'"),
    (flag(extra=1), "extra"),
    (flag(rules=[{"if": [], "variant": "nope"}]), "rule 1 names variant 'nope'"),
    (flag(rules=[{"if": []}]), "rules/0"),
    (
        flag(rules=[{"if": [], "variant": "on", "rollout": [{"variant": "on", "weight": 1}]}]),
        "rules/0",
    ),
    (flag(rules=[{"if": [{"segment": "ghosts"}], "variant": "on"}]), "segment 'ghosts'"),
    (flag(rules=[{"if": [cond("a", "like", "x")], "variant": "on"}]), "rules/0/if/0"),
    (
        flag(rules=[{"if": [cond("v", "semver_gt", "two")], "variant": "on"}]),
        "not a semantic version",
    ),
    (flag(rules=[{"if": [cond("v", "lt", "ten")], "variant": "on"}]), "compares with a number"),
    (
        flag(rules=[{"if": [cond("v", "starts_with", 1)], "variant": "on"}]),
        "compares with a string",
    ),
    (flag(rollout=[{"variant": "on", "weight": 0}]), "add up to between 1"),
    (flag(rollout=[{"variant": "on", "weight": -1}]), "rollout/0/weight"),
    (flag(rollout=[{"variant": "on", "weight": 1.5}]), "rollout/0/weight"),
    (flag(rollout=[{"variant": "gone", "weight": 1}]), "rollout names variant 'gone'"),
    (
        flag(rollout=[{"variant": "on", "weight": 2**31 - 1}, {"variant": "off", "weight": 1}]),
        "add up to between 1",
    ),
]


@pytest.mark.parametrize(("document", "message"), INVALID)
def test_invalid_documents_are_refused_saying_where(document: Any, message: str) -> None:
    with pytest.raises(InvalidConfigurationError, match=None) as caught:
        validate_flag(document, "f")
    assert message in str(caught.value)
    with pytest.raises(InvalidConfigurationError):
        to_flagd("f", document)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.sampled_from(["", "a", "in", "equals"]),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["a", "op", "value", "values"]), inner, max_size=3)
    ),
    max_leaves=8,
)
_CONDITION_LIKE = st.dictionaries(
    st.sampled_from(["attribute", "op", "value", "values", "segment", "extra"]),
    _JSON | st.sampled_from(["equals", "in", "not_in", "semver_gt", "lt", "x"]),
    max_size=4,
)


@given(
    _CONDITION_LIKE, st.sampled_from(["variants", "rollout", "enabled", "defaultVariant"]), _JSON
)
def test_the_compiled_schema_check_agrees_with_jsonschema(
    condition: dict[str, Any], member: str, value: Any
) -> None:
    """fastjsonschema (the fast path) and jsonschema (the reference) give the same verdict."""
    from amira_data_access.flags._evaluate import _fast_check, _passes, _validator

    fast = _fast_check()
    assert fast is not None
    for document in (
        flag(rules=[{"if": [condition], "variant": "on"}]),
        flag(segments={"s": [condition]}),
        flag(**{member: value}),
    ):
        assert _passes(fast, document) == _validator().is_valid(document), document


@pytest.mark.parametrize(("document", "message"), INVALID)
def test_the_compiled_schema_check_agrees_on_the_refusals(document: Any, message: str) -> None:
    from amira_data_access.flags._evaluate import _fast_check, _passes, _validator

    fast = _fast_check()
    assert fast is not None
    assert _passes(fast, document) == _validator().is_valid(document)


def test_to_flagd_shapes() -> None:
    assert "targeting" not in to_flagd("f", flag())
    assert to_flagd("f", flag(enabled=False))["state"] == "DISABLED"
    doc = flag(rules=[{"if": [cond("a", "not_in", ["x"])], "variant": "on"}])
    assert to_flagd("f", doc)["targeting"] == {
        "if": [{"!": {"in": [{"var": "a"}, ["x"]]}}, "on", None]
    }
