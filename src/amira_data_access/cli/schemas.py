"""``schema set|get|list|delete|check``: the JSON Schemas values must satisfy.

Not the *migration* commands (:mod:`.schema`: migrate, status, verify, check):
these manage the JSON Schemas of ``amira_config.schemas`` (migrations/0010). A
target ending in '.' is a prefix (every key under it), anything else a key;
``--prefix``/``--key`` say it explicitly. ``schema check`` lists every stored
value a schema refuses (raw SQL's writes included) and exits 3 if there is one.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .context import (
    EXIT_CONFLICT,
    Context,
    Outcome,
    Subcommands,
    actor,
    add_command,
)
from .output import iso, render_table
from .values import NotFoundError, UsageError

if TYPE_CHECKING:
    from ..schemas import SchemaEntry, SchemaViolation

__all__ = ["add_commands", "schema_to_json", "violation_to_json"]


def add_commands(commands: Subcommands) -> None:
    """Register ``schema`` and its subcommands."""
    schema = add_command(
        commands,
        "schema",
        summary="JSON Schemas of keys and prefixes: set, get, list, delete, check",
        examples=[
            "amira-config schema set amira.chat. chat.schema.json",
            "amira-config schema set amira.chat.max_turns turns.json --force",
            "amira-config schema get amira.chat.",
            "amira-config schema check",
        ],
        run=_needs_subcommand,
        details=(
            "A target ending in '.' is a prefix (every key under it), else a key. Every "
            "write through the library is checked against the schemas that apply to its key."
        ),
    )
    verbs = schema.add_subparsers(title="commands", metavar="COMMAND")

    set_ = add_command(
        verbs,
        "set",
        summary="attach a JSON Schema (Draft 2020-12) to a key or prefix",
        examples=["amira-config schema set amira.chat. chat.schema.json --by ops-anna"],
        run=cmd_schema_set,
        details=(
            "Refused (exit 2), listing them, if stored values violate it; --force attaches it "
            "anyway and lists them."
        ),
    )
    set_.add_argument("target", metavar="KEY|PREFIX")
    set_.add_argument("file", metavar="FILE", help="the schema as JSON ('-': stdin)")
    _kind_options(set_)
    set_.add_argument("--force", action="store_true", help="attach it even if values violate it")
    set_.add_argument("--description", help="what the schema is for (kept when omitted)")
    set_.add_argument("--by", metavar="WHO", help="who makes the change")

    get = add_command(
        verbs,
        "get",
        summary="show the schema of a key or prefix",
        examples=["amira-config schema get amira.chat.", "amira-config schema get x -o json"],
        run=cmd_schema_get,
    )
    get.add_argument("target", metavar="KEY|PREFIX")
    _kind_options(get)

    add_command(
        verbs,
        "list",
        summary="every schema and what it is attached to",
        examples=["amira-config schema list"],
        run=cmd_schema_list,
    )

    delete = add_command(
        verbs,
        "delete",
        summary="detach the schema of a key or prefix (its history stays)",
        examples=["amira-config schema delete amira.chat."],
        run=cmd_schema_delete,
    )
    delete.add_argument("target", metavar="KEY|PREFIX")
    _kind_options(delete)
    delete.add_argument("--by", metavar="WHO", help="who makes the change")

    check = add_command(
        verbs,
        "check",
        summary="list stored values their schemas refuse (exit 3 if any)",
        examples=["amira-config schema check", "amira-config schema check amira.chat. -o json"],
        run=cmd_schema_check,
        details="Finds what raw SQL (which the library cannot check) stored against a schema.",
    )
    check.add_argument("prefix", nargs="?", default="", metavar="PREFIX")


def _kind_options(parser: argparse.ArgumentParser) -> None:
    kind = parser.add_mutually_exclusive_group()
    kind.add_argument(
        "--prefix", dest="is_prefix", action="store_const", const=True, help="it is a prefix"
    )
    kind.add_argument(
        "--key", dest="is_prefix", action="store_const", const=False, help="it is a key"
    )


def _needs_subcommand(ctx: Context) -> Outcome:
    raise UsageError("schema needs a command: set, get, list, delete or check")


def schema_to_json(entry: SchemaEntry) -> dict[str, Any]:
    """A schema as ``-o json`` shows it."""
    return {
        "target": entry.target,
        "kind": entry.kind,
        "schema": entry.schema,
        "description": entry.description,
        "version": entry.version,
        "updated_by": entry.updated_by,
        "updated_at": iso(entry.updated_at),
    }


def violation_to_json(violation: SchemaViolation) -> dict[str, str]:
    """A violation as ``-o json`` shows it."""
    return {
        "key": violation.key,
        "schema": violation.schema,
        "path": violation.path,
        "message": violation.message,
    }


def _read_schema(ctx: Context, path: str) -> Any:
    try:
        text = ctx.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read the schema file {path!r}: {exc.strerror}") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise UsageError(f"the schema file {path!r} is not JSON: {exc}") from None


def cmd_schema_set(ctx: Context) -> Outcome:
    """``schema set TARGET FILE``: attach a schema (refused if stored values violate it)."""
    args = ctx.args
    schema = _read_schema(ctx, args.file)
    entry = ctx.dal().set_schema(
        args.target,
        schema,
        prefix=args.is_prefix,
        description=args.description,
        updated_by=actor(ctx),
        force=args.force,
    )
    lines = [f"set the schema of {entry.name} (version {entry.version})"]
    if entry.violations:
        lines.append(f"forced: {len(entry.violations)} stored value(s) violate it:")
        lines += [f"  {violation}" for violation in entry.violations]
    document = schema_to_json(entry)
    document["violations"] = [violation_to_json(v) for v in entry.violations]
    return Outcome(document, ctx.style.green("\n".join(lines)), confirmation=True)


def cmd_schema_get(ctx: Context) -> Outcome:
    """``schema get TARGET``: the schema, as JSON."""
    entry = ctx.dal().get_schema(ctx.args.target, prefix=ctx.args.is_prefix)
    if entry is None:
        raise NotFoundError(f"no schema is attached to {ctx.args.target!r}")
    text = json.dumps(entry.schema, indent=2, ensure_ascii=False)
    return Outcome(schema_to_json(entry), text)


def cmd_schema_list(ctx: Context) -> Outcome:
    """``schema list``: every schema."""
    entries = ctx.dal().list_schemas()
    rows = [
        [e.kind, e.target, str(e.version), iso(e.updated_at), e.updated_by, e.description or ""]
        for e in entries
    ]
    text = render_table(
        ["KIND", "TARGET", "VERSION", "UPDATED_AT", "UPDATED_BY", "DESCRIPTION"], rows, ctx.style
    )
    return Outcome([schema_to_json(e) for e in entries], text if entries else "no schemas")


def cmd_schema_delete(ctx: Context) -> Outcome:
    """``schema delete TARGET``: detach a schema."""
    args = ctx.args
    if not ctx.dal().delete_schema(args.target, prefix=args.is_prefix, deleted_by=actor(ctx)):
        raise NotFoundError(f"no schema is attached to {args.target!r}")
    return Outcome(
        {"target": args.target, "deleted": True},
        ctx.style.green(f"deleted the schema of {args.target!r}"),
        confirmation=True,
    )


def cmd_schema_check(ctx: Context) -> Outcome:
    """``schema check [PREFIX]``: stored values their schemas refuse; exit 3 if any."""
    violations = ctx.dal().check_schemas(ctx.args.prefix)
    document = [violation_to_json(v) for v in violations]
    if not violations:
        return Outcome(document, "every stored value satisfies its schemas")
    rows = [[v.key, v.schema, v.path, v.message] for v in violations]
    text = render_table(["KEY", "SCHEMA", "PATH", "PROBLEM"], rows, ctx.style)
    error = f"{len(violations)} stored value(s) violate their schemas"
    return Outcome(document, text, EXIT_CONFLICT, error)
