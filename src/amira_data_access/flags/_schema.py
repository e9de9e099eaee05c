"""The JSON Schema of a flag document (``data_type="flag"``), shipped with the library.

A flag is a JSON object::

    {
      "enabled": true,
      "variants": {"on": true, "off": false},
      "defaultVariant": "off",
      "segments": {"staff": [{"attribute": "email", "op": "ends_with", "value": "@amira.ai"}]},
      "rules": [
        {"if": [{"segment": "staff"}], "variant": "on"},
        {"if": [{"attribute": "country", "op": "in", "values": ["FR", "DE"]}],
         "rollout": [{"variant": "on", "weight": 50}, {"variant": "off", "weight": 50}]}
      ],
      "rollout": [{"variant": "on", "weight": 10}, {"variant": "off", "weight": 90}]
    }

* ``variants``: name -> value, every value of one kind (all booleans, all strings,
  all numbers, or all JSON objects/arrays), so a flag has one type.
* ``rules``: tried in order; the first whose conditions (``if``, all of them) match
  gives a fixed ``variant`` or a weighted ``rollout`` over the targeting key.
* ``rollout`` (top level): the split for everyone no rule matched; without it they
  get ``defaultVariant``.
* ``segments``: named condition lists a rule refers to with ``{"segment": NAME}``.
* A rollout is a list (not an object) because its order decides who falls where,
  and jsonb does not keep the order of an object's members.

What a schema cannot say (a variant or segment named but not defined, a semver
that does not parse, weights adding up to nothing) :func:`..validate_flag` checks
after the schema. The database keeps the top-level shape as a CHECK constraint
(migrations/0012), so raw SQL cannot store a flag that is not even an object.
"""

from __future__ import annotations

from typing import Any, Final

__all__ = ["FLAG_SCHEMA", "OPERATORS"]

# Operators taking one "value" (compared with the context attribute)...
VALUE_OPERATORS: Final = (
    "equals",
    "not_equals",
    "starts_with",
    "ends_with",
    "lt",
    "lte",
    "gt",
    "gte",
    "semver_eq",
    "semver_ne",
    "semver_lt",
    "semver_lte",
    "semver_gt",
    "semver_gte",
    "semver_caret",
    "semver_tilde",
)
# ...and those taking a "values" list.
LIST_OPERATORS: Final = ("in", "not_in")
OPERATORS: Final = VALUE_OPERATORS + LIST_OPERATORS

_NAME: Final[dict[str, Any]] = {"type": "string", "minLength": 1, "maxLength": 255}
_SCALAR: Final[dict[str, Any]] = {"type": ["string", "number", "boolean"]}

# Discriminated with if/then/else rather than oneOf: oneOf validates every branch of
# every condition (and builds the errors of the failing ones); measured, a 10-rule flag
# took 15 ms to check that way.
_CONDITION: Final[dict[str, Any]] = {
    "type": "object",
    "if": {"required": ["segment"]},
    "then": {
        "properties": {"segment": _NAME},
        "required": ["segment"],
        "additionalProperties": False,
    },
    "else": {
        "if": {"properties": {"op": {"enum": list(LIST_OPERATORS)}}, "required": ["op"]},
        "then": {
            "properties": {
                "attribute": _NAME,
                "op": {"enum": list(LIST_OPERATORS)},
                "values": {"type": "array", "items": _SCALAR, "maxItems": 100_000},
            },
            "required": ["attribute", "op", "values"],
            "additionalProperties": False,
        },
        "else": {
            "properties": {
                "attribute": _NAME,
                "op": {"enum": list(VALUE_OPERATORS)},
                "value": _SCALAR,
            },
            "required": ["attribute", "op", "value"],
            "additionalProperties": False,
        },
    },
}

_ROLLOUT: Final[dict[str, Any]] = {
    "type": "array",
    "minItems": 1,
    "items": {
        "type": "object",
        "properties": {
            "variant": _NAME,
            "weight": {"type": "integer", "minimum": 0, "maximum": 2_147_483_647},
        },
        "required": ["variant", "weight"],
        "additionalProperties": False,
    },
}


def _variants_of(kind: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "minProperties": 1,
        "propertyNames": _NAME,
        "additionalProperties": kind,
    }


FLAG_SCHEMA: Final[dict[str, Any]] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://example.invalid/amira/amira-data-access/flag.schema.json",
    "title": "amira-data-access feature flag",
    "type": "object",
    "properties": {
        "enabled": {"type": "boolean"},
        "variants": {
            # anyOf: the kinds exclude each other (non-empty), and anyOf stops at the first.
            "anyOf": [
                _variants_of({"type": "boolean"}),
                _variants_of({"type": "string"}),
                _variants_of({"type": "number"}),
                _variants_of({"type": ["object", "array"]}),
            ]
        },
        "defaultVariant": _NAME,
        "segments": {
            "type": "object",
            "propertyNames": _NAME,
            "additionalProperties": {"type": "array", "items": _CONDITION},
        },
        "rules": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "if": {"type": "array", "items": _CONDITION},
                    "variant": _NAME,
                    "rollout": _ROLLOUT,
                },
                "required": ["if"],
                "oneOf": [{"required": ["variant"]}, {"required": ["rollout"]}],
                "additionalProperties": False,
            },
        },
        "rollout": _ROLLOUT,
        "description": {"type": "string"},
    },
    "required": ["enabled", "variants", "defaultVariant"],
    "additionalProperties": False,
}
