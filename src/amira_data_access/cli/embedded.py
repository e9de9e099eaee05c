"""``server status|start|stop|dsn|env|psql``: the embedded PostgreSQL of :mod:`.server`, by hand.

Every other command starts it on demand; these look at it, stop it, and hand
its connection to other programs (a service, psql) without printing the
password: the DSN names the passfile that holds it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .context import (
    ALL_OUTPUTS,
    EXIT_DATABASE,
    Context,
    Item,
    Outcome,
    Subcommands,
    add_command,
)
from .values import UsageError

if TYPE_CHECKING:
    from .server import EmbeddedServer

__all__ = ["add_commands"]

ACTIONS = ("status", "start", "stop", "dsn", "env", "psql")


def add_commands(commands: Subcommands) -> None:
    """Register server."""
    server = add_command(
        commands,
        "server",
        summary="the embedded PostgreSQL: status, start, stop, dsn, env, psql",
        examples=[
            "amira-config server status",
            "amira-config server start --port 54320",
            "amira-config server dsn -o value",
            'eval "$(amira-config server env)"   # PGHOST…, AMIRA_CONFIG_DSN for a service',
            "amira-config server psql -- -c 'select count(*) from amira_config.configurations'",
        ],
        run=cmd_server,
        outputs=ALL_OUTPUTS,
        details=(
            "Used when no database is configured: a cluster in $AMIRA_CONFIG_HOME/postgres, "
            "on 127.0.0.1, database 'amira', role 'amira'. It keeps its port between starts "
            "(AMIRA_CONFIG_PORT or --port pins one)."
        ),
    )
    server.add_argument("action", choices=ACTIONS, metavar="ACTION", help=", ".join(ACTIONS))
    server.add_argument(
        "psql_args", nargs="*", metavar="PSQL_ARG", help="psql: its arguments, after --"
    )
    server.add_argument(
        "--port",
        type=int,
        metavar="N",
        help="start: listen on port N from now on (default: the port it always used)",
    )


def cmd_server(ctx: Context) -> Outcome:
    """``server ACTION``: the embedded PostgreSQL under the data home."""
    from .server import EmbeddedServer, data_home

    args = ctx.args
    server = EmbeddedServer(data_home())
    action: str = args.action
    if args.psql_args and action != "psql":
        raise UsageError(f"server {action} takes no further arguments")
    if args.port is not None and action != "start":
        raise UsageError("--port goes with server start")
    if action == "psql":
        return _psql(ctx, server)
    if action in ("dsn", "env"):
        return _connection(ctx, server, action)
    if action == "start":
        server.ensure_running(port=args.port)
    elif action == "stop":
        was_running = server.stop()
        state = server.state()
        text = f"stopped {server.cluster_dir}" if was_running else "not running"
        return Outcome({**state.as_dict(), "stopped": was_running}, text, confirmation=True)
    state = server.state()
    if not state.initialized:
        text = f"not created yet: {server.cluster_dir} (the first command creates it)"
    elif state.running:
        text = f"running on 127.0.0.1:{state.port}, data in {server.cluster_dir}"
    else:
        kept = f", port {state.port} kept for the next start" if state.port else ""
        text = f"stopped, data in {server.cluster_dir}{kept}"
    if state.major_version:
        text += f"\ndata: PostgreSQL {state.major_version}, database amira, role amira"
    if state.binaries:
        text += f"\nbinaries: {state.binaries}"
    if state.log_file:
        text += f"\nlog: {state.log_file}"
    items = [Item("port", state.port, "int")] if state.port else []
    if state.problem:
        return Outcome(
            state.as_dict(),
            text,
            EXIT_DATABASE,
            f"the embedded server cannot start: {state.problem}",
            items=items,
        )
    return Outcome(state.as_dict(), text, items=items)


def _connection(ctx: Context, server: EmbeddedServer, action: str) -> Outcome:
    import shlex

    from psycopg.conninfo import conninfo_to_dict

    dsn = server.public_dsn()
    parts = conninfo_to_dict(dsn)
    document = {"dsn": dsn, **{k: str(v) for k, v in parts.items()}}
    variables = {
        "PGHOST": str(parts["host"]),
        "PGPORT": str(parts["port"]),
        "PGDATABASE": str(parts["dbname"]),
        "PGUSER": str(parts["user"]),
        "PGPASSFILE": str(parts["passfile"]),
        "AMIRA_CONFIG_DSN": dsn,
    }
    if action == "dsn":
        return Outcome(document, dsn, items=[Item("dsn", dsn, "str")])
    text = "\n".join(f"export {name}={shlex.quote(value)}" for name, value in variables.items())
    return Outcome(
        variables, text, items=[Item(name, value, "str") for name, value in variables.items()]
    )


def _psql(ctx: Context, server: EmbeddedServer) -> Outcome:
    import shutil
    import subprocess
    import sys

    from psycopg.conninfo import conninfo_to_dict

    if ctx.output != "table":
        raise UsageError("server psql is interactive: -o does not apply")
    dsn = server.public_dsn()
    local = server.cluster()  # the same binaries as the server, when they have psql
    program = local.program("psql")
    psql = str(program) if program.exists() else shutil.which("psql")
    if psql is None:
        raise UsageError("psql not found: install PostgreSQL's client, or use: server dsn")
    parts = conninfo_to_dict(dsn)
    env = {**local.program_env(), "PGPASSFILE": str(parts["passfile"])}
    sys.stdout.flush()
    done = subprocess.run([psql, dsn, *ctx.args.psql_args], env=env, check=False)
    return Outcome({"exit_code": done.returncode}, "", exit_code=done.returncode)
