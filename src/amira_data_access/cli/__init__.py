"""``amira-config``: read, change, export and migrate the configuration from a terminal.

Readable tables for people, ``-o json|yaml`` (one document on stdout) for
scripts, ``-o value``/``-o env`` for shells, and exit codes that mean something:

====  ==============================================================
0     ok
1     not found (key, version)
2     usage or validation error (nothing was written)
3     conflict: not as expected (``--expect-version``, a key count)
4     database unreachable, lost, timed out or failed (also: the
      embedded server could not be started)
5     the server refused the login, or the role lacks a privilege
6     schema not migrated, or migrations refused or failed
70    a bug of ours (shown with its traceback)
130   interrupted (Ctrl-C)
141   stdout closed early (``| head``): 128 + SIGPIPE, quietly
====  ==============================================================

The database is ``--dsn``, else ``AMIRA_CONFIG_DSN`` / ``DB_*``, else an
embedded PostgreSQL under ``AMIRA_CONFIG_HOME`` (see :mod:`.server`). Errors are
one line on stderr, followed by one line per problem when migrations are refused
(a traceback only with ``--debug``); the password of any DSN we were given is
scrubbed from everything printed.

This module parses and runs; the commands live in one module per topic
(:mod:`.keys`, :mod:`.history`, :mod:`.transfer`, :mod:`.schema`,
:mod:`.watching`, :mod:`.embedded`, :mod:`.completion`), each adding its own to
the parser, on the :class:`~.context.Context` and :class:`~.context.Outcome` of
:mod:`.context`. Building the parser imports none of the library: ``--help``,
``--version`` and shell completion stay fast, and each command imports what it
uses when it runs. A command line that names a command imports and builds only
that command's topic (:data:`TOPIC_COMMANDS`); its ``--help`` and its errors
read the same as with every command built.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import io
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final, NoReturn, TextIO, cast

from . import audit, completion
from .arguments import normalize, top_command
from .context import (
    ALL_OUTPUTS,
    EXIT_BROKEN_PIPE,
    EXIT_CONFLICT,
    EXIT_DATABASE,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_SCHEMA,
    EXIT_USAGE,
    Context,
    Outcome,
    Subcommands,
)
from .output import Style, to_json
from .values import YAML_MISSING, NotFoundError, UsageError

if TYPE_CHECKING:  # a topic module is imported when first named (see __getattr__)
    from . import schema as schema

__all__ = [
    "EXIT_BROKEN_PIPE",
    "EXIT_CONFLICT",
    "EXIT_DATABASE",
    "EXIT_NOT_FOUND",
    "EXIT_REFUSED",
    "EXIT_SCHEMA",
    "EXIT_USAGE",
    "build_parser",
    "exit_code",
    "main",
    "run",
]

PROG = "amira-config"
AddCommands = Callable[[Subcommands], None]  # what each topic module offers the parser
DESCRIPTION = "Read, change, export and migrate AMIRA's configuration store."
EPILOG = """\
exit codes:
  0 ok, 1 not found, 2 usage or validation error, 3 conflict,
  4 database unreachable (or timed out), 5 login or permission refused,
  6 schema not migrated (or migrations refused), 70 internal error,
  130 interrupted, 141 output closed early (| head)

examples:
  amira-config get amira.chat.tone -o value
  amira-config set amira.nlu.detection_threshold 0.82 --type float --reason "ticket 42"
  amira-config list amira.chat. -o json | jq .
  amira-config completion bash > ~/.local/share/bash-completion/completions/amira-config"""
# The topic modules, in the order their commands are listed in --help, and the
# commands each adds (tests/unit/test_cli_main.py checks them against the parsers).
# A command line naming one of these commands imports and builds only its topic:
# building every parser took 29-63 ms (in-process, warm, loaded machine), keys alone 2 ms.
TOPIC_COMMANDS: Final[dict[str, tuple[str, ...]]] = {
    "keys": ("get", "set", "delete", "list"),
    "history": ("history", "rollback", "diff"),
    "transfer": ("export", "import"),
    "schema": ("migrate", "status", "verify", "baseline", "repair", "reset", "check"),
    "schemas": ("schema",),
    "watching": ("watch",),
    "flags": ("flag",),
    "secrets": ("secrets",),
    "audit": ("audit", "access"),
    "embedded": ("server",),
    "completion": ("completion",),
}
_TOPIC_OF: Final = {command: topic for topic, names in TOPIC_COMMANDS.items() for command in names}


def topic(name: str) -> AddCommands:
    """The ``add_commands`` of the topic module ``name`` (a key of :data:`TOPIC_COMMANDS`),
    imported now."""
    module = importlib.import_module(f"{__name__}.{name}")
    return cast(AddCommands, module.add_commands)


def all_topics() -> tuple[AddCommands, ...]:
    """Every topic's ``add_commands``, in --help order (imports every command module)."""
    return tuple(topic(name) for name in TOPIC_COMMANDS)


