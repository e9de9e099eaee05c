"""``migrate``, ``status``, ``verify``, ``baseline``, ``repair``, ``reset``, ``check``: the schema.

The migration commands call :mod:`amira_data_access.migrations` and see the
schema as it is: on the embedded server they do not migrate it first
(``auto_migrate=False``), unlike every other command. They are also
``python -m amira_data_access.migrations``: one command line, one set of exit
codes. A refusal (status disagreeing, migrate or verify refusing) is said once,
on stderr: a headline, then one line per problem.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import migrations
from ..errors import ConfigurationAccessError, MigrationError
from ..migrations.history import problem_list
from ..migrations.verbs import RESET_ALLOWED_ENV, require_reset_allowed
from ..settings import parse_dsn
from .context import EXIT_DATABASE, EXIT_OK, Context, Outcome, Subcommands
from .output import iso, render_table

__all__ = ["add_commands", "status_document"]


def add_commands(commands: Subcommands) -> None:
    """Register migrate, status, verify, baseline, repair, reset and check."""
    migrate = commands.add_parser("migrate", help="apply pending migrations")
    migrate.add_argument("--dry-run", action="store_true", help="list them, apply nothing")
    migrate.set_defaults(run=cmd_migrate)
    status = commands.add_parser("status", help="applied, pending and changed migrations")
    status.set_defaults(run=cmd_status)
    verify = commands.add_parser("verify", help="check the migration history against the files")
    verify.set_defaults(run=cmd_verify)
    baseline = commands.add_parser(
        "baseline", help="record files up to VERSION as applied without running them"
    )
    baseline.add_argument("version", type=int, metavar="VERSION")
    baseline.set_defaults(run=cmd_baseline)
    repair = commands.add_parser(
        "repair", help="clear the failed history row of VERSION so that it runs again"
    )
    repair.add_argument("version", type=int, metavar="VERSION")
    repair.set_defaults(run=cmd_repair)
    reset = commands.add_parser(
        "reset",
        help=f"drop schema amira_config with all its data (tests only: {RESET_ALLOWED_ENV}=1)",
    )
    reset.set_defaults(run=cmd_reset)
    for parser in (migrate, status, verify, baseline):  # the verbs that read the files
        parser.add_argument(
            "--directory",
            type=Path,
            metavar="DIR",
            help="the migration files (default: the ones shipped with the package)",
        )
    for parser in (migrate, status, verify, baseline, repair, reset):
        parser.set_defaults(auto_migrate=False)
    check = commands.add_parser("check", help="settings valid, server reachable, schema current")
    check.set_defaults(run=cmd_check)


def _migration_json(migration: migrations.Migration) -> dict[str, Any]:
    return {
        "version": migration.version,
        "filename": migration.filename,
        "checksum": migration.checksum,
    }


def _applied_json(row: migrations.AppliedMigration) -> dict[str, Any]:
    return {
        "version": row.version,
        "filename": row.filename,
        "checksum": row.checksum,
        "success": row.success,
        "kind": row.kind,
        "applied_at": iso(row.applied_at, precise=True),
        "applied_by": row.applied_by,
        "execution_ms": row.execution_ms,
    }


def cmd_migrate(ctx: Context) -> Outcome:
    """``migrate [--dry-run]``: apply pending migrations."""
    done = migrations.migrate(
        ctx.conninfo(), directory=ctx.args.directory, dry_run=ctx.args.dry_run
    )
    verb = "would apply" if ctx.args.dry_run else "applied"
    lines = [f"{verb} {m.filename}" for m in done] or ["up to date: nothing to apply"]
    document = {"dry_run": bool(ctx.args.dry_run), "applied": [_migration_json(m) for m in done]}
    return Outcome(document, "\n".join(lines))


def status_document(state: migrations.MigrationStatus) -> dict[str, Any]:
    """A migration status as JSON."""
    return {
        "up_to_date": state.up_to_date,
        "applied": [_applied_json(row) for row in state.applied],
        "pending": [_migration_json(m) for m in state.pending],
        "changed": [_migration_json(m) for m in state.changed],
        "missing": [_applied_json(row) for row in state.missing],
        "failed": [_applied_json(row) for row in state.failed],
        "invalid_indexes": list(state.invalid_indexes),
        "problems": list(state.problems),
    }


def cmd_status(ctx: Context) -> Outcome:
    """``status``: applied, pending, changed migrations; exit 4 when history and files disagree."""
    state = migrations.status(ctx.conninfo(), directory=ctx.args.directory)
    failed = {row.version for row in state.failed}
    changed = {m.version for m in state.changed}
    rows = [
        [
            "FAILED" if r.version in failed else "changed" if r.version in changed else "applied",
            r.filename,
            iso(r.applied_at),
            r.applied_by,
        ]
        for r in state.applied
    ]
    rows += [["pending", m.filename, "", ""] for m in state.pending]
    lines = [render_table(["STATE", "FILE", "APPLIED_AT", "APPLIED_BY"], rows, ctx.style)]
    if state.problems:
        # Said once, on stderr, one line per problem: as migrate and verify refuse.
        error = problem_list("migration history and files disagree", state.problems)
        return Outcome(status_document(state), "\n".join(lines), EXIT_DATABASE, error)
    pending = len(state.pending)
    lines.append("up to date" if not pending else f"{pending} pending: run amira-config migrate")
    return Outcome(status_document(state), "\n".join(lines))


def cmd_verify(ctx: Context) -> Outcome:
    """``verify``: check history against files without changing anything."""
    state = migrations.verify(ctx.conninfo(), directory=ctx.args.directory)
    text = f"ok: {len(state.applied)} applied, {len(state.pending)} pending"
    return Outcome(status_document(state), text)


def cmd_baseline(ctx: Context) -> Outcome:
    """``baseline VERSION``: record files up to VERSION as applied without running them."""
    chosen = migrations.baseline(ctx.conninfo(), ctx.args.version, directory=ctx.args.directory)
    text = "\n".join(f"baselined {m.filename}" for m in chosen)
    return Outcome({"baselined": [_migration_json(m) for m in chosen]}, text)


def cmd_repair(ctx: Context) -> Outcome:
    """``repair VERSION``: clear a failed history row so the file runs again."""
    row = migrations.repair(ctx.conninfo(), ctx.args.version)
    text = f"repaired {row.filename}: it runs again on the next migrate"
    return Outcome({"repaired": _applied_json(row)}, text)


def cmd_reset(ctx: Context) -> Outcome:
    """``reset``: drop schema amira_config (refused unless AMIRA_CONFIG_ALLOW_RESET=1)."""
    require_reset_allowed()  # before finding (or starting) the database
    migrations.reset(ctx.conninfo())
    return Outcome({"reset": True}, "reset: schema amira_config dropped")


def cmd_check(ctx: Context) -> Outcome:
    """``check``: settings valid, server reachable, schema current; exit 4 with the reason."""
    checks: list[dict[str, Any]] = []

    def step(name: str, run: Callable[[], str]) -> bool:
        try:
            checks.append({"name": name, "ok": True, "detail": run()})
        except ConfigurationAccessError as exc:
            checks.append({"name": name, "ok": False, "detail": str(exc)})
            return False
        return True

    def settings() -> str:
        return parse_dsn(ctx.conninfo()).description

    def server() -> str:
        ctx.dal().open()
        return "reachable"

    def schema() -> str:
        state = ctx.dal().migration_status()
        if state.problems:
            raise MigrationError("; ".join(state.problems))
        if state.pending:
            names = ", ".join(m.filename for m in state.pending)
            raise MigrationError(
                f"{len(state.pending)} pending migration(s) ({names}): run amira-config migrate"
            )
        return f"up to date ({len(state.applied)} migrations applied)"

    # Each step needs the one before it: stop at the first failure, which is the reason.
    if step("settings", settings) and step("server", server):
        step("schema", schema)
    ok = all(check["ok"] for check in checks)
    rows = [
        [ctx.style.green("ok") if c["ok"] else ctx.style.red("FAIL"), c["name"], c["detail"]]
        for c in checks
    ]
    text = "\n".join(
        "  ".join([mark.ljust(4), name.ljust(8), detail]) for mark, name, detail in rows
    )
    failed = next((c for c in checks if not c["ok"]), None)
    error = f"check failed: {failed['name']}: {failed['detail']}" if failed else None
    return Outcome({"ok": ok, "checks": checks}, text, EXIT_OK if ok else EXIT_DATABASE, error)
