"""What each ``amira-config`` command does: calls on ConfigDAL and the migration runner.

Every command takes a :class:`Context` and returns an :class:`Outcome`: the
JSON document for ``--json`` and the text for people, built from the same data
so the two never disagree. Failures are raised (the library's exceptions,
:class:`~.values.UsageError`, :class:`~.values.NotFoundError`) and turned into
exit codes in one place, :func:`amira_data_access.cli.main`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from .. import migrations
from ..codec import prepare_value
from ..dal import ConfigDAL
from ..entries import ConfigEntry, ConfigRevision
from ..errors import ConfigurationAccessError, MigrationError
from ..settings import conninfo_from_env, parse_dsn
from .output import (
    Style,
    compact_value,
    entry_document,
    entry_to_json,
    iso,
    render_entry,
    render_table,
    revision_to_json,
    unified_diff,
)
from .server import EmbeddedServer, data_home
from .values import (
    FileFormat,
    ImportEntry,
    NotFoundError,
    UsageError,
    dump_document,
    parse_document,
    parse_instant,
    parse_value,
    strip_final_newline,
)

__all__ = ["COMMANDS", "Context", "Outcome", "env_names_database"]

PAGE = 1000  # the largest page list() and history() give
CONNECT_TIMEOUT = 5  # seconds: an unreachable server fails fast instead of hanging
# Commands that manage migrations see the schema as it is: the embedded server is
# not migrated behind their back.
_NO_AUTO_MIGRATE = {"migrate", "status", "verify", "baseline", "repair"}


@dataclass
class Outcome:
    """A command's result: ``document`` for --json, ``text`` for people."""

    document: Any
    text: str
    exit_code: int = 0
    error: str | None = None  # the stderr line when exit_code is not 0


@dataclass
class Context:
    """What a command works with; the database is resolved (and started) on first need."""

    args: argparse.Namespace
    style: Style
    stdin: TextIO = field(default_factory=lambda: sys.stdin)
    stderr: TextIO = field(default_factory=lambda: sys.stderr)
    _conninfo: str | None = None
    _dal: ConfigDAL | None = None

    def conninfo(self) -> str:
        """The connection string to use; says on stderr which database it names."""
        if self._conninfo is None:
            self._conninfo, where = self._resolve()
            print(f"amira-config: using {where}", file=self.stderr)
        return self._conninfo

    def _resolve(self) -> tuple[str, str]:
        given: str | None = self.args.dsn
        if not given and env_names_database():
            given = conninfo_from_env()
        if given:
            parsed = parse_dsn(given)  # a clear, password-free error when malformed
            return with_connect_timeout(parsed.conninfo), parsed.description
        server = EmbeddedServer(data_home())
        dsn = server.ensure_running(migrate=self.args.command not in _NO_AUTO_MIGRATE)
        return with_connect_timeout(dsn), server.description

    def dal(self) -> ConfigDAL:
        """A DAL on the database (one connection is plenty for one command)."""
        if self._dal is None:
            self._dal = ConfigDAL(self.conninfo(), min_size=0, max_size=2)
        return self._dal

    def close(self) -> None:
        """Close the pool, if one was opened."""
        if self._dal is not None:
            self._dal.close()


def env_names_database() -> bool:
    """Whether AMIRA_CONFIG_DSN or a DB_* variable is set: then no embedded server is used."""
    names = ("AMIRA_CONFIG_DSN", "DB_HOST", "DB_NAME", "DB_USER", "DB_PORT", "DB_PASSWORD")
    # pydantic-settings matches names case-insensitively: so do we.
    present = {name.upper() for name, value in os.environ.items() if value.strip()}
    return any(name in present for name in names)


def with_connect_timeout(conninfo: str) -> str:
    """The DSN with a connect_timeout unless it has one (the migration runner sets none)."""
    if conninfo_to_dict(conninfo).get("connect_timeout"):
        return conninfo
    return make_conninfo(conninfo, connect_timeout=CONNECT_TIMEOUT)


# -- reading --------------------------------------------------------------------------


