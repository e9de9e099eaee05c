"""What every ``amira-config`` command works with and returns; the exit codes.

A command is a function of a :class:`Context` returning an :class:`Outcome`:
the document for ``-o json``/``-o yaml``, the text for people (``-o table``) and,
for commands about keys, the ``(key, value, type)`` items that ``-o value`` and
``-o env`` print, all built from the same data so they never disagree. Failures
are raised (the library's exceptions, :class:`~.values.UsageError`,
:class:`~.values.NotFoundError`) and turned into exit codes in one place,
:func:`amira_data_access.cli.main`. Each topic module (:mod:`.keys`,
:mod:`.history`, :mod:`.transfer`, :mod:`.schema`, :mod:`.watching`,
:mod:`.embedded`) registers its commands with ``add_commands(commands)``
through :func:`add_command`: the parser of each names its function as ``run``.

Imports stay light here: the library's modules are imported when a command
first needs them, so ``--help``, ``--version`` and completion do not pay for
psycopg and friends.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, TextIO, TypeAlias

from .output import Style

if TYPE_CHECKING:
    from ..dal import ConfigDAL
    from ..secrets import Keyring

__all__ = [
    "ACTOR_ENV",
    "ALL_OUTPUTS",
    "CONNECT_TIMEOUT",
    "DOCUMENT_OUTPUTS",
    "EXIT_BROKEN_PIPE",
    "EXIT_CONFLICT",
    "EXIT_DATABASE",
    "EXIT_INTERNAL",
    "EXIT_INTERRUPTED",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_REFUSED",
    "EXIT_SCHEMA",
    "EXIT_USAGE",
    "PAGE",
    "Command",
    "Context",
    "Item",
    "Outcome",
    "Subcommands",
    "actor",
    "add_command",
    "default_actor",
    "positive_int",
    "with_connect_timeout",
    "writer_options",
]

EXIT_OK = 0
EXIT_NOT_FOUND = 1  # the key or version asked for does not exist
EXIT_USAGE = 2  # the command line or an input file is wrong; nothing written
EXIT_CONFLICT = 3  # the data was not as expected (--expect-version, a count); nothing written
EXIT_DATABASE = 4  # the database is unreachable, was lost, timed out or failed
EXIT_REFUSED = 5  # the server refused the login, or the role lacks a privilege
EXIT_SCHEMA = 6  # the schema is not migrated, or the migrations were refused or failed
EXIT_INTERNAL = 70  # EX_SOFTWARE: a bug of ours, not something the user did
EXIT_INTERRUPTED = 130  # the shell's convention for Ctrl-C (128 + SIGINT)
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what the shell shows when the reader went away

PAGE = 1000  # the largest page list() and history() give
CONNECT_TIMEOUT = 5  # seconds: an unreachable server fails fast instead of hanging
ACTOR_ENV = "AMIRA_CONFIG_ACTOR"

# -o/--output: a document (json, yaml), the text for people (table), or per key
# (value: the bare values, env: KEY=VALUE lines for a shell).
DOCUMENT_OUTPUTS: Final = ("table", "json", "yaml")
ALL_OUTPUTS: Final = (*DOCUMENT_OUTPUTS, "value", "env")


# What add_subparsers() returns, which each topic's add_commands() fills (a private name).
Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


@dataclass(frozen=True, slots=True)
class Item:
    """One key's value, for ``-o value`` and ``-o env``."""

    key: str
    value: Any
    data_type: str


@dataclass
class Outcome:
    """A command's result: ``document`` for json/yaml, ``text`` for people, ``items`` per key."""

    document: Any
    text: str
    exit_code: int = 0
    error: str | None = None  # the stderr line when exit_code is not 0
    items: Sequence[Item] | None = None  # what -o value / -o env print
    confirmation: bool = False  # the text only confirms a write: -q leaves it out


