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
from typing import TYPE_CHECKING, Any, Final

from .context import EXIT_OK, Context, Outcome, Subcommands, add_command, default_actor
from .output import iso, render_table

if TYPE_CHECKING:
    from .. import migrations

__all__ = ["PROBE_KEY", "add_commands", "status_document"]

RESET_ALLOWED_ENV: Final = "AMIRA_CONFIG_ALLOW_RESET"  # migrations.verbs' (checked in a test)
# check writes and deletes this key in a transaction it rolls back: nothing is kept,
# nothing is announced (NOTIFY is sent at commit only).
PROBE_KEY: Final = "amira-config.check.probe"


def add_commands(commands: Subcommands) -> None:
    """Register migrate, status, verify, baseline, repair, reset and check."""
    migrate = add_command(
        commands,
        "migrate",
        summary="apply pending migrations",
        examples=["amira-config migrate --dry-run", "amira-config migrate"],
        run=cmd_migrate,
    )
    migrate.add_argument("--dry-run", action="store_true", help="list them, apply nothing")
    status = add_command(
        commands,
        "status",
        summary="applied, pending and changed migrations",
        examples=["amira-config status", "amira-config status -o json"],
        run=cmd_status,
    )
    verify = add_command(
        commands,
        "verify",
        summary="check the migration history against the files",
        examples=["amira-config verify"],
        run=cmd_verify,
    )
    baseline = add_command(
        commands,
        "baseline",
        summary="record files up to VERSION as applied without running them",
        examples=["amira-config baseline 3"],
        run=cmd_baseline,
    )
    baseline.add_argument("version", type=int, metavar="VERSION")
    repair = add_command(
        commands,
        "repair",
        summary="clear the failed history row of VERSION so that it runs again",
        examples=["amira-config repair 4"],
        run=cmd_repair,
    )
    repair.add_argument("version", type=int, metavar="VERSION")
    reset = add_command(
        commands,
        "reset",
        summary=f"drop schema amira_config with all its data (tests only: {RESET_ALLOWED_ENV}=1)",
        examples=[f"{RESET_ALLOWED_ENV}=1 amira-config reset"],
        run=cmd_reset,
    )
    for parser in (migrate, status, verify, baseline):  # the verbs that read the files
        parser.add_argument(
            "--directory",
            type=Path,
            metavar="DIR",
            help="the migration files (default: the ones shipped with the package)",
        )
    for parser in (migrate, status, verify, baseline, repair, reset):
        parser.set_defaults(auto_migrate=False)
    add_command(
        commands,
        "check",
        summary="settings valid, server reachable, schema current, role can read and write",
        examples=["amira-config check", "amira-config check -o json"],
        run=cmd_check,
        details=(
            "The exit code is the failing step's: 4 unreachable, 5 login or permission "
            "refused, 6 not migrated. The write check sets and deletes a probe key in a "
            "transaction that is rolled back: nothing is kept."
        ),
    )


def _migrations() -> Any:
    from .. import migrations

    return migrations


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
    done = _migrations().migrate(
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
    state = _migrations().status(ctx.conninfo(), directory=ctx.args.directory)
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
        from ..migrations.history import problem_list
        from .context import EXIT_SCHEMA

        # Said once, on stderr, one line per problem: as migrate and verify refuse.
        error = problem_list("migration history and files disagree", state.problems)
        return Outcome(status_document(state), "\n".join(lines), EXIT_SCHEMA, error)
    pending = len(state.pending)
    lines.append("up to date" if not pending else f"{pending} pending: run amira-config migrate")
    return Outcome(status_document(state), "\n".join(lines))


def cmd_verify(ctx: Context) -> Outcome:
    """``verify``: check history against files without changing anything."""
    state = _migrations().verify(ctx.conninfo(), directory=ctx.args.directory)
    text = f"ok: {len(state.applied)} applied, {len(state.pending)} pending"
    return Outcome(status_document(state), text)


def cmd_baseline(ctx: Context) -> Outcome:
    """``baseline VERSION``: record files up to VERSION as applied without running them."""
    chosen = _migrations().baseline(ctx.conninfo(), ctx.args.version, directory=ctx.args.directory)
    text = "\n".join(f"baselined {m.filename}" for m in chosen)
    return Outcome({"baselined": [_migration_json(m) for m in chosen]}, text)


def cmd_repair(ctx: Context) -> Outcome:
    """``repair VERSION``: clear a failed history row so the file runs again."""
    row = _migrations().repair(ctx.conninfo(), ctx.args.version)
    text = f"repaired {row.filename}: it runs again on the next migrate"
    return Outcome({"repaired": _applied_json(row)}, text)


def cmd_reset(ctx: Context) -> Outcome:
    """``reset``: drop schema amira_config (refused unless AMIRA_CONFIG_ALLOW_RESET=1)."""
    from ..migrations.verbs import require_reset_allowed

    require_reset_allowed()  # before finding (or starting) the database
    _migrations().reset(ctx.conninfo())
    return Outcome({"reset": True}, "reset: schema amira_config dropped")


class _RolledBack(Exception):  # noqa: N818  # leaves check's probe transaction
    """Raised to leave the probe transaction: it rolls back."""


def cmd_check(ctx: Context) -> Outcome:
    """``check``: settings valid, server reachable, schema current, role can read and write.

    Stops at the first failure, whose exit code is the command's (4, 5 or 6).
    """
    from ..errors import ConfigurationAccessError, MigrationError
    from ..settings import parse_dsn
    from . import exit_code

    checks: list[dict[str, Any]] = []
    failure: list[BaseException] = []

    def step(name: str, run: Callable[[], str]) -> bool:
        try:
            checks.append({"name": name, "ok": True, "detail": run()})
        except ConfigurationAccessError as exc:
            checks.append({"name": name, "ok": False, "detail": str(exc)})
            failure.append(exc)
            return False
        return True

    def settings() -> str:
        return parse_dsn(ctx.conninfo()).description

    def server() -> str:
        dal = ctx.dal()
        dal.open()  # raises the precise error (refused, login, unknown database)
        health = dal.health()
        return f"reachable ({health.server_version}, {health.latency_ms:.1f} ms)"

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

    def access() -> str:
        dal = ctx.dal()
        dal.list(limit=1)
        try:
            with dal.transaction() as tx:
                tx.set(PROBE_KEY, 1, data_type="int", updated_by=default_actor())
                tx.delete(PROBE_KEY, deleted_by=default_actor())
                raise _RolledBack
        except _RolledBack:
            pass
        return "the role can read, write and delete (probe rolled back)"

    # Each step needs the one before it: stop at the first failure, which is the reason.
    if step("settings", settings) and step("server", server) and step("schema", schema):
        step("access", access)
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
    code = exit_code(failure[0]) if failure else EXIT_OK
    return Outcome({"ok": ok, "checks": checks}, text, code, error)
