"""Turning what people type and the files they import into checked values; no I/O on the database.

The export/import file format is one mapping ``{key: {value, data_type,
description}}`` in key order, as JSON (default) or YAML. Export writes it and
import reads the same shape, so ``export | import`` round-trips exactly: every
entry carries its type, and floats, big integers and nested JSON keep theirs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from ..codec import DataType

__all__ = [
    "ENTRY_FIELDS",
    "FileFormat",
    "ImportEntry",
    "NotFoundError",
    "UsageError",
    "dump_document",
    "parse_document",
    "parse_instant",
    "parse_value",
    "strip_final_newline",
]

FileFormat = Literal["json", "yaml"]
ENTRY_FIELDS = frozenset({"value", "data_type", "description", "schema"})
YAML_MISSING = "YAML needs PyYAML: pip install 'amira-data-access[yaml]'"


_SYNTAX = {
    "int": "write an integer, e.g. 42",
    "float": "write a number, e.g. 0.82 or 1e-3",
    "bool": "write true or false",
    "json": 'write JSON, e.g. {"a": [1, 2]} or "text" with its quotes',
}


class UsageError(Exception):
    """The command line or an input file is wrong (exit code 2); nothing was written."""


class NotFoundError(Exception):
    """The key or version asked for does not exist (exit code 1)."""


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a valid JSON number here")


def parse_value(text: str, data_type: str) -> Any:
    """The value VALUE stands for: text for ``str``, JSON for the other types.

    Only the syntax is checked here; whether the value fits ``data_type`` (an int
    for ``int``, no NaN…) is the library's job, with its own messages.
    """
    from ..codec import DATA_TYPES

    if data_type not in DATA_TYPES:
        raise UsageError(f"unknown type {data_type!r}: choose from {', '.join(DATA_TYPES)}")
    if data_type in ("str", "secret"):  # a secret is text, sealed by the store
        return text
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except ValueError as exc:
        shown = text if len(text) <= 40 else text[:39] + "…"
        raise UsageError(
            f"value {shown!r} is not valid for --type {data_type}: {_SYNTAX[data_type]} ({exc})"
        ) from None


def strip_final_newline(text: str) -> str:
    """File and stdin content without the one newline editors and ``echo`` add at the end."""
    if text.endswith("\r\n"):
        return text[:-2]
    return text.removesuffix("\n")


def parse_instant(text: str) -> datetime:
    """An ISO 8601 instant; without a UTC offset it is taken as UTC (like our output)."""
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(
            f"--at {text!r} is not an ISO 8601 timestamp (e.g. 2025-01-31T12:00:00Z)"
        ) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class ImportEntry:
    """One checked entry of an import file."""

    key: str
    value: Any
    data_type: DataType | None
    description: str | None
    schema: Any = None  # a JSON Schema to attach to the key (None: leave its schema alone)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json would keep the last of two equal keys silently: an import must not guess.
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise ValueError(f"key {key!r} appears twice")
        seen[key] = value
    return seen


def _load(text: str, file_format: FileFormat) -> Any:
    if file_format == "json":
        return json.loads(text, parse_constant=_refuse_constant, object_pairs_hook=_unique_keys)
    try:
        import yaml
    except ImportError:
        raise UsageError(YAML_MISSING) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(str(exc).replace("\n", " ")) from None


def parse_document(text: str, file_format: FileFormat, source: str) -> list[ImportEntry]:
    """Check a whole import file; raise :class:`UsageError` naming the first wrong entry."""
    from ..errors import InvalidConfigurationError

    try:
        document = _load(text, file_format)
    except ValueError as exc:
        raise UsageError(f"{source}: not valid {file_format.upper()}: {exc}") from None
    if document is None:
        return []
    if not isinstance(document, Mapping):
        raise UsageError(
            f"{source}: expected a mapping of key to {{value, data_type, description}}, "
            f"got {type(document).__name__}"
        )
    entries: list[ImportEntry] = []
    for key, fields in document.items():
        try:
            entries.append(_parse_entry(key, fields))
        except (InvalidConfigurationError, UsageError) as exc:
            raise UsageError(f"{source}: entry {key!r}: {exc}") from None
    return sorted(entries, key=lambda entry: entry.key)


def _parse_entry(key: object, fields: object) -> ImportEntry:
    from ..codec import DATA_TYPES, prepare_value, validate_description, validate_key

    checked_key = validate_key(key)
    if not isinstance(fields, Mapping):
        raise UsageError("must be a mapping with value, data_type and description")
    unknown = sorted(str(name) for name in fields if name not in ENTRY_FIELDS)
    if unknown:
        raise UsageError(
            f"unknown field(s) {', '.join(unknown)} "
            "(allowed: value, data_type, description, schema)"
        )
    if "value" not in fields:
        raise UsageError("has no value")
    data_type = fields.get("data_type")
    if data_type is not None and data_type not in DATA_TYPES:
        raise UsageError(f"data_type {data_type!r} is not one of {', '.join(DATA_TYPES)}")
    value = fields["value"]
    if data_type == "secret":
        # What export wrote: the sealed envelope, imported as is (bound to its key).
        from ..secrets import sealed_from_document

        value = sealed_from_document(value, checked_key)
    prepared = prepare_value(value, data_type)  # the library's own checks
    schema = fields.get("schema")
    if schema is not None:
        from ..schemas import check_schema_document

        check_schema_document(schema, checked_key)
    return ImportEntry(
        key=checked_key,
        value=prepared.value,
        data_type=prepared.data_type if data_type is not None else None,
        description=validate_description(fields.get("description")),
        schema=schema,
    )


def dump_document(document: Mapping[str, Any], file_format: FileFormat) -> str:
    """The export file text (ends with a newline)."""
    if file_format == "json":
        return json.dumps(document, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    try:
        import yaml
    except ImportError:
        raise UsageError(YAML_MISSING) from None
    text: str = yaml.safe_dump(
        dict(document), sort_keys=False, allow_unicode=True, default_flow_style=False
    )
    return text