def __getattr__(name: str) -> Any:
    # ``cli.schema`` and the other topic modules, imported when first named (the
    # migrations command narrows the CLI to ``cli.schema.add_commands``).
    if name in TOPIC_COMMANDS:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def exit_code(exc: BaseException) -> int:
    """The exit code a failure maps to (see the module docstring)."""
    from ..errors import (
        AuthenticationError,
        ConfigurationAccessError,
        ConflictError,
        InvalidConfigurationError,
        MigrationError,
        PermissionDeniedError,
        SchemaNotReadyError,
    )

    if isinstance(exc, NotFoundError):
        return EXIT_NOT_FOUND
    if isinstance(exc, UsageError | InvalidConfigurationError):
        return EXIT_USAGE
    if isinstance(exc, ConflictError):  # a version or a count was not the expected one
        return EXIT_CONFLICT
    if isinstance(exc, AuthenticationError | PermissionDeniedError):
        return EXIT_REFUSED
    if isinstance(exc, SchemaNotReadyError | MigrationError):
        return EXIT_SCHEMA
    if isinstance(exc, ConfigurationAccessError):  # unreachable, lost, timed out, failed
        return EXIT_DATABASE
    # The embedded server's error (no binaries, a folder it cannot enter): imported only
    # now, so that a CLI given a database never loads the local PostgreSQL module.
    from .._dev.local_postgres import PostgresUnavailableError

    if isinstance(exc, PostgresUnavailableError):
        return EXIT_DATABASE
    return EXIT_INTERNAL


def _keeps_its_lines(exc: BaseException) -> bool:
    """Errors whose further lines are worth reading (problems, a server log's tail)."""
    from ..errors import MigrationError

    if isinstance(exc, MigrationError):
        return True
    local_postgres = sys.modules.get("amira_data_access._dev.local_postgres")
    return local_postgres is not None and isinstance(exc, local_postgres.PostgresUnavailableError)


# -- arguments ------------------------------------------------------------------------


