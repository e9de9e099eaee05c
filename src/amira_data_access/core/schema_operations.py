"""The JSON Schema operations, and the check every write makes, written once without I/O.

Like :mod:`.operations`: each is a generator that validates, asks for
statements with ``yield from op.sql(...)`` and decodes the rows, driven by
every store alike. :func:`enforce` is what the write operations call before
they send their write: it reads the schema revision (one small read), reloads
the schemas when it moved, and refuses a value a schema does not accept with a
:class:`~amira_data_access.schemas.SchemaViolationError` naming the key, the
schema and the JSON path, before anything is written.

A write checked against revision N and committed after a schema change N+1
could store a value N+1 refuses (the read and the write are two statements);
``set_schema`` lists stored violators when it is set, and ``check_schemas``
(``amira-config schema check``) lists them at any time, raw SQL's included.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from psycopg.types.json import Jsonb

from ..codec import decode_value, encode_json, validate_actor, validate_key, validate_prefix
from ..entries import entry_from_row
from ..errors import InvalidConfigurationError, SecretUnavailableError, UnreadableValueError
from ..schemas import (
    SchemaEntry,
    SchemaKind,
    SchemaRegistry,
    SchemaViolation,
    SchemaViolationError,
    check_schema_document,
    describe,
    schema_entry_from_row,
    schema_kind,
    stored_violations,
)
from .arguments import MAX_LIST_LIMIT, prefix_end
from .running import Context, Operation, Steps
from .statements import Statements as Q

__all__ = [
    "check_schemas",
    "delete_schema",
    "enforce",
    "get_schema",
    "judged",
    "list_schemas",
    "load_schemas",
    "refuse",
    "set_schema",
    "snapshot_rows",
]


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)  # the instant of a schema not stored yet


def _as_is(text: str) -> str:
    return text


def load_schemas(op: Operation, registry: SchemaRegistry) -> Steps[SchemaRegistry]:
    """``registry`` brought up to the database's schema revision (read only if it moved)."""
    revision = yield from op.sql(Q.get_schema_revision)
    if registry.revision != revision:
        rows = yield from op.sql(Q.list_schemas)
        revision = rows[0][0] if rows else revision
        registry.load(
            revision, [schema_entry_from_row(row[1:]) for row in rows if row[1] is not None]
        )
    return registry


def enforce(op: Operation, ctx: Context, items: Iterable[tuple[str, str, str]]) -> Steps[None]:
    """Refuse the write if a (key, JSON text, data type) breaks a schema that applies.

    A secret is judged by its plaintext (opened with the store's keyring), not by the
    sealed envelope that is sent; messages never show either.
    """
    registry = yield from load_schemas(op, ctx.schemas)
    if not registry.entries:
        return
    pairs = [item for item in items if registry.applicable(item[0])]
    if not pairs:
        return
    refuse(
        op,
        registry,
        f"{op.name} {op.key!r}" if op.key is not None else op.name,
        [(key, judged(ctx, key, json.loads(text), data_type)) for key, text, data_type in pairs],
    )


def judged(ctx: Context, key: str, stored: Any, data_type: str) -> Any:
    """What a schema judges of a value as stored: the decoded value, a secret opened."""
    return ctx.reveal(key, decode_value(stored, data_type, key))


def refuse(
    op: Operation, registry: SchemaRegistry, what: str, items: list[tuple[str, Any]]
) -> None:
    """:meth:`SchemaRegistry.refuse`, logged as the refusal it is (not a store failure)."""
    try:
        registry.refuse(what, items)
    except SchemaViolationError as exc:
        op.outcome = "schema_violation"
        op.note(violations=len(exc.violations))
        raise


def _target(target: object, prefix: bool | None) -> tuple[str, SchemaKind]:
    if not isinstance(target, str):
        raise InvalidConfigurationError(
            f"a schema target is a key or prefix, not {type(target).__name__}"
        )
    kind = schema_kind(target, prefix)
    if kind == "key":
        validate_key(target)
    else:
        validate_prefix(target)
    return target, kind


def _stored_values(
    op: Operation, ctx: Context, target: str, kind: SchemaKind
) -> Steps[list[tuple[str, Any]]]:
    """Every stored (key, value) the target covers, read a page at a time."""
    if kind == "key":
        row = yield from op.sql(Q.get_configuration, key=target)
        if row is None:
            return []
        try:
            return [(target, ctx.reveal(target, entry_from_row(row).value))]
        except (UnreadableValueError, SecretUnavailableError):
            return []
    found: list[tuple[str, Any]] = []
    after = ""
    while True:
        rows = yield from op.sql(
            Q.list_configurations,
            prefix=target,
            prefix_end=prefix_end(target),
            after=after,
            limit=MAX_LIST_LIMIT,
        )
        for row in rows:
            try:
                found.append((row[0], ctx.reveal(row[0], entry_from_row(row).value)))
            except (UnreadableValueError, SecretUnavailableError):
                # Unreadable: reported by reads as such. A secret without the keyring to
                # open it: no schema can judge it here.
                continue
        if len(rows) < MAX_LIST_LIMIT:
            return found
        after = rows[-1][0]


