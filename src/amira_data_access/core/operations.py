"""Every store operation, written once, top to bottom, without I/O.

Each function is a generator: it checks its arguments (refusing bad input
before any statement is sent), asks for the statements it needs with
``yield from op.sql(Q.<query>, ...)``, decodes the rows and returns the
answer, inside the ``with ctx.operation(...)`` block that logs its one event
and translates a failure. The sync DAL, the async DAL, their caches and the
in-memory stores all drive these same generators (see :mod:`.running`), so
they cannot disagree on validation, results, errors or logs.

Each read sends one statement, so each call is one round trip. A write first
reads the JSON Schema revision (:func:`.schema_operations.enforce`: a second
small round trip, plus the schemas when they changed), then sends one statement:
one transaction, hence one history revision.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any, TypeVar

from ..codec import (
    decode_value,
    validate_actor,
    validate_key,
    validate_prefix,
    validate_stored_key,
)
from ..entries import ConfigEntry, ConfigItem, ConfigRevision, entry_from_row, revision_from_row
from ..errors import (
    ConcurrentModificationError,
    ConfigurationAccessError,
    InvalidConfigurationError,
    UnexpectedCountError,
    UnreadableValueError,
)
from .arguments import (
    MAX_BATCH,
    MAX_HISTORY_LIMIT,
    batch_items,
    key_list,
    list_params,
    prefix_end,
    validate_count,
    validate_instant,
    validate_limit,
    validate_reason,
    validate_version,
    write_params,
)
from .running import UNSET, Context, Operation, Steps
from .schema_operations import enforce, judged, load_schemas, refuse
from .statements import DeletedKeyRow, SnapshotChunkRow
from .statements import Statements as Q

__all__ = [
    "delete",
    "delete_many",
    "delete_prefix",
    "get",
    "get_at",
    "get_entries",
    "get_entry",
    "get_many",
    "history",
    "list_entries",
    "rollback",
    "server_health",
    "set_default",
    "set_many",
    "set_value",
    "snapshot_at",
]

# set_default: how often to ask again when a concurrent insert is not visible yet.
_INSERT_RACE_ATTEMPTS = 3

Row = TypeVar("Row")
Read = TypeVar("Read")


# -- reads -----------------------------------------------------------------------------


def get(ctx: Context, key: str, default: Any) -> Steps[Any]:
    """The value of one key; when absent ``default``, else its registered default, else None."""
    with ctx.operation("config.get", key) as op:
        validate_key(key)
        row = yield from op.sql(Q.get_configuration_value, key=key)
        if row is None:
            op.outcome = "miss"
            return ctx.defaults.get(key) if default is UNSET else default
        op.outcome = "hit"
        return ctx.reveal(key, _read_one(op, lambda: decode_value(row[0], row[1], key)))


def get_entry(ctx: Context, key: str) -> Steps[ConfigEntry | None]:
    """The stored entry of one key, or None."""
    with ctx.operation("config.get_entry", key) as op:
        validate_key(key)
        row = yield from op.sql(Q.get_configuration, key=key)
        op.outcome = "hit" if row is not None else "miss"
        return _read_one(op, lambda: entry_from_row(row)) if row is not None else None


def get_many(ctx: Context, keys: Iterable[str]) -> Steps[dict[str, Any]]:
    """The values of many keys, in one round trip; absent keys are left out."""
    with ctx.operation("config.get_many") as op:
        wanted = key_list(keys, what="get_many")
        rows = (yield from op.sql(Q.get_configuration_values, keys=wanted)) if wanted else []
        found = dict(
            _read_all(op, rows, lambda row: (row[0], decode_value(row[1], row[2], row[0])), dict)
        )
        op.note(requested=len(wanted), found=len(found))
        return {key: ctx.reveal(key, value) for key, value in found.items()}


def get_entries(ctx: Context, keys: Iterable[str]) -> Steps[dict[str, ConfigEntry]]:
    """The stored entries of many keys, in one round trip (what a cache fills from)."""
    with ctx.operation("config.get_many") as op:
        wanted = key_list(keys, what="get_many")
        rows = (yield from op.sql(Q.get_configurations, keys=wanted)) if wanted else []
        entries = dict(_read_all(op, rows, lambda row: (row[0], entry_from_row(row)), dict))
        op.note(requested=len(wanted), found=len(entries), entries=True)
        return entries


def list_entries(
    ctx: Context, prefix: str, after: str | None, limit: int
) -> Steps[list[ConfigEntry]]:
    """Entries by key prefix, in key order, a page at a time."""
    with ctx.operation("config.list", prefix) as op:
        rows = yield from op.sql(Q.list_configurations, **list_params(prefix, after, limit))
        entries = _read_all(op, rows, entry_from_row)
        op.note(count=len(entries))
        return entries


def history(
    ctx: Context, key: str, limit: int, before_version: int | None
) -> Steps[list[ConfigRevision]]:
    """A key's changes, newest first."""
    with ctx.operation("config.history", key) as op:
        validate_key(key)
        validate_limit(limit, MAX_HISTORY_LIMIT)
        if before_version is not None:
            validate_version(before_version, "before_version", minimum=1)
        rows = yield from op.sql(
            Q.list_history, key=key, limit=limit, before_version=before_version
        )
        revisions = _read_all(op, rows, revision_from_row)
        op.note(count=len(revisions))
        return revisions


