"""The Python twin of ``queries/*.sql`` and of the triggers of ``migrations/``, in memory.

:class:`MemoryDatabase` is what the in-memory stores talk to instead of
PostgreSQL: the two tables as dictionaries, and :class:`TwinStatements`, which
answers each named query of
:class:`~amira_data_access.core.statements.Statements` the way the SQL and the
triggers would (versions continuing across delete and re-create, the audit
fields, one history row per change, an aborted transaction refusing further
statements, and at commit one revision and one instant per transaction, in
commit order and without gaps: migrations/0006). The same
operations drive it as drive PostgreSQL, so validation, results, errors and log
events are the very same code; the contract suite keeps this twin honest.

Values are kept as the JSON text the DALs would send and decoded on every
read, the way jsonb returns them (object keys in jsonb order, no ``-0.0``), so
mutating a returned dict never changes the store; a text Python cannot decode
reads as :class:`~amira_data_access.codec.UnreadableJson`, as from the driver.
Each written row is checked against the table's constraints the operations
cannot rule out before sending (:func:`_check_constraints`), in the order
PostgreSQL checks them (by name). A refusal is a
:class:`~amira_data_access.errors.ServerRefusal` carrying the SQLSTATE and
constraint PostgreSQL would report, translated like any database error.

Not for production: nothing is persisted or shared between processes, and a
transaction holds the database's lock until it ends (other threads' writes wait).
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from psycopg.types.json import Jsonb

from ..codec import DEFAULT_LIMITS, UnreadableJson, follows_key_grammar, read_json
from ..core.statements import (
    AppliedEntryRow,
    DeletedKeyRow,
    EntryRow,
    KeyValueRow,
    RevisionRow,
    SchemaListRow,
    SchemaRevisionRow,
    SchemaRow,
    SnapshotChunkRow,
    Statement,
)
from ..entries import ConfigChange
from ..errors import ServerRefusal
from ..feed.local import LocalFeed
from ..secrets import is_envelope_document, is_secret

__all__ = ["Clock", "MemoryDatabase", "Session", "TwinStatements"]

Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(UTC)


# -- the tables ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Row:
    """A row of amira_config.configurations (value as JSON text)."""

    value: str
    data_type: str
    description: str | None
    version: int
    created_at: datetime
    updated_at: datetime
    updated_by: str


# The revision of a history row until its transaction commits (migrations/0006).
_UNSTAMPED = 0


@dataclass(frozen=True, slots=True)
class _Change:
    """A row of amira_config.configuration_history."""

    revision: int  # _UNSTAMPED until committed
    version: int
    operation: str
    value: str
    data_type: str
    description: str | None
    changed_by: str
    changed_at: datetime
    change_reason: str | None


@dataclass(frozen=True, slots=True)
class _SchemaRow:
    """A row of amira_config.schemas (migrations/0010; schema as JSON text)."""

    schema: str
    description: str | None
    version: int
    updated_by: str
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class _SchemaChange:
    """A row of amira_config.schema_history."""

    version: int
    operation: str
    schema: str
    changed_by: str
    changed_at: datetime
    revision: int


@dataclass(slots=True)
class _Tables:
    """The tables. Copied before a write (history tuples are shared: never mutated),
    so a failed statement or transaction simply drops its copy."""

    rows: dict[str, _Row] = field(default_factory=dict)
    history: dict[str, tuple[_Change, ...]] = field(default_factory=dict)
    # migrations/0010: schemas by (target, kind), their history, the revision counter.
    schemas: dict[tuple[str, str], _SchemaRow] = field(default_factory=dict)
    schema_history: dict[tuple[str, str], tuple[_SchemaChange, ...]] = field(default_factory=dict)
    schema_revision: int = 0
    # amira_config.schema_revision_seq: shared by every copy, so never given back by a
    # rolled-back transaction (as a sequence is not).
    schema_sequence: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def copy(self) -> _Tables:
        return _Tables(
            dict(self.rows),
            dict(self.history),
            dict(self.schemas),
            dict(self.schema_history),
            self.schema_revision,
            self.schema_sequence,
        )


@dataclass(slots=True)
class Session:
    """What a database transaction carries: its tables, clock reading (now()), and state."""

    tables: _Tables
    now: datetime
    aborted: bool = False  # a statement failed: PostgreSQL refuses the rest
    # Its changes, in the order made: stamped with a revision and announced at commit.
    changes: list[ConfigChange] = field(default_factory=list)
    schemas_changed: bool = False  # published at commit with the schema tables


def _violates(constraint: str, table: str = "configurations") -> ServerRefusal:
    return ServerRefusal(
        f'new row for relation "{table}" violates check constraint "{constraint}"',
        "23514",
        constraint,
    )


def _aborted() -> ServerRefusal:
    return ServerRefusal(
        "current transaction is aborted, commands ignored until end of transaction block",
        "25P02",
    )


# -- values as jsonb returns them --------------------------------------------------------


def _jsonb_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # jsonb keeps object keys sorted by their UTF-8 length, then bytes.
    return dict(sorted(pairs, key=lambda pair: (len(pair[0].encode()), pair[0].encode())))


def _jsonb_float(text: str) -> float:
    # jsonb numbers are numerics, which have no negative zero: -0.0 comes back 0.0.
    return float(text) + 0.0


def _loads(text: str) -> Any:
    return read_json(text, object_pairs_hook=_jsonb_object, parse_float=_jsonb_float)


# get_snapshot_chunks_at: keys per chunk, and the data types it leaves out of typed.
_SNAPSHOT_CHUNK = 250
_DECODED_AS_READ = frozenset({"str", "int", "bool", "json", "flag"})


def _text(value: Jsonb) -> str:
    # The operations bind JSON text already encoded (codec.encode_json).
    assert isinstance(value.obj, str)
    return value.obj


# What amira_config.max_value_bytes() and max_value_depth() return (migrations/0007).
TABLE_LIMITS = DEFAULT_LIMITS
# A JSON string (escapes included), and what the text's size and depth are read from.
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_BRACKET = re.compile(r"[\[\]{}]")
_NEGATIVE_ZERO = re.compile(r"-(?=0(?:\.0+)?(?![0-9.eE]))")


def _printed_measure(text: str) -> tuple[int, int]:
    """``(octet_length(value::text), depth)`` of JSON text, read off the text itself
    (no parsing, no recursion): jsonb prints a space after each ',' and ':', and
    -0.0 as 0.0; the depth is the most brackets open at once."""
    structure = _JSON_STRING.sub('""', text)  # brackets, commas and colons in strings are text
    depth = open_now = 0
    for bracket in _BRACKET.findall(structure):
        open_now += 1 if bracket in "[{" else -1
        depth = max(depth, open_now)
    size = len(text) if text.isascii() else len(text.encode("utf-8"))
    size += structure.count(",") + structure.count(":")
    return size - len(_NEGATIVE_ZERO.findall(structure)), depth


def _check_constraints(key: str, text: str, data_type: str) -> None:
    """The CHECK constraints of a new row the operations do not already rule out (the key
    grammar is also checked before sending, the value limits are the store's own, which
    may be larger), by name, the order PostgreSQL checks them in; a secret's envelope first,
    as its BEFORE trigger checks it before the row's constraints (migrations/0009)."""
    if not _sealed(text, data_type):
        raise _violates("configurations_secret_sealed")
    if data_type == "flag" and not _shaped_like_a_flag(json.loads(text)):
        raise _violates("configurations_flag_document")
    if not follows_key_grammar(key):
        raise _violates("configurations_key_grammar")
    if not unicodedata.is_normalized("NFC", key):
        raise _violates("configurations_key_nfc")
    size, depth = _printed_measure(text)
    if depth > TABLE_LIMITS.max_depth:
        raise _violates("configurations_value_depth")
    if not _matches_type(text, data_type):
        raise _violates("configurations_value_matches_type")
    if size > TABLE_LIMITS.max_bytes:
        raise _violates("configurations_value_size")