def cmd_get(ctx: Context) -> Outcome:
    """``get KEY``: the whole entry."""
    entry = ctx.dal().get_entry(ctx.args.key)
    if entry is None:
        raise NotFoundError(f"{ctx.args.key!r} not found")
    return Outcome(entry_to_json(entry), render_entry(entry, ctx.style))


def _all_entries(dal: ConfigDAL, prefix: str) -> Iterator[ConfigEntry]:
    after: str | None = None
    while True:
        page = dal.list(prefix, after=after, limit=PAGE)
        yield from page
        if len(page) < PAGE:
            return
        after = page[-1].key


def cmd_list(ctx: Context) -> Outcome:
    """``list [PREFIX]``: every entry (all pages), in key order."""
    entries = list(_all_entries(ctx.dal(), ctx.args.prefix))
    rows = [
        [
            e.key,
            e.data_type,
            str(e.version),
            iso(e.updated_at),
            e.updated_by,
            compact_value(e.value, e.data_type),
        ]
        for e in entries
    ]
    headers = ["KEY", "TYPE", "VERSION", "UPDATED_AT", "UPDATED_BY", "VALUE"]
    text = render_table(headers, rows, ctx.style) if rows else "(no keys)"
    return Outcome([entry_to_json(e) for e in entries], text)


def _all_revisions(dal: ConfigDAL, key: str, limit: int | None) -> list[ConfigRevision]:
    revisions: list[ConfigRevision] = []
    before: int | None = None
    while limit is None or len(revisions) < limit:
        wanted = PAGE if limit is None else min(PAGE, limit - len(revisions))
        page = dal.history(key, limit=wanted, before_version=before)
        revisions.extend(page)
        if len(page) < wanted:
            break
        before = page[-1].version
    return revisions


def cmd_history(ctx: Context) -> Outcome:
    """``history KEY``: every change, newest first."""
    revisions = _all_revisions(ctx.dal(), ctx.args.key, ctx.args.limit)
    if not revisions:
        raise NotFoundError(f"{ctx.args.key!r} has no history (it never existed)")
    rows = [
        [
            str(r.version),
            r.operation,
            iso(r.changed_at),
            r.changed_by,
            r.change_reason or "",
            compact_value(r.value, r.data_type),
        ]
        for r in revisions
    ]
    headers = ["VERSION", "OPERATION", "CHANGED_AT", "CHANGED_BY", "REASON", "VALUE"]
    return Outcome([revision_to_json(r) for r in revisions], render_table(headers, rows, ctx.style))


def find_revision(dal: ConfigDAL, key: str, version: int) -> ConfigRevision:
    """The history row of ``key`` at ``version``; NotFoundError if there is none."""
    if version < 1:
        raise UsageError(f"versions start at 1, got {version}")
    page = dal.history(key, limit=1, before_version=version + 1)
    if not page or page[0].version != version:
        raise NotFoundError(f"{key!r} has no version {version}")
    return page[0]


def _revision_document(revision: ConfigRevision) -> dict[str, Any] | None:
    if revision.operation == "delete":
        return None  # the key did not exist after this change
    return entry_document(revision.value, revision.data_type, revision.description)


def cmd_diff(ctx: Context) -> Outcome:
    """``diff KEY V1 [V2]``: what changed between two versions (V2: the current entry)."""
    dal, key = ctx.dal(), ctx.args.key
    old = find_revision(dal, key, ctx.args.v1)
    before = _revision_document(old)
    before_label = f"{key}@v{old.version}" + (" (deleted)" if before is None else "")
    after: dict[str, Any] | None
    after_version: int | None
    if ctx.args.v2 is not None:
        new = find_revision(dal, key, ctx.args.v2)
        after, after_version = _revision_document(new), new.version
        after_label = f"{key}@v{new.version}" + (" (deleted)" if after is None else "")
    else:
        current = dal.get_entry(key)
        after_version = current.version if current else None
        after = (
            entry_document(current.value, current.data_type, current.description)
            if current
            else None
        )
        after_label = f"{key}@current" + (f" (v{after_version})" if current else " (absent)")
    plain = unified_diff(before, after, before_label=before_label, after_label=after_label)
    shown = unified_diff(
        before, after, before_label=before_label, after_label=after_label, style=ctx.style
    )
    document = {
        "key": key,
        "from": {"version": old.version, "entry": before},
        "to": {"version": after_version, "entry": after},
        "changed": bool(plain),
        "diff": plain,
    }
    return Outcome(document, shown or f"no differences between {before_label} and {after_label}")