def get_at(ctx: Context, key: str, when: datetime) -> Steps[Any]:
    """The value a key had at an instant, or None if it did not exist then."""
    with ctx.operation("config.get_at", key) as op:
        validate_key(key)
        validate_instant(when)
        row = yield from op.sql(Q.get_value_at, key=key, at=when)
        if row is None or row[0] == "delete":
            op.outcome = "absent"
            return None
        op.outcome = "hit"
        return ctx.reveal(key, _read_one(op, lambda: decode_value(row[1], row[2], key)))


def snapshot_at(ctx: Context, when: datetime, prefix: str) -> Steps[dict[str, Any]]:
    """Every key (with the prefix) as it was at an instant."""
    with ctx.operation("config.snapshot_at", prefix) as op:
        validate_instant(when)
        validate_prefix(prefix)
        end = prefix_end(prefix)
        chunks = yield from op.sql(Q.get_snapshot_chunks_at, at=when, prefix=prefix, prefix_end=end)
        read = _snapshot_from_chunks(op, chunks)
        if read is None:  # a value Python cannot decode: find which, row by row
            rows = yield from op.sql(Q.get_snapshot_at, at=when, prefix=prefix, prefix_end=end)
            snapshot = dict(
                _read_all(
                    op, rows, lambda row: (row[0], decode_value(row[1], row[2], row[0])), dict
                )
            )
            op.note(count=len(snapshot))
            return {key: ctx.reveal(key, value) for key, value in snapshot.items()}
        snapshot, decoded = read
        op.note(count=len(snapshot))
        for key in decoded:  # reveal() returns every other value unchanged
            snapshot[key] = ctx.reveal(key, snapshot[key])
        return snapshot


def _snapshot_from_chunks(
    op: Operation, chunks: Iterable[SnapshotChunkRow]
) -> tuple[dict[str, Any], list[str]] | None:
    """The snapshot get_snapshot_chunks_at sent, decoded as get_snapshot_at's rows would be,
    and the keys decode_value saw, in key order (None: a chunk Python cannot decode, so
    read the rows to name the key).

    Only the keys in a chunk's ``typed`` go through decode_value: the SQL leaves out the
    data types it returns unchanged (so only those can be secrets). A value that cannot
    be decoded does not stop the rest, as in :func:`_read_all`.
    """
    snapshot: dict[str, Any] = {}
    decoded: list[str] = []
    failed: list[UnreadableValueError] = []
    for values, typed in chunks:
        if values.__class__ is not dict:
            return None  # an UnreadableJson marker
        if typed is not None:
            for key, data_type in typed.items():
                try:
                    values[key] = decode_value(values[key], data_type, key)
                except UnreadableValueError as exc:
                    failed.append(exc)
                    del values[key]
                else:
                    decoded.append(key)
        snapshot.update(values)
    if failed:
        raise _unreadable(op, failed, snapshot)
    return snapshot, decoded