def _shaped_like_a_flag(value: Any) -> bool:
    """The CHECK constraint configurations_flag_document (migrations/0012)."""
    if not isinstance(value, dict):
        return False
    variants = value.get("variants")
    return (
        isinstance(value.get("enabled"), bool)
        and isinstance(variants, dict)
        and bool(variants)
        and isinstance(value.get("defaultVariant"), str)
        and value["defaultVariant"] in variants
        and isinstance(value.get("rules", []), list)
        and isinstance(value.get("rollout", []), list)
        and isinstance(value.get("segments", {}), dict)
    )


def _matches_type(text: str, data_type: str) -> bool:
    """The CHECK constraint configurations_value_matches_type, on the JSON text."""
    value = json.loads(text)
    if data_type == "str":
        return isinstance(value, str)
    if data_type == "int":  # a JSON number with no fractional part
        return isinstance(value, int) and not isinstance(value, bool)
    if data_type == "float":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if data_type == "bool":
        return isinstance(value, bool)
    return True


def _sealed(text: str, data_type: str) -> bool:
    """The CHECK constraint configurations_secret_sealed (migrations/0009), on the JSON text."""
    return not is_secret(data_type) or is_envelope_document(json.loads(text))


def _entry(key: str, row: _Row) -> EntryRow:
    """The column list every configurations query returns."""
    return (
        key,
        _loads(row.value),
        row.data_type,
        row.description,
        row.version,
        row.created_at,
        row.updated_at,
        row.updated_by,
    )


