"""``just demo``: a tour of ``amira-config``, then of the Python API, on one embedded server.

Runs on a machine with no PostgreSQL (the ``embedded`` extra's wheel is enough):
a fresh ``AMIRA_CONFIG_HOME`` in the temp folder, the real ``amira-config``
commands printed as you would type them, then :mod:`.api_demo`
(the Python API) against the same server. Everything is stopped and removed at
the end, even after a failure. Each command's exit code is checked, so the
tour doubles as a smoke test.
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from ..cli.server import HOME_ENV, EmbeddedServer

__all__ = ["main"]

_DB_VARIABLES = {"AMIRA_CONFIG_DSN", "DB_HOST", "DB_PORT", "DB_NAME", "DB_USER", "DB_PASSWORD"}


def _command() -> list[str]:
    """The installed script next to this Python, else the module (same code either way)."""
    script = Path(sys.executable).parent / "amira-config"
    return [str(script)] if script.exists() else [sys.executable, "-m", "amira_data_access.cli"]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Tour:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.command = _command()

    def say(self, title: str) -> None:
        print(f"\n== {title}", flush=True)

    def run(self, *args: str, expect: int = 0, stdin: str | None = None) -> None:
        """Show and run one command; stop the tour if it does not exit as expected."""
        print(f"$ amira-config {shlex.join(args)}", flush=True)
        done = subprocess.run(
            [*self.command, *args], env=self.env, input=stdin, text=True, check=False
        )
        if expect:
            print(f"→ exit {done.returncode}", flush=True)
        if done.returncode != expect:
            raise SystemExit(f"demo: expected exit {expect}, got {done.returncode}")


def _cli_tour(tour: _Tour, home: Path) -> None:
    tour.say("no database configured: amira-config keeps an embedded PostgreSQL in a folder")
    tour.run("server", "status")
    tour.run("migrate")

    tour.say("set typed values: VALUE is JSON for int/float/bool/json, text for str")
    for key, value, data_type, description in [
        ("amira.ui.default_language", "en-US", "str", "Default language for user interface"),
        ("amira.nlu.detection_threshold", "0.82", "float", "Language detection threshold"),
        ("amira.chat.max_turns", "40", "int", "Turns kept in a conversation"),
        ("amira.features.tone_adaptation", "true", "bool", "Adapt the response tone"),
        (
            "amira.chat.tone",
            '{"default": "friendly", "allowed": ["formal", "friendly"]}',
            "json",
            "Response tone policy",
        ),
    ]:
        tour.run(
            "set", key, value, "--type", data_type, "--description", description, "--by", "demo"
        )
    tour.run(
        "set", "amira.nlu.detection_threshold", "0.9", "--by", "ops-anna",
        "--reason", "fewer false positives",
    )  # fmt: skip

    tour.say("read: a table for people, --json for scripts")
    tour.run("list")
    tour.run("get", "amira.chat.tone")
    tour.run("get", "amira.chat.max_turns", "--json")

    tour.say("history, diff and rollback (a rollback is a new version; history is never rewritten)")
    tour.run("history", "amira.nlu.detection_threshold")
    tour.run("diff", "amira.nlu.detection_threshold", "1")
    tour.run(
        "rollback", "amira.nlu.detection_threshold", "--to-version", "1", "--by", "ops-anna",
        "--reason", "back to the tested value",
    )  # fmt: skip
    tour.run("history", "amira.nlu.detection_threshold")

    tour.say("export, then import a changed file: --dry-run shows the diff and writes nothing")
    tour.run("export", "amira.chat.", "--format", "yaml")
    exported = home / "chat.json"
    changed = (
        '{"amira.chat.max_turns": {"value": 60, "data_type": "int", '
        '"description": "Turns kept in a conversation"},\n'
        ' "amira.chat.greeting": {"value": "Hello!", "data_type": "str", '
        '"description": "First message"}}\n'
    )
    exported.write_text(changed)
    tour.run("import", str(exported), "--by", "ops-anna", "--dry-run")
    tour.run("import", str(exported), "--by", "ops-anna")

    tour.say("failures: one clear line on stderr and an exit code that says what happened")
    tour.run("set", "amira.chat.max_turns", "forty", "--by", "demo", expect=2)
    tour.run("set", "amira.chat.max_turns", "4.5", "--by", "demo", expect=2)
    tour.run("set", "amira.chat.max_turns", "50", "--by", "demo", "--expect-version", "1", expect=3)
    tour.run("get", "amira.ui.theme", expect=1)
    bad = f"host=127.0.0.1 port={_closed_port()} dbname=amira user=svc password=hunter2"
    tour.run("--dsn", bad, "check", expect=4)
    print("(the password in that --dsn is never printed, in messages or with --debug)")
    tour.run("check")


def main() -> int:
    """Run the CLI tour, then the Python API tour, on one embedded server; clean up."""
    home = Path(tempfile.mkdtemp(prefix="amira-config-demo-"))
    # mkdtemp makes it 0700; as root the server runs as 'postgres' and must enter it.
    home.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k.upper() not in _DB_VARIABLES}
    env[HOME_ENV] = str(home)
    tour = _Tour(env)
    print(f"{HOME_ENV}={home}")
    try:
        _cli_tour(tour, home)
        print("\n\n######## the same database from Python: amira_data_access.ConfigDAL", flush=True)
        dsn = EmbeddedServer(home).ensure_running()
        # The DSN (with the generated password) goes only into the child's environment.
        code = subprocess.run(
            # The tour's own server: the API tour may write in it.
            [sys.executable, "-m", "amira_data_access._dev.api_demo", "--allow-existing-database"],
            env={**env, "AMIRA_CONFIG_DSN": dsn},
            check=False,
        ).returncode
        if code != 0:
            return code
    finally:
        print("\n== clean up", flush=True)
        subprocess.run([*tour.command, "server", "stop"], env=env, check=False)
        shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
