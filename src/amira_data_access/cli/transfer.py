"""``export``, ``import``: entries to a file and back, in one transaction and one revision."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ..codec import prepare_value
from ..dal import ConfigDAL
from ..entries import ConfigEntry, ConfigRevision
from ..errors import ConfigurationAccessError, UnreadableValueError
from .context import Context, Outcome, Subcommands, writer_options
from .keys import all_entries, reporting_unreadable
from .output import entry_document, unified_diff
from .values import (
    FileFormat,
    ImportEntry,
    UsageError,
    dump_document,
    parse_document,
    parse_instant,
)

__all__ = ["add_commands", "export_document"]


def add_commands(commands: Subcommands) -> None:
    """Register export and import."""
    export = commands.add_parser("export", help="entries as an import file")
    export.add_argument("prefix", nargs="?", default="", metavar="PREFIX")
    export.add_argument("--format", choices=["json", "yaml"], default="json")
    export.add_argument(
        "--at", metavar="TIMESTAMP", help="as it was then (ISO 8601; UTC if no offset)"
    )
    export.set_defaults(run=cmd_export)

    import_ = commands.add_parser("import", help="write an export file in one transaction")
    import_.add_argument("file", metavar="FILE", help="the file ('-': stdin)")
    import_.add_argument("--format", choices=["json", "yaml"], help="default: by extension")
    import_.add_argument("--dry-run", action="store_true", help="show the diff, write nothing")
    writer_options(import_, version_option=False)
    import_.set_defaults(run=cmd_import)


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


def export_document(
    dal: ConfigDAL, prefix: str, when: datetime | None, unreadable: list[str] | None = None
) -> dict[str, Any]:
    """``{key: {value, data_type, description}}`` now, or as it was at ``when``; given
    ``unreadable``, keys whose value cannot be decoded are left out and listed there."""
    if when is None:
        return {
            e.key: entry_document(e.value, e.data_type, e.description)
            for e in all_entries(dal, prefix, unreadable)
        }
    document: dict[str, Any] = {}
    try:
        snapshot = dal.snapshot_at(when, prefix)
    except UnreadableValueError as exc:
        if unreadable is None:
            raise
        unreadable.extend(exc.keys)
        snapshot = exc.readable
    for key in snapshot:
        revision = _entry_at(dal, key, when)
        if revision is not None and revision.operation != "delete":
            document[key] = entry_document(revision.value, revision.data_type, revision.description)
    return document


def cmd_export(ctx: Context) -> Outcome:
    """``export [PREFIX]``: the entries as an import file."""
    when = parse_instant(ctx.args.at) if ctx.args.at else None
    unreadable: list[str] = []
    document = export_document(ctx.dal(), ctx.args.prefix, when, unreadable)
    file_format: FileFormat = ctx.args.format
    text = dump_document(document, file_format).rstrip("\n")
    return reporting_unreadable(Outcome(document, text), unreadable)


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
