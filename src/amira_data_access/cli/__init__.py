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
one line on stderr (a traceback only with ``--debug``); the password of any
DSN we were given is scrubbed from everything printed.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import sys
import traceback
from collections.abc import Sequence
from typing import Any, TextIO

from ..codec import DATA_TYPES
from ..errors import (
    ConcurrentModificationError,
    ConfigurationAccessError,
    DatabaseConnectionError,
    InvalidConfigurationError,
    MigrationError,
    SchemaNotReadyError,
    scrub,
)
from ..local_postgres import PostgresUnavailableError
from ..logging import LOGGER_NAME, configure_logging
from ..settings import DatabaseSettings, parse_dsn
from .commands import COMMANDS, Context, Outcome
from .output import Style, to_json
from .values import NotFoundError, UsageError

__all__ = ["EXIT_CONFLICT", "EXIT_DATABASE", "EXIT_NOT_FOUND", "EXIT_USAGE", "exit_code", "main"]

PROG = "amira-config"
EXIT_OK = 0
EXIT_NOT_FOUND = 1
EXIT_USAGE = 2
EXIT_CONFLICT = 3
EXIT_DATABASE = 4
EXIT_INTERRUPTED = 130  # the shell's convention for Ctrl-C
EXIT_INTERNAL = 70  # EX_SOFTWARE: a bug of ours, not something the user did


def exit_code(exc: BaseException) -> int:
    """The exit code a failure maps to (see the module docstring)."""
    if isinstance(exc, NotFoundError):
        return EXIT_NOT_FOUND
    if isinstance(exc, UsageError | InvalidConfigurationError):
        return EXIT_USAGE
    if isinstance(exc, ConcurrentModificationError):
        return EXIT_CONFLICT
    if isinstance(
        exc,
        DatabaseConnectionError
        | SchemaNotReadyError
        | MigrationError
        | PostgresUnavailableError
        | ConfigurationAccessError,
    ):
        return EXIT_DATABASE
    return EXIT_INTERNAL


# -- arguments ------------------------------------------------------------------------


def _writer_options(parser: argparse.ArgumentParser, *, version_option: bool = True) -> None:
    parser.add_argument("--by", required=True, metavar="WHO", help="who makes the change")
    parser.add_argument("--reason", help="why (kept in the history)")
    if version_option:
        parser.add_argument(
            "--expect-version",
            type=int,
            metavar="N",
            help="change only if the key is at version N (0: only if it does not exist)",
        )


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


