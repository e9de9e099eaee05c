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

from .context import Context, Outcome, Subcommands
from .output import Style, compact_value, iso

__all__ = ["add_commands", "change_line"]


def add_commands(commands: Subcommands) -> None:
    """Register watch."""
    watch = commands.add_parser("watch", help="follow changes as they happen")
    watch.add_argument("prefix", nargs="?", default="", metavar="PREFIX")
    watch.add_argument(
        "--since",
        type=int,
        metavar="N",
        dest="since_revision",
        help="first the changes after revision N (from the history), then live ones",
    )
    watch.set_defaults(run=cmd_watch)


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
    if hasattr(change, "value") and operation != "delete":  # the event may carry no value
        shown = compact_value(change.value, getattr(change, "data_type", None) or "json")
    parts = [
        style.dim(iso(when) if isinstance(when, datetime) else ""),
        str(operation),
        str(key),
        f"v{version}" if version is not None else "",
        f"by {by}" if by else "",
        f"(revision {revision})" if revision is not None else "",
        shown,
    ]
    return " ".join(part for part in parts if part)


def cmd_watch(ctx: Context) -> Outcome | None:
    """``watch [PREFIX] [--since N]``: follow changes as they happen (JSON lines with --json)."""
    since = ctx.args.since_revision
    stream = ctx.dal().watch(ctx.args.prefix, since_revision=since)
    resuming = f" after revision {since}" if since is not None else ""
    print(
        f"amira-config: watching {ctx.args.prefix or 'every key'}{resuming} (Ctrl-C to stop)",
        file=ctx.stderr,
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
        stream.close()
    return None  # already printed, one document per change
