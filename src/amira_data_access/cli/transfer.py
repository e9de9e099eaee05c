"""``export``, ``import``: entries to a file and back, in one transaction and one revision.

``import --prune`` makes the database match the file (a declarative sync, like
``kubectl apply --prune``): the keys under ``--prefix`` that the file does not
have are deleted in the same transaction as the writes, so a failure leaves
everything as it was. People get a summary and a line per changed key (the
first few); ``--diff`` shows every change as a unified diff.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from .context import (
    Context,
    Item,
    Outcome,
    Subcommands,
    actor,
    add_command,
    writer_options,
)
from .keys import CONFIRM_ABOVE, reporting_unreadable
from .output import compact_value, entry_document, unified_diff
from .values import (
    FileFormat,
    ImportEntry,
    UsageError,
    dump_document,
    parse_document,
    parse_instant,
)

if TYPE_CHECKING:
    from datetime import datetime

    from ..dal import ConfigDAL, ConfigTransaction
    from ..entries import ConfigEntry

__all__ = ["SHOWN_CHANGES", "add_commands", "export_document"]

SHOWN_CHANGES: Final = 20  # import lists this many changed keys; --diff shows them all
_BATCH: Final = 1000  # the most keys delete_many takes at once
_PAGE: Final = 1000


def add_commands(commands: Subcommands) -> None:
    """Register export and import."""
    export = add_command(
        commands,
        "export",
        summary="entries as an import file (or as shell variables with -o env)",
        examples=[
            "amira-config export amira.chat. > chat.json",
            "amira-config export --format yaml --at 2025-01-31T12:00:00Z > then.yaml",
            'eval "$(amira-config export amira.chat. -o env)"',
        ],
        run=cmd_export,
        outputs=("table", "json", "yaml", "env"),
    )
    export.add_argument("prefix", nargs="?", default="", metavar="PREFIX")
    export.add_argument(
        "--format", choices=["json", "yaml"], default=None, help="the file's format (default json)"
    )
    export.add_argument(
        "--at", metavar="TIMESTAMP", help="as it was then (ISO 8601; UTC if no offset)"
    )

    import_ = add_command(
        commands,
        "import",
        summary="write an export file in one transaction (--prune: and delete what it lacks)",
        examples=[
            "amira-config import chat.json --dry-run",
            'amira-config import chat.json --reason "release 42"',
            "amira-config import chat.json --prune --prefix amira.chat. --dry-run",
            "amira-config import chat.json --diff",
        ],
        run=cmd_import,
        details=(
            "Only the entries that differ are written. --prune deletes the keys under "
            f"--prefix (default: every key) that the file lacks; above {CONFIRM_ABOVE} "
            "deletions it needs --yes. A changed data_type needs --change-type."
        ),
    )
    import_.add_argument("file", metavar="FILE", help="the file ('-': stdin)")
    import_.add_argument("--format", choices=["json", "yaml"], help="default: by extension")
    import_.add_argument("--dry-run", action="store_true", help="show the changes, write nothing")
    import_.add_argument("--diff", action="store_true", help="show every change as a unified diff")
    import_.add_argument(
        "--prune",
        action="store_true",
        help="also delete the keys under --prefix that the file does not have",
    )
    import_.add_argument(
        "--prefix",
        metavar="P",
        default="",
        help="the keys this file is for: its entries must start with P, --prune stays under P",
    )
    import_.add_argument(
        "--yes", action="store_true", help=f"confirm --prune deleting more than {CONFIRM_ABOVE}"
    )
    import_.add_argument(
        "--change-type", action="store_true", help="allow entries to change a key's data_type"
    )
    writer_options(import_, version_option=False)


# -- export ---------------------------------------------------------------------------


def export_document(
    dal: ConfigDAL, prefix: str, when: datetime | None, unreadable: list[str] | None = None
) -> dict[str, Any]:
    """``{key: {value, data_type, description}}`` now, or as it was at ``when``; given
    ``unreadable``, keys whose value cannot be decoded are left out and listed there."""
    from ..errors import UnreadableValueError
    from .history import revision_at
    from .keys import all_entries

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
        revision = revision_at(dal, key, when)
        if revision is not None and revision.operation != "delete":
            document[key] = entry_document(revision.value, revision.data_type, revision.description)
    return document


def cmd_export(ctx: Context) -> Outcome:
    """``export [PREFIX]``: the entries as an import file."""
    when = parse_instant(ctx.args.at) if ctx.args.at else None
    unreadable: list[str] = []
    document = export_document(ctx.dal(), ctx.args.prefix, when, unreadable)
    if when is None:
        # Key schemas travel with their keys (import attaches them again); prefix schemas
        # have no entry of their own here: `schema get`/`schema set` move those.
        for schema in ctx.dal().list_schemas():
            if schema.kind == "key" and schema.target in document:
                document[schema.target] = {**document[schema.target], "schema": schema.schema}
    file_format: FileFormat = ctx.args.format or "json"
    items = [Item(key, e["value"], e["data_type"]) for key, e in document.items()]
    outcome = Outcome(document, dump_document(document, file_format).rstrip("\n"), items=items)
    return reporting_unreadable(outcome, unreadable)


# -- import ---------------------------------------------------------------------------


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

    @property
    def type_changed(self) -> bool:
        return self.before is not None and self.before["data_type"] != self.data_type

    def label(self) -> str:
        if self.before is None:
            return f"{self.item.key} (absent)"
        return f"{self.item.key}@v{self.current_version} (current)"


def _canonical(document: dict[str, Any] | None) -> str:
    return json.dumps(document, sort_keys=True, ensure_ascii=False)


def _plan(item: ImportEntry, current: ConfigEntry | None, source: str) -> _Change:
    """What importing ``item`` would store, against the current entry (type and text kept)."""
    from ..codec import prepare_value
    from ..errors import ConfigurationAccessError

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


def _current_entries(
    tx: ConfigTransaction, items: list[ImportEntry], prefix: str
) -> dict[str, ConfigEntry]:
    """The stored entries the import compares with: a page at a time under the keys'
    common prefix when there are many, else one by one."""
    if len(items) <= 20:
        found = {item.key: tx.get_entry(item.key) for item in items}
        return {key: entry for key, entry in found.items() if entry is not None}
    # Every key is under prefix (checked), so their common prefix is at least as narrow.
    # Character by character is what a key prefix is.
    scope = os.path.commonprefix([item.key for item in items])  # noqa: RUF071
    entries: dict[str, ConfigEntry] = {}
    after: str | None = None
    while True:
        page = tx.list(scope, after=after, limit=_PAGE)
        entries.update((entry.key, entry) for entry in page)
        if len(page) < _PAGE:
            return entries
        after = page[-1].key


def _all_keys(tx: ConfigTransaction, prefix: str) -> list[str]:
    keys: list[str] = []
    after: str | None = None
    while True:
        page = tx.list(prefix, after=after, limit=_PAGE)
        keys.extend(entry.key for entry in page)
        if len(page) < _PAGE:
            return keys
        after = page[-1].key


def cmd_import(ctx: Context) -> Outcome:
    """``import FILE``: write every changed entry in one transaction (or only show them)."""
    args = ctx.args
    source = "stdin" if args.file == "-" else args.file
    items = parse_document(_read_import_file(ctx), _import_format(args.file, args.format), source)
    prefix: str = args.prefix
    outside = [item.key for item in items if not item.key.startswith(prefix)]
    if outside:
        raise UsageError(
            f"{source}: {len(outside)} entries are not under --prefix {prefix!r} "
            f"(first: {outside[0]!r})"
        )
    if args.yes and not args.prune:
        raise UsageError("--yes confirms the deletions of --prune")
    dal = ctx.dal()
    # Reads and writes in one transaction: all or nothing, one history revision.
    with dal.transaction() as tx:
        current = _current_entries(tx, items, prefix)
        plans = [_plan(item, current.get(item.key), source) for item in items]
        changes = [p for p in plans if _canonical(p.before) != _canonical(p.after)]
        unchanged = [p.item.key for p in plans if _canonical(p.before) == _canonical(p.after)]
        retyped = [p for p in changes if p.type_changed]
        if retyped and not args.change_type:
            first = retyped[0]
            assert first.before is not None
            raise UsageError(
                f"{source}: {len(retyped)} entries change a key's data_type (first: "
                f"{first.item.key!r}, {first.before['data_type']} → {first.data_type}): "
                "add --change-type to allow it; nothing was written"
            )
        in_file = {item.key for item in items}
        pruned = [key for key in _all_keys(tx, prefix) if key not in in_file] if args.prune else []
        if len(pruned) > CONFIRM_ABOVE and not args.yes and not args.dry_run:
            raise UsageError(
                f"--prune would delete {len(pruned)} keys under {prefix!r}: add --yes to delete "
                f"more than {CONFIRM_ABOVE} at once (--dry-run lists them); nothing was written"
            )
        if not args.dry_run:
            who, reason = actor(ctx), args.reason
            # The file's schemas first, in the same transaction, so that its values are
            # checked against them; forced, then checked below once the values are in
            # (a stored value the file replaces may violate the new schema).
            schematic = [item for item in items if item.schema is not None]
            for item in schematic:
                attached = tx.get_schema(item.key, prefix=False)
                if attached is None or attached.schema != item.schema:  # else: unchanged
                    tx.set_schema(item.key, item.schema, prefix=False, updated_by=who, force=True)
            # One statement per key (not set_many): a refusal by the database then
            # names the entry it refused; all of them are still one transaction.
            for plan in changes:
                tx.set(
                    plan.item.key,
                    # The item's own value: for a secret its SealedSecret (after holds the
                    # envelope's document, for the diff).
                    plan.item.value if plan.data_type == "secret" else plan.after["value"],
                    data_type=plan.data_type,
                    description=plan.item.description,
                    updated_by=who,
                    reason=reason,
                )
            for start in range(0, len(pruned), _BATCH):
                tx.delete_many(
                    pruned[start : start + _BATCH],
                    deleted_by=who,
                    reason=reason,
                    expected_count=len(pruned[start : start + _BATCH]),
                )
            _refuse_violations(tx, [item.key for item in schematic])
    return _import_outcome(ctx, changes, unchanged, pruned, current, source)


def _refuse_violations(tx: Any, keys: list[str]) -> None:
    """Roll the import back if a key given a schema holds a value that violates it."""
    from ..schemas import SchemaViolationError, describe

    found = [
        violation for key in keys for violation in tx.check_schemas(key) if violation.key == key
    ]
    if found:
        raise SchemaViolationError(f"import: {describe(found)}; nothing was written", found)


def _import_outcome(
    ctx: Context,
    changes: list[_Change],
    unchanged: list[str],
    pruned: list[str],
    current: dict[str, ConfigEntry],
    source: str,
) -> Outcome:
    args = ctx.args
    dry = bool(args.dry_run)
    created = [p.item.key for p in changes if p.before is None]
    updated = [p.item.key for p in changes if p.before is not None]

    def diff(plan: _Change, style: Any = None) -> str:
        return unified_diff(
            plan.before, plan.after, before_label=plan.label(), after_label=source, style=style
        )

    def deletion(key: str, style: Any = None) -> str:
        entry = current.get(key)
        before = entry_document(entry.value, entry.data_type, entry.description) if entry else None
        return unified_diff(
            before or {"key": key}, None, before_label=f"{key} (current)", after_label=source,
            style=style,
        )  # fmt: skip

    plain = "\n".join([*(diff(p) for p in changes), *(deletion(k) for k in pruned)])
    lines: list[str] = []
    if args.diff:
        lines += [diff(p, ctx.style) for p in changes]
        lines += [deletion(k, ctx.style) for k in pruned]
    else:
        listed: list[str] = []
        for plan in changes:
            if plan.before is None:
                listed.append(ctx.style.green(f"+ {plan.item.key}"))
            else:
                what = "value" if plan.before["value"] != plan.after["value"] else "description"
                if plan.type_changed:
                    what = f"type {plan.before['data_type']} → {plan.data_type}"
                shown = compact_value(plan.after["value"], plan.data_type, width=40)
                listed.append(f"~ {plan.item.key} ({what}) = {shown}")
        listed += [ctx.style.red(f"- {key}") for key in pruned]
        lines += listed[:SHOWN_CHANGES]
        if len(listed) > SHOWN_CHANGES:
            lines.append(f"… and {len(listed) - SHOWN_CHANGES} more (--diff shows every change)")
    verbs = (
        ("would create", "would update", "would delete")
        if dry
        else ("created", "updated", "deleted")
    )
    summary = f"{verbs[0]} {len(created)}, {verbs[1]} {len(updated)}"
    if args.prune:
        summary += f", {verbs[2]} {len(pruned)}"
    summary += f", unchanged {len(unchanged)}"
    if dry:
        summary += " (dry run: nothing written)"
    document = {
        "dry_run": dry,
        "created": created,
        "updated": updated,
        "deleted": pruned,
        "unchanged": unchanged,
        "diff": plain,
    }
    return Outcome(document, "\n".join([*lines, summary]), confirmation=not dry)
