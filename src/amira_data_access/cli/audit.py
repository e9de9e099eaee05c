"""``audit verify|export|prune`` and ``access scopes|grant|revoke``: the audit trail and
who may write where (:mod:`amira_data_access.audit`, migrations/0008).

``audit verify`` exits 3 (not as expected) when it finds a problem, listing each
on its own line; ``audit export`` writes one JSON document per history row (a
SIEM's input), in chain order, from ``--after POSITION``. ``history prune`` is
the same command as ``audit prune``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import timedelta
from typing import Any, Final

from .context import EXIT_CONFLICT, Context, Outcome, Subcommands, add_command
from .output import render_table
from .values import UsageError

__all__ = ["add_commands", "parse_age", "spell_history_prune"]

_AGE: Final = re.compile(r"^(\d+)([dhm])$")
_UNITS: Final = {"d": "days", "h": "hours", "m": "minutes"}


def parse_age(text: str) -> timedelta:
    """``400d``, ``12h`` or ``30m`` as a timedelta (argparse type)."""
    matched = _AGE.match(text.strip())
    if matched is None:
        # argparse turns ArgumentTypeError into its usage error naming the option; any
        # other exception escapes parse_args as a traceback.
        raise argparse.ArgumentTypeError(f"not an age: {text!r} (e.g. 400d, 12h, 30m)")
    return timedelta(**{_UNITS[matched.group(2)]: int(matched.group(1))})


_PRUNE_OPTIONS: Final = ("--older-than", "--keep-last", "--key", "--versions")


def spell_history_prune(argv: list[str]) -> list[str]:
    """``history prune --older-than …`` as ``audit prune …`` (``history prune`` alone still
    shows the history of a key named "prune")."""
    for index in range(len(argv) - 1):
        if argv[index] == "history" and argv[index + 1] == "prune":
            rest = argv[index + 2 :]
            if any(word.split("=", 1)[0] in _PRUNE_OPTIONS for word in rest):
                return [*argv[:index], "audit", "prune", *rest]
            break
    return argv


def _versions(text: str) -> list[int]:
    try:
        versions = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        versions = []
    if not versions or min(versions) < 1:
        raise argparse.ArgumentTypeError(f"not a list of versions: {text!r} (e.g. 3,4)")
    return versions


def add_commands(commands: Subcommands) -> None:
    """Register audit and access."""
    audit = add_command(
        commands,
        "audit",
        summary="verify the history's hash chain, export it for a SIEM, prune it",
        examples=[
            "amira-config audit verify",
            "amira-config audit verify --expect 1200:3f5a…",
            "amira-config audit export --after 1200 > history.jsonl",
            "amira-config audit prune --older-than 400d --keep-last 20",
            "amira-config audit prune --key amira.chat.api_key --versions 3,4",
        ],
        run=cmd_audit,
        details=(
            "verify recomputes every digest and prints the chain's head (POSITION:DIGEST): "
            "keep it elsewhere and pass it to a later --expect, which then also catches an "
            "owner who rewrote the whole chain. prune needs amira_config_admin; each pruned "
            "row leaves a stub, so the chain still verifies."
        ),
    )
    audit.add_argument("action", choices=("verify", "export", "prune"), metavar="ACTION")
    _prune_options(audit)
    audit.add_argument("--expect", metavar="POSITION:DIGEST", help="verify: a head kept earlier")
    audit.add_argument(
        "--after", type=int, default=0, metavar="POSITION", help="export: only rows after it"
    )
    access = add_command(
        commands,
        "access",
        summary="write scopes: which key prefixes a role may write",
        examples=[
            "amira-config access scopes",
            "amira-config access grant svc_chat amira.chat.",
            "amira-config access revoke svc_chat amira.chat.",
        ],
        run=cmd_access,
        details=(
            "A role with scopes (its own, or a group's) may write only keys under them; a "
            "role with none is not restricted. grant and revoke need amira_config_admin."
        ),
    )
    access.add_argument("action", choices=("scopes", "grant", "revoke"), metavar="ACTION")
    access.add_argument("role", nargs="?", metavar="ROLE")
    access.add_argument("prefix", nargs="?", metavar="PREFIX")


def _prune_options(parser: Any) -> None:
    parser.add_argument(
        "--older-than", type=parse_age, metavar="AGE", help="prune: rows older than AGE (400d)"
    )
    parser.add_argument(
        "--keep-last", type=int, default=0, metavar="N", help="prune: keep each key's N newest"
    )
    parser.add_argument("--key", metavar="KEY", help="prune: purge versions of this key")
    parser.add_argument("--versions", type=_versions, metavar="V,V", help="prune: with --key")


def cmd_audit(ctx: Context) -> Outcome | None:
    """``audit verify|export|prune``."""
    from .. import audit

    action = ctx.args.action
    if action == "export":
        for document in audit.export_history(ctx.conninfo(), after=ctx.args.after):
            sys.stdout.write(json.dumps(document, ensure_ascii=False) + "\n")
        sys.stdout.flush()
        return None
    if action == "prune":
        return cmd_prune(ctx)
    expect = audit.ChainHead.parse(ctx.args.expect) if ctx.args.expect else None
    report = audit.verify_history(ctx.conninfo(), expect=expect)
    document = {
        "ok": report.ok,
        "rows": report.rows,
        "stubs": report.stubs,
        "head": str(report.head),
        "problems": [
            {
                "kind": p.kind,
                "detail": p.detail,
                "position": p.position,
                "key": p.key,
                "version": p.version,
            }
            for p in report.problems
        ],
    }
    summary = f"{report.rows} rows and {report.stubs} pruned stubs checked; head {report.head}"
    if report.ok:
        return Outcome(document, f"ok: {summary}")
    lines = [f"{p.kind}: {p.detail}" for p in report.problems]
    return Outcome(
        document,
        "\n".join(lines),
        exit_code=EXIT_CONFLICT,
        error=f"audit verify found {len(report.problems)} problem(s) ({summary})",
    )


def cmd_prune(ctx: Context) -> Outcome:
    """``audit prune`` (also ``history prune``): retention or a purge of some versions."""
    from .. import audit

    args = ctx.args
    if args.older_than is None and (args.key is None or args.versions is None):
        raise UsageError("prune: give --older-than AGE, or --key KEY --versions V,V")
    if (args.key is None) != (args.versions is None):
        raise UsageError("prune: --key and --versions go together")
    removed = audit.prune_history(
        ctx.conninfo(),
        older_than=args.older_than,
        keep_last=args.keep_last,
        key=args.key,
        versions=args.versions,
    )
    return Outcome({"pruned": removed}, f"pruned {removed} history rows (each left a stub)")


def cmd_access(ctx: Context) -> Outcome:
    """``access scopes|grant|revoke [ROLE PREFIX]``."""
    from .. import audit

    args = ctx.args
    if args.action == "scopes":
        scopes = audit.list_write_scopes(ctx.conninfo())
        rows = [[s.role, s.prefix, s.granted_by, s.granted_at.isoformat()] for s in scopes]
        document = [
            {"role": r[0], "prefix": r[1], "granted_by": r[2], "granted_at": r[3]} for r in rows
        ]
        text = render_table(["ROLE", "PREFIX", "GRANTED BY", "AT"], rows) if rows else ""
        return Outcome(document, text or "no write scopes: every writer may write any key")
    if not args.role or not args.prefix:
        raise UsageError(f"access {args.action}: give ROLE and PREFIX")
    if args.action == "grant":
        audit.grant_write_scope(ctx.conninfo(), args.role, args.prefix)
        return Outcome(
            {"granted": {"role": args.role, "prefix": args.prefix}},
            f"{args.role} may write keys under {args.prefix!r}",
            confirmation=True,
        )
    had = audit.revoke_write_scope(ctx.conninfo(), args.role, args.prefix)
    text = f"revoked {args.prefix!r} from {args.role}" if had else "no such scope"
    return Outcome({"revoked": had}, text, confirmation=True)
