"""``get``, ``set``, ``delete``, ``list``: keys one at a time, several, or under a prefix."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Final

from .arguments import DASH_VALUE_SLOT
from .context import (
    ALL_OUTPUTS,
    EXIT_DATABASE,
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
    compact_value,
    entry_to_json,
    iso,
    render_entry,
    render_revision,
    render_table,
    revision_to_json,
    visible_value,
)
from .values import NotFoundError, UsageError, parse_instant, parse_value, strip_final_newline

if TYPE_CHECKING:
    from datetime import datetime

    from ..dal import ConfigDAL
    from ..entries import ConfigEntry, ConfigRevision

__all__ = [
    "CONFIRM_ABOVE",
    "DATA_TYPES",
    "add_commands",
    "all_entries",
    "entry_rows",
    "reporting_unreadable",
]

CONFIRM_ABOVE = 100  # delete --prefix (and import --prune) ask for --yes above this many keys
# codec.DATA_TYPES, spelled out so that building the parser imports none of the library
# (tests/unit/test_cli_main.py checks that the two agree).
DATA_TYPES: Final = ("str", "int", "float", "bool", "json", "secret", "flag")
ENTRY_HEADERS: Final = ["KEY", "TYPE", "VERSION", "UPDATED_AT", "UPDATED_BY", "VALUE"]


def add_commands(commands: Subcommands) -> None:
    """Register get, set, delete and list."""
    get = add_command(
        commands,
        "get",
        summary="show entries: now, at a version, or as they were at a time",
        examples=[
            "amira-config get amira.chat.tone",
            "amira-config get amira.chat.tone -o value",
            "amira-config get amira.chat.tone amira.chat.max_turns -o json",
            "amira-config get amira.chat.tone --version 3",
            "amira-config get amira.chat.tone --at 2025-01-31T12:00:00Z",
        ],
        run=cmd_get,
        outputs=ALL_OUTPUTS,
        details="Several keys: those found are shown, and the missing ones named (exit 1).",
    )
    get.add_argument("keys", nargs="+", metavar="KEY")
    when = get.add_mutually_exclusive_group()
    when.add_argument(
        "--version",
        type=positive_int,
        metavar="N",
        help="the key as version N stored it (one KEY)",
    )
    when.add_argument(
        "--at", metavar="TIMESTAMP", help="as the keys were then (ISO 8601; UTC if no offset)"
    )

    set_ = add_command(
        commands,
        "set",
        summary="create or replace a key",
        examples=[
            'amira-config set amira.nlu.detection_threshold 0.82 --type float --reason "ticket 42"',
            "amira-config set svc.offset -1e3 --type float",
            "amira-config set amira.chat.tone --value-file tone.json --type json",
            "amira-config set amira.limits.max_turns 40 --expect-version 3",
            "amira-config set svc.offset 5 --type int --change-type",
        ],
        run=cmd_set,
        outputs=ALL_OUTPUTS,
        details=(
            "VALUE is JSON for --type int|float|bool|json and text for str. The word right "
            "after KEY is the VALUE even when it starts with '-' (-1e3, -v); a value that "
            "looks like an option elsewhere goes after '--' or as --value=-x."
        ),
    )
    set_.add_argument("key", metavar="KEY")
    set_.add_argument(
        "value", nargs="?", metavar="VALUE", help="JSON for json/int/float/bool, text for str"
    )
    set_.add_argument(
        "--value", dest="value_option", metavar="VALUE", help="the value, as an option"
    )
    set_.add_argument("--value-file", metavar="PATH", help="read VALUE from a file ('-': stdin)")
    set_.add_argument(
        "--type", choices=DATA_TYPES, help="data type (default: the stored one; needed if new)"
    )
    set_.add_argument(
        "--change-type",
        action="store_true",
        help="allow --type to differ from the stored type (int to float...)",
    )
    set_.add_argument("--description", help="what the key is for (kept when omitted)")
    writer_options(set_)
    set_.set_defaults(**{DASH_VALUE_SLOT: 1})

    delete = add_command(
        commands,
        "delete",
        summary="delete a key, or every key under a prefix (their history stays)",
        examples=[
            'amira-config delete amira.chat.obsolete --reason "retired"',
            "amira-config delete --prefix amira.legacy. --dry-run",
            "amira-config delete --prefix amira.legacy. --yes",
        ],
        run=cmd_delete,
    )
    delete.add_argument("key", nargs="?", metavar="KEY")
    delete.add_argument(
        "--prefix", metavar="P", help="delete every key starting with P (all or nothing)"
    )
    delete.add_argument(
        "--yes",
        action="store_true",
        help=f"confirm deleting more than {CONFIRM_ABOVE} keys with --prefix",
    )
    delete.add_argument(
        "--dry-run", action="store_true", help="print what would be deleted, delete nothing"
    )
    writer_options(delete)

    list_ = add_command(
        commands,
        "list",
        summary="entries by key prefix, in key order",
        examples=[
            "amira-config list amira.chat.",
            "amira-config list --keys-only",
            "amira-config list amira.chat. -o env",
        ],
        run=cmd_list,
        outputs=ALL_OUTPUTS,
    )
    list_.add_argument("prefix", nargs="?", default="", metavar="PREFIX")
    list_.add_argument("--keys-only", action="store_true", help="only the keys, one per line")


# -- get ------------------------------------------------------------------------------


def entry_rows(entries: list[ConfigEntry]) -> list[list[str]]:
    """Table rows for entries (``list``, ``get`` of several keys)."""
    return [
        [
            e.key,
            e.data_type,
            str(e.version),
            iso(e.updated_at),
            e.updated_by,
            compact_value(visible_value(e.key, e.value, e.data_type), e.data_type),
        ]
        for e in entries
    ]


def cmd_get(ctx: Context) -> Outcome:
    """``get KEY...``: the entries now, at ``--version N`` or ``--at TIME``."""
    args = ctx.args
    keys: list[str] = args.keys
    if args.version is not None:
        if len(keys) != 1:
            raise UsageError("--version applies to one KEY")
        return _get_revision(ctx, keys[0], args.version)
    if args.at is not None:
        return _get_at(ctx, keys, parse_instant(args.at))
    dal = ctx.dal()
    found = {key: dal.get_entry(key) for key in dict.fromkeys(keys)}
    entries = [entry for entry in found.values() if entry is not None]
    missing = [key for key, entry in found.items() if entry is None]
    items = [Item(e.key, e.value, e.data_type) for e in entries]
    if len(keys) == 1:
        if not entries:
            raise NotFoundError(f"{keys[0]!r} not found")
        entry = entries[0]
        return Outcome(entry_to_json(entry), render_entry(entry, ctx.style), items=items)
    text = render_table(ENTRY_HEADERS, entry_rows(entries), ctx.style) if entries else ""
    return _some_missing(
        Outcome([entry_to_json(e) for e in entries], text, items=items), missing, "not found"
    )


def _some_missing(outcome: Outcome, missing: list[str], why: str) -> Outcome:
    if missing:
        outcome.exit_code = 1
        names = ", ".join(repr(key) for key in missing)
        outcome.error = f"{names} {why}" if len(missing) == 1 else f"{names}: {why}"
    return outcome


def _get_revision(ctx: Context, key: str, version: int) -> Outcome:
    from .history import find_revision

    revision = find_revision(ctx.dal(), key, version)
    if revision.operation == "delete":
        raise NotFoundError(
            f"{key!r} version {version} is its deletion ({iso(revision.changed_at)} by "
            f"{revision.changed_by}): get --version {version - 1} for what it held"
        )
    return _revision_outcome(ctx, [revision])


def _get_at(ctx: Context, keys: list[str], when: datetime) -> Outcome:
    from .history import revision_at

    dal = ctx.dal()
    found = {key: revision_at(dal, key, when) for key in dict.fromkeys(keys)}
    revisions = [r for r in found.values() if r is not None and r.operation != "delete"]
    missing = [key for key, r in found.items() if r is None or r.operation == "delete"]
    if len(keys) == 1 and missing:
        raise NotFoundError(f"{keys[0]!r} did not exist at {iso(when)}")
    return _some_missing(
        _revision_outcome(ctx, revisions), missing, f"did not exist at {iso(when)}"
    )


def _revision_outcome(ctx: Context, revisions: list[ConfigRevision]) -> Outcome:
    items = [Item(r.key, r.value, r.data_type) for r in revisions]
    if len(revisions) == 1 and len(ctx.args.keys) == 1:
        (revision,) = revisions
        return Outcome(
            revision_to_json(revision), render_revision(revision, ctx.style), items=items
        )
    rows = [
        [
            r.key,
            r.data_type,
            str(r.version),
            iso(r.changed_at),
            r.changed_by,
            compact_value(visible_value(r.key, r.value, r.data_type), r.data_type),
        ]
        for r in revisions
    ]
    headers = ["KEY", "TYPE", "VERSION", "CHANGED_AT", "CHANGED_BY", "VALUE"]
    text = render_table(headers, rows, ctx.style) if rows else ""
    return Outcome([revision_to_json(r) for r in revisions], text, items=items)


# -- list -----------------------------------------------------------------------------


def all_entries(
    dal: ConfigDAL, prefix: str, unreadable: list[str] | None = None
) -> Iterator[ConfigEntry]:
    """Every entry under ``prefix``, in key order, a page at a time; given ``unreadable``,
    the keys whose stored value cannot be decoded go there and the rest goes on."""
    from ..errors import UnreadableValueError

    after: str | None = None
    while True:
        try:
            page = dal.list(prefix, after=after, limit=PAGE)
            keys = [entry.key for entry in page]
        except UnreadableValueError as exc:
            if unreadable is None:
                raise
            unreadable.extend(exc.keys)
            page = exc.readable
            keys = sorted([*(entry.key for entry in page), *exc.keys])  # code point order
        yield from page
        if len(keys) < PAGE:
            return
        after = keys[-1]


def reporting_unreadable(outcome: Outcome, unreadable: list[str]) -> Outcome:
    """The outcome of a listing that left out keys it could not read: exit 4, naming them."""
    if unreadable:
        outcome.exit_code = EXIT_DATABASE
        outcome.error = (
            f"left out {len(unreadable)} key(s) whose stored value cannot be read "
            f"(see UnreadableValueError): {', '.join(map(repr, unreadable))}"
        )
    return outcome


def cmd_list(ctx: Context) -> Outcome:
    """``list [PREFIX]``: every entry (all pages), in key order."""
    unreadable: list[str] = []
    entries = list(all_entries(ctx.dal(), ctx.args.prefix, unreadable))
    items = [Item(e.key, e.value, e.data_type) for e in entries]
    if ctx.args.keys_only:
        keys = [e.key for e in entries]
        key_items = [Item(key, key, "str") for key in keys]
        if ctx.output == "env":
            raise UsageError("-o env needs the values: leave out --keys-only")
        return reporting_unreadable(Outcome(keys, "\n".join(keys), items=key_items), unreadable)
    text = render_table(ENTRY_HEADERS, entry_rows(entries), ctx.style) if entries else "(no keys)"
    outcome = Outcome([entry_to_json(e) for e in entries], text, items=items)
    return reporting_unreadable(outcome, unreadable)


# -- set ------------------------------------------------------------------------------


def _value_text(ctx: Context) -> str:
    args = ctx.args
    sources = {
        "VALUE": args.value,
        "--value": args.value_option,
        "--value-file": args.value_file,
    }
    given = [name for name, text in sources.items() if text is not None]
    if not given:
        key: str = args.key
        if "=" in key:
            import shlex

            name, _, value = key.partition("=")
            raise UsageError(
                f"no VALUE given for {key!r}: KEY and VALUE are two words, "
                f"e.g. amira-config set {shlex.quote(name)} {shlex.quote(value)}"
            )
        raise UsageError(
            "no VALUE given: write it after KEY, or use --value or --value-file "
            "(one starting with '-' goes right after KEY, after '--', or as --value=-x)"
        )
    if len(given) > 1:
        raise UsageError(f"give the value once, not both {' and '.join(given)}")
    if args.value_file is None:
        return str(args.value if args.value is not None else args.value_option)
    if args.value_file == "-":
        return strip_final_newline(ctx.stdin.read())
    from pathlib import Path

    try:
        return strip_final_newline(Path(args.value_file).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read --value-file {args.value_file}: {exc}") from None


def cmd_set(ctx: Context) -> Outcome:
    """``set KEY VALUE``: create or replace a key (the type is kept when --type is omitted)."""
    args = ctx.args
    text = _value_text(ctx)
    if args.change_type and args.type is None:
        raise UsageError("--change-type goes with the new --type")
    data_type: str | None = args.type
    value = parse_value(text, data_type) if data_type is not None else None  # syntax first
    dal = ctx.dal()
    current = dal.get_entry(args.key)
    if data_type is None:
        if current is None:
            raise UsageError(f"{args.key!r} does not exist yet: give its --type")
        data_type = current.data_type
        value = parse_value(text, data_type)
    elif current is not None and current.data_type != data_type and not args.change_type:
        raise UsageError(
            f"{args.key!r} is stored as {current.data_type} (version {current.version}): "
            f"add --change-type to store it as {data_type}"
        )
    entry = dal.set(
        args.key,
        value,
        data_type=data_type,
        description=args.description,
        updated_by=actor(ctx),
        reason=args.reason,
        expected_version=args.expect_version,
    )
    was = ""
    if current is not None and current.data_type != entry.data_type:
        was = f", was {current.data_type}"
    shown = compact_value(visible_value(entry.key, entry.value, entry.data_type), entry.data_type)
    message = f"set {entry.key} = {shown} ({entry.data_type}{was}, version {entry.version})"
    return Outcome(
        entry_to_json(entry),
        ctx.style.green(message),
        items=[Item(entry.key, entry.value, entry.data_type)],
        confirmation=True,
    )


# -- delete ---------------------------------------------------------------------------


def cmd_delete(ctx: Context) -> Outcome:
    """``delete KEY`` or ``delete --prefix P``: remove keys (their history stays)."""
    args = ctx.args
    if args.prefix is not None:
        return _delete_prefix(ctx)
    if args.key is None:
        raise UsageError("give the KEY to delete, or --prefix P")
    if args.yes:
        raise UsageError("--yes confirms a --prefix delete; one KEY needs no confirmation")
    if args.dry_run:
        entry = ctx.dal().get_entry(args.key)
        if entry is None:
            raise NotFoundError(f"{args.key!r} not found")
        return Outcome({"key": args.key, "would_delete": [args.key]}, f"would delete {args.key}")
    deleted = ctx.dal().delete(
        args.key, deleted_by=actor(ctx), reason=args.reason, expected_version=args.expect_version
    )
    if not deleted:
        raise NotFoundError(f"{args.key!r} not found")
    return Outcome({"key": args.key, "deleted": True}, f"deleted {args.key}", confirmation=True)


def _delete_prefix(ctx: Context) -> Outcome:
    """Every key under the prefix, in one statement, exactly as many as were listed."""
    args = ctx.args
    prefix: str = args.prefix
    if args.key is not None:
        raise UsageError("give either KEY or --prefix, not both")
    if not prefix:
        raise UsageError("--prefix must not be empty (that would delete every key)")
    if args.expect_version is not None:
        raise UsageError("--expect-version applies to one KEY, not to --prefix")
    dal = ctx.dal()
    keys = [entry.key for entry in all_entries(dal, prefix)]
    if args.dry_run:
        text = "\n".join(f"would delete {key}" for key in keys) or f"no key starts with {prefix!r}"
        return Outcome({"prefix": prefix, "would_delete": keys, "count": len(keys)}, text)
    if not keys:
        raise NotFoundError(f"no key starts with {prefix!r}")
    if len(keys) > CONFIRM_ABOVE and not args.yes:
        raise UsageError(
            f"{len(keys)} keys start with {prefix!r}: add --yes to delete more than "
            f"{CONFIRM_ABOVE} at once (--dry-run lists them)"
        )
    # The count seen is the guard: if keys came or went since they were listed,
    # nothing is deleted (exit 3) rather than something other than what was shown.
    deleted = dal.delete_prefix(
        prefix, deleted_by=actor(ctx), reason=args.reason, expected_count=len(keys)
    )
    text = "\n".join(f"deleted {key}" for key in deleted)
    return Outcome(
        {"prefix": prefix, "deleted": deleted, "count": len(deleted)}, text, confirmation=True
    )
