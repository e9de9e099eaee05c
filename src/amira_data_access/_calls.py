"""Each store operation as data: which query, with which parameters, and what its result means.

The builders here validate the caller's input (raising before any I/O), pick
the named query and turn its raw result into the return value, logging the
operation's event. They do no I/O: the sync DAL runs a :class:`Call` with a
connection, the async DAL awaits it, and both share every line of this logic.
Each operation is one SQL statement, so each call is one round trip.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Generic, TypeVar

from ._operations import (
    Operation,
    delete_params,
    list_params,
    set_params,
    value_from_row,
)
from .codec import (
    _UNSTORABLE_TEXT,
    decode_value,
    validate_actor,
    validate_key,
    validate_prefix,
)
from .entries import ConfigEntry, ConfigItem, ConfigRevision, entry_from_row, revision_from_row
from .errors import ConcurrentModificationError, InvalidConfigurationError

__all__ = [
    "Call",
    "RetryStatement",
    "delete",
    "get",
    "get_at",
    "get_entry",
    "get_many",
    "history",
    "list_entries",
    "rollback",
    "set_default",
    "set_many",
    "set_value",
    "snapshot_at",
]

T = TypeVar("T")

MAX_BATCH: Final = 1000
MAX_HISTORY_LIMIT: Final = 1000


class RetryStatement(Exception):  # noqa: N818  # a signal between layers, not an error
    """Raised by a result handler when the statement must simply be run again."""


@dataclass(slots=True)
class Call(Generic[T]):
    """One operation ready to run: ``finish(result of query(conn, **params))`` is the answer."""

    operation: Operation
    query: str | None  # None: nothing to send (e.g. get_many of no keys)
    params: dict[str, Any]
    finish: Callable[[Any], T]
    idempotent: bool  # safe to run again after a lost connection (see _retry)
    rows: bool = False  # the query yields many rows: materialise them


# -- validation of the arguments only these operations have ----------------------------


def _validate_version(value: object, name: str, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidConfigurationError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def _validate_instant(when: object) -> datetime:
    if not isinstance(when, datetime) or when.tzinfo is None or when.utcoffset() is None:
        raise InvalidConfigurationError(
            "when must be a timezone-aware datetime (e.g. datetime.now(timezone.utc))"
        )
    return when


def _validate_reason(reason: object) -> str | None:
    if reason is None:
        return None
    if not isinstance(reason, str) or _UNSTORABLE_TEXT.search(reason):
        raise InvalidConfigurationError(
            "reason must be a str without NUL characters or lone surrogates, or None"
        )
    return reason


def _validate_limit(limit: object, maximum: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= maximum:
        raise InvalidConfigurationError(f"limit must be an int from 1 to {maximum}")
    return limit


# -- reads -----------------------------------------------------------------------------


def get(key: str, default: Any) -> Call[Any]:
    """The value of one key, or ``default``."""
    operation = Operation("config.get", key)
    with operation.validating():
        validate_key(key)

    def finish(row: Any) -> Any:
        operation.done("hit" if row is not None else "miss")
        return value_from_row(row, default)

    return Call(operation, "get_configuration_value", {"key": key}, finish, idempotent=True)


def get_entry(key: str) -> Call[ConfigEntry | None]:
    """The stored entry of one key, or None."""
    operation = Operation("config.get_entry", key)
    with operation.validating():
        validate_key(key)

    def finish(row: Any) -> ConfigEntry | None:
        operation.done("hit" if row is not None else "miss")
        return entry_from_row(row) if row is not None else None

    return Call(operation, "get_configuration", {"key": key}, finish, idempotent=True)


def get_many(keys: Iterable[str]) -> Call[dict[str, Any]]:
    """The values of many keys, in one round trip; absent keys are left out."""
    operation = Operation("config.get_many")
    with operation.validating():
        if isinstance(keys, str):
            raise InvalidConfigurationError("get_many takes an iterable of keys, not one str")
        unique = list(dict.fromkeys(validate_key(key) for key in keys))

    def finish(rows: Any) -> dict[str, Any]:
        found = {key: decode_value(value, data_type) for key, value, data_type in rows or ()}
        operation.done(requested=len(unique), found=len(found))
        return found

    query = "get_configuration_values" if unique else None
    return Call(operation, query, {"keys": unique}, finish, idempotent=True, rows=True)


def list_entries(prefix: str, after: str | None, limit: int) -> Call[list[ConfigEntry]]:
    """Entries by key prefix, in key order, a page at a time."""
    operation = Operation("config.list", prefix)
    with operation.validating():
        params = list_params(prefix, after, limit)

    def finish(rows: Any) -> list[ConfigEntry]:
        entries = [entry_from_row(row) for row in rows]
        operation.done(count=len(entries))
        return entries

    return Call(operation, "list_configurations", params, finish, idempotent=True, rows=True)


def history(key: str, limit: int, before_version: int | None) -> Call[list[ConfigRevision]]:
    """A key's changes, newest first."""
    operation = Operation("config.history", key)
    with operation.validating():
        validate_key(key)
        _validate_limit(limit, MAX_HISTORY_LIMIT)
        if before_version is not None:
            _validate_version(before_version, "before_version", minimum=1)

    def finish(rows: Any) -> list[ConfigRevision]:
        revisions = [revision_from_row(row) for row in rows]
        operation.done(count=len(revisions))
        return revisions

    params = {"key": key, "limit": limit, "before_version": before_version}
    return Call(operation, "list_history", params, finish, idempotent=True, rows=True)