# -- writes ----------------------------------------------------------------------------


def set_value(
    ctx: Context,
    key: str,
    value: Any,
    *,
    data_type: str | None,
    description: str | None,
    updated_by: str,
    reason: str | None,
    expected_version: int | None,
) -> Steps[ConfigEntry]:
    """Create or replace a key, optionally only at an expected version."""
    with ctx.operation("config.set", key, level="info") as op:
        params = write_params(
            key,
            value,
            data_type=data_type,
            description=description,
            updated_by=updated_by,
            limits=ctx.limits,
            keyring=ctx.keyring,
        )
        params["reason"] = validate_reason(reason)
        if expected_version is not None:
            validate_version(expected_version, "expected_version", minimum=0)
        op.note(updated_by=updated_by)
        yield from enforce(op, ctx, [(key, params["value"].obj, params["inferred_type"])])

        if expected_version is None:
            entry = entry_from_row((yield from op.sql(Q.upsert_configuration, **params)))
        elif expected_version == 0:
            params["data_type"] = params.pop("inferred_type")
            row = yield from op.sql(Q.insert_configuration_if_absent, **params)
            # No row: a concurrent insert we cannot see yet; else the row we found.
            entry = _applied_or_conflict(op, key, row, expected_version, absent=None)
        else:
            del params["inferred_type"]
            row = yield from op.sql(
                Q.replace_configuration_if_version, **params, expected_version=expected_version
            )
            # No row: the key does not exist.
            entry = _applied_or_conflict(op, key, row, expected_version, absent=0)
        op.wrote(entry)
        op.note(version=entry.version, data_type=entry.data_type)
        return entry


def _applied_or_conflict(
    op: Operation, key: str, row: Any, expected_version: int, *, absent: int | None
) -> ConfigEntry:
    """The entry a conditional write stored, or the conflict it ran into."""
    if row is not None and row[0]:
        return entry_from_row(row[1:])
    current = absent if row is None else row[5]
    if current == expected_version:
        # The row we waited on changed (or went) while we waited; the fallback
        # read shows the statement's snapshot, so the real version is unknown.
        current = None
    op.note(expected_version=expected_version)
    op.removed(key)  # what this process holds for the key is out of date
    raise ConcurrentModificationError(
        key, expected_version=expected_version, current_version=current
    )


def set_default(
    ctx: Context,
    key: str,
    value: Any,
    *,
    data_type: str | None,
    description: str | None,
    updated_by: str,
) -> Steps[ConfigEntry]:
    """Insert a key only if absent; the stored entry either way (race-free)."""
    with ctx.operation("config.set_default", key, level="info") as op:
        params = write_params(
            key,
            value,
            data_type=data_type,
            description=description,
            updated_by=updated_by,
            limits=ctx.limits,
            keyring=ctx.keyring,
        )
        params["data_type"] = params.pop("inferred_type")
        params["reason"] = None
        yield from enforce(op, ctx, [(key, params["value"].obj, params["data_type"])])
        for _ in range(_INSERT_RACE_ATTEMPTS):
            # Safe to send again after a lost connection: the second try finds what
            # the first inserted, and the answer ("the stored entry") is the same.
            row = yield from op.sql_resend_safe(Q.insert_configuration_if_absent, **params)
            if row is not None:
                op.outcome = "inserted" if row[0] else "existing"
                entry = entry_from_row(row[1:])
                op.wrote(entry)
                return entry
            # Another transaction inserted the key while we ran, and our snapshot
            # predates it: the row exists now, so asking again will find it.
        raise ConfigurationAccessError(
            f"config.set_default {key!r}: the key changed under every attempt"
        )