def _revision(key: str, change: _Change) -> RevisionRow:
    """The column list of list_history."""
    return (
        change.revision,
        key,
        change.version,
        change.operation,
        _loads(change.value),
        change.data_type,
        change.description,
        change.changed_by,
        change.changed_at,
        change.change_reason,
        None,  # login: no database logins here
    )


# -- the named queries -------------------------------------------------------------------


class TwinStatements:
    """Each named query of queries/*.sql, answered from a session's tables.

    Each method takes the query's parameters and returns what aiosql returns
    for it (one row, rows, or a row count); the triggers of migrations 0002 and
    0005 (versions, audit fields, history) are :meth:`_write` and :meth:`_remove`.
    """

    # -- reads -----------------------------------------------------------------------

    def get_configuration(self, session: Session, /, *, key: str) -> EntryRow | None:
        row = session.tables.rows.get(key)
        return _entry(key, row) if row is not None else None

    def get_configuration_value(self, session: Session, /, *, key: str) -> tuple[Any, str] | None:
        row = session.tables.rows.get(key)
        return (_loads(row.value), row.data_type) if row is not None else None

    def get_configuration_values(
        self, session: Session, /, *, keys: list[str]
    ) -> list[KeyValueRow]:
        rows = session.tables.rows
        return [(key, _loads(rows[key].value), rows[key].data_type) for key in keys if key in rows]

    def get_configurations(self, session: Session, /, *, keys: list[str]) -> list[EntryRow]:
        rows = session.tables.rows
        return [_entry(key, rows[key]) for key in keys if key in rows]

    def list_configurations(
        self,
        session: Session,
        /,
        *,
        prefix: str,
        prefix_end: str,
        after: str | None,
        limit: int,
    ) -> list[EntryRow]:
        rows = session.tables.rows
        # Python orders str by code point, which is UTF-8 byte order: COLLATE "C".
        keys = sorted(
            k
            for k in rows
            if prefix <= k < prefix_end and k.startswith(prefix) and k > (after or "")
        )
        return [_entry(key, rows[key]) for key in keys[:limit]]

    def list_history(
        self, session: Session, /, *, key: str, before_version: int | None, limit: int
    ) -> list[RevisionRow]:
        changes = [
            change
            for change in reversed(session.tables.history.get(key, ()))
            if before_version is None or change.version < before_version
        ]
        return [_revision(key, change) for change in changes[:limit]]

    def get_value_at(
        self, session: Session, /, *, key: str, at: datetime
    ) -> tuple[str, Any, str] | None:
        change = _latest_change(session, key, at)
        return (change.operation, _loads(change.value), change.data_type) if change else None

    def get_snapshot_at(
        self, session: Session, /, *, at: datetime, prefix: str, prefix_end: str
    ) -> list[KeyValueRow]:
        snapshot = []
        for key in sorted(k for k in session.tables.history if k.startswith(prefix)):
            change = _latest_change(session, key, at)
            if change is not None and change.operation != "delete":
                snapshot.append((key, _loads(change.value), change.data_type))
        return snapshot

    def get_snapshot_chunks_at(
        self, session: Session, /, *, at: datetime, prefix: str, prefix_end: str
    ) -> list[SnapshotChunkRow]:
        rows = self.get_snapshot_at(session, at=at, prefix=prefix, prefix_end=prefix_end)
        chunks: list[SnapshotChunkRow] = []
        for first in range(0, len(rows), _SNAPSHOT_CHUNK):
            chunk = rows[first : first + _SNAPSHOT_CHUNK]
            values = {key: value for key, value, _ in chunk}
            typed = {key: kind for key, _, kind in chunk if kind not in _DECODED_AS_READ}
            # One JSON document per chunk: one value Python cannot decode spoils it all.
            unreadable = any(value.__class__ is UnreadableJson for value in values.values())
            chunks.append(
                (UnreadableJson("a value of the chunk") if unreadable else values, typed or None)
            )
        return chunks

    # -- writes ----------------------------------------------------------------------

    def upsert_configuration(
        self,
        session: Session,
        /,
        *,
        key: str,
        value: Jsonb,
        data_type: str | None,
        inferred_type: str,
        description: str | None,
        updated_by: str,
        reason: str | None,
    ) -> EntryRow:
        row = _upsert(
            session, key, _text(value), data_type, inferred_type, description, updated_by, reason
        )
        return _entry(key, row)

    def upsert_configurations(
        self,
        session: Session,
        /,
        *,
        keys: list[str],
        values: list[Jsonb],
        data_types: list[str | None],
        inferred_types: list[str],
        descriptions: list[str | None],
        updated_by: str,
        reason: str | None,
    ) -> list[EntryRow]:
        items = zip(keys, values, data_types, inferred_types, descriptions, strict=True)
        return [
            _entry(
                key,
                _upsert(session, key, _text(value), given, inferred, text, updated_by, reason),
            )
            for key, value, given, inferred, text in items
        ]

    def replace_configuration_if_version(
        self,
        session: Session,
        /,
        *,
        key: str,
        value: Jsonb,
        data_type: str | None,
        description: str | None,
        updated_by: str,
        reason: str | None,
        expected_version: int,
    ) -> AppliedEntryRow | None:
        row = session.tables.rows.get(key)
        if row is None:
            return None
        if row.version != expected_version:
            return (False, *_entry(key, row))
        written = _upsert(
            session, key, _text(value), data_type, row.data_type, description, updated_by, reason
        )
        return (True, *_entry(key, written))

    def insert_configuration_if_absent(
        self,
        session: Session,
        /,
        *,
        key: str,
        value: Jsonb,
        data_type: str,
        description: str | None,
        updated_by: str,
        reason: str | None,
    ) -> AppliedEntryRow | None:
        row = session.tables.rows.get(key)
        if row is not None:
            return (False, *_entry(key, row))
        written = _upsert(
            session, key, _text(value), data_type, data_type, description, updated_by, reason
        )
        return (True, *_entry(key, written))

    def delete_configuration(
        self, session: Session, /, *, key: str, deleted_by: str, reason: str | None
    ) -> int:
        if key not in session.tables.rows:
            return 0
        _remove(session, key, deleted_by, reason)
        return 1

    def delete_configuration_if_version(
        self,
        session: Session,
        /,
        *,
        key: str,
        deleted_by: str,
        reason: str | None,
        expected_version: int,
    ) -> tuple[bool, int] | None:
        row = session.tables.rows.get(key)
        if row is None:
            return None
        if row.version != expected_version:
            return (False, row.version)
        _remove(session, key, deleted_by, reason)
        return (True, row.version)

    def delete_configurations(
        self,
        session: Session,
        /,
        *,
        keys: list[str],
        deleted_by: str,
        reason: str | None,
        expected_count: int | None,
    ) -> list[DeletedKeyRow]:
        existing = sorted(key for key in set(keys) if key in session.tables.rows)
        return _remove_all(session, existing, deleted_by, reason, expected_count)

    def delete_configurations_by_prefix(
        self,
        session: Session,
        /,
        *,
        prefix: str,
        prefix_end: str,
        deleted_by: str,
        reason: str | None,
        expected_count: int | None,
    ) -> list[DeletedKeyRow]:
        existing = sorted(
            key
            for key in session.tables.rows
            if prefix <= key < prefix_end and key.startswith(prefix)
        )
        return _remove_all(session, existing, deleted_by, reason, expected_count)

    def rollback_configuration(
        self,
        session: Session,
        /,
        *,
        key: str,
        to_version: int,
        updated_by: str,
        reason: str | None,
    ) -> EntryRow | None:
        target = next(
            (
                change
                for change in session.tables.history.get(key, ())
                if change.version == to_version and change.operation != "delete"
            ),
            None,
        )
        if target is None:
            return None
        # Value, type and description all come from the target, even a None description.
        content = replace(
            _next_row(session, key, target.value, target.data_type, updated_by),
            description=target.description,
        )
        return _entry(key, _write(session, key, content, reason))

    def server_health(self, session: Session, /) -> tuple[str, bool]:
        return ("in-memory", True)

    # -- queries/snapshots.sql ---------------------------------------------------------

    def list_snapshot_rows(self, session: Session, /) -> list[tuple[Any, ...]]:
        tables = session.tables
        revision = max(
            (c.revision for changes in tables.history.values() for c in changes), default=0
        )
        if not tables.rows:
            return [(revision, None, None, None, None, None, None, None, None)]
        return [(revision, key, *_entry(key, tables.rows[key])[1:]) for key in sorted(tables.rows)]

    # -- queries/schemas.sql (the triggers of migrations/0010) ------------------------

    def get_schema_revision(self, session: Session, /) -> int:
        return session.tables.schema_revision

    def list_schemas(self, session: Session, /) -> list[SchemaListRow]:
        tables = session.tables
        if not tables.schemas:
            return [(tables.schema_revision, None, None, None, None, None, None, None)]
        return [
            (tables.schema_revision, *_schema_entry(target, kind, tables.schemas[target, kind]))
            for target, kind in sorted(tables.schemas)
        ]

    def upsert_schema(
        self,
        session: Session,
        /,
        *,
        target: str,
        kind: str,
        schema: Jsonb,
        description: str | None,
        updated_by: str,
    ) -> SchemaRow:
        if kind not in ("key", "prefix"):
            raise _violates("schemas_kind", "schemas")
        if kind == "key" and target == "":
            raise _violates("schemas_key_not_empty", "schemas")
        tables = session.tables
        old = tables.schemas.get((target, kind))
        if old is None:
            history = tables.schema_history.get((target, kind), ())
            version = max((c.version for c in history), default=0) + 1
        else:
            version = old.version + 1
            description = description if description is not None else old.description
        row = _SchemaRow(_text(schema), description, version, updated_by, session.now)
        tables.schemas[target, kind] = row
        _record_schema(
            session, target, kind, "insert" if old is None else "update", row, updated_by
        )
        return _schema_entry(target, kind, row)

    def delete_schema(
        self, session: Session, /, *, target: str, kind: str, deleted_by: str
    ) -> list[tuple[str]]:
        row = session.tables.schemas.pop((target, kind), None)
        if row is None:
            return []
        deleted = replace(row, version=row.version + 1)
        _record_schema(session, target, kind, "delete", deleted, deleted_by)
        return [(target,)]

    def list_schema_history(
        self, session: Session, /, *, target: str, kind: str
    ) -> list[SchemaRevisionRow]:
        return [
            (c.version, c.operation, _loads(c.schema), c.changed_by, c.changed_at, c.revision)
            for c in reversed(session.tables.schema_history.get((target, kind), ()))
        ]