def get_at(key: str, when: datetime) -> Call[Any]:
    """The value a key had at an instant, or None if it did not exist then."""
    operation = Operation("config.get_at", key)
    with operation.validating():
        validate_key(key)
        _validate_instant(when)

    def finish(row: Any) -> Any:
        if row is None or row[0] == "delete":
            operation.done("absent")
            return None
        operation.done("hit")
        return decode_value(row[1], row[2])

    return Call(operation, "get_value_at", {"key": key, "at": when}, finish, idempotent=True)


def snapshot_at(when: datetime, prefix: str) -> Call[dict[str, Any]]:
    """Every key (with the prefix) as it was at an instant."""
    operation = Operation("config.snapshot_at", prefix)
    with operation.validating():
        _validate_instant(when)
        validate_prefix(prefix)

    def finish(rows: Any) -> dict[str, Any]:
        snapshot = {key: decode_value(value, data_type) for key, value, data_type in rows}
        operation.done(count=len(snapshot))
        return snapshot

    params = {"at": when, "prefix": prefix}
    return Call(operation, "get_snapshot_at", params, finish, idempotent=True, rows=True)


# -- writes ----------------------------------------------------------------------------


def set_value(
    key: str,
    value: Any,
    *,
    data_type: str | None,
    description: str | None,
    updated_by: str,
    reason: str | None,
    expected_version: int | None,
) -> Call[ConfigEntry]:
    """Create or replace a key, optionally only at an expected version."""
    operation = Operation("config.set", key)
    with operation.validating():
        params = set_params(
            key, value, data_type=data_type, description=description, updated_by=updated_by
        )
        params["reason"] = _validate_reason(reason)
        if expected_version is not None:
            _validate_version(expected_version, "expected_version", minimum=0)

    def done(entry: ConfigEntry) -> ConfigEntry:
        operation.done(
            level="info", version=entry.version, data_type=entry.data_type, updated_by=updated_by
        )
        return entry

    if expected_version is None:
        return Call(
            operation,
            "upsert_configuration",
            params,
            lambda row: done(entry_from_row(row)),
            idempotent=False,
        )

    def finish_conditional(row: Any) -> ConfigEntry:
        # row: (applied, *entry columns), or None when no row matched at all.
        if row is not None and row[0]:
            return done(entry_from_row(row[1:]))
        # No row on replace: the key does not exist (0); on insert: a concurrent
        # insert we cannot see yet (None). Else: the version of the unchanged row.
        absent = None if expected_version == 0 else 0
        current = absent if row is None else row[5]
        if current == expected_version:
            # The row we waited on changed (or went) while we waited; the fallback
            # read shows the statement's snapshot, so the real version is unknown.
            current = None
        operation.done("conflict", level="info", expected_version=expected_version)
        raise ConcurrentModificationError(
            key, expected_version=expected_version or 0, current_version=current
        )

    if expected_version == 0:
        params["data_type"] = params.pop("inferred_type")
        query = "insert_configuration_if_absent"
    else:
        del params["inferred_type"]
        params["expected_version"] = expected_version
        query = "replace_configuration_if_version"
    return Call(operation, query, params, finish_conditional, idempotent=False)


def set_default(
    key: str, value: Any, *, data_type: str | None, description: str | None, updated_by: str
) -> Call[ConfigEntry]:
    """Insert a key only if absent; the stored entry either way (race-free)."""
    operation = Operation("config.set_default", key)
    with operation.validating():
        params = set_params(
            key, value, data_type=data_type, description=description, updated_by=updated_by
        )
        params["data_type"] = params.pop("inferred_type")
        params["reason"] = None

    def finish(row: Any) -> ConfigEntry:
        if row is None:
            # Another transaction inserted the key while we ran, and our snapshot
            # predates it: the row exists now, so asking again will find it.
            raise RetryStatement
        operation.done("inserted" if row[0] else "existing", level="info")
        return entry_from_row(row[1:])

    # Idempotent: running it again after a lost connection finds what it inserted.
    return Call(operation, "insert_configuration_if_absent", params, finish, idempotent=True)