class _VersionAction(argparse.Action):
    """--version, looked up only when asked for."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, help="show the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            number = version("amira-data-access")
        except PackageNotFoundError:  # run from a source tree that is not installed
            number = "unknown"
        print(f"{PROG} {number} (Python {sys.version.split()[0]})")
        parser.exit()


def _global_options(parser: argparse.ArgumentParser) -> None:
    """The options every command takes, before or after the command."""
    parser.add_argument(
        "--dsn",
        help="libpq connection string or URI (default: AMIRA_CONFIG_DSN, DB_*, else the "
        "embedded PostgreSQL under AMIRA_CONFIG_HOME)",
    )
    parser.add_argument(
        "-o",
        "--output",
        choices=ALL_OUTPUTS,
        help="table (default), json or yaml (one document), value (bare values), "
        "env (NAME='value' lines for a shell)",
    )
    parser.add_argument(
        "--json", dest="output", action="store_const", const="json", help="same as -o json"
    )
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="no notices, no confirmation of writes"
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="say which database is used even when stderr is not a terminal",
    )
    parser.add_argument("--debug", action="store_true", help="tracebacks and library logs")
    parser.add_argument(
        "--reveal",
        action="store_true",
        help="show secrets' plaintext (opened with AMIRA_CONFIG_SECRET_KEYS); masked otherwise",
    )


def _common_options() -> argparse.ArgumentParser:
    # SUPPRESS: an option left out after the command keeps what was given before it.
    common = argparse.ArgumentParser(
        add_help=False, argument_default=argparse.SUPPRESS, allow_abbrev=False
    )
    _global_options(common)
    return common


class _CommandParser(argparse.ArgumentParser):
    """A command's parser: also takes the global options after the command
    (``get KEY --json``), as kubectl and aws do; no abbreviated options."""

    _common = _common_options()

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(parents=[self._common], allow_abbrev=False, **kwargs)


def build_parser(
    topics: Sequence[AddCommands] | None = None,
    *,
    description: str = DESCRIPTION,
    epilog: str | None = None,
) -> argparse.ArgumentParser:
    """The whole command line (``topics`` None), or the commands of some topics: each
    topic adds its own. The whole one ends with :data:`EPILOG` unless given another."""
    if topics is None:
        topics, epilog = all_topics(), epilog or EPILOG
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,  # --value=x must never be taken as --value-file=x
    )
    parser.add_argument("--version", action=_VersionAction)
    _global_options(parser)
    # A command that manages migrations sets auto_migrate=False (see Context).
    parser.set_defaults(auto_migrate=True, outputs=ALL_OUTPUTS)
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


class _Secrets(Sequence[str]):
    """Passwords we may have been given, to scrub from anything we print: found on first
    use (parsing a DSN imports psycopg, which --help and completion need not pay for)."""

    def __init__(self, argv: Sequence[str]) -> None:
        self._argv = list(argv)
        self._found: tuple[str, ...] | None = None

    def _all(self) -> tuple[str, ...]:
        if self._found is None:
            self._found = _secrets(self._argv)
        return self._found

    def __getitem__(self, index: Any) -> Any:
        return self._all()[index]

    def __len__(self) -> int:
        return len(self._all())


def _secrets(argv: Sequence[str]) -> tuple[str, ...]:
    """Passwords we may have been given, to scrub from anything we print."""
    from ..settings import database_variables

    candidates: list[str] = []
    for index, token in enumerate(argv):
        if token == "--dsn" and index + 1 < len(argv):  # noqa: S105  # an option, not a secret
            candidates.append(argv[index + 1])
        elif token.startswith("--dsn="):
            candidates.append(token.removeprefix("--dsn="))
    variables = database_variables()
    found: list[str] = []
    dsn, password = variables.get("AMIRA_CONFIG_DSN"), variables.get("DB_PASSWORD")
    if dsn is not None:
        candidates.append(dsn)
    if password is not None:
        found.append(password)
    if candidates:
        from ..errors import ConfigurationAccessError
        from ..settings import parse_dsn

        for candidate in candidates:
            with contextlib.suppress(ConfigurationAccessError):
                found.extend(parse_dsn(candidate).secrets)
    return tuple(secret for secret in found if secret)


def _setup_logging(debug: bool) -> None:
    """Library events on stderr with --debug; otherwise silent (the error line says it all)."""
    import logging

    from ..logging import LOGGER_NAME, configure_logging

    if debug:
        configure_logging(level="DEBUG", stream=sys.stderr)
        return
    for name in (LOGGER_NAME, "psycopg"):
        logger = logging.getLogger(name)
        logger.addHandler(logging.NullHandler())
        logger.propagate = False  # keeps logging's last-resort handler from printing


# -- running --------------------------------------------------------------------------


def _scrub(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def _wants_document(argv: Sequence[str]) -> str | None:
    """json or yaml when the (possibly unparsable) command line asks for it."""
    wanted: str | None = None
    for index, word in enumerate(argv):
        if word == "--json":
            wanted = "json"
        elif word in ("-o", "--output") and index + 1 < len(argv):
            wanted = argv[index + 1]
        elif word.startswith(("--output=", "-o=")):
            wanted = word.split("=", 1)[1]
        elif word.startswith("-o") and not word.startswith("--") and len(word) > 2:
            wanted = word[2:]
    return wanted if wanted in ("json", "yaml") else None


def _error_document(code: int, kind: str, message: str, output: str | None) -> str | None:
    document = {"error": {"code": code, "kind": kind, "message": message.replace("\n", " ")}}
    if output == "json":
        return to_json(document)
    if output == "yaml":
        with contextlib.suppress(ImportError):
            from .output import to_yaml

            return to_yaml(document)
    return None


def _report(message: str, *, code: int, kind: str, output: str | None, stdout: TextIO) -> None:
    """The error on stderr (a problem list keeps its lines); in a json/yaml document too."""
    style = Style.for_stream(sys.stderr)
    print(f"{PROG}: {style.red('error')}: {message}", file=sys.stderr)
    document = _error_document(code, kind, message, output)
    if document is not None:
        print(document, file=stdout)


def _parse(
    argv: Sequence[str], secrets: Sequence[str], parser: argparse.ArgumentParser
) -> argparse.Namespace | int:
    """Parse, keeping argparse's own messages (which quote arguments) free of secrets."""
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            return parser.parse_args(normalize(parser, audit.spell_history_prune(list(argv))))
    except SystemExit as exc:
        text = captured.getvalue()
        text = _scrub(text, secrets) if text else text
        sys.stderr.write(text)
        code = exc.code if isinstance(exc.code, int) else EXIT_USAGE
        if code:
            last = (text.strip().splitlines() or [""])[-1]
            message = last.removeprefix(f"{PROG}: error: ")
            document = _error_document(code, "UsageError", message, _wants_document(argv))
            if document is not None:
                print(document)
        return code