# -- what the table's constraints and triggers do ---------------------------------------


def _schema_entry(target: str, kind: str, row: _SchemaRow) -> SchemaRow:
    """The column list of upsert_schema (and of list_schemas after the revision)."""
    return (
        target,
        kind,
        _loads(row.schema),
        row.description,
        row.version,
        row.updated_by,
        row.updated_at,
    )


def _record_schema(
    session: Session, target: str, kind: str, operation: str, row: _SchemaRow, by: str
) -> None:
    """schemas_record_history: bump the revision, append the history row."""
    tables = session.tables
    tables.schema_revision = next(tables.schema_sequence)
    change = _SchemaChange(
        row.version, operation, row.schema, by, session.now, tables.schema_revision
    )
    tables.schema_history[target, kind] = (*tables.schema_history.get((target, kind), ()), change)
    session.schemas_changed = True


def _latest_change(session: Session, key: str, at: datetime) -> _Change | None:
    earlier = [c for c in session.tables.history.get(key, ()) if c.changed_at <= at]
    return max(earlier, key=lambda c: c.version, default=None)


def _upsert(
    session: Session,
    key: str,
    text: str,
    data_type: str | None,
    inferred_type: str,
    description: str | None,
    updated_by: str,
    reason: str | None,
) -> _Row:
    old = session.tables.rows.get(key)
    # An omitted type keeps the stored one, else is inferred; an omitted
    # description keeps the stored one (COALESCE in the upsert queries).
    resolved = data_type or (old.data_type if old is not None else inferred_type)
    if description is None and old is not None:
        description = old.description
    row = replace(_next_row(session, key, text, resolved, updated_by), description=description)
    return _write(session, key, row, reason)


