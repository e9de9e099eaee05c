"""``history``, ``diff``, ``rollback``: a key's versions, what changed, and going back."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .context import (
    PAGE,
    Context,
    Item,
    Outcome,
    Subcommands,
    actor,
    add_command,
    positive_int,
    writer_options,
)
from .output import (
    ROLLBACK_REASON,
    compact_value,
    entry_document,
    entry_to_json,
    iso,
    render_table,
    revision_to_json,
    rolled_back_to,
    unified_diff,
    visible_value,
)
from .values import NotFoundError, UsageError

if TYPE_CHECKING:
    from datetime import datetime

    from ..dal import ConfigDAL
    from ..entries import ConfigRevision

__all__ = ["add_commands", "find_revision", "revision_at"]


def add_commands(commands: Subcommands) -> None:
    """Register history, rollback and diff."""
    history = add_command(
        commands,
        "history",
        summary="changes of a key, newest first",
        examples=[
            "amira-config history amira.chat.tone",
            "amira-config history amira.chat.tone --limit 5 -o json",
        ],
        run=cmd_history,
        outputs=("table", "json", "yaml", "value"),
        details=(
            "A change made by `amira-config rollback` is marked with the version it restored."
        ),
    )
    history.add_argument("key", metavar="KEY")
    history.add_argument("--limit", type=positive_int, metavar="N", help="at most N changes")

    rollback = add_command(
        commands,
        "rollback",
        summary="restore what an older version held (as a new version)",
        examples=['amira-config rollback amira.chat.tone --to-version 3 --reason "bad deploy"'],
        run=cmd_rollback,
        outputs=("table", "json", "yaml", "value", "env"),
        details=f'The history records the reason as "{ROLLBACK_REASON}N[: your reason]".',
    )
    rollback.add_argument("key", metavar="KEY")
    rollback.add_argument("--to-version", type=positive_int, required=True, metavar="N")
    writer_options(rollback, version_option=False)

    diff = add_command(
        commands,
        "diff",
        summary="unified diff between two versions of a key",
        examples=[
            "amira-config diff amira.chat.tone 2 3",
            "amira-config diff amira.chat.tone 2      # against the current entry",
        ],
        run=cmd_diff,
    )
    diff.add_argument("key", metavar="KEY")
    diff.add_argument("v1", type=positive_int, metavar="V1")
    diff.add_argument(
        "v2", type=positive_int, nargs="?", metavar="V2", help="default: the current entry"
    )


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


def _operation(revision: ConfigRevision) -> str:
    restored = rolled_back_to(revision.change_reason)
    return f"rollback→v{restored}" if restored is not None else revision.operation


def cmd_history(ctx: Context) -> Outcome:
    """``history KEY``: every change, newest first, with its type; rollbacks marked."""
    revisions = _all_revisions(ctx.dal(), ctx.args.key, ctx.args.limit)
    if not revisions:
        raise NotFoundError(f"{ctx.args.key!r} has no history (it never existed)")
    rows = [
        [
            str(r.version),
            _operation(r),
            r.data_type,
            iso(r.changed_at),
            r.changed_by,
            r.change_reason or "",
            compact_value(visible_value(r.key, r.value, r.data_type), r.data_type),
        ]
        for r in revisions
    ]
    headers = ["VERSION", "OPERATION", "TYPE", "CHANGED_AT", "CHANGED_BY", "REASON", "VALUE"]
    items = [Item(r.key, r.value, r.data_type) for r in revisions]
    return Outcome(
        [revision_to_json(r) for r in revisions],
        render_table(headers, rows, ctx.style),
        items=items,
    )


def find_revision(dal: ConfigDAL, key: str, version: int) -> ConfigRevision:
    """The history row of ``key`` at ``version``; NotFoundError if there is none."""
    if version < 1:
        raise UsageError(f"versions start at 1, got {version}")
    page = dal.history(key, limit=1, before_version=version + 1)
    if not page or page[0].version != version:
        raise NotFoundError(f"{key!r} has no version {version}")
    return page[0]


def revision_at(dal: ConfigDAL, key: str, when: datetime) -> ConfigRevision | None:
    """The newest change of ``key`` made at or before ``when`` (a deletion included)."""
    before: int | None = None
    while True:
        page = dal.history(key, limit=100, before_version=before)
        for revision in page:
            if revision.changed_at <= when:
                return revision
        if len(page) < 100:
            return None
        before = page[-1].version


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
    """``rollback KEY --to-version N``: a new version holding what version N held.

    The reason recorded is ``rollback to vN`` (then ``: `` and --reason): the
    library stores a rollback as an ordinary update, and this is how ``history``
    (and anyone reading the history table) tells it apart.
    """
    args, dal = ctx.args, ctx.dal()
    find_revision(dal, args.key, args.to_version)  # "no such version" is exit 1, not 2
    reason = f"{ROLLBACK_REASON}{args.to_version}" + (f": {args.reason}" if args.reason else "")
    entry = dal.rollback(args.key, to_version=args.to_version, updated_by=actor(ctx), reason=reason)
    shown = compact_value(visible_value(entry.key, entry.value, entry.data_type), entry.data_type)
    text = (
        f"rolled back {entry.key} to version {args.to_version}: now version {entry.version} = "
        f"{shown}"
    )
    return Outcome(
        entry_to_json(entry),
        ctx.style.green(text),
        items=[Item(entry.key, entry.value, entry.data_type)],
        confirmation=True,
    )
