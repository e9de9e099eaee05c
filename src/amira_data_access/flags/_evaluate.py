"""The flag evaluator: pure, I/O-free, deterministic.

:func:`compile_flag` checks a flag document (the JSON Schema, then what a schema
cannot say) and turns it into a :class:`CompiledFlag` whose :meth:`~CompiledFlag.evaluate`
answers in microseconds: no parsing, no schema, no I/O per evaluation. The stores
compile a flag once per stored version (see :mod:`._store`) and evaluate it from
what they already hold (the cache: no round trip).

Semantics, chosen to give the same variant as flagd's in-process evaluator for
the same definition (:func:`.to_flagd` writes that definition):

* disabled: the caller's default, reason ``DISABLED``;
* no rules and no rollout: ``defaultVariant``, reason ``STATIC``;
* the first rule whose conditions all match: its variant (``TARGETING_MATCH``) or
  its rollout's pick for the targeting key (``SPLIT``);
* no rule matched: the top-level rollout's pick (``SPLIT``), else ``defaultVariant``
  (``DEFAULT``);
* a rollout without a (non-empty string) ``targetingKey`` in the context cannot
  pick: ``defaultVariant``, reason ``DEFAULT`` (flagd does the same);
* an attribute missing from the context, or of another type than the operator
  compares, does not match (so ``not_equals`` / ``not_in`` do match it).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import cache, lru_cache
from typing import Any, Final

from ..errors import InvalidConfigurationError
from ._bucketing import MAX_TOTAL_WEIGHT, key_prefix, pick_weighted
from ._schema import FLAG_SCHEMA, LIST_OPERATORS

__all__ = [
    "CompiledFlag",
    "ErrorCode",
    "FlagEvaluation",
    "Reason",
    "compile_flag",
    "error_evaluation",
    "parse_semver",
    "validate_flag",
    "value_kind",
]

Context = Mapping[str, Any]


class Reason(StrEnum):
    """Why an evaluation gave its value (the spellings of OpenFeature's ``Reason``)."""

    STATIC = "STATIC"
    TARGETING_MATCH = "TARGETING_MATCH"
    SPLIT = "SPLIT"
    DEFAULT = "DEFAULT"
    DISABLED = "DISABLED"
    ERROR = "ERROR"


class ErrorCode(StrEnum):
    """What went wrong when the reason is ``ERROR`` (OpenFeature's ``ErrorCode`` spellings)."""

    FLAG_NOT_FOUND = "FLAG_NOT_FOUND"
    PARSE_ERROR = "PARSE_ERROR"
    TYPE_MISMATCH = "TYPE_MISMATCH"
    GENERAL = "GENERAL"


@dataclass(frozen=True, slots=True)
class FlagEvaluation:
    """One evaluation of a flag: the value, which variant, why, and the flag's version.

    ``version`` is the stored key's version (None when the flag does not exist);
    ``variant`` is None when the value is the caller's default (disabled, error).
    """

    flag_key: str
    value: Any
    variant: str | None
    reason: Reason
    version: int | None
    error_code: ErrorCode | None = None
    error_message: str | None = None


def error_evaluation(
    flag_key: str, default: Any, code: ErrorCode, message: str, version: int | None = None
) -> FlagEvaluation:
    """The caller's default, with reason ``ERROR`` and what went wrong."""
    return FlagEvaluation(flag_key, default, None, Reason.ERROR, version, code, message)


def value_kind(value: object) -> str | None:
    """``boolean``, ``string``, ``number`` or ``object``: a flag's (or a default's) type."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, str):
        return "string"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, dict | list):
        return "object"
    return None


# -- semver (as flagd's sem_ver: a leading v dropped, "1" and "1.2" padded) ---------------

_SEMVER: Final = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$",
    re.ASCII,
)

SemverKey = tuple[int, int, int, int, tuple[tuple[int, int | str], ...]]


@lru_cache(maxsize=4096)
def parse_semver(text: str) -> SemverKey | None:
    """A precedence key of a semantic version (build metadata ignored), None if invalid."""
    if text[:1] in ("v", "V"):
        text = text[1:]
    numeric = text.split("-", 1)[0].split("+", 1)[0]
    dots = numeric.count(".")
    if dots < 2:
        text = numeric + ".0" * (2 - dots) + text[len(numeric) :]
    match = _SEMVER.match(text)
    if match is None:
        return None
    major, minor, patch, pre, _build = match.groups()
    if pre is None:  # a release ranks above its pre-releases
        return (int(major), int(minor), int(patch), 1, ())
    # Numeric identifiers rank below alphanumeric ones, and compare as numbers.
    parts = tuple((0, int(p)) if p.isdigit() else (1, p) for p in pre.split("."))
    return (int(major), int(minor), int(patch), 0, parts)


def _semver_of(value: object) -> SemverKey | None:
    # flagd turns the attribute into text first (str(arg)): 2 is "2" is 2.0.0.
    if isinstance(value, str):
        return parse_semver(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return parse_semver(str(value))
    return None


_SEMVER_TESTS: Final[dict[str, Callable[[SemverKey, SemverKey], bool]]] = {
    "semver_eq": lambda a, b: a == b,
    "semver_ne": lambda a, b: a != b,
    "semver_lt": lambda a, b: a < b,
    "semver_lte": lambda a, b: a <= b,
    "semver_gt": lambda a, b: a > b,
    "semver_gte": lambda a, b: a >= b,
    "semver_caret": lambda a, b: a[0] == b[0],
    "semver_tilde": lambda a, b: a[:2] == b[:2],
}

_NUMBER_TESTS: Final[dict[str, Callable[[float, float], bool]]] = {
    "lt": lambda a, b: a < b,
    "lte": lambda a, b: a <= b,
    "gt": lambda a, b: a > b,
    "gte": lambda a, b: a >= b,
}


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _same(a: object, b: object) -> bool:
    """JSON equality: 1 and 1.0 are equal, True and 1 are not."""
    return a == b and isinstance(a, bool) == isinstance(b, bool)


# -- compiling ---------------------------------------------------------------------------

Test = Callable[[Context], bool]
_MISSING: Final = object()


def _condition(condition: Mapping[str, Any], segments: Mapping[str, list[Test]]) -> Test:
    """One condition as a function of the context."""
    if "segment" in condition:
        return _all_of(segments[condition["segment"]])
    attribute: str = condition["attribute"]
    op: str = condition["op"]
    if op in LIST_OPERATORS:
        values = list(condition["values"])
        # Hash lookups per kind, so that True never matches 1 (JSON has no such equality).
        strings = frozenset(v for v in values if isinstance(v, str))
        numbers = frozenset(v for v in values if _is_number(v))
        booleans = frozenset(v for v in values if isinstance(v, bool))

        def member(context: Context) -> bool:
            found = context.get(attribute, _MISSING)
            if isinstance(found, str):
                return found in strings
            if isinstance(found, bool):
                return found in booleans
            if _is_number(found):
                return found in numbers
            return False

        if op == "in":
            return member
        return lambda context: not member(context)
    operand: Any = condition["value"]
    if op == "equals":
        return lambda context: _same(context.get(attribute, _MISSING), operand)
    if op == "not_equals":
        return lambda context: not _same(context.get(attribute, _MISSING), operand)
    if op in ("starts_with", "ends_with"):
        if not isinstance(operand, str):
            raise InvalidConfigurationError(f"{op} compares with a string, not {operand!r}")
        method = str.startswith if op == "starts_with" else str.endswith

        def affix(context: Context) -> bool:
            found = context.get(attribute)
            return isinstance(found, str) and method(found, operand)

        return affix
    if op in _NUMBER_TESTS:
        if not _is_number(operand) or not math.isfinite(operand):
            raise InvalidConfigurationError(f"{op} compares with a number, not {operand!r}")
        compare = _NUMBER_TESTS[op]
        limit: float = operand

        def numeric(context: Context) -> bool:
            found = context.get(attribute)
            return (
                isinstance(found, int | float)
                and not isinstance(found, bool)
                and compare(found, limit)
            )

        return numeric
    version = _semver_of(operand)
    if version is None:
        raise InvalidConfigurationError(f"{op}: {operand!r} is not a semantic version")
    semver_test = _SEMVER_TESTS[op]

    def semver(context: Context) -> bool:
        found = _semver_of(context.get(attribute))
        return found is not None and semver_test(found, version)

    return semver


def _all_of(tests: Sequence[Test]) -> Test:
    # Specialised by length: all() over a generator costs more than the tests themselves
    # (measured: 10 two-condition rules took 2.2x as long that way).
    if not tests:
        return lambda context: True
    if len(tests) == 1:
        return tests[0]
    if len(tests) == 2:
        first, second = tests
        return lambda context: first(context) and second(context)
    frozen = tuple(tests)

    def every(context: Context) -> bool:
        for test in frozen:  # noqa: SIM110 - a loop: all() over a generator is slower
            if not test(context):
                return False
        return True

    return every


@dataclass(frozen=True, slots=True)
class _Rollout:
    weights: tuple[tuple[str, int], ...]
    total: int


@dataclass(frozen=True, slots=True)
class _Rule:
    test: Test
    variant: str | None
    rollout: _Rollout | None


def _rollout(document: Sequence[Any] | None, variants: Mapping[str, Any]) -> _Rollout | None:
    if document is None:
        return None
    weights: tuple[tuple[str, int], ...] = tuple((w["variant"], w["weight"]) for w in document)
    for name, _ in weights:
        _known_variant(name, variants, "rollout")
    total = sum(weight for _, weight in weights)
    if not 0 < total <= MAX_TOTAL_WEIGHT:
        raise InvalidConfigurationError(
            f"a rollout's weights must add up to between 1 and {MAX_TOTAL_WEIGHT}, not {total}"
        )
    return _Rollout(weights, total)


def _known_variant(name: str, variants: Mapping[str, Any], where: str) -> None:
    if name not in variants:
        raise InvalidConfigurationError(
            f"{where} names variant {name!r}, which is not one of {sorted(variants)}"
        )


@cache
def _validator() -> Any:
    # Imported and built once, on the first flag: most processes never compile one.
    from jsonschema import Draft202012Validator

    Draft202012Validator.check_schema(FLAG_SCHEMA)
    return Draft202012Validator(FLAG_SCHEMA)


@cache
def _fast_check() -> Callable[[object], object] | None:
    """The schema compiled to Python by fastjsonschema (None: not installed).

    A stored flag is checked again in every process at every new version, so the check
    is on the change feed's path: jsonschema took 15 ms for a 10-rule flag, the
    compiled check 2.8 ms (this 2-core machine, loaded). It answers valid or not;
    jsonschema, the reference, still words the refusal. The schema uses only keywords
    draft-07 has (fastjsonschema's newest), and tests/unit/test_flags_evaluator.py
    checks that the two agree.
    """
    try:
        import fastjsonschema
    except ImportError:  # pragma: no cover - the flags extra installs it
        return None
    draft7 = {**FLAG_SCHEMA, "$schema": "http://json-schema.org/draft-07/schema#"}
    check: Callable[[object], object] = fastjsonschema.compile(draft7)
    return check


def _passes(check: Callable[[object], object], document: object) -> bool:
    try:
        check(document)
    except Exception:  # JsonSchemaValueException, or anything else: jsonschema decides
        return False
    return True


def _schema_errors(document: object) -> str | None:
    fast = _fast_check()
    if fast is not None and _passes(fast, document):
        return None
    error = next(iter(_validator().iter_errors(document)), None)
    if error is None:
        return None
    # best_match picks the most relevant of a oneOf's failures; the path names the place.
    from jsonschema.exceptions import best_match

    best = best_match(_validator().iter_errors(document)) or error
    where = "/".join(str(p) for p in best.absolute_path) or "(the document)"
    return f"{where}: {best.message}"


class CompiledFlag:
    """A checked flag document, ready to evaluate many times."""

    __slots__ = (
        "_default",
        "_enabled",
        "_prefix",
        "_rollout",
        "_rules",
        "_variants",
        "key",
        "kind",
    )

    def __init__(self, key: str, document: Mapping[str, Any]) -> None:
        problem = _schema_errors(document)
        if problem is not None:
            raise InvalidConfigurationError(
                f"flag {key!r} does not follow the flag schema: {problem}"
            )
        self.key = key
        self._prefix = key_prefix(key)
        self._variants: dict[str, Any] = dict(document["variants"])
        self._enabled: bool = document["enabled"]
        self._default: str = document["defaultVariant"]
        _known_variant(self._default, self._variants, "defaultVariant")
        self.kind = value_kind(next(iter(self._variants.values())))
        segments: dict[str, list[Test]] = {}
        # A segment may use the segments defined before it (no cycles by construction).
        for name, conditions in document.get("segments", {}).items():
            segments[name] = [self._check(c, segments, f"segment {name!r}") for c in conditions]
        rules = []
        for number, rule in enumerate(document.get("rules", ()), start=1):
            where = f"rule {number}"
            tests = [self._check(c, segments, where) for c in rule["if"]]
            variant = rule.get("variant")
            if variant is not None:
                _known_variant(variant, self._variants, where)
            rules.append(
                _Rule(
                    _all_of(tests),
                    variant,
                    _rollout(rule.get("rollout"), self._variants),
                )
            )
        self._rules: tuple[_Rule, ...] = tuple(rules)
        self._rollout = _rollout(document.get("rollout"), self._variants)

    @staticmethod
    def _check(
        condition: Mapping[str, Any], segments: Mapping[str, list[Test]], where: str
    ) -> Test:
        name = condition.get("segment")
        if name is not None and name not in segments:
            raise InvalidConfigurationError(f"{where} refers to segment {name!r}, not defined")
        try:
            return _condition(condition, segments)
        except InvalidConfigurationError as exc:
            raise InvalidConfigurationError(f"{where}: {exc}") from None

    def evaluate(
        self, context: Context | None, default: Any = None, *, version: int | None = None
    ) -> FlagEvaluation:
        """Evaluate for ``context`` (``targetingKey`` and attributes); ``default`` when disabled.

        A ``default`` of another type than the flag's variants (a bool asked of a
        string flag) gives the default back with ``TYPE_MISMATCH``; None asks no type.
        """
        if default is not None and value_kind(default) != self.kind:
            return error_evaluation(
                self.key,
                default,
                ErrorCode.TYPE_MISMATCH,
                f"flag {self.key!r} holds {self.kind} values, asked for {value_kind(default)}",
                version,
            )
        if not self._enabled:
            return FlagEvaluation(self.key, default, None, Reason.DISABLED, version)
        ctx: Context = context if context is not None else {}
        for rule in self._rules:
            if rule.test(ctx):
                if rule.rollout is None:
                    return self._variant(rule.variant, Reason.TARGETING_MATCH, version)
                return self._split(rule.rollout, ctx, version)
        if self._rollout is not None:
            return self._split(self._rollout, ctx, version)
        reason = Reason.DEFAULT if self._rules else Reason.STATIC
        return self._variant(self._default, reason, version)

    def _variant(self, name: str | None, reason: Reason, version: int | None) -> FlagEvaluation:
        assert name is not None  # a rule has a variant or a rollout (the schema's oneOf)
        return FlagEvaluation(self.key, self._variants[name], name, reason, version)

    def _split(self, rollout: _Rollout, ctx: Context, version: int | None) -> FlagEvaluation:
        targeting_key = ctx.get("targetingKey")
        if not isinstance(targeting_key, str) or not targeting_key:
            return self._variant(self._default, Reason.DEFAULT, version)
        name = pick_weighted(self._prefix, targeting_key, rollout.weights, rollout.total)
        return self._variant(name, Reason.SPLIT, version)


def compile_flag(key: str, document: object) -> CompiledFlag:
    """Check a flag document and compile it; :class:`InvalidConfigurationError` if invalid."""
    if not isinstance(document, Mapping):
        raise InvalidConfigurationError(
            f"flag {key!r} must be a JSON object, not {type(document).__name__}"
        )
    return CompiledFlag(key, document)


def validate_flag(document: object, key: str = "flag") -> None:
    """Refuse (:class:`InvalidConfigurationError`) a document that is not a valid flag."""
    compile_flag(key, document)