def _next_row(session: Session, key: str, text: str, data_type: str, updated_by: str) -> _Row:
    """configurations_before_write: version, created_at, updated_at; then the CHECKs."""
    _check_constraints(key, text, data_type)
    now = session.now
    old = session.tables.rows.get(key)
    if old is None:
        # Versions continue across a delete and re-create.
        history = session.tables.history.get(key, ())
        version = max((c.version for c in history), default=0) + 1
        return _Row(text, data_type, None, version, now, now, updated_by)
    return _Row(text, data_type, None, old.version + 1, old.created_at, now, updated_by)


def _write(session: Session, key: str, row: _Row, reason: str | None) -> _Row:
    """Store ``row`` and append its history row (configurations_record_history)."""
    operation = "insert" if key not in session.tables.rows else "update"
    session.tables.rows[key] = row
    _record(session, key, row.version, operation, row, row.updated_by, reason)
    return row


def _remove(session: Session, key: str, deleted_by: str, reason: str | None) -> None:
    row = session.tables.rows.pop(key)
    # A deletion is the next version and keeps what the key held.
    _record(session, key, row.version + 1, "delete", row, deleted_by, reason)


def _remove_all(
    session: Session,
    existing: list[str],
    deleted_by: str,
    reason: str | None,
    expected_count: int | None,
) -> list[DeletedKeyRow]:
    """delete_configurations(_by_prefix): all of them, or none when the count differs."""
    if expected_count is not None and len(existing) != expected_count:
        return [(key, False) for key in existing]
    for key in existing:
        _remove(session, key, deleted_by, reason)
    return [(key, True) for key in existing]