def _check_output(args: argparse.Namespace) -> None:
    """Refuse an -o the command cannot give, before it does anything."""
    output = args.output or "table"
    if output not in args.outputs:
        offered = ", ".join(args.outputs)
        raise UsageError(f"-o {output} is not available for {args.command} (choose {offered})")
    if output == "yaml":
        try:
            import yaml  # noqa: F401
        except ImportError:
            raise UsageError(YAML_MISSING) from None


def _reveal(ctx: Context) -> None:
    """``--reveal``: secrets' plaintext in this command's output, opened with the keyring."""
    if not getattr(ctx.args, "reveal", False):
        return
    keyring = ctx.keyring()
    if keyring is None:
        raise UsageError(
            "--reveal needs the keyring: set AMIRA_CONFIG_SECRET_KEYS or "
            "AMIRA_CONFIG_SECRET_KEYS_FILE"
        )
    from .output import reveal_secrets

    reveal_secrets(keyring)


def _render(outcome: Outcome, ctx: Context) -> str:
    output = ctx.output
    if output == "json":
        return to_json(outcome.document)
    if output == "yaml":
        from .output import to_yaml

        return to_yaml(outcome.document)
    if output in ("value", "env"):
        from .output import bare_value, env_lines, visible_value

        items = [
            (item.key, visible_value(item.key, item.value, item.data_type), item.data_type)
            for item in outcome.items or ()
        ]
        if output == "value":
            return "\n".join(bare_value(value, data_type) for _key, value, data_type in items)
        try:
            return env_lines(items)
        except ValueError as exc:
            raise UsageError(f"-o env: {exc}") from None
    if outcome.confirmation and ctx.args.quiet:
        return ""
    return outcome.text


def _silence_stdout() -> None:
    """After a broken pipe: nothing more reaches the closed pipe (nor fails at exit)."""
    with contextlib.suppress(OSError, ValueError, io.UnsupportedOperation):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def run() -> NoReturn:
    """The ``amira-config`` script (and ``python -m amira_data_access.cli``): :func:`main`
    on the process's arguments, then exit with its code."""
    code = main()
    # The process ends here: its objects need no last collection, yet Python's shutdown
    # runs one over all of them (psycopg's and ours): from main() returning to the exit,
    # 944 ms median, 89 ms frozen (9 alternating rounds, a loaded 2-core machine), about
    # a sixth of the whole command there. Frozen objects are skipped; atexit handlers,
    # flushing and thread joins still happen.
    gc.freeze()
    sys.exit(code)


def main(
    argv: Sequence[str] | None = None,
    *,
    topics: Sequence[AddCommands] | None = None,
    description: str = DESCRIPTION,
) -> int:
    """Run one command; return the exit code.

    ``topics`` narrows the commands on offer (None: all): ``python -m amira_data_access.migrations``
    is this function with the schema commands only.
    """
    arguments = list(sys.argv[1:] if argv is None else argv)
    try:
        return _main(arguments, topics, description)
    except BrokenPipeError:
        # The reader went away (| head): stop quietly, as Unix tools do.
        _silence_stdout()
        return EXIT_BROKEN_PIPE


