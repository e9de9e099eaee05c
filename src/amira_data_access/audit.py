"""The audit trail: verify the history's hash chain, export it, prune it, and write scopes.

Since ``migrations/0008`` every committed history row carries a ``chain_position``
and a ``digest`` (``sha256(previous digest || sha256(row bytes))``, the row bytes
being each field as text prefixed by its length in bytes, ``~`` for NULL). The
history refuses UPDATE, DELETE and TRUNCATE for every role; only
:func:`prune_history` (an admin's) removes rows, each leaving a stub that keeps
the chain verifiable. :func:`verify_history` recomputes the chain here, in
Python, from the rows as stored (read with built-in SQL only), so a row
rewritten, inserted or deleted by anyone, the table owner with triggers disabled
included, is reported. It also reports live keys that disagree with their
newest history row and triggers that are disabled or were added by someone else.

What it cannot see: an owner who rewrites the rows *and* recomputes every digest
after them *and* the head. Against that, keep the head :func:`verify_history`
returns (or the ``audit export`` lines) outside the database and pass it back as
``expect=``: the chain must still go through it.

These are admin tools over a DSN, like :func:`amira_data_access.migrations.migrate`:
the stores do not offer them (the in-memory store has no history to prove).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

import psycopg

from .backends.postgres import APPLICATION_NAME, load_queries
from .errors import BACKEND_ERRORS, InvalidConfigurationError, note_refused_login, translate
from .settings import parse_dsn

__all__ = [
    "GENESIS",
    "AuditProblem",
    "AuditReport",
    "ChainHead",
    "WriteScope",
    "export_history",
    "grant_write_scope",
    "list_write_scopes",
    "prune_history",
    "revoke_write_scope",
    "row_bytes",
    "verify_history",
]

GENESIS: Final = bytes(32)  # the "previous digest" of the first row (migrations/0008)
_PAGE: Final = 5000  # rows read per round trip while verifying or exporting


@dataclass(frozen=True, slots=True)
class ChainHead:
    """A point of the chain: the row at ``position`` and the digest up to it (hex)."""

    position: int
    digest: str

    def __str__(self) -> str:
        return f"{self.position}:{self.digest}"

    @classmethod
    def parse(cls, text: str) -> ChainHead:
        """``POSITION:DIGEST`` (as printed by ``audit verify``) back into a ChainHead."""
        position, sep, digest = text.partition(":")
        try:
            parsed = cls(int(position), bytes.fromhex(digest).hex())
        except ValueError:
            parsed = None
        if not sep or parsed is None or parsed.position < 0 or len(parsed.digest) != 64:
            raise InvalidConfigurationError(
                f"not a chain head: {text!r} (expected POSITION:SHA256HEX, as audit verify prints)"
            )
        return parsed


@dataclass(frozen=True, slots=True)
class AuditProblem:
    """One thing :func:`verify_history` found wrong.

    ``kind``: ``rewritten`` (a row's content or digest no longer matches the
    chain), ``missing`` (chain positions with neither row nor stub: deleted),
    ``unchained`` (a row outside the chain: inserted with the triggers off),
    ``head`` (the chain does not end where the commit trigger left it),
    ``expected`` (the chain no longer goes through the head given as ``expect``),
    ``disagrees`` (a live key differs from its newest history row), ``trigger``
    (a disabled or foreign trigger on the schema's tables).
    """

    kind: str
    detail: str
    position: int | None = None
    key: str | None = None
    version: int | None = None


@dataclass(slots=True)
class AuditReport:
    """What :func:`verify_history` checked and found."""

    rows: int = 0  # history rows checked
    stubs: int = 0  # stubs of pruned rows the chain went through
    head: ChainHead = field(default_factory=lambda: ChainHead(0, GENESIS.hex()))
    problems: list[AuditProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No problem found."""
        return not self.problems


@dataclass(frozen=True, slots=True)
class WriteScope:
    """A key prefix a role may write (see README "Granting access")."""

    role: str
    prefix: str
    granted_by: str
    granted_at: datetime


def _field(text: str | None) -> bytes:
    if text is None:
        return b"~"
    encoded = text.encode()
    return str(len(encoded)).encode() + b":" + encoded


def row_bytes(
    position: int,
    revision: int,
    key: str,
    version: int,
    operation: str,
    value_text: str,
    data_type: str,
    description: str | None,
    changed_by: str,
    login: str | None,
    changed_at_us: str,
    change_reason: str | None,
) -> bytes:
    """What the chain hashes of one row: amira_config.history_row_bytes() of migrations/0008.

    ``value_text`` is the jsonb's text as PostgreSQL prints it, ``changed_at_us``
    the instant in microseconds since the epoch, as text.
    """
    fields = (
        str(position),
        str(revision),
        key,
        str(version),
        operation,
        value_text,
        data_type,
        description,
        changed_by,
        login,
        changed_at_us,
        change_reason,
    )
    return b"".join(_field(text) for text in fields)


@contextmanager
def _connection(
    dsn: str, operation: str, *, autocommit: bool, key: str | None = None
) -> Iterator[psycopg.Connection[Any]]:
    parsed = parse_dsn(dsn)
    try:
        conn = psycopg.connect(
            parsed.conninfo, autocommit=autocommit, application_name=APPLICATION_NAME
        )
    except psycopg.Error as exc:
        raise translate(exc, operation=operation, secrets=parsed.secrets) from exc
    login = conn.info.user
    try:
        with conn:
            yield conn
    except BACKEND_ERRORS as exc:
        note_refused_login(exc, login)
        raise translate(exc, operation=operation, key=key, secrets=parsed.secrets) from exc


def _snapshot(conn: psycopg.Connection[Any]) -> None:
    # One snapshot for rows, stubs and head: commits during the walk are not half seen.
    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    conn.read_only = True


def _pages(query: Any, conn: psycopg.Connection[Any]) -> Iterator[tuple[Any, ...]]:
    after = 0
    while True:
        rows = list(query(conn, after=after, limit=_PAGE))
        yield from rows
        if len(rows) < _PAGE:
            return
        after = int(rows[-1][0])


def _chain(conn: psycopg.Connection[Any]) -> Iterator[tuple[int, tuple[Any, ...] | None, Any]]:
    """(position, history row or None, stub or None) in chain order, rows and stubs merged."""
    queries = load_queries()
    rows = _pages(queries.list_chained_history, conn)
    stubs = _pages(queries.list_pruned_stubs, conn)
    row, stub = next(rows, None), next(stubs, None)
    while row is not None or stub is not None:
        if stub is None or (row is not None and int(row[0]) <= int(stub[0])):
            assert row is not None
            if stub is not None and int(row[0]) == int(stub[0]):
                yield int(row[0]), row, stub  # both: a stub for a row that is still there
                stub = next(stubs, None)
            else:
                yield int(row[0]), row, None
            row = next(rows, None)
        else:
            yield int(stub[0]), None, stub
            stub = next(stubs, None)


def verify_history(dsn: str, *, expect: ChainHead | None = None) -> AuditReport:
    """Recompute the history's hash chain and check the audit trail; never changes anything.

    ``expect``: a head an earlier run returned (kept outside the database); the
    chain must still pass through it with the same digest.
    """
    report = AuditReport()
    queries = load_queries()
    with _connection(dsn, "audit.verify", autocommit=False) as conn:
        _snapshot(conn)
        previous = GENESIS
        position = 0
        for at, row, stub in _chain(conn):
            if at != position + 1:
                report.problems.append(
                    AuditProblem(
                        "missing",
                        f"chain positions {position + 1}..{at - 1} have no row and no stub "
                        "(deleted)",
                        position=position + 1,
                    )
                )
            position = at
            if row is None:
                report.stubs += 1
                previous = hashlib.sha256(previous + bytes(stub[4])).digest()
            else:
                previous = _check_row(report, previous, row, stub)
            if (
                expect is not None
                and position == expect.position
                and previous.hex() != (expect.digest)
            ):
                report.problems.append(
                    AuditProblem(
                        "expected",
                        f"the chain at position {position} is {previous.hex()}, not the "
                        f"expected {expect.digest}: history up to there was rewritten",
                        position=position,
                    )
                )
        report.head = ChainHead(position, previous.hex())
        if expect is not None and expect.position > position:
            report.problems.append(
                AuditProblem(
                    "expected",
                    f"the chain ends at position {position}, before the expected head "
                    f"{expect.position}: rows at its end were deleted",
                    position=expect.position,
                )
            )
        _check_head(report, queries.get_chain_head(conn))
        for key, version, revision in queries.list_unchained_history(conn):
            report.problems.append(
                AuditProblem(
                    "unchained",
                    f"{key!r} version {version} (revision {revision}) is not in the chain: "
                    "inserted with the history's triggers disabled",
                    key=key,
                    version=version,
                )
            )
        for key, live, newest, operation in queries.list_table_history_disagreements(conn):
            report.problems.append(
                AuditProblem(
                    "disagrees",
                    f"{key!r}: the table holds version {live}, its newest history row is "
                    f"version {newest} ({operation}): a change bypassed the history",
                    key=key,
                    version=live,
                )
            )
        for table, trigger, enabled, schema, function in queries.list_suspect_triggers(conn):
            state = "disabled" if enabled == "D" else f"enabled={enabled}"
            report.problems.append(
                AuditProblem(
                    "trigger",
                    f"trigger {trigger} on {table} ({state}, runs {schema}.{function}): "
                    "disabled, or added by someone other than the tables' owner",
                )
            )
    return report


def _check_row(report: AuditReport, previous: bytes, row: tuple[Any, ...], stub: Any) -> bytes:
    """Check one history row against the chain; the digest the chain goes on from."""
    (position, revision, key, version, operation, value_text, data_type, description,
     changed_by, login, changed_at_us, change_reason, digest, _changed_at) = row  # fmt: skip
    report.rows += 1
    content = row_bytes(
        position, revision, key, version, operation, value_text, data_type, description,
        changed_by, login, changed_at_us, change_reason,
    )  # fmt: skip
    computed = hashlib.sha256(previous + hashlib.sha256(content).digest()).digest()
    stored = bytes(digest) if digest is not None else None
    if stored != computed:
        report.problems.append(
            AuditProblem(
                "rewritten",
                f"{key!r} version {version} at chain position {position} does not match the "
                "chain: rewritten, or inserted, after it was committed",
                position=position,
                key=key,
                version=version,
            )
        )
    if stub is not None:
        report.problems.append(
            AuditProblem(
                "rewritten",
                f"chain position {position} has both a row ({key!r} version {version}) and a "
                "pruned stub",
                position=position,
                key=key,
                version=version,
            )
        )
    # Go on from the stored digest: the rows after it were chained to it, so one
    # rewritten row is reported once, not with every row after it.
    return stored if stored is not None else computed


def _check_head(report: AuditReport, head: tuple[Any, ...] | None) -> None:
    if head is None:
        report.problems.append(AuditProblem("head", "amira_config.revision_counter is empty"))
        return
    last_position, last_digest = int(head[0]), bytes(head[1]).hex()
    if (last_position, last_digest) != (report.head.position, report.head.digest):
        report.problems.append(
            AuditProblem(
                "head",
                f"the chain ends at {report.head}, but the last commit left it at "
                f"{last_position}:{last_digest}: rows at its end were deleted or rewritten",
                position=last_position,
            )
        )


def export_history(dsn: str, *, after: int = 0) -> Iterator[dict[str, Any]]:
    """Every history row after chain position ``after``, in chain order, as JSON-ready dicts
    (for a SIEM: ``amira-config audit export`` writes one per line). A pruned row appears
    as its stub (``"pruned": true``, no content)."""
    import json

    with _connection(dsn, "audit.export", autocommit=False) as conn:
        _snapshot(conn)
        for position, row, stub in _chain(conn):
            if position <= after:
                continue
            if row is None:
                yield {
                    "chain_position": position,
                    "pruned": True,
                    "key": stub[1],
                    "version": stub[2],
                    "revision": stub[3],
                    "content_hash": bytes(stub[4]).hex(),
                    "pruned_at": stub[5].isoformat(),
                    "pruned_by": stub[6],
                }
                continue
            yield {
                "chain_position": position,
                "revision": row[1],
                "key": row[2],
                "version": row[3],
                "operation": row[4],
                "value": json.loads(row[5]),
                "data_type": row[6],
                "description": row[7],
                "changed_by": row[8],
                "login": row[9],
                "changed_at": row[13].isoformat(),
                "change_reason": row[11],
                "digest": bytes(row[12]).hex() if row[12] is not None else None,
            }


def prune_history(
    dsn: str,
    *,
    older_than: timedelta | None = None,
    keep_last: int = 0,
    key: str | None = None,
    versions: Sequence[int] | None = None,
) -> int:
    """Remove history rows, each leaving a stub the chain verifies through; how many went.

    Retention: rows committed more than ``older_than`` ago, except each key's
    ``keep_last`` newest. A purge (a leaked value): ``key`` and its ``versions``,
    however recent. A key's live version is never removed (the table holds that
    value anyway). Needs ``amira_config_admin``.
    """
    if older_than is None and (key is None or not versions):
        raise InvalidConfigurationError("prune: give older_than, or a key and its versions")
    if isinstance(keep_last, bool) or not isinstance(keep_last, int) or keep_last < 0:
        raise InvalidConfigurationError("prune: keep_last must be an int >= 0")
    if older_than is not None and older_than < timedelta(0):
        raise InvalidConfigurationError("prune: older_than must not be negative")
    with _connection(dsn, "audit.prune", autocommit=True, key=key) as conn:
        removed = load_queries().prune_history(
            conn,
            older_than=older_than,
            keep_last=keep_last,
            key=key,
            versions=list(versions) if versions else None,
        )
    return int(removed or 0)


def list_write_scopes(dsn: str) -> list[WriteScope]:
    """Every write scope, by role and prefix."""
    with _connection(dsn, "access.scopes", autocommit=True) as conn:
        return [WriteScope(*row) for row in load_queries().list_write_scopes(conn)]


def grant_write_scope(dsn: str, role: str, prefix: str) -> None:
    """Let ``role`` write keys starting with ``prefix``; once a role has a scope it may
    write only under its scopes. Needs ``amira_config_admin``."""
    with _connection(dsn, "access.grant", autocommit=True) as conn:
        load_queries().grant_write_scope(conn, role=role, prefix=prefix)


def revoke_write_scope(dsn: str, role: str, prefix: str) -> bool:
    """Take ``prefix`` back from ``role``; False if it did not have it."""
    with _connection(dsn, "access.revoke", autocommit=True) as conn:
        return bool(load_queries().revoke_write_scope(conn, role=role, prefix=prefix))
