"""The named queries of ``queries/*.sql``, as typed statements an operation asks for.

:class:`Statements` has one method per named query: its keyword parameters and
the rows it returns. Two things satisfy it: aiosql's queries object (the
connection comes first), and the in-memory twin in
:mod:`amira_data_access.backends.memory_sql` (which takes its session there).

An operation never calls a query. It asks for one with
``yield from op.sql(Statements.get_configuration, key=key)``: mypy checks the
query's name and parameters against the Protocol, a reader can jump to it, and
the :class:`Statement` that travels to the backend says what the backend needs
to know, derived from the SQL itself (aiosql's metadata) rather than kept in
lists: whether it only reads, and whether it returns many rows.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any, Concatenate, Final, Generic, NamedTuple, ParamSpec, Protocol, TypeVar

from aiosql.types import SQLOperationType
from psycopg.types.json import Jsonb

__all__ = [
    "AppliedEntryRow",
    "DeletedKeyRow",
    "EntryRow",
    "KeyValueRow",
    "QueryInfo",
    "RevisionRow",
    "SchemaListRow",
    "SchemaRevisionRow",
    "SchemaRow",
    "SnapshotChunkRow",
    "Statement",
    "Statements",
    "checked_queries",
    "query_info",
    "statement",
]

P = ParamSpec("P")
R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)

# The rows, in the column order of the SQL (see queries/configurations.sql).
EntryRow = tuple[str, Any, str, str | None, int, datetime, datetime, str]
# A conditional write: (applied, *the entry it wrote or found).
AppliedEntryRow = tuple[bool, str, Any, str, str | None, int, datetime, datetime, str]
KeyValueRow = tuple[str, Any, str]
# get_snapshot_chunks_at: ({key: value}, {key: data_type} or None), or an unreadable marker.
SnapshotChunkRow = tuple[Any, dict[str, str] | None]
DeletedKeyRow = tuple[str, bool]
RevisionRow = tuple[int, str, int, str, Any, str, str | None, str, datetime, str | None, str | None]
# queries/schemas.sql: (target, kind, schema, description, version, updated_by, updated_at),
# and list_schemas's rows, the revision first (a schema's fields None when there is none).
SchemaRow = tuple[str, str, Any, str | None, int, str, datetime]
SchemaListRow = tuple[Any, ...]
SchemaRevisionRow = tuple[int, str, Any, str, datetime, int]


class Statements(Protocol):
    """One method per named query the stores send (``queries/configurations.sql``, ``history.sql``
    and ``changes.sql``).

    The first parameter is the connection (aiosql) or the session (the in-memory
    twin); the keywords are the query's ``:parameters``. Each query's comment in
    the SQL file says what it does.
    """

    def get_configuration(self, conn: Any, /, *, key: str) -> EntryRow | None: ...

    def get_configuration_value(self, conn: Any, /, *, key: str) -> tuple[Any, str] | None: ...

    def get_configuration_values(self, conn: Any, /, *, keys: list[str]) -> list[KeyValueRow]: ...

    def get_configurations(self, conn: Any, /, *, keys: list[str]) -> list[EntryRow]: ...

    def list_configurations(
        self, conn: Any, /, *, prefix: str, prefix_end: str, after: str | None, limit: int
    ) -> list[EntryRow]: ...

    def upsert_configuration(
        self,
        conn: Any,
        /,
        *,
        key: str,
        value: Jsonb,
        data_type: str | None,
        inferred_type: str,
        description: str | None,
        updated_by: str,
        reason: str | None,
    ) -> EntryRow: ...

    def upsert_configurations(
        self,
        conn: Any,
        /,
        *,
        keys: list[str],
        values: list[Jsonb],
        data_types: list[str | None],
        inferred_types: list[str],
        descriptions: list[str | None],
        updated_by: str,
        reason: str | None,
    ) -> list[EntryRow]: ...

    def replace_configuration_if_version(
        self,
        conn: Any,
        /,
        *,
        key: str,
        value: Jsonb,
        data_type: str | None,
        description: str | None,
        updated_by: str,
        reason: str | None,
        expected_version: int,
    ) -> AppliedEntryRow | None: ...

    def insert_configuration_if_absent(
        self,
        conn: Any,
        /,
        *,
        key: str,
        value: Jsonb,
        data_type: str,
        description: str | None,
        updated_by: str,
        reason: str | None,
    ) -> AppliedEntryRow | None: ...

    def delete_configuration(
        self, conn: Any, /, *, key: str, deleted_by: str, reason: str | None
    ) -> int: ...

    def delete_configuration_if_version(
        self, conn: Any, /, *, key: str, deleted_by: str, reason: str | None, expected_version: int
    ) -> tuple[bool, int] | None: ...

    def delete_configurations(
        self,
        conn: Any,
        /,
        *,
        keys: list[str],
        deleted_by: str,
        reason: str | None,
        expected_count: int | None,
    ) -> list[DeletedKeyRow]: ...

    def delete_configurations_by_prefix(
        self,
        conn: Any,
        /,
        *,
        prefix: str,
        prefix_end: str,
        deleted_by: str,
        reason: str | None,
        expected_count: int | None,
    ) -> list[DeletedKeyRow]: ...

    def list_history(
        self, conn: Any, /, *, key: str, before_version: int | None, limit: int
    ) -> list[RevisionRow]: ...

    def get_value_at(
        self, conn: Any, /, *, key: str, at: datetime
    ) -> tuple[str, Any, str] | None: ...

    def get_snapshot_at(
        self, conn: Any, /, *, at: datetime, prefix: str, prefix_end: str
    ) -> list[KeyValueRow]: ...

    def get_snapshot_chunks_at(
        self, conn: Any, /, *, at: datetime, prefix: str, prefix_end: str
    ) -> list[SnapshotChunkRow]: ...

    def rollback_configuration(
        self, conn: Any, /, *, key: str, to_version: int, updated_by: str, reason: str | None
    ) -> EntryRow | None: ...

    def server_health(self, conn: Any, /) -> tuple[str, bool]: ...

    # queries/schemas.sql

    def get_schema_revision(self, conn: Any, /) -> int: ...

    def list_schemas(self, conn: Any, /) -> list[SchemaListRow]: ...

    def upsert_schema(
        self,
        conn: Any,
        /,
        *,
        target: str,
        kind: str,
        schema: Jsonb,
        description: str | None,
        updated_by: str,
    ) -> SchemaRow: ...

    def delete_schema(
        self, conn: Any, /, *, target: str, kind: str, deleted_by: str
    ) -> list[tuple[str]]: ...

    def list_schema_history(
        self, conn: Any, /, *, target: str, kind: str
    ) -> list[SchemaRevisionRow]: ...

    # queries/snapshots.sql

    def list_snapshot_rows(self, conn: Any, /) -> list[tuple[Any, ...]]: ...


@dataclass(frozen=True, slots=True)
class QueryInfo:
    """What a backend needs to know about a named query, read from its SQL."""

    name: str
    read_only: bool  # changes nothing: may run without a write lock, and again after a failure
    many: bool  # returns a list of rows (aiosql's SELECT with no suffix)


class Statement(NamedTuple, Generic[R_co]):
    """One named query with its parameters, on its way from an operation to a backend.

    A named tuple: one is made per call on the hot path, and a tuple is the cheapest
    object Python builds (a frozen dataclass cost ~1 µs more).
    """

    query: str
    params: dict[str, Any]
    read_only: bool
    many: bool
    resend_safe: bool  # may be sent again after the connection was lost mid-way


# Anything that could change data, take a row lock or set state: such a query is a write.
_WRITES: Final = re.compile(
    r"\b(INSERT|UPDATE|DELETE|MERGE|TRUNCATE|COPY|LOCK|set_config|nextval|pg_notify)\b",
    re.IGNORECASE,
)
_COMMENT: Final = re.compile(r"--[^\n]*")


def _is_read_only(sql: str) -> bool:
    return _WRITES.search(_COMMENT.sub("", sql)) is None


def _protocol_methods() -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in vars(Statements).items()
        if callable(member) and not name.startswith("_")
    }


@cache
def _infos() -> dict[str, QueryInfo]:
    # Parsing the SQL is pure (no connection): done once per process, and shared with
    # the backend that runs it (aiosql takes ~15 ms to parse queries/).
    from ..backends.postgres import load_queries  # here: that module imports this one

    loaded = load_queries("psycopg")
    return {
        name: QueryInfo(
            name=name,
            read_only=_is_read_only(getattr(loaded, name).sql),
            many=getattr(loaded, name).operation is SQLOperationType.SELECT,
        )
        for name in _protocol_methods()
        if hasattr(loaded, name)
    }


def checked_queries(queries: Any) -> Any:
    """``queries`` (an aiosql object) after checking it has every Statements query, same keywords.

    Run once when the queries are loaded, so a renamed query or parameter in
    ``queries/`` fails at start-up, not on the first call that needs it.
    """
    problems = []
    for name, signature in _protocol_methods().items():
        query = getattr(queries, name, None)
        if query is None:
            problems.append(f"{name}: missing")
            continue
        wanted = {p.name for p in signature.parameters.values() if p.kind is p.KEYWORD_ONLY}
        if set(query.parameters or ()) != wanted:
            problems.append(
                f"{name}: parameters {sorted(query.parameters or ())} != {sorted(wanted)}"
            )
    if problems:
        raise RuntimeError(f"queries/ does not match core.statements.Statements: {problems}")
    return queries


def query_info(name: str) -> QueryInfo:
    """What the SQL says about the named query (KeyError: not a Statements query)."""
    return _infos()[name]


def statement(
    query: Callable[Concatenate[Statements, Any, P], R],
    /,
    *args: P.args,
    **params: P.kwargs,
) -> Statement[R]:
    """The statement that runs ``query`` (a :class:`Statements` method) with ``params``.

    Read-only queries are safe to send again after a lost connection; a write
    is not (it may have committed): see :meth:`Statement.resend_safe`.
    """
    if args:
        raise TypeError("statement parameters are keywords only")
    info = _infos()[query.__name__]
    return Statement(info.name, params, info.read_only, info.many, info.read_only)