@dataclass
class Context:
    """What a command works with; the database is resolved (and started) on first need."""

    args: argparse.Namespace
    style: Style
    stdin: TextIO = field(default_factory=lambda: sys.stdin)
    stderr: TextIO = field(default_factory=lambda: sys.stderr)
    _conninfo: str | None = None
    _origin: str | None = None
    where: str | None = None  # the database in use, as the notice names it (no password)
    _dal: ConfigDAL | None = None

    @property
    def output(self) -> str:
        """The -o/--output format asked for."""
        return str(getattr(self.args, "output", None) or "table")

    def notice(self, message: str, *, always: bool = False) -> None:
        """An informational line on stderr: never with -q; with -v, on a terminal, or ``always``."""
        if getattr(self.args, "quiet", False):
            return
        if always or getattr(self.args, "verbose", False) or _is_terminal(self.stderr):
            print(f"amira-config: {message}", file=self.stderr)

    def conninfo(self) -> str:
        """The connection string to use; says which database it names (see :meth:`notice`)."""
        if self._conninfo is None:
            self._conninfo, self.where = self._resolve()
            self.notice(f"using {self.where}")
        return self._conninfo

    @property
    def origin(self) -> str | None:
        """Where the database came from: ``--dsn``, the variables that named it, or None
        (the embedded server); known once :meth:`conninfo` ran."""
        return self._origin

    def _resolve(self) -> tuple[str, str]:
        from ..settings import conninfo_from_env, database_variables, parse_dsn

        given: str | None = self.args.dsn
        if given:
            self._origin = "--dsn"
        else:
            variables = database_variables()
            if variables:
                given = conninfo_from_env()  # its own errors name the variables
                self._origin = " ".join(variables.described())
        if given:
            parsed = parse_dsn(given)  # a clear, password-free error when malformed
            return with_connect_timeout(parsed.conninfo), parsed.description
        from .server import EmbeddedServer, data_home

        server = EmbeddedServer(data_home())
        # Commands that manage migrations see the schema as it is (auto_migrate=False):
        # the embedded server is not migrated behind their back.
        dsn = server.ensure_running(migrate=self.args.auto_migrate)
        return with_connect_timeout(dsn), server.description

    def dal(self) -> ConfigDAL:
        """A DAL on the database (one connection is plenty for one command)."""
        if self._dal is None:
            from ..dal import ConfigDAL

            self._dal = ConfigDAL(self.conninfo(), min_size=0, max_size=2, keyring=self.keyring())
        return self._dal

    def keyring(self) -> Keyring | None:
        """The keyring the environment names (``AMIRA_CONFIG_SECRET_KEYS``…), or None."""
        from ..secrets import Keyring
        from .values import UsageError

        try:
            return Keyring.from_env()
        except ValueError as exc:  # its message names key ids, never keys
            raise UsageError(f"the secrets keyring: {exc}") from None

    def close(self) -> None:
        """Close the pool, if one was opened."""
        if self._dal is not None:
            self._dal.close()


def _is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def with_connect_timeout(conninfo: str) -> str:
    """The DSN with a connect_timeout unless it has one (the migration runner sets none)."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    if conninfo_to_dict(conninfo).get("connect_timeout"):
        return conninfo
    return make_conninfo(conninfo, connect_timeout=CONNECT_TIMEOUT)


# A command's function; None: a streaming command that printed as it went.
Command: TypeAlias = Callable[[Context], Outcome | None]


def add_command(
    commands: Subcommands,
    name: str,
    *,
    summary: str,
    examples: Sequence[str],
    run: Command,
    outputs: Sequence[str] = DOCUMENT_OUTPUTS,
    details: str | None = None,
) -> argparse.ArgumentParser:
    """A command's parser: its one-line ``summary`` in the command list, and in its own
    ``--help`` the summary, ``details`` and an example per line of ``examples``."""
    description = summary if details is None else f"{summary}\n\n{details}"
    epilog = "examples:\n" + "\n".join(f"  {example}" for example in examples)
    parser = commands.add_parser(
        name,
        help=summary,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(run=run, outputs=tuple(outputs))
    return parser


def positive_int(text: str) -> int:
    """argparse type: an integer of at least 1 (a limit, a version)."""
    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def default_actor(environ: dict[str, str] | None = None) -> str:
    """Who acts when --by is not given: ``AMIRA_CONFIG_ACTOR``, else ``user@hostname``.

    The database also records its login role beside it, so this names the person
    (or the job) behind a shared role.
    """
    import getpass
    import socket

    env = os.environ if environ is None else environ
    explicit = env.get(ACTOR_ENV, "").strip()
    if explicit:
        return explicit
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no login name and no passwd entry (some containers)
        user = f"uid-{os.getuid()}"
    return f"{user}@{socket.gethostname() or 'localhost'}"


def writer_options(parser: argparse.ArgumentParser, *, version_option: bool = True) -> None:
    """--by, --reason (and --expect-version): the options of every command that writes."""
    parser.add_argument(
        "--by",
        metavar="WHO",
        help=f"who makes the change (default: ${ACTOR_ENV}, else user@hostname)",
    )
    parser.add_argument("--reason", help="why (kept in the history)")
    if version_option:
        parser.add_argument(
            "--expect-version",
            type=int,
            metavar="N",
            help="change only if the key is at version N (0: only if it does not exist)",
        )


def actor(ctx: Context) -> str:
    """The --by of a write, or its default."""
    given: str | None = ctx.args.by
    return given if given is not None else default_actor()
