"""JSON Schemas attached to a key or a key prefix, and the checks of values against them (pure).

A schema (JSON Schema Draft 2020-12, validated with the ``jsonschema`` package)
is attached to a *key* (``amira.chat.max_turns``) or to a *prefix*
(``amira.chat.``: every key starting with it). Every schema that applies to a
key must accept its value: the key's own and those of each prefix of it (they
are constraints, so they add up; none overrides another).

The stores keep a :class:`SchemaRegistry`, the schemas as of a revision of
``amira_config.schema_revision`` (migrations/0010): a write first reads the
revision (one small read), reloads the schemas only when it moved, and
validates the values it writes against the compiled validators. With no
schema, that read is the whole cost. ``jsonschema`` is imported when a schema
is first compiled: processes that have none never load it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from .errors import InvalidConfigurationError

if TYPE_CHECKING:
    from jsonschema.protocols import Validator

__all__ = [
    "SchemaEntry",
    "SchemaKind",
    "SchemaRegistry",
    "SchemaViolation",
    "SchemaViolationError",
    "check_schema_document",
    "schema_entry_from_row",
    "schema_kind",
]

SchemaKind = Literal["key", "prefix"]

# How many violations one error message lists before saying "and N more".
_SHOWN = 10


@dataclass(frozen=True, slots=True)
class SchemaEntry:
    """A schema as stored: what it is attached to, the schema, and its audit fields.

    ``violations`` is filled only by ``set_schema(..., force=True)``: the stored
    values the new schema refuses, which it was attached in spite of.
    """

    target: str
    kind: SchemaKind
    schema: Any  # a JSON object or boolean
    description: str | None
    version: int
    updated_by: str
    updated_at: datetime
    violations: tuple[SchemaViolation, ...] = ()

    @property
    def name(self) -> str:
        """How messages name the schema: ``key 'a.b'`` or ``prefix 'a.'``."""
        return f"{self.kind} {self.target!r}"

    def applies_to(self, key: str) -> bool:
        """Whether the schema constrains the value of ``key``."""
        return key == self.target if self.kind == "key" else key.startswith(self.target)


@dataclass(frozen=True, slots=True)
class SchemaViolation:
    """One value a schema refuses: which key, which schema, where in the value, and why."""

    key: str
    schema: str  # SchemaEntry.name
    path: str  # a JSONPath into the value: "$", "$.limits[2]"
    message: str

    def __str__(self) -> str:
        return f"{self.key!r} violates the schema of {self.schema} at {self.path}: {self.message}"


class SchemaViolationError(InvalidConfigurationError):
    """A value refused by a schema, or a schema refused because stored values violate it.

    Nothing was written. ``violations`` lists each (key, schema, JSON path, message).
    """

    def __init__(self, message: str, violations: Sequence[SchemaViolation]) -> None:
        super().__init__(message)
        self.violations = tuple(violations)


def schema_kind(target: str, prefix: bool | None) -> SchemaKind:
    """The kind of ``target``: as given, else a prefix when it ends with '.' (or is empty)."""
    if prefix is None:
        prefix = target == "" or target.endswith(".")
    return "prefix" if prefix else "key"


def _validator_class() -> Any:
    from jsonschema import Draft202012Validator  # here: see the module docstring

    return Draft202012Validator


def check_schema_document(schema: object, target: str = "") -> Any:
    """``schema`` if it is a valid Draft 2020-12 schema, else InvalidConfigurationError.

    The schema must be JSON (it is stored as jsonb) and an object or boolean.
    """
    if not isinstance(schema, bool | Mapping):
        raise InvalidConfigurationError(
            f"schema for {target!r}: a JSON Schema is an object or a boolean, "
            f"not {type(schema).__name__}"
        )
    try:
        json.dumps(schema, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidConfigurationError(f"schema for {target!r} is not JSON: {exc}") from None
    from jsonschema.exceptions import SchemaError

    try:
        _validator_class().check_schema(schema)
    except SchemaError as exc:
        where = _json_path(exc.absolute_path)
        raise InvalidConfigurationError(
            f"schema for {target!r} is not a valid Draft 2020-12 schema at {where}: {exc.message}"
        ) from None
    return schema


def schema_entry_from_row(row: Sequence[Any]) -> SchemaEntry:
    """A :class:`SchemaEntry` from (target, kind, schema, description, version, by, at)."""
    target, kind, schema, description, version, updated_by, updated_at = row
    return SchemaEntry(target, kind, schema, description, version, updated_by, updated_at)


def _json_path(parts: Iterable[Any]) -> str:
    path = "$"
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


@dataclass(slots=True)
class _Compiled:
    entry: SchemaEntry
    validator: Validator | None = None


@dataclass(slots=True)
class SchemaRegistry:
    """The schemas a store validates writes against, as of ``revision`` (None: not loaded).

    Shared by a store and its transactions; replaced as a whole under a lock, so a
    reader sees one revision's schemas or the next one's, never a mix.
    """

    revision: int | None = None
    _schemas: tuple[_Compiled, ...] = ()
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def load(self, revision: int, entries: Iterable[SchemaEntry]) -> None:
        """Hold ``entries``, the schemas at ``revision`` (compiled on first use)."""
        compiled = tuple(_Compiled(entry) for entry in entries)
        with self._lock:
            self.revision, self._schemas = revision, compiled

    @property
    def entries(self) -> list[SchemaEntry]:
        """The schemas held."""
        return [compiled.entry for compiled in self._schemas]

    def applicable(self, key: str) -> list[SchemaEntry]:
        """The schemas that constrain ``key``."""
        return [c.entry for c in self._schemas if c.entry.applies_to(key)]

    def violations(self, key: str, value: Any) -> list[SchemaViolation]:
        """Every way ``value`` (decoded JSON) breaks a schema that applies to ``key``."""
        found: list[SchemaViolation] = []
        for compiled in self._schemas:
            if compiled.entry.applies_to(key):
                found.extend(violations_of(compiled, key, value))
        return found

    def refuse(self, what: str, items: Iterable[tuple[str, Any]]) -> None:
        """Raise :class:`SchemaViolationError` if any (key, value) breaks its schemas."""
        if not self._schemas:
            return
        found = [v for key, value in items for v in self.violations(key, value)]
        if found:
            raise SchemaViolationError(f"{what}: {describe(found)}; nothing was written", found)


def violations_of(compiled: _Compiled, key: str, value: Any) -> list[SchemaViolation]:
    """How ``value`` breaks ``compiled``'s schema (compiling it on first use)."""
    if compiled.validator is None:
        compiled.validator = _validator_class()(compiled.entry.schema)
    errors = sorted(compiled.validator.iter_errors(value), key=lambda e: list(e.absolute_path))
    return [
        SchemaViolation(key, compiled.entry.name, _json_path(error.absolute_path), _rule(error))
        for error in errors
    ]


def _rule(error: Any) -> str:
    """The rule a value broke, from the schema only: jsonschema's own message quotes the
    value, which may be a secret (messages and logs never show values)."""
    shown = json.dumps(error.validator_value, ensure_ascii=False, default=str)
    if len(shown) > 80:
        shown = shown[:79] + "…"
    return f"fails {error.validator} {shown}"


def stored_violations(
    entry: SchemaEntry, values: Iterable[tuple[str, Any]]
) -> list[SchemaViolation]:
    """The (key, value) pairs ``entry``'s schema refuses, among those it applies to."""
    compiled = _Compiled(entry)
    return [
        violation
        for key, value in values
        if entry.applies_to(key)
        for violation in violations_of(compiled, key, value)
    ]


def describe(violations: Sequence[SchemaViolation]) -> str:
    """The violations for a message: the first few, then how many more."""
    text = "; ".join(str(v) for v in violations[:_SHOWN])
    if len(violations) > _SHOWN:
        text += f"; and {len(violations) - _SHOWN} more"
    return text
