"""``server status|start|stop``: the embedded PostgreSQL of :mod:`.server`, by hand.

Every other command starts it on demand; this is for looking at it and stopping it.
"""

from __future__ import annotations

from .context import Context, Outcome, Subcommands
from .server import EmbeddedServer, data_home

__all__ = ["add_commands"]


def add_commands(commands: Subcommands) -> None:
    """Register server."""
    server = commands.add_parser("server", help="the embedded PostgreSQL")
    server.add_argument("action", choices=["status", "start", "stop"])
    server.set_defaults(run=cmd_server)


def cmd_server(ctx: Context) -> Outcome:
    """``server status|start|stop``: the embedded PostgreSQL under the data home."""
    server = EmbeddedServer(data_home())
    action = ctx.args.action
    if action == "start":
        server.ensure_running()
    elif action == "stop":
        was_running = server.stop()
        state = server.state()
        text = f"stopped {server.cluster_dir}" if was_running else "not running"
        return Outcome({**state.as_dict(), "stopped": was_running}, text)
    state = server.state()
    if not state.initialized:
        text = f"not created yet: {server.cluster_dir} (the first command creates it)"
    elif state.running:
        text = f"running on 127.0.0.1:{state.port}, data in {server.cluster_dir}"
    else:
        text = f"stopped, data in {server.cluster_dir}"
    if state.binaries:
        text += f"\nbinaries: {state.binaries}"
    return Outcome(state.as_dict(), text)
