"""``watch``: follow changes as they happen, a line (or a JSON document) per change.

``--since N`` resumes after revision N (the ``revision`` of the last change a
script handled): every change with a higher revision already in the history is
printed first, then the live ones, nothing missed and nothing twice.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime
from typing import Any

from .context import ALL_OUTPUTS, Context, Outcome, Subcommands, add_command
from .output import Style, bare_value, compact_value, env_lines, iso

__all__ = ["add_commands", "change_line"]


def add_commands(commands: Subcommands) -> None:
    """Register watch."""
    watch = add_command(
        commands,
        "watch",
        summary="follow changes as they happen: time, revision, key, version, value",
        examples=["amira-config watch amira.chat.", "amira-config watch -o json | jq .value"],
        run=cmd_watch,
        outputs=ALL_OUTPUTS,
        details="A lost connection and its return are said on stderr; nothing is missed.",
    )
    watch.add_argument("prefix", nargs="?", default="", metavar="PREFIX")
    watch.add_argument(
        "--since",
        type=int,
        metavar="N",
        dest="since_revision",
        help="first the changes after revision N (from the history), then live ones",
    )


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
    revision = getattr(change, "revision", None)  # what --since takes to resume after it
    shown = ""
    data_type = getattr(change, "data_type", None)
    if data_type and operation != "delete":  # the event may carry no value
        shown = compact_value(change.value, data_type)
    parts = [
        style.dim(iso(when) if isinstance(when, datetime) else ""),
        style.dim(f"rev {revision}") if revision is not None else "",
        str(operation),
        str(key),
        f"v{version}" if version is not None else "",
        f"by {by}" if by else "",
        f"= {shown}" if shown else "",
    ]
    return " ".join(part for part in parts if part)


def cmd_watch(ctx: Context) -> Outcome | None:
    """``watch [PREFIX] [--since N]``: follow changes as they happen (JSON lines with -o json)."""
    from .changes import describe_change, feed_notices

    since = ctx.args.since_revision
    resuming = f" after revision {since}" if since is not None else ""
    with feed_notices(lambda line: ctx.notice(line, always=True)):
        stream = ctx.dal().watch(ctx.args.prefix, since_revision=since)
        ctx.notice(
            f"watching {ctx.args.prefix or 'every key'}{resuming} (Ctrl-C to stop)", always=True
        )
        try:
            for change in stream:
                print(_shown(ctx, describe_change(ctx.dal(), change)), flush=True)
        except KeyboardInterrupt:
            pass  # Ctrl-C is how a watch ends
        finally:
            stream.close()
    return None  # already printed, one document per change


def _shown(ctx: Context, change: Any) -> str:
    """One change in the -o format asked for (json and yaml: one JSON document per line)."""
    if ctx.output in ("json", "yaml"):
        return json.dumps(_jsonable(change), ensure_ascii=False)
    if ctx.output == "value":
        return bare_value(change.value, change.data_type or "json")
    if ctx.output == "env":
        return env_lines([(change.key, change.value, change.data_type or "json")])
    return change_line(change, ctx.style)