def _record(
    session: Session, key: str, version: int, operation: str, row: _Row, by: str, reason: str | None
) -> None:
    """configurations_record_history: revision and instant stamped at commit."""
    change = _Change(
        revision=_UNSTAMPED,
        version=version,
        operation=operation,
        value=row.value,
        data_type=row.data_type,
        description=row.description,
        changed_by=by,
        changed_at=session.now,
        change_reason=reason or None,  # the queries store '' as NULL too
    )
    session.tables.history[key] = (*session.tables.history.get(key, ()), change)
    session.changes.append(ConfigChange(key, version, operation, by, _UNSTAMPED))  # type: ignore[arg-type]


def _stamped(changes: tuple[_Change, ...], revision: int, at: datetime) -> tuple[_Change, ...]:
    """A key's history with the committing transaction's rows stamped."""
    return tuple(
        replace(c, revision=revision, changed_at=at) if c.revision == _UNSTAMPED else c
        for c in changes
    )


# -- the database ----------------------------------------------------------------------

_TWIN = TwinStatements()


class MemoryDatabase:
    """Both tables, their triggers and the change feed: the server an in-memory store talks to.

    Share one between stores (sync and async) to see the same data. ``clock``
    gives the instants written to ``created_at``/``updated_at`` (read when a
    statement or transaction begins, like ``now()``) and to the history (read
    when it commits, never earlier than the previous commit's).
    Thread-safe: a statement or transaction works on a copy of the tables,
    published when it commits; reads use the last published tables without waiting.
    """

    def __init__(self, *, clock: Clock | None = None) -> None:
        self.clock = clock or _utc_now
        self._tables = _Tables()
        self._lock = threading.RLock()  # writes; reentrant for a thread inside a transaction
        # amira_config.revision_counter: the last commit's revision and instant.
        self._last_revision = 0
        self._last_changed_at: datetime | None = None
        self.feed = LocalFeed(self._changes_after, self._lock)

    def run(self, statement: Statement[Any]) -> Any:
        """Run one statement on its own (autocommit): atomic, published only if it succeeds."""
        if statement.read_only:
            return _answer(statement, self._session(self._tables))
        with self._lock:
            session = self._session(self._tables.copy())
            result = _answer(statement, session)
            self._commit(session)
        return result

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A transaction: published when the block ends, dropped if it raises or aborted.

        As in PostgreSQL, its changes share one history revision and one instant,
        and after a statement failed inside it the rest are refused.
        """
        with self._lock:
            session = self._session(self._tables.copy())
            yield session
            if not session.aborted:
                self._commit(session)

    def run_in(self, session: Session, statement: Statement[Any]) -> Any:
        """Run a statement inside an open transaction; a refusal aborts the transaction."""
        if session.aborted:
            raise _aborted()
        try:
            return _answer(statement, session)
        except ServerRefusal:
            session.aborted = True
            raise

    def _session(self, tables: _Tables) -> Session:
        return Session(tables, now=self.clock())

    def _commit(self, session: Session) -> None:
        if session.schemas_changed:
            # Schema writers take the revision counter's row lock: one at a time, whole.
            published = self._tables.copy()
            published.schemas = session.tables.schemas
            published.schema_history = session.tables.schema_history
            published.schema_revision = session.tables.schema_revision
            self._tables = published
        if not session.changes:
            return  # nothing written: no revision taken (no history row, no trigger)
        # configuration_history_commit: the next revision and the commit's instant, for
        # every change of the transaction; the lock held makes commits one at a time.
        revision = self._last_revision + 1
        at = self.clock()
        if self._last_changed_at is not None:
            at = max(at, self._last_changed_at)
        # Only the keys the session changed: writes this thread made outside a
        # transaction meanwhile (to other keys) are kept.
        touched = {change.key for change in session.changes}
        published = self._tables.copy()
        for key in touched:
            if key in session.tables.rows:
                published.rows[key] = session.tables.rows[key]
            else:
                published.rows.pop(key, None)
            published.history[key] = _stamped(session.tables.history[key], revision, at)
        self._tables = published
        self._last_revision, self._last_changed_at = revision, at
        # Announced in commit order, while the lock is held; within a revision in
        # (key, version) order, as the listener reads them from the history.
        changes = sorted(session.changes, key=lambda change: (change.key, change.version))
        self.feed.publish(replace(change, revision=revision) for change in changes)

    def _changes_after(self, revision: int) -> list[ConfigChange]:
        """list_changes_after: the committed changes above ``revision``, in revision order."""
        found = [
            ConfigChange(key, c.version, c.operation, c.changed_by, c.revision)  # type: ignore[arg-type]
            for key, changes in self._tables.history.items()
            for c in changes
            if c.revision > revision
        ]
        return sorted(found, key=lambda change: (change.revision, change.key, change.version))


def _answer(statement: Statement[Any], session: Session) -> Any:
    return getattr(_TWIN, statement.query)(session, **statement.params)


if TYPE_CHECKING:
    from ..core.statements import Statements

    def _twin_answers_every_query(twin: TwinStatements) -> Statements:
        return twin  # mypy proves the twin has every query, with the same signature