def set_many(
    ctx: Context,
    items: Mapping[str, Any] | Iterable[ConfigItem],
    *,
    updated_by: str,
    reason: str | None,
) -> Steps[list[ConfigEntry]]:
    """Write many keys in one statement: all or nothing, one revision."""
    with ctx.operation("config.set_many", level="info") as op:
        batch = batch_items(items)
        validate_actor(updated_by)
        prepared = [
            write_params(
                item.key,
                item.value,
                data_type=item.data_type,
                description=item.description,
                updated_by=updated_by,
                limits=ctx.limits,
                keyring=ctx.keyring,
            )
            for item in batch
        ]
        yield from enforce(
            op, ctx, [(p["key"], p["value"].obj, p["inferred_type"]) for p in prepared]
        )
        rows = yield from op.sql(
            Q.upsert_configurations,
            keys=[p["key"] for p in prepared],
            values=[p["value"] for p in prepared],
            data_types=[p["data_type"] for p in prepared],
            inferred_types=[p["inferred_type"] for p in prepared],
            descriptions=[p["description"] for p in prepared],
            updated_by=updated_by,
            reason=validate_reason(reason),
        )
        entries = sorted((entry_from_row(row) for row in rows), key=lambda e: e.key)
        for entry in entries:
            op.wrote(entry)
        op.note(count=len(entries), updated_by=updated_by)
        return entries


def delete(
    ctx: Context, key: str, *, deleted_by: str, reason: str | None, expected_version: int | None
) -> Steps[bool]:
    """Delete a key (its history stays), optionally only at an expected version."""
    with ctx.operation("config.delete", key, level="info") as op:
        validate_stored_key(key)  # a key stored before the key grammar can be removed
        validate_actor(deleted_by, field="deleted_by")
        reason = validate_reason(reason)
        op.note(deleted_by=deleted_by)
        if expected_version is None:
            count = yield from op.sql(
                Q.delete_configuration, key=key, deleted_by=deleted_by, reason=reason
            )
            deleted = count > 0
            op.outcome = "deleted" if deleted else "absent"
            op.removed(key)
            return deleted

        validate_version(expected_version, "expected_version", minimum=1)
        row = yield from op.sql(
            Q.delete_configuration_if_version,
            key=key,
            deleted_by=deleted_by,
            reason=reason,
            expected_version=expected_version,
        )
        op.removed(key)
        if row is None or not row[0]:
            current = 0 if row is None else row[1]
            op.note(expected_version=expected_version)
            raise ConcurrentModificationError(
                key,
                expected_version=expected_version,
                # Equal: changed while we waited on it (see _applied_or_conflict).
                current_version=None if current == expected_version else current,
            )
        op.outcome = "deleted"
        return True


def delete_many(
    ctx: Context,
    keys: Iterable[str],
    *,
    deleted_by: str,
    reason: str | None,
    expected_count: int | None,
) -> Steps[list[str]]:
    """Delete the existing keys among ``keys``: all or nothing, one revision."""
    with ctx.operation("config.delete_many", level="info") as op:
        wanted = key_list(keys, what="delete_many", maximum=MAX_BATCH, stored=True)
        validate_actor(deleted_by, field="deleted_by")
        reason = validate_reason(reason)
        validate_count(expected_count)
        rows: list[DeletedKeyRow] = []
        if wanted:
            rows = yield from op.sql(
                Q.delete_configurations,
                keys=wanted,
                deleted_by=deleted_by,
                reason=reason,
                expected_count=expected_count,
            )
        return _deleted_keys(op, "delete_many", rows, expected_count)


def delete_prefix(
    ctx: Context,
    prefix: str,
    *,
    deleted_by: str,
    reason: str | None,
    expected_count: int | None,
) -> Steps[list[str]]:
    """Delete every key starting with ``prefix`` (not empty): all or nothing, one revision."""
    with ctx.operation("config.delete_prefix", prefix, level="info") as op:
        validate_prefix(prefix)
        if not prefix:
            raise InvalidConfigurationError(
                "delete_prefix needs a non-empty prefix (deleting every key takes a deliberate "
                "delete_many of the listed keys)"
            )
        validate_actor(deleted_by, field="deleted_by")
        rows = yield from op.sql(
            Q.delete_configurations_by_prefix,
            prefix=prefix,
            prefix_end=prefix_end(prefix),
            deleted_by=deleted_by,
            reason=validate_reason(reason),
            expected_count=validate_count(expected_count),
        )
        return _deleted_keys(op, f"delete_prefix {prefix!r}", rows, expected_count)