# -- writing --------------------------------------------------------------------------


def _value_text(ctx: Context) -> str:
    args = ctx.args
    if (args.value is None) == (args.value_file is None):
        raise UsageError("give the value either as VALUE or with --value-file, not both")
    if args.value is not None:
        return str(args.value)
    if args.value_file == "-":
        return strip_final_newline(ctx.stdin.read())
    try:
        return strip_final_newline(Path(args.value_file).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read --value-file {args.value_file}: {exc}") from None


def cmd_set(ctx: Context) -> Outcome:
    """``set KEY VALUE``: create or replace a key (the type is kept when --type is omitted)."""
    args, dal = ctx.args, ctx.dal()
    text = _value_text(ctx)
    data_type: str | None = args.type
    if data_type is None:
        current = dal.get_entry(args.key)
        if current is None:
            raise UsageError(f"{args.key!r} does not exist yet: give its --type")
        data_type = current.data_type
    entry = dal.set(
        args.key,
        parse_value(text, data_type),
        data_type=data_type,
        description=args.description,
        updated_by=args.by,
        reason=args.reason,
        expected_version=args.expect_version,
    )
    text = (
        f"set {entry.key} = {compact_value(entry.value, entry.data_type)} "
        f"({entry.data_type}, version {entry.version})"
    )
    return Outcome(entry_to_json(entry), ctx.style.green(text))


def cmd_delete(ctx: Context) -> Outcome:
    """``delete KEY``: remove a key (its history stays)."""
    args = ctx.args
    deleted = ctx.dal().delete(
        args.key, deleted_by=args.by, reason=args.reason, expected_version=args.expect_version
    )
    if not deleted:
        raise NotFoundError(f"{args.key!r} not found")
    return Outcome({"key": args.key, "deleted": True}, f"deleted {args.key}")


def cmd_rollback(ctx: Context) -> Outcome:
    """``rollback KEY --to-version N``: a new version holding what version N held."""
    args, dal = ctx.args, ctx.dal()
    find_revision(dal, args.key, args.to_version)  # "no such version" is exit 1, not 2
    entry = dal.rollback(
        args.key, to_version=args.to_version, updated_by=args.by, reason=args.reason
    )
    text = (
        f"rolled back {entry.key} to version {args.to_version}: now version {entry.version} = "
        f"{compact_value(entry.value, entry.data_type)}"
    )
    return Outcome(entry_to_json(entry), ctx.style.green(text))


# -- export / import ------------------------------------------------------------------


def _entry_at(dal: ConfigDAL, key: str, when: datetime) -> ConfigRevision | None:
    """The newest change of ``key`` made at or before ``when`` (for its type and description)."""
    before: int | None = None
    while True:
        page = dal.history(key, limit=100, before_version=before)
        for revision in page:
            if revision.changed_at <= when:
                return revision
        if len(page) < 100:
            return None
        before = page[-1].version


def export_document(dal: ConfigDAL, prefix: str, when: datetime | None) -> dict[str, Any]:
    """``{key: {value, data_type, description}}`` now, or as it was at ``when``."""
    if when is None:
        return {
            e.key: entry_document(e.value, e.data_type, e.description)
            for e in _all_entries(dal, prefix)
        }
    document: dict[str, Any] = {}
    for key in dal.snapshot_at(when, prefix):
        revision = _entry_at(dal, key, when)
        if revision is not None and revision.operation != "delete":
            document[key] = entry_document(revision.value, revision.data_type, revision.description)
    return document


def cmd_export(ctx: Context) -> Outcome:
    """``export [PREFIX]``: the entries as an import file."""
    when = parse_instant(ctx.args.at) if ctx.args.at else None
    document = export_document(ctx.dal(), ctx.args.prefix, when)
    file_format: FileFormat = ctx.args.format
    return Outcome(document, dump_document(document, file_format).rstrip("\n"))


def _import_format(path: str, given: str | None) -> FileFormat:
    if given == "yaml" or (given is None and path.lower().endswith((".yaml", ".yml"))):
        return "yaml"
    return "json"


def _read_import_file(ctx: Context) -> str:
    path = ctx.args.file
    if path == "-":
        return ctx.stdin.read()
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from None


@dataclass(frozen=True, slots=True)
class _Change:
    item: ImportEntry
    data_type: str
    before: dict[str, Any] | None
    after: dict[str, Any]
    current_version: int | None


def _canonical(document: dict[str, Any] | None) -> str:
    return json.dumps(document, sort_keys=True, ensure_ascii=False)


def _plan(item: ImportEntry, current: ConfigEntry | None, source: str) -> _Change:
    """What importing ``item`` would store, against the current entry (type and text kept)."""
    data_type = item.data_type or (current.data_type if current else None)
    try:
        prepared = prepare_value(item.value, data_type)
    except ConfigurationAccessError as exc:
        raise UsageError(f"{source}: entry {item.key!r}: {exc}") from None
    description = item.description
    if description is None and current is not None:
        description = current.description  # omitted: kept, as ConfigDAL.set does
    before = (
        entry_document(current.value, current.data_type, current.description) if current else None
    )
    after = entry_document(prepared.value, prepared.data_type, description)
    return _Change(item, prepared.data_type, before, after, current.version if current else None)


def cmd_import(ctx: Context) -> Outcome:
    """``import FILE``: write every changed entry in one transaction (or only show the diff)."""
    args = ctx.args
    source = "stdin" if args.file == "-" else args.file
    items = parse_document(_read_import_file(ctx), _import_format(args.file, args.format), source)
    created: list[str] = []
    updated: list[str] = []
    unchanged: list[str] = []
    diffs: list[tuple[dict[str, Any] | None, dict[str, Any], str, str]] = []
    dal = ctx.dal()
    # Reads and writes in one transaction: all or nothing, one history revision.
    with dal.transaction() as tx:
        plans = [_plan(item, tx.get_entry(item.key), source) for item in items]
        for plan in plans:
            if _canonical(plan.before) == _canonical(plan.after):
                unchanged.append(plan.item.key)
                continue
            (created if plan.before is None else updated).append(plan.item.key)
            label = (
                f"{plan.item.key}@v{plan.current_version} (current)"
                if plan.before
                else f"{plan.item.key} (absent)"
            )
            diffs.append((plan.before, plan.after, label, source))
            if not args.dry_run:
                tx.set(
                    plan.item.key,
                    plan.after["value"],
                    data_type=plan.data_type,
                    description=plan.item.description,
                    updated_by=args.by,
                    reason=args.reason,
                )
    plain = "\n".join(unified_diff(b, a, before_label=bl, after_label=al) for b, a, bl, al in diffs)
    shown = "\n".join(
        unified_diff(b, a, before_label=bl, after_label=al, style=ctx.style)
        for b, a, bl, al in diffs
    )
    verb = "would create" if args.dry_run else "created"
    summary = (
        f"{verb} {len(created)}, {'would update' if args.dry_run else 'updated'} {len(updated)}, "
        f"unchanged {len(unchanged)}" + (" (dry run: nothing written)" if args.dry_run else "")
    )
    document = {
        "dry_run": bool(args.dry_run),
        "created": created,
        "updated": updated,
        "unchanged": unchanged,
        "diff": plain,
    }
    return Outcome(document, "\n".join(filter(None, [shown, summary])))


# -- migrations -----------------------------------------------------------------------


def _migration_json(migration: migrations.Migration) -> dict[str, Any]:
    return {
        "version": migration.version,
        "filename": migration.filename,
        "checksum": migration.checksum,
    }


def _applied_json(row: migrations.AppliedMigration) -> dict[str, Any]:
    return {
        "version": row.version,
        "filename": row.filename,
        "checksum": row.checksum,
        "success": row.success,
        "kind": row.kind,
        "applied_at": iso(row.applied_at, precise=True),
        "applied_by": row.applied_by,
        "execution_ms": row.execution_ms,
    }


def cmd_migrate(ctx: Context) -> Outcome:
    """``migrate [--dry-run]``: apply pending migrations."""
    done = migrations.migrate(ctx.conninfo(), dry_run=ctx.args.dry_run)
    verb = "would apply" if ctx.args.dry_run else "applied"
    lines = [f"{verb} {m.filename}" for m in done] or ["up to date: nothing to apply"]
    document = {"dry_run": bool(ctx.args.dry_run), "applied": [_migration_json(m) for m in done]}
    return Outcome(document, "\n".join(lines))


def status_document(state: migrations.MigrationStatus) -> dict[str, Any]:
    """A migration status as JSON."""
    return {
        "up_to_date": state.up_to_date,
        "applied": [_applied_json(row) for row in state.applied],
        "pending": [_migration_json(m) for m in state.pending],
        "changed": [_migration_json(m) for m in state.changed],
        "missing": [_applied_json(row) for row in state.missing],
        "failed": [_applied_json(row) for row in state.failed],
        "invalid_indexes": list(state.invalid_indexes),
        "problems": list(state.problems),
    }


def cmd_status(ctx: Context) -> Outcome:
    """``status``: applied, pending, changed migrations; exit 4 when history and files disagree."""
    state = migrations.status(ctx.conninfo())
    failed = {row.version for row in state.failed}
    changed = {m.version for m in state.changed}
    rows = [
        [
            "FAILED" if r.version in failed else "changed" if r.version in changed else "applied",
            r.filename,
            iso(r.applied_at),
            r.applied_by,
        ]
        for r in state.applied
    ]
    rows += [["pending", m.filename, "", ""] for m in state.pending]
    lines = [render_table(["STATE", "FILE", "APPLIED_AT", "APPLIED_BY"], rows, ctx.style)]
    lines += [f"problem: {problem}" for problem in state.problems]
    pending = len(state.pending)
    lines.append(
        "up to date"
        if state.up_to_date
        else f"{pending} pending: run amira-config migrate"
        if not state.problems
        else "history and files disagree"
    )
    error = None
    if state.problems:
        error = f"migration history and files disagree: {state.problems[0]}"
    return Outcome(status_document(state), "\n".join(lines), 4 if error else 0, error)


def cmd_verify(ctx: Context) -> Outcome:
    """``verify``: check history against files without changing anything."""
    state = migrations.verify(ctx.conninfo())
    text = f"ok: {len(state.applied)} applied, {len(state.pending)} pending"
    return Outcome(status_document(state), text)


def cmd_baseline(ctx: Context) -> Outcome:
    """``baseline VERSION``: record files up to VERSION as applied without running them."""
    chosen = migrations.baseline(ctx.conninfo(), ctx.args.version)
    text = "\n".join(f"baselined {m.filename}" for m in chosen)
    return Outcome({"baselined": [_migration_json(m) for m in chosen]}, text)


def cmd_repair(ctx: Context) -> Outcome:
    """``repair VERSION``: clear a failed history row so the file runs again."""
    row = migrations.repair(ctx.conninfo(), ctx.args.version)
    text = f"repaired {row.filename}: it runs again on the next migrate"
    return Outcome({"repaired": _applied_json(row)}, text)


def cmd_check(ctx: Context) -> Outcome:
    """``check``: settings valid, server reachable, schema current; exit 4 with the reason."""
    checks: list[dict[str, Any]] = []

    def step(name: str, run: Callable[[], str]) -> bool:
        try:
            checks.append({"name": name, "ok": True, "detail": run()})
        except ConfigurationAccessError as exc:
            checks.append({"name": name, "ok": False, "detail": str(exc)})
            return False
        return True

    def settings() -> str:
        return parse_dsn(ctx.conninfo()).description

    def server() -> str:
        ctx.dal().open()
        return "reachable"

    def schema() -> str:
        state = ctx.dal().migration_status()
        if state.problems:
            raise MigrationError("; ".join(state.problems))
        if state.pending:
            names = ", ".join(m.filename for m in state.pending)
            raise MigrationError(
                f"{len(state.pending)} pending migration(s) ({names}): run amira-config migrate"
            )
        return f"up to date ({len(state.applied)} migrations applied)"

    # Each step needs the one before it: stop at the first failure, which is the reason.
    if step("settings", settings) and step("server", server):
        step("schema", schema)
    ok = all(check["ok"] for check in checks)
    rows = [
        [ctx.style.green("ok") if c["ok"] else ctx.style.red("FAIL"), c["name"], c["detail"]]
        for c in checks
    ]
    text = "\n".join(
        "  ".join([mark.ljust(4), name.ljust(8), detail]) for mark, name, detail in rows
    )
    failed = next((c for c in checks if not c["ok"]), None)
    error = f"check failed: {failed['name']}: {failed['detail']}" if failed else None
    return Outcome({"ok": ok, "checks": checks}, text, 0 if ok else 4, error)


# -- watch ----------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value, precise=True)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return value


def change_line(change: Any, style: Style) -> str:
    """One change event for people; tolerant of the event's exact fields."""
    when = getattr(change, "changed_at", None) or getattr(change, "at", None)
    operation = getattr(change, "operation", "") or getattr(change, "kind", "")
    key = getattr(change, "key", "?")
    version = getattr(change, "version", None)
    by = getattr(change, "changed_by", None)
    shown = ""
    if hasattr(change, "value") and operation != "delete":  # the event may carry no value
        shown = compact_value(change.value, getattr(change, "data_type", None) or "json")
    parts = [
        style.dim(iso(when) if isinstance(when, datetime) else ""),
        str(operation),
        str(key),
        f"v{version}" if version is not None else "",
        f"by {by}" if by else "",
        shown,
    ]
    return " ".join(part for part in parts if part)


def cmd_watch(ctx: Context) -> Outcome | None:
    """``watch [PREFIX]``: follow changes as they happen (JSON lines with --json)."""
    if not callable(getattr(ConfigDAL, "watch", None)):
        raise UsageError("watch is not available in this version")
    stream = ctx.dal().watch(ctx.args.prefix)  # type: ignore[attr-defined,unused-ignore]
    print(
        f"amira-config: watching {ctx.args.prefix or 'every key'} (Ctrl-C to stop)", file=ctx.stderr
    )
    try:
        for change in stream:
            if ctx.args.json:
                print(json.dumps(_jsonable(change), ensure_ascii=False), flush=True)
            else:
                print(change_line(change, ctx.style), flush=True)
    except KeyboardInterrupt:
        pass  # Ctrl-C is how a watch ends
    finally:
        close = getattr(stream, "close", None)
        if callable(close):
            close()
    return None  # already printed, one document per change


# -- server ---------------------------------------------------------------------------


def cmd_server(ctx: Context) -> Outcome:
    """``server status|start|stop``: the embedded PostgreSQL under the data home."""
    server = EmbeddedServer(data_home())
    action = ctx.args.action
    if action == "start":
        server.ensure_running()
    elif action == "stop":
        was_running = server.stop()
        state = server.state()
        text = f"stopped {server.cluster_dir}" if was_running else "not running"
        return Outcome({**state.as_dict(), "stopped": was_running}, text)
    state = server.state()
    if not state.initialized:
        text = f"not created yet: {server.cluster_dir} (the first command creates it)"
    elif state.running:
        text = f"running on 127.0.0.1:{state.port}, data in {server.cluster_dir}"
    else:
        text = f"stopped, data in {server.cluster_dir}"
    if state.binaries:
        text += f"\nbinaries: {state.binaries}"
    return Outcome(state.as_dict(), text)


COMMANDS: dict[str, Callable[[Context], Outcome | None]] = {
    "get": cmd_get,
    "set": cmd_set,
    "delete": cmd_delete,
    "list": cmd_list,
    "history": cmd_history,
    "rollback": cmd_rollback,
    "diff": cmd_diff,
    "export": cmd_export,
    "import": cmd_import,
    "migrate": cmd_migrate,
    "status": cmd_status,
    "verify": cmd_verify,
    "baseline": cmd_baseline,
    "repair": cmd_repair,
    "check": cmd_check,
    "watch": cmd_watch,
    "server": cmd_server,
}