def build_parser() -> argparse.ArgumentParser:
    """The whole command line."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Read, change, export and migrate AMIRA's configuration store.",
        epilog="exit codes: 0 ok, 1 not found, 2 usage/validation error, 3 conflict, "
        "4 database unreachable or not migrated",
    )
    _global_options(parser)
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_CommandParser
    )

    get = commands.add_parser("get", help="show one entry")
    get.add_argument("key", metavar="KEY")

    set_ = commands.add_parser("set", help="create or replace a key")
    set_.add_argument("key", metavar="KEY")
    set_.add_argument(
        "value", nargs="?", metavar="VALUE", help="JSON for json/int/float/bool, text for str"
    )
    set_.add_argument("--value-file", metavar="PATH", help="read VALUE from a file ('-': stdin)")
    set_.add_argument(
        "--type", choices=DATA_TYPES, help="data type (default: the stored one; needed if new)"
    )
    set_.add_argument("--description", help="what the key is for (kept when omitted)")
    _writer_options(set_)

    delete = commands.add_parser("delete", help="delete a key (its history stays)")
    delete.add_argument("key", metavar="KEY")
    _writer_options(delete)

    list_ = commands.add_parser("list", help="entries by key prefix, in key order")
    list_.add_argument("prefix", nargs="?", default="", metavar="PREFIX")

    history = commands.add_parser("history", help="changes of a key, newest first")
    history.add_argument("key", metavar="KEY")
    history.add_argument("--limit", type=int, metavar="N", help="at most N changes")

    rollback = commands.add_parser("rollback", help="restore what an older version held")
    rollback.add_argument("key", metavar="KEY")
    rollback.add_argument("--to-version", type=int, required=True, metavar="N")
    _writer_options(rollback, version_option=False)

    diff = commands.add_parser("diff", help="unified diff between two versions of a key")
    diff.add_argument("key", metavar="KEY")
    diff.add_argument("v1", type=int, metavar="V1")
    diff.add_argument("v2", type=int, nargs="?", metavar="V2", help="default: the current entry")

    export = commands.add_parser("export", help="entries as an import file")
    export.add_argument("prefix", nargs="?", default="", metavar="PREFIX")
    export.add_argument("--format", choices=["json", "yaml"], default="json")
    export.add_argument(
        "--at", metavar="TIMESTAMP", help="as it was then (ISO 8601; UTC if no offset)"
    )

    import_ = commands.add_parser("import", help="write an export file in one transaction")
    import_.add_argument("file", metavar="FILE", help="the file ('-': stdin)")
    import_.add_argument("--format", choices=["json", "yaml"], help="default: by extension")
    import_.add_argument("--dry-run", action="store_true", help="show the diff, write nothing")
    _writer_options(import_, version_option=False)

    migrate = commands.add_parser("migrate", help="apply pending migrations")
    migrate.add_argument("--dry-run", action="store_true", help="list them, apply nothing")
    commands.add_parser("status", help="applied, pending and changed migrations")
    commands.add_parser("verify", help="check the migration history against the files")
    for verb, text in (
        ("baseline", "record files up to VERSION as applied without running them"),
        ("repair", "clear the failed history row of VERSION so that it runs again"),
    ):
        commands.add_parser(verb, help=text).add_argument("version", type=int, metavar="VERSION")
    commands.add_parser("check", help="settings valid, server reachable, schema current")

    watch = commands.add_parser("watch", help="follow changes as they happen")
    watch.add_argument("prefix", nargs="?", default="", metavar="PREFIX")

    server = commands.add_parser("server", help="the embedded PostgreSQL")
    server.add_argument("action", choices=["status", "start", "stop"])
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
    style = Style.for_stream(sys.stderr)
    print(f"{PROG}: {style.red('error')}: {message}", file=sys.stderr)
    if json_output:
        document = {"error": {"code": code, "kind": kind, "message": message}}
        print(to_json(document), file=stdout)


def _parse(argv: Sequence[str], secrets: tuple[str, ...]) -> argparse.Namespace | int:
    """Parse, keeping argparse's own messages (which quote arguments) free of secrets."""
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            return build_parser().parse_args(argv)
    except SystemExit as exc:
        text = scrub(captured.getvalue(), secrets)
        sys.stderr.write(text)
        code = exc.code if isinstance(exc.code, int) else EXIT_USAGE
        if code and "--json" in argv:
            last = (text.strip().splitlines() or [""])[-1]
            message = last.removeprefix(f"{PROG}: error: ")
            print(to_json({"error": {"code": code, "kind": "UsageError", "message": message}}))
        return code


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return the exit code."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    secrets = _secrets(arguments)
    parsed = _parse(arguments, secrets)
    if isinstance(parsed, int):
        return parsed
    args = parsed
    _setup_logging(args.debug)
    stdout = sys.stdout
    ctx = Context(args, Style() if args.json else Style.for_stream(stdout))
    try:
        outcome: Outcome | None = COMMANDS[args.command](ctx)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        code = exit_code(exc)
        if args.debug or code == EXIT_INTERNAL:
            # A bug of ours always shows its traceback: there is nothing else to go on.
            sys.stderr.write(scrub("".join(traceback.format_exception(exc)), secrets))
        message = scrub(str(exc) or type(exc).__name__, secrets).strip().replace("\n", " ")
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
