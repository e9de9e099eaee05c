"""``amira-config``: read, change, export and migrate the configuration from a terminal.

Readable tables for people, ``--json`` (one JSON document on stdout) for
scripts, and exit codes that mean something:

====  ==============================================================
0     ok
1     not found (key, version)
2     usage or validation error (nothing was written)
3     conflict: the key was not at ``--expect-version``
4     database unreachable, schema not migrated, migrations refused
====  ==============================================================

The database is ``--dsn``, else ``AMIRA_CONFIG_DSN`` / ``DB_*``, else an
embedded PostgreSQL under ``AMIRA_CONFIG_HOME`` (see :mod:`.server`). Errors are
one line on stderr, followed by one line per problem when migrations are refused
(a traceback only with ``--debug``); the password of any DSN we were given is
scrubbed from everything printed.

This module parses and runs; the commands live in one module per topic
(:mod:`.keys`, :mod:`.history`, :mod:`.transfer`, :mod:`.schema`,
:mod:`.watching`, :mod:`.embedded`), each adding its own to the parser, on the
:class:`~.context.Context` and :class:`~.context.Outcome` of :mod:`.context`.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any, Final, TextIO, cast

from ..errors import (
    ConfigurationAccessError,
    ConflictError,
    DatabaseConnectionError,
    InvalidConfigurationError,
    MigrationError,
    SchemaNotReadyError,
    scrub,
)
from ..logging import LOGGER_NAME, configure_logging
from ..settings import DatabaseSettings, parse_dsn
from . import embedded, history, keys, schema, transfer, watching
from .context import (
    EXIT_CONFLICT,
    EXIT_DATABASE,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_USAGE,
    Context,
    Outcome,
    Subcommands,
)
from .output import Style, to_json
from .values import NotFoundError, UsageError

__all__ = [
    "EXIT_CONFLICT",
    "EXIT_DATABASE",
    "EXIT_NOT_FOUND",
    "EXIT_USAGE",
    "build_parser",
    "exit_code",
    "main",
]

PROG = "amira-config"
AddCommands = Callable[[Subcommands], None]  # what each topic module offers the parser
DESCRIPTION = "Read, change, export and migrate AMIRA's configuration store."
# Each topic module's add_commands, in the order their commands are listed in --help.
TOPICS: Final[tuple[AddCommands, ...]] = tuple(
    topic.add_commands for topic in (keys, history, transfer, schema, watching, embedded)
)


def exit_code(exc: BaseException) -> int:
    """The exit code a failure maps to (see the module docstring)."""
    if isinstance(exc, NotFoundError):
        return EXIT_NOT_FOUND
    if isinstance(exc, UsageError | InvalidConfigurationError):
        return EXIT_USAGE
    if isinstance(exc, ConflictError):  # a version or a count was not the expected one
        return EXIT_CONFLICT
    if isinstance(
        exc,
        DatabaseConnectionError | SchemaNotReadyError | MigrationError | ConfigurationAccessError,
    ):
        return EXIT_DATABASE
    # The embedded server's error (no binaries, a folder it cannot enter): imported only
    # now, so that a CLI given a database never loads the local PostgreSQL module.
    from .._dev.local_postgres import PostgresUnavailableError

    if isinstance(exc, PostgresUnavailableError):
        return EXIT_DATABASE
    return EXIT_INTERNAL


# -- arguments ------------------------------------------------------------------------


def _global_options(parser: argparse.ArgumentParser) -> None:
    """--dsn, --json and --debug: accepted before and after the command."""
    parser.add_argument(
        "--dsn",
        help="libpq connection string or URI (default: AMIRA_CONFIG_DSN, DB_*, else the "
        "embedded PostgreSQL under AMIRA_CONFIG_HOME)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    parser.add_argument("--debug", action="store_true", help="tracebacks and library logs")


def _common_options() -> argparse.ArgumentParser:
    # SUPPRESS: an option left out after the command keeps what was given before it.
    common = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    _global_options(common)
    return common


class _CommandParser(argparse.ArgumentParser):
    """A command's parser: also takes the global options after the command
    (``get KEY --json``), as kubectl and aws do."""

    _common = _common_options()

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(parents=[self._common], **kwargs)


def build_parser(
    topics: Sequence[AddCommands] = TOPICS, *, description: str = DESCRIPTION
) -> argparse.ArgumentParser:
    """The whole command line (or the commands of some topics): each topic adds its own."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=description,
        epilog="exit codes: 0 ok, 1 not found, 2 usage/validation error, 3 conflict, "
        "4 database unreachable or not migrated",
    )
    _global_options(parser)
    # A command that manages migrations sets auto_migrate=False (see Context).
    parser.set_defaults(auto_migrate=True)
    # Typed as making plain ArgumentParsers (what the topics need to know); they are
    # _CommandParsers, which also take the global options after the command.
    commands = cast(
        "Subcommands",
        parser.add_subparsers(
            dest="command", required=True, metavar="COMMAND", parser_class=_CommandParser
        ),
    )
    for add_commands in topics:
        add_commands(commands)
    return parser


