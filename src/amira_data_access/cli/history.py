"""``history``, ``diff``, ``rollback``: a key's versions, what changed, and going back."""

from __future__ import annotations

from typing import Any

from ..dal import ConfigDAL
from ..entries import ConfigRevision
from .context import PAGE, Context, Outcome, Subcommands, writer_options
from .output import (
    compact_value,
    entry_document,
    entry_to_json,
    iso,
    render_table,
    revision_to_json,
    unified_diff,
)
from .values import NotFoundError, UsageError

__all__ = ["add_commands", "find_revision"]


def add_commands(commands: Subcommands) -> None:
    """Register history, rollback and diff."""
    history = commands.add_parser("history", help="changes of a key, newest first")
    history.add_argument("key", metavar="KEY")
    history.add_argument("--limit", type=int, metavar="N", help="at most N changes")
    history.set_defaults(run=cmd_history)

    rollback = commands.add_parser("rollback", help="restore what an older version held")
    rollback.add_argument("key", metavar="KEY")
    rollback.add_argument("--to-version", type=int, required=True, metavar="N")
    writer_options(rollback, version_option=False)
    rollback.set_defaults(run=cmd_rollback)

    diff = commands.add_parser("diff", help="unified diff between two versions of a key")
    diff.add_argument("key", metavar="KEY")
    diff.add_argument("v1", type=int, metavar="V1")
    diff.add_argument("v2", type=int, nargs="?", metavar="V2", help="default: the current entry")
    diff.set_defaults(run=cmd_diff)


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
