"""``get``, ``set``, ``delete``, ``list``: one key at a time, or every key under a prefix."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ..codec import DATA_TYPES
from ..dal import ConfigDAL
from ..entries import ConfigEntry
from ..errors import UnreadableValueError
from .context import EXIT_DATABASE, PAGE, Context, Outcome, Subcommands, writer_options
from .output import compact_value, entry_to_json, iso, render_entry, render_table
from .values import NotFoundError, UsageError, parse_value, strip_final_newline

__all__ = ["CONFIRM_ABOVE", "add_commands", "all_entries", "reporting_unreadable"]

CONFIRM_ABOVE = 100  # delete --prefix asks for --yes above this many keys


def add_commands(commands: Subcommands) -> None:
    """Register get, set, delete and list."""
    get = commands.add_parser("get", help="show one entry")
    get.add_argument("key", metavar="KEY")
    get.set_defaults(run=cmd_get)

    set_ = commands.add_parser("set", help="create or replace a key")
    set_.add_argument("key", metavar="KEY")
    set_.add_argument(
        "value", nargs="?", metavar="VALUE", help="JSON for json/int/float/bool, text for str"
    )
    set_.add_argument("--value-file", metavar="PATH", help="read VALUE from a file ('-': stdin)")
    set_.add_argument(
        "--type", choices=DATA_TYPES, help="data type (default: the stored one; needed if new)"
    )
    set_.add_argument("--description", help="what the key is for (kept when omitted)")
    writer_options(set_)
    set_.set_defaults(run=cmd_set)

    delete = commands.add_parser(
        "delete", help="delete a key, or every key under a prefix (their history stays)"
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
    delete.set_defaults(run=cmd_delete)

    list_ = commands.add_parser("list", help="entries by key prefix, in key order")
    list_.add_argument("prefix", nargs="?", default="", metavar="PREFIX")
    list_.set_defaults(run=cmd_list)


def cmd_get(ctx: Context) -> Outcome:
    """``get KEY``: the whole entry."""
    entry = ctx.dal().get_entry(ctx.args.key)
    if entry is None:
        raise NotFoundError(f"{ctx.args.key!r} not found")
    return Outcome(entry_to_json(entry), render_entry(entry, ctx.style))


def all_entries(
    dal: ConfigDAL, prefix: str, unreadable: list[str] | None = None
) -> Iterator[ConfigEntry]:
    """Every entry under ``prefix``, in key order, a page at a time; given ``unreadable``,
    the keys whose stored value cannot be decoded go there and the rest goes on."""
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
    return reporting_unreadable(Outcome([entry_to_json(e) for e in entries], text), unreadable)


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
        args.key, deleted_by=args.by, reason=args.reason, expected_version=args.expect_version
    )
    if not deleted:
        raise NotFoundError(f"{args.key!r} not found")
    return Outcome({"key": args.key, "deleted": True}, f"deleted {args.key}")


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
        prefix, deleted_by=args.by, reason=args.reason, expected_count=len(keys)
    )
    text = "\n".join(f"deleted {key}" for key in deleted)
    return Outcome({"prefix": prefix, "deleted": deleted, "count": len(deleted)}, text)
