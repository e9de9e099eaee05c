"""The same flags, evaluated by flagd's in-process provider (file source) and by us.

flagd's ``fractional`` bucketing (MurmurHash3 over the CBOR of ``[flagKey,
targetingKey]``) is what lets a rollout move between flagd and this store without
reshuffling users: for 10,000 targeting keys, with attributes drawn at random,
every definition must give the same variant and value in both.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("openfeature.contrib.provider.flagd")

from openfeature.contrib.provider.flagd import FlagdProvider
from openfeature.contrib.provider.flagd.config import ResolverType
from openfeature.evaluation_context import EvaluationContext

from amira_data_access.flags import Reason, compile_flag, to_flagd

KEYS = 10_000

FLAGS: dict[str, dict[str, Any]] = {
    # A plain percentage rollout of a boolean flag.
    "checkout.new-flow": {
        "enabled": True,
        "variants": {"on": True, "off": False},
        "defaultVariant": "off",
        "rollout": [{"variant": "on", "weight": 25}, {"variant": "off", "weight": 75}],
    },
    # Three string variants with uneven weights (not percentages).
    "chat.tone": {
        "enabled": True,
        "variants": {"friendly": "friendly", "formal": "formal", "terse": "terse"},
        "defaultVariant": "friendly",
        "rollout": [
            {"variant": "friendly", "weight": 7},
            {"variant": "formal", "weight": 11},
            {"variant": "terse", "weight": 3},
        ],
    },
    # Targeting first (segments, in, semver, numbers), then a rule's own split, then a
    # fallback split for everyone else.
    "nlu.model": {
        "enabled": True,
        "variants": {"v1": "model-v1", "v2": "model-v2", "v3": "model-v3"},
        "defaultVariant": "v1",
        "segments": {
            "staff": [{"attribute": "email", "op": "ends_with", "value": "@amira.example"}]
        },
        "rules": [
            {"if": [{"segment": "staff"}], "variant": "v3"},
            {
                "if": [
                    {"attribute": "country", "op": "in", "values": ["FR", "DE"]},
                    {"attribute": "app_version", "op": "semver_gte", "value": "2.1.0"},
                ],
                "rollout": [{"variant": "v2", "weight": 50}, {"variant": "v3", "weight": 50}],
            },
            {"if": [{"attribute": "age", "op": "lt", "value": 18}], "variant": "v1"},
            {"if": [{"attribute": "plan", "op": "equals", "value": "pro"}], "variant": "v2"},
        ],
        "rollout": [{"variant": "v1", "weight": 90}, {"variant": "v2", "weight": 10}],
    },
    # Rules only: users no rule matches get the default variant.
    "search.ranking": {
        "enabled": True,
        "variants": {"a": {"boost": 1}, "b": {"boost": 2}},
        "defaultVariant": "a",
        "rules": [
            {"if": [{"attribute": "country", "op": "not_in", "values": ["US"]}], "variant": "b"},
            {"if": [{"attribute": "email", "op": "starts_with", "value": "qa"}], "variant": "b"},
        ],
    },
}

COUNTRIES = ["FR", "DE", "US", "JP", "BR"]
VERSIONS = ["1.9.9", "2.0.0", "2.1.0", "2.1.0-beta.2", "2.10.1", "v3", "3.0"]


def contexts() -> Iterator[tuple[str, dict[str, Any]]]:
    rng = random.Random(17)  # noqa: S311 - the same 10,000 users every run
    for number in range(KEYS):
        attributes: dict[str, Any] = {
            "country": rng.choice(COUNTRIES),
            "app_version": rng.choice(VERSIONS),
            "age": rng.randint(10, 70),
            "plan": rng.choice(["free", "pro"]),
            "email": rng.choice(["qa", "user", "ops"])
            + str(number)
            + rng.choice(["@amira.example", "@mail.example"]),
        }
        yield f"user-{number}-{rng.getrandbits(32):08x}", attributes


@pytest.fixture(scope="module")
def flagd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FlagdProvider]:
    path: Path = tmp_path_factory.mktemp("flagd") / "flags.json"
    definitions = {key: to_flagd(key, document) for key, document in FLAGS.items()}
    path.write_text(json.dumps({"flags": definitions}))
    provider = FlagdProvider(resolver_type=ResolverType.FILE, offline_flag_source_path=str(path))
    provider.initialize(EvaluationContext())
    yield provider
    provider.shutdown()


def _flagd_resolve(provider: FlagdProvider, key: str, context: EvaluationContext) -> Any:
    kind = compile_flag(key, FLAGS[key]).kind
    if kind == "boolean":
        return provider.resolve_boolean_details(key, False, context)
    if kind == "string":
        return provider.resolve_string_details(key, "", context)
    return provider.resolve_object_details(key, {}, context)


@pytest.mark.parametrize("key", sorted(FLAGS))
def test_every_targeting_key_gets_flagds_variant(flagd: FlagdProvider, key: str) -> None:
    flag = compile_flag(key, FLAGS[key])
    picked: Counter[str | None] = Counter()
    differences = []
    for targeting_key, attributes in contexts():
        ours = flag.evaluate({"targetingKey": targeting_key, **attributes})
        theirs = _flagd_resolve(flagd, key, EvaluationContext(targeting_key, attributes))
        if (ours.variant, ours.value) != (theirs.variant, theirs.value):
            differences.append((targeting_key, attributes, ours, theirs))
        picked[ours.variant] += 1
    assert differences == []
    # Not a degenerate comparison: every variant of the flag was picked for someone.
    assert set(picked) == set(FLAGS[key]["variants"])


def test_the_split_is_a_split() -> None:
    """A 25% rollout gives about a quarter of the users the variant (MurmurHash3 is uniform)."""
    flag = compile_flag("checkout.new-flow", FLAGS["checkout.new-flow"])
    results = [flag.evaluate({"targetingKey": key}) for key, _ in contexts()]
    assert {r.reason for r in results} == {Reason.SPLIT}
    share = sum(r.value is True for r in results) / KEYS
    assert 0.23 < share < 0.27