# -- secrets and logging --------------------------------------------------------------


def _secrets(argv: Sequence[str]) -> tuple[str, ...]:
    """Passwords we may have been given, to scrub from anything we print."""
    candidates: list[str] = []
    for index, token in enumerate(argv):
        if token == "--dsn" and index + 1 < len(argv):  # noqa: S105  # an option, not a secret
            candidates.append(argv[index + 1])
        elif token.startswith("--dsn="):
            candidates.append(token.removeprefix("--dsn="))
    found: list[str] = []
    with contextlib.suppress(Exception):  # settings errors are reported later, properly
        settings = DatabaseSettings()
        if settings.dsn is not None:
            candidates.append(settings.dsn.get_secret_value())
        if settings.password is not None:
            found.append(settings.password.get_secret_value())
    for dsn in candidates:
        with contextlib.suppress(ConfigurationAccessError):
            found.extend(parse_dsn(dsn).secrets)
    return tuple(secret for secret in found if secret)


def _setup_logging(debug: bool) -> None:
    """Library events on stderr with --debug; otherwise silent (the error line says it all)."""
    if debug:
        configure_logging(level="DEBUG", stream=sys.stderr)
        return
    for name in (LOGGER_NAME, "psycopg"):
        logger = logging.getLogger(name)
        logger.addHandler(logging.NullHandler())
        logger.propagate = False  # keeps logging's last-resort handler from printing


# -- running --------------------------------------------------------------------------


def _report(message: str, *, code: int, kind: str, json_output: bool, stdout: TextIO) -> None:
    """The error on stderr (a problem list keeps its lines); in the JSON document, on one line."""
    style = Style.for_stream(sys.stderr)
    print(f"{PROG}: {style.red('error')}: {message}", file=sys.stderr)
    if json_output:
        one_line = message.replace("\n", " ")
        document = {"error": {"code": code, "kind": kind, "message": one_line}}
        print(to_json(document), file=stdout)


def _parse(
    argv: Sequence[str], secrets: tuple[str, ...], parser: argparse.ArgumentParser
) -> argparse.Namespace | int:
    """Parse, keeping argparse's own messages (which quote arguments) free of secrets."""
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            return parser.parse_args(argv)
    except SystemExit as exc:
        text = scrub(captured.getvalue(), secrets)
        sys.stderr.write(text)
        code = exc.code if isinstance(exc.code, int) else EXIT_USAGE
        if code and "--json" in argv:
            last = (text.strip().splitlines() or [""])[-1]
            message = last.removeprefix(f"{PROG}: error: ")
            print(to_json({"error": {"code": code, "kind": "UsageError", "message": message}}))
        return code


def main(
    argv: Sequence[str] | None = None,
    *,
    topics: Sequence[AddCommands] = TOPICS,
    description: str = DESCRIPTION,
) -> int:
    """Run one command; return the exit code.

    ``topics`` narrows the commands on offer: ``python -m amira_data_access.migrations``
    is this function with the schema commands only.
    """
    arguments = list(sys.argv[1:] if argv is None else argv)
    secrets = _secrets(arguments)
    parsed = _parse(arguments, secrets, build_parser(topics, description=description))
    if isinstance(parsed, int):
        return parsed
    args = parsed
    _setup_logging(args.debug)
    stdout = sys.stdout
    ctx = Context(args, Style() if args.json else Style.for_stream(stdout))
    try:
        outcome: Outcome | None = args.run(ctx)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        code = exit_code(exc)
        if args.debug or code == EXIT_INTERNAL:
            # A bug of ours always shows its traceback: there is nothing else to go on.
            sys.stderr.write(scrub("".join(traceback.format_exception(exc)), secrets))
        message = scrub(str(exc) or type(exc).__name__, secrets).strip()
        if not isinstance(exc, MigrationError):
            # One line; a MigrationError's further lines are its problems, one per line.
            message = message.replace("\n", " ")
        if code == EXIT_INTERNAL:
            message = f"internal error ({type(exc).__name__}): {message}"
        _report(message, code=code, kind=type(exc).__name__, json_output=args.json, stdout=stdout)
        return code
    finally:
        ctx.close()
    if outcome is None:  # a streaming command printed as it went
        return EXIT_OK
    text = to_json(outcome.document) if args.json else outcome.text
    if text:
        print(scrub(text, secrets), file=stdout)
    if outcome.error:
        print(f"{PROG}: error: {scrub(outcome.error, secrets)}", file=sys.stderr)
    return outcome.exit_code