def _deleted_keys(
    op: Operation, subject: str, rows: list[DeletedKeyRow], expected_count: int | None
) -> list[str]:
    """The keys a bulk delete removed, or the count conflict that made it remove none."""
    op.note(count=len(rows))
    if expected_count is not None and len(rows) != expected_count:
        raise UnexpectedCountError(subject, expected_count=expected_count, found_count=len(rows))
    keys = [key for key, deleted in rows if deleted]
    for key in keys:
        op.removed(key)
    return keys


def rollback(
    ctx: Context, key: str, *, to_version: int, updated_by: str, reason: str | None
) -> Steps[ConfigEntry]:
    """Write a new version holding what ``to_version`` held (history is never rewritten)."""
    with ctx.operation("config.rollback", key, level="info") as op:
        validate_key(key)
        validate_version(to_version, "to_version", minimum=1)
        validate_actor(updated_by)
        reason = validate_reason(reason)
        op.note(to_version=to_version)
        yield from _enforce_rollback(op, ctx, key, to_version)
        row = yield from op.sql(
            Q.rollback_configuration,
            key=key,
            to_version=to_version,
            updated_by=updated_by,
            reason=reason,
        )
        if row is None:
            op.outcome = "no_such_version"
            raise InvalidConfigurationError(
                f"{key!r} has no version {to_version} to roll back to "
                "(it never existed, or that version is a deletion)"
            )
        entry = entry_from_row(row)
        op.wrote(entry)
        op.note(version=entry.version)
        return entry


def _enforce_rollback(op: Operation, ctx: Context, key: str, to_version: int) -> Steps[None]:
    """A rollback writes what ``to_version`` held: refused if a schema of the key refuses it
    now (the old value is read only when a schema applies)."""
    registry = yield from load_schemas(op, ctx.schemas)
    if not registry.applicable(key):
        return
    rows = yield from op.sql(Q.list_history, key=key, limit=1, before_version=to_version + 1)
    if rows and rows[0][2] == to_version and rows[0][3] != "delete":
        value = _read_one(op, lambda: judged(ctx, key, rows[0][4], rows[0][5]))
        refuse(op, registry, f"{op.name} {key!r} to version {to_version}", [(key, value)])


# -- values that cannot be read ---------------------------------------------------------


def _read_one(op: Operation, build: Callable[[], Read]) -> Read:
    """``build()``, a stored value decoded; one Python cannot decode is an error naming it."""
    try:
        return build()
    except UnreadableValueError as exc:
        raise _unreadable(op, [exc]) from None


def _read_all(
    op: Operation,
    rows: Iterable[Row],
    build: Callable[[Row], Read],
    shape: Callable[[list[Read]], Any] = list,
) -> list[Read]:
    """Each row decoded by ``build``. A value that cannot be decoded does not stop the rest:
    the error names every such key and carries the others (as ``shape`` makes them)."""
    done: list[Read] = []
    failed: list[UnreadableValueError] = []
    for row in rows:
        try:
            done.append(build(row))
        except UnreadableValueError as exc:
            failed.append(exc)
    if failed:
        raise _unreadable(op, failed, shape(done))
    return done


def _unreadable(
    op: Operation, failed: list[UnreadableValueError], readable: Any = None
) -> UnreadableValueError:
    subject = op.name if op.key is None else f"{op.name} {op.key!r}"
    message = f"{subject}: " + "; ".join(str(error) for error in failed)
    if readable is not None:
        message += f" (the {len(readable)} others were read: the error's .readable)"
    keys = [key for error in failed for key in error.keys]
    return UnreadableValueError(message, keys=keys, readable=readable)


# -- the server ------------------------------------------------------------------------


def server_health(ctx: Context) -> Steps[tuple[str, bool]]:
    """The server's version, and whether the configuration tables exist."""
    with ctx.operation("config.health") as op:
        version, tables_exist = yield from op.sql(Q.server_health)
        op.note(server_version=version)
        return version, bool(tables_exist)