def _parser_for(
    arguments: Sequence[str], topics: Sequence[AddCommands] | None, description: str
) -> argparse.ArgumentParser:
    """The parser for this command line: only the named command's topic when that is all
    it can need (the command's own --help and errors are the same either way); the whole
    command line for --help, --version, completion or anything unrecognised."""
    if topics is None and arguments[:1] != [completion.COMPLETE_COMMAND]:
        # As _parse will read it: ``history prune --older-than …`` is audit's command.
        found = top_command(build_parser(()), audit.spell_history_prune(list(arguments)))
        if found is not None:
            before, command = found
            wanted = _TOPIC_OF.get(command)
            if wanted is not None and not any(map(_may_be_top_level_help, before)):
                return build_parser((topic(wanted),), description=description, epilog=EPILOG)
    return build_parser(topics, description=description)


def _may_be_top_level_help(word: str) -> bool:
    """--help, --version, or a cluster of short options (``-qh``) that may hold -h."""
    if word.startswith("--"):
        return word in ("--help", "--version")
    return word == "-h" or len(word) > 2


def _main(arguments: list[str], topics: Sequence[AddCommands] | None, description: str) -> int:
    parser = _parser_for(arguments, topics, description)
    if arguments[:1] == [completion.COMPLETE_COMMAND]:
        return completion.complete(parser, arguments[1:])
    secrets = _Secrets(arguments)
    parsed = _parse(arguments, secrets, parser)
    if isinstance(parsed, int):
        return parsed
    args = parsed
    _setup_logging(args.debug)
    stdout = sys.stdout
    table = (args.output or "table") == "table"
    ctx = Context(args, Style.for_stream(stdout) if table else Style())
    try:
        _check_output(args)
        _reveal(ctx)
        outcome: Outcome | None = args.run(ctx)
        text = "" if outcome is None else _render(outcome, ctx)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        raise
    except Exception as exc:
        return _failed(exc, ctx, secrets, stdout)
    finally:
        ctx.close()
        if getattr(args, "reveal", False):
            from .output import reveal_secrets

            reveal_secrets(None)  # for this command only (main may run again in-process)
    if outcome is None:  # a streaming command printed as it went
        return EXIT_OK
    if text:
        print(_scrub(text, secrets), file=stdout)
    stdout.flush()  # a closed pipe is found here, inside main, not at interpreter exit
    if outcome.error:
        error = outcome.error + _which_database(ctx, outcome.exit_code)
        print(f"{PROG}: error: {_scrub(error, secrets)}", file=sys.stderr)
    return outcome.exit_code


def _which_database(ctx: Context, code: int) -> str:
    """`` [host=… dbname=…]`` for a failure to reach or enter the database: the notice that
    names it is not shown off a terminal, and, as DB_* are common names, the variables
    that chose it are named too."""
    if code not in (EXIT_DATABASE, EXIT_REFUSED) or ctx.where is None:
        return ""
    from_env = ctx.origin not in (None, "--dsn")
    named = f" named by {ctx.origin} in the environment" if from_env else ""
    return f" [{ctx.where}{named}]"


def _failed(exc: Exception, ctx: Context, secrets: Sequence[str], stdout: TextIO) -> int:
    """Report a failure: one line (a traceback too with --debug, or for a bug of ours)."""
    import traceback

    code = exit_code(exc)
    if ctx.args.debug or code == EXIT_INTERNAL:
        # A bug of ours always shows its traceback: there is nothing else to go on.
        sys.stderr.write(_scrub("".join(traceback.format_exception(exc)), secrets))
    message = _scrub(str(exc) or type(exc).__name__, secrets).strip()
    if not _keeps_its_lines(exc):
        # One line; a MigrationError's further lines are its problems, one per line.
        message = message.replace("\n", " ")
    message += _which_database(ctx, code)
    if code == EXIT_INTERNAL:
        message = f"internal error ({type(exc).__name__}): {message}"
    _report(message, code=code, kind=type(exc).__name__, output=ctx.args.output, stdout=stdout)
    return code