def set_many(
    items: Mapping[str, Any] | Iterable[ConfigItem], *, updated_by: str, reason: str | None
) -> Call[list[ConfigEntry]]:
    """Write many keys in one statement: all or nothing, one revision."""
    operation = Operation("config.set_many")
    with operation.validating():
        batch = _batch_items(items)
        validate_actor(updated_by)
        prepared = [
            set_params(
                item.key,
                item.value,
                data_type=item.data_type,
                description=item.description,
                updated_by=updated_by,
            )
            for item in batch
        ]
        params = {
            "keys": [p["key"] for p in prepared],
            "values": [p["value"] for p in prepared],
            "data_types": [p["data_type"] for p in prepared],
            "inferred_types": [p["inferred_type"] for p in prepared],
            "descriptions": [p["description"] for p in prepared],
            "updated_by": updated_by,
            "reason": _validate_reason(reason),
        }

    def finish(rows: Any) -> list[ConfigEntry]:
        entries = sorted((entry_from_row(row) for row in rows), key=lambda e: e.key)
        operation.done(level="info", count=len(entries), updated_by=updated_by)
        return entries

    return Call(operation, "upsert_configurations", params, finish, idempotent=False, rows=True)


def _batch_items(items: Mapping[str, Any] | Iterable[ConfigItem]) -> list[ConfigItem]:
    batch = (
        [ConfigItem(key, value) for key, value in items.items()]
        if isinstance(items, Mapping)
        else list(items)
    )
    for item in batch:
        if not isinstance(item, ConfigItem):
            raise InvalidConfigurationError(
                "set_many takes a mapping of key to value, or ConfigItem objects"
            )
    if not 1 <= len(batch) <= MAX_BATCH:
        raise InvalidConfigurationError(f"set_many takes 1 to {MAX_BATCH} items")
    keys = [item.key for item in batch]
    if len(set(keys)) != len(keys):
        raise InvalidConfigurationError("set_many got the same key twice")
    # Key order: concurrent batches lock rows in the same order and cannot deadlock.
    return sorted(batch, key=lambda item: item.key)


def delete(
    key: str, *, deleted_by: str, reason: str | None, expected_version: int | None
) -> Call[bool]:
    """Delete a key (its history stays), optionally only at an expected version."""
    operation = Operation("config.delete", key)
    with operation.validating():
        params = delete_params(key, deleted_by=deleted_by)
        params["deleted_by"] = deleted_by
        params["reason"] = _validate_reason(reason)
        if expected_version is not None:
            _validate_version(expected_version, "expected_version", minimum=1)

    if expected_version is None:

        def finish(count: Any) -> bool:
            deleted = bool(count and count > 0)
            operation.done("deleted" if deleted else "absent", level="info", deleted_by=deleted_by)
            return deleted

        return Call(operation, "delete_configuration", params, finish, idempotent=False)

    def finish_conditional(row: Any) -> bool:
        if row is None or not row[0]:
            operation.done("conflict", level="info", expected_version=expected_version)
            current = 0 if row is None else row[1]
            raise ConcurrentModificationError(
                key,
                expected_version=expected_version,
                # Equal: changed while we waited on it (see set_value).
                current_version=None if current == expected_version else current,
            )
        operation.done("deleted", level="info", deleted_by=deleted_by)
        return True

    params["expected_version"] = expected_version
    return Call(
        operation, "delete_configuration_if_version", params, finish_conditional, idempotent=False
    )


def rollback(
    key: str, *, to_version: int, updated_by: str, reason: str | None
) -> Call[ConfigEntry]:
    """Write a new version holding what ``to_version`` held (history is never rewritten)."""
    operation = Operation("config.rollback", key)
    with operation.validating():
        validate_key(key)
        _validate_version(to_version, "to_version", minimum=1)
        validate_actor(updated_by)
        reason = _validate_reason(reason)

    def finish(row: Any) -> ConfigEntry:
        if row is None:
            operation.done("no_such_version", level="info", to_version=to_version)
            raise InvalidConfigurationError(
                f"{key!r} has no version {to_version} to roll back to "
                "(it never existed, or that version is a deletion)"
            )
        entry = entry_from_row(row)
        operation.done(level="info", version=entry.version, to_version=to_version)
        return entry

    params = {"key": key, "to_version": to_version, "updated_by": updated_by, "reason": reason}
    return Call(operation, "rollback_configuration", params, finish, idempotent=False)