def set_schema(
    ctx: Context,
    target: str,
    schema: Any,
    *,
    prefix: bool | None,
    description: str | None,
    updated_by: str,
    force: bool,
) -> Steps[SchemaEntry]:
    """Attach ``schema`` to a key or prefix, refusing it if stored values violate it."""
    with ctx.operation(
        "config.set_schema", target if isinstance(target, str) else None, level="info"
    ) as op:
        target, kind = _target(target, prefix)
        validate_actor(updated_by)
        if description is not None and not isinstance(description, str):
            raise InvalidConfigurationError("description must be a str or None")
        check_schema_document(schema, target)
        text = encode_json(schema)
        candidate = SchemaEntry(target, kind, schema, description, 0, updated_by, _EPOCH)
        values = yield from _stored_values(op, ctx, target, kind)
        violations = stored_violations(candidate, values)
        op.note(kind=kind, violations=len(violations), force=force)
        if violations and not force:
            op.outcome = "refused"
            raise SchemaViolationError(
                f"schema for {kind} {target!r} refused: {len(violations)} stored value(s) "
                f"violate it ({describe(violations)}); fix them, or pass force=True "
                "(--force) to attach it anyway",
                violations,
            )
        row = yield from op.sql(
            Q.upsert_schema,
            target=target,
            kind=kind,
            schema=Jsonb(text, dumps=_as_is),
            description=description,
            updated_by=updated_by,
        )
        entry = schema_entry_from_row(row)
        op.note(version=entry.version)
        return dataclasses.replace(entry, violations=tuple(violations))


def get_schema(ctx: Context, target: str, *, prefix: bool | None) -> Steps[SchemaEntry | None]:
    """The schema attached to a key or prefix, or None."""
    with ctx.operation("config.get_schema", target if isinstance(target, str) else None) as op:
        target, kind = _target(target, prefix)
        rows = yield from op.sql(Q.list_schemas)
        for row in rows:
            if row[1] == target and row[2] == kind:
                op.outcome = "hit"
                return schema_entry_from_row(row[1:])
        op.outcome = "miss"
        return None


def list_schemas(ctx: Context) -> Steps[list[SchemaEntry]]:
    """Every schema, by target."""
    with ctx.operation("config.list_schemas") as op:
        rows = yield from op.sql(Q.list_schemas)
        entries = [schema_entry_from_row(row[1:]) for row in rows if row[1] is not None]
        op.note(count=len(entries))
        return entries


def delete_schema(
    ctx: Context, target: str, *, prefix: bool | None, deleted_by: str
) -> Steps[bool]:
    """Detach the schema of a key or prefix; True if there was one."""
    with ctx.operation(
        "config.delete_schema", target if isinstance(target, str) else None, level="info"
    ) as op:
        target, kind = _target(target, prefix)
        validate_actor(deleted_by, field="deleted_by")
        rows = yield from op.sql(Q.delete_schema, target=target, kind=kind, deleted_by=deleted_by)
        op.outcome = "deleted" if rows else "absent"
        return bool(rows)


def snapshot_rows(ctx: Context) -> Steps[tuple[int, list[tuple[Any, ...]]]]:
    """The last committed revision and every stored row as stored (for the snapshot file)."""
    with ctx.operation("config.snapshot") as op:
        rows = yield from op.sql(Q.list_snapshot_rows)
        revision = rows[0][0] if rows else 0
        stored = [tuple(row[1:]) for row in rows if row[1] is not None]
        op.note(count=len(stored), revision=revision)
        return revision, stored


def check_schemas(ctx: Context, prefix: str) -> Steps[list[SchemaViolation]]:
    """Every stored value under ``prefix`` that a schema refuses (raw SQL's writes included)."""
    with ctx.operation("config.check_schemas", prefix) as op:
        validate_prefix(prefix)
        registry = SchemaRegistry()
        yield from load_schemas(op, registry)
        violations: list[SchemaViolation] = []
        if registry.entries:
            values = yield from _stored_values(op, ctx, prefix, "prefix")
            for key, value in values:
                violations.extend(registry.violations(key, value))
        op.note(count=len(violations))
        return violations
