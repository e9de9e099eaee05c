"""What every ``amira-config`` command works with and returns; the exit codes.

A command is a function of a :class:`Context` returning an :class:`Outcome`:
the JSON document for ``--json`` and the text for people, built from the same
data so the two never disagree. Failures are raised (the library's exceptions,
:class:`~.values.UsageError`, :class:`~.values.NotFoundError`) and turned into
exit codes in one place, :func:`amira_data_access.cli.main`. Each topic module
(:mod:`.keys`, :mod:`.history`, :mod:`.transfer`, :mod:`.schema`,
:mod:`.watching`, :mod:`.embedded`) registers its commands with
``add_commands(commands)``: the parser of each names its function as ``run``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO, TypeAlias

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from ..dal import ConfigDAL
from ..settings import conninfo_from_env, parse_dsn
from .output import Style
from .server import EmbeddedServer, data_home

__all__ = [
    "EXIT_CONFLICT",
    "EXIT_DATABASE",
    "EXIT_INTERNAL",
    "EXIT_INTERRUPTED",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_USAGE",
    "PAGE",
    "Command",
    "Context",
    "Outcome",
    "Subcommands",
    "env_names_database",
    "with_connect_timeout",
    "writer_options",
]

EXIT_OK = 0
EXIT_NOT_FOUND = 1
EXIT_USAGE = 2
EXIT_CONFLICT = 3
EXIT_DATABASE = 4
EXIT_INTERRUPTED = 130  # the shell's convention for Ctrl-C
EXIT_INTERNAL = 70  # EX_SOFTWARE: a bug of ours, not something the user did

PAGE = 1000  # the largest page list() and history() give
CONNECT_TIMEOUT = 5  # seconds: an unreachable server fails fast instead of hanging


# What add_subparsers() returns, which each topic's add_commands() fills (a private name).
Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


@dataclass
class Outcome:
    """A command's result: ``document`` for --json, ``text`` for people."""

    document: Any
    text: str
    exit_code: int = 0
    error: str | None = None  # the stderr line when exit_code is not 0


@dataclass
class Context:
    """What a command works with; the database is resolved (and started) on first need."""

    args: argparse.Namespace
    style: Style
    stdin: TextIO = field(default_factory=lambda: sys.stdin)
    stderr: TextIO = field(default_factory=lambda: sys.stderr)
    _conninfo: str | None = None
    _dal: ConfigDAL | None = None

    def conninfo(self) -> str:
        """The connection string to use; says on stderr which database it names."""
        if self._conninfo is None:
            self._conninfo, where = self._resolve()
            print(f"amira-config: using {where}", file=self.stderr)
        return self._conninfo

    def _resolve(self) -> tuple[str, str]:
        given: str | None = self.args.dsn
        if not given and env_names_database():
            given = conninfo_from_env()
        if given:
            parsed = parse_dsn(given)  # a clear, password-free error when malformed
            return with_connect_timeout(parsed.conninfo), parsed.description
        server = EmbeddedServer(data_home())
        # Commands that manage migrations see the schema as it is (auto_migrate=False):
        # the embedded server is not migrated behind their back.
        dsn = server.ensure_running(migrate=self.args.auto_migrate)
        return with_connect_timeout(dsn), server.description

    def dal(self) -> ConfigDAL:
        """A DAL on the database (one connection is plenty for one command)."""
        if self._dal is None:
            self._dal = ConfigDAL(self.conninfo(), min_size=0, max_size=2)
        return self._dal

    def close(self) -> None:
        """Close the pool, if one was opened."""
        if self._dal is not None:
            self._dal.close()


def env_names_database() -> bool:
    """Whether AMIRA_CONFIG_DSN or a DB_* variable is set: then no embedded server is used."""
    names = ("AMIRA_CONFIG_DSN", "DB_HOST", "DB_NAME", "DB_USER", "DB_PORT", "DB_PASSWORD")
    # pydantic-settings matches names case-insensitively: so do we.
    present = {name.upper() for name, value in os.environ.items() if value.strip()}
    return any(name in present for name in names)


def with_connect_timeout(conninfo: str) -> str:
    """The DSN with a connect_timeout unless it has one (the migration runner sets none)."""
    if conninfo_to_dict(conninfo).get("connect_timeout"):
        return conninfo
    return make_conninfo(conninfo, connect_timeout=CONNECT_TIMEOUT)


# A command's function; None: a streaming command that printed as it went.
Command: TypeAlias = Callable[[Context], Outcome | None]


def writer_options(parser: argparse.ArgumentParser, *, version_option: bool = True) -> None:
    """--by, --reason (and --expect-version): the options of every command that writes."""
    parser.add_argument("--by", required=True, metavar="WHO", help="who makes the change")
    parser.add_argument("--reason", help="why (kept in the history)")
    if version_option:
        parser.add_argument(
            "--expect-version",
            type=int,
            metavar="N",
            help="change only if the key is at version N (0: only if it does not exist)",
        )
