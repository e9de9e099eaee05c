"""The same flag as a flagd definition, so a rollout can move to (or be checked by) flagd.

:func:`to_flagd` writes the targeting as flagd's JSON Logic: the rules as one
``if`` chain, a rollout as ``fractional`` with the targeting-key shorthand (which
hashes ``[flagKey, targetingKey]``, as :mod:`._bucketing` does), semver operators as
``sem_ver``. flagd then gives every targeting key the variant this library gives
it (tests/integration/test_flagd_equivalence.py); only the reason of a rollout's
pick differs (flagd says ``TARGETING_MATCH`` where this library says ``SPLIT``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from ._evaluate import compile_flag

__all__ = ["to_flagd"]

_JSON_LOGIC: Final = {
    "equals": "===",
    "not_equals": "!==",
    "lt": "<",
    "lte": "<=",
    "gt": ">",
    "gte": ">=",
    "starts_with": "starts_with",
    "ends_with": "ends_with",
}
_SEM_VER: Final = {
    "semver_eq": "=",
    "semver_ne": "!=",
    "semver_lt": "<",
    "semver_lte": "<=",
    "semver_gt": ">",
    "semver_gte": ">=",
    "semver_caret": "^",
    "semver_tilde": "~",
}


def _condition(condition: Mapping[str, Any], segments: Mapping[str, Any]) -> Any:
    if "segment" in condition:
        return _all([_condition(c, segments) for c in segments[condition["segment"]]])
    attribute = {"var": condition["attribute"]}
    op = condition["op"]
    if op == "in":
        return {"in": [attribute, list(condition["values"])]}
    if op == "not_in":
        return {"!": {"in": [attribute, list(condition["values"])]}}
    if op in _SEM_VER:
        return {"sem_ver": [attribute, _SEM_VER[op], condition["value"]]}
    return {_JSON_LOGIC[op]: [attribute, condition["value"]]}


def _all(tests: list[Any]) -> Any:
    if not tests:
        return True
    return tests[0] if len(tests) == 1 else {"and": tests}


def _fractional(rollout: list[Mapping[str, Any]]) -> dict[str, Any]:
    return {"fractional": [[w["variant"], w["weight"]] for w in rollout]}


def to_flagd(key: str, document: Mapping[str, Any]) -> dict[str, Any]:
    """flagd's definition of a (valid) flag document: ``{"flags": {key: ...}}``'s value."""
    compile_flag(key, document)  # refuse what this library would not evaluate
    segments = document.get("segments", {})
    chain: list[Any] = []
    for rule in document.get("rules", ()):
        chain.append(_all([_condition(c, segments) for c in rule["if"]]))
        chain.append(rule["variant"] if "variant" in rule else _fractional(rule["rollout"]))
    fallback = _fractional(document["rollout"]) if "rollout" in document else None
    flag: dict[str, Any] = {
        "state": "ENABLED" if document["enabled"] else "DISABLED",
        "variants": dict(document["variants"]),
        "defaultVariant": document["defaultVariant"],
    }
    if chain:
        flag["targeting"] = {"if": [*chain, fallback]}
    elif fallback is not None:
        flag["targeting"] = fallback
    return flag
