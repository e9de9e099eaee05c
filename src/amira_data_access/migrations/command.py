"""``python -m amira_data_access.migrations``: the verbs from the command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from ..errors import ConfigurationAccessError
from ..settings import DatabaseSettings, describe_dsn
from .history import MigrationStatus
from .verbs import RESET_ALLOWED_ENV, baseline, migrate, repair, reset, status, verify

__all__ = ["main"]

# Thin on purpose: every verb is a function above, so amira-config can call them too.


def main(argv: Sequence[str] | None = None) -> int:
    """Run one verb from the command line; 0 when all is well, 1 on a problem, 2 on bad usage.

    ``status`` exits 1 when a row failed or a file was changed, is missing or out
    of order; pending files alone exit 0 (they are what ``migrate`` is for).
    """
    args = _parser().parse_args(argv)
    try:
        conninfo = args.dsn or DatabaseSettings().conninfo()
        print(f"database: {describe_dsn(conninfo)}")
        return int(_run_verb(args, conninfo, sys.stdout))
    except ConfigurationAccessError as exc:  # messages are already free of secrets
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m amira_data_access.migrations",
        description="Apply and inspect amira-data-access migrations.",
    )
    parser.add_argument(
        "--dsn", help="connection string (default: AMIRA_CONFIG_DSN or DB_HOST/DB_NAME/…)"
    )
    parser.add_argument("--directory", type=Path, help="migration files (default: the package's)")
    verbs = parser.add_subparsers(dest="verb", required=True)
    run = verbs.add_parser("migrate", help="apply pending migrations")
    run.add_argument("--dry-run", action="store_true", help="list pending files, apply nothing")
    verbs.add_parser("status", help="applied, pending, failed, changed, missing")
    verbs.add_parser("verify", help="check history against files (read-only)")
    for verb, text in (
        ("baseline", "record files up to VERSION as applied, without running them"),
        ("repair", "delete the failed history row of VERSION so that it runs again"),
    ):
        verbs.add_parser(verb, help=text).add_argument("version", type=int, metavar="VERSION")
    verbs.add_parser("reset", help=f"drop schema amira_config (tests: {RESET_ALLOWED_ENV}=1)")
    return parser


def _run_verb(args: argparse.Namespace, conninfo: str, out: TextIO) -> bool:
    """Run the verb and print its outcome; True when the exit code is non-zero."""
    directory: Path | None = args.directory
    if args.verb == "migrate":
        done = migrate(conninfo, directory=directory, dry_run=args.dry_run)
        verb = "would apply" if args.dry_run else "applied"
        for migration in done:
            print(f"{verb} {migration.filename}  {migration.checksum}", file=out)
        if not done:
            print("up to date: nothing to apply", file=out)
        return False
    if args.verb == "status":
        state = status(conninfo, directory=directory)
        _print_status(state, out)
        return bool(state.problems)
    if args.verb == "verify":
        state = verify(conninfo, directory=directory)
        print(f"ok: {len(state.applied)} applied, {len(state.pending)} pending", file=out)
        return False
    if args.verb == "baseline":
        for migration in baseline(conninfo, args.version, directory=directory):
            print(f"baselined {migration.filename}  {migration.checksum}", file=out)
        return False
    if args.verb == "repair":
        row = repair(conninfo, args.version)
        print(f"repaired {row.filename}: it will run again on the next migrate", file=out)
        return False
    reset(conninfo)
    print("reset: schema amira_config dropped", file=out)
    return False


def _print_status(state: MigrationStatus, out: TextIO) -> None:
    failed = {row.version for row in state.failed}
    changed = {m.version for m in state.changed}
    for row in state.applied:
        mark = "FAILED" if row.version in failed else "changed" if row.version in changed else "ok"
        print(
            f"{mark:8} {row.filename}  {row.kind} {row.applied_at:%Y-%m-%d %H:%M:%S} "
            f"by {row.applied_by} ({row.execution_ms} ms)",
            file=out,
        )
    for migration in state.pending:
        print(f"{'pending':8} {migration.filename}  {migration.checksum}", file=out)
    for index in state.invalid_indexes:
        print(f"{'INVALID':8} index {index}", file=out)
    for problem in state.problems:
        print(f"problem: {problem}", file=out)
    if state.up_to_date:
        print("up to date", file=out)
