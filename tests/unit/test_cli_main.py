"""Unit tests for the CLI's argument parsing, exit codes, data home and root reachability."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from amira_data_access._dev.local_postgres import PostgresUnavailableError
from amira_data_access.cli import build_parser, exit_code, main
from amira_data_access.cli.arguments import normalize
from amira_data_access.cli.completion import _subcommands as _commands
from amira_data_access.cli.context import default_actor
from amira_data_access.cli.server import ROOT_HOME, blocking_folder, data_home
from amira_data_access.cli.values import NotFoundError, UsageError
from amira_data_access.errors import (
    AuthenticationError,
    ConcurrentModificationError,
    ConfigurationAccessError,
    DatabaseConnectionError,
    DatabaseTimeoutError,
    InvalidConfigurationError,
    MigrationError,
    PermissionDeniedError,
    SchemaNotReadyError,
    UnexpectedCountError,
)


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """main() run in-process silences the library's loggers (as the CLI process does):
    put them back for the tests that follow."""
    loggers = [logging.getLogger(name) for name in ("amira_data_access", "psycopg")]
    saved = [(logger, logger.propagate, list(logger.handlers)) for logger in loggers]
    yield
    for logger, propagate, handlers in saved:
        logger.propagate = propagate
        logger.handlers[:] = handlers


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (NotFoundError("k"), 1),
        (UsageError("u"), 2),
        (InvalidConfigurationError("bad"), 2),
        (ConcurrentModificationError("k", expected_version=1, current_version=2), 3),
        (UnexpectedCountError("delete", expected_count=2, found_count=3), 3),
        (DatabaseConnectionError("down"), 4),
        (DatabaseTimeoutError("slow"), 4),
        (PostgresUnavailableError("no binaries"), 4),
        (ConfigurationAccessError("other"), 4),
        (AuthenticationError("wrong password"), 5),
        (PermissionDeniedError("no INSERT"), 5),
        (SchemaNotReadyError("migrate"), 6),
        (MigrationError("refused"), 6),
        (RuntimeError("bug"), 70),
    ],
)
def test_exit_codes(error: BaseException, code: int) -> None:
    """Each failure maps to the documented exit code."""
    assert exit_code(error) == code


def test_global_options_before_or_after_the_command() -> None:
    """--json/--dsn work on either side of the command; a later absence does not reset them."""
    parser = build_parser()
    before = parser.parse_args(["--json", "--dsn", "host=a", "get", "k"])
    after = parser.parse_args(["get", "k", "--json", "--dsn", "host=a"])
    plain = parser.parse_args(["get", "k"])
    assert (before.output, before.dsn) == ("json", "host=a")
    assert (after.output, after.dsn) == ("json", "host=a")
    assert (plain.output, plain.dsn, plain.debug) == (None, None, False)
    for spelled in (["-o", "yaml"], ["--output", "yaml"], ["--output=yaml"], ["-oyaml"]):
        assert parser.parse_args(["list", *spelled]).output == "yaml", spelled
        assert parser.parse_args([*spelled, "list"]).output == "yaml", spelled


def test_set_arguments() -> None:
    """set takes VALUE or --value-file, a type among the five, and who does it."""
    args = build_parser().parse_args(
        ["set", "k", "1", "--type", "int", "--by", "me", "--expect-version", "0"]
    )
    assert (args.value, args.type, args.by, args.expect_version) == ("1", "int", "me", 0)
    args = build_parser().parse_args(["set", "k", "--value-file", "-", "--by", "me"])
    assert (args.value, args.value_file, args.type) == (None, "-", None)
    assert build_parser().parse_args(["set", "k", "1"]).by is None  # defaulted when run


@pytest.mark.parametrize(
    ("argv", "value", "more"),
    [
        (["set", "svc.offset", "-1e3", "--type", "float", "--by", "ops"], "-1e3", {}),
        (["set", "k", "-v", "--type", "str"], "-v", {"verbose": False}),
        (["set", "k", "-1", "--type", "int"], "-1", {}),
        (["set", "k", "--type", "float", "-1e3"], "-1e3", {}),
        (["set", "k", "--type", "str", "--by", "ops", "--", "--verbose"], "--verbose", {}),
        (["set", "--type", "str", "--", "k", "-x"], "-x", {}),
        (["set", "k", "v", "-v"], "v", {"verbose": True}),
        (["set", "k", "v", "--reason", "-x"], "v", {"reason": "-x"}),
        (["set", "k", "v", "--description=--d"], "v", {"description": "--d"}),
        (["-v", "set", "k", "-q"], "-q", {"verbose": True, "quiet": False}),
    ],
)
def test_values_that_start_with_a_dash(
    argv: list[str], value: str, more: dict[str, object]
) -> None:
    """The word right after KEY is the VALUE, an option's value is the next word, and '--'
    ends the options wherever they are (tests/unit: the parser with its normalisation)."""
    parser = build_parser()
    args = parser.parse_args(normalize(parser, argv))
    assert args.value == value
    for name, expected in more.items():
        assert getattr(args, name) == expected, name


def test_value_option_is_not_an_abbreviation_of_value_file() -> None:
    """--value=x is the value (argparse abbreviations are off: it was --value-file)."""
    parser = build_parser()
    args = parser.parse_args(normalize(parser, ["set", "k", "--value=--verbose"]))
    assert (args.value_option, args.value_file) == ("--verbose", None)
    with pytest.raises(SystemExit):
        parser.parse_args(["set", "k", "1", "--descr", "x"])  # no prefix matching
    with pytest.raises(SystemExit):
        parser.parse_args(["--js", "get", "k"])


@pytest.mark.parametrize("limit", ["0", "-1", "x"])
def test_history_limit_must_be_positive(limit: str, capsys: pytest.CaptureFixture[str]) -> None:
    """history --limit 0 or -1 is a usage error (2), not "the key never existed"."""
    assert main(["--dsn", "host=nowhere", "history", "k", "--limit", limit]) == 2
    assert "--limit" in capsys.readouterr().err


def test_data_types_match_the_codec() -> None:
    """The parser spells out codec.DATA_TYPES (to import none of the library): the same."""
    from amira_data_access import codec
    from amira_data_access.cli import keys

    assert keys.DATA_TYPES == codec.DATA_TYPES


def test_embedded_names_match_the_local_postgres_module() -> None:
    """The CLI's role and reset switch are the modules' own (spelled out to stay lazy)."""
    from amira_data_access._dev.local_postgres import SUPERUSER
    from amira_data_access.cli.schema import RESET_ALLOWED_ENV
    from amira_data_access.cli.server import ROLE
    from amira_data_access.migrations.verbs import RESET_ALLOWED_ENV as VERBS_ENV

    assert (ROLE, RESET_ALLOWED_ENV) == (SUPERUSER, VERBS_ENV)


def test_every_command_has_an_example_in_its_help(capsys: pytest.CaptureFixture[str]) -> None:
    """Each subcommand's --help ends with examples that start with amira-config."""
    commands = _commands(build_parser())
    assert len(commands) >= 19
    for name in commands:
        assert main([name, "--help"]) == 0
        out = capsys.readouterr().out
        examples = out.split("examples:\n", 1)[1].splitlines()
        assert examples, name
        assert all("amira-config " + name in line or "amira-config" in line for line in examples), (
            name
        )


def test_default_actor(monkeypatch: pytest.MonkeyPatch) -> None:
    """--by defaults to AMIRA_CONFIG_ACTOR, else user@hostname."""
    import getpass
    import socket

    assert default_actor({"AMIRA_CONFIG_ACTOR": "ops-anna"}) == "ops-anna"
    monkeypatch.setattr(getpass, "getuser", lambda: "anna")
    monkeypatch.setattr(socket, "gethostname", lambda: "box")
    assert default_actor({}) == "anna@box"
    assert default_actor({"AMIRA_CONFIG_ACTOR": "  "}) == "anna@box"


def test_output_not_offered_is_refused_before_running(capsys: pytest.CaptureFixture[str]) -> None:
    """-o value on a command without values is a usage error before any connection."""
    assert main(["--dsn", "host=nowhere port=1", "migrate", "-o", "value"]) == 2
    assert "-o value is not available for migrate" in capsys.readouterr().err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    """--version names the program and its version."""
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith("amira-config ")


def test_migration_commands_take_a_directory_and_see_the_schema_as_it_is() -> None:
    """--directory on the verbs that read the files; reset exists; only the other commands
    migrate the embedded server on first use."""
    parser = build_parser()
    for command in (["migrate"], ["status"], ["verify"], ["baseline", "3"]):
        args = parser.parse_args([*command, "--directory", "/m"])
        assert (args.directory, args.auto_migrate) == (Path("/m"), False), command
        assert parser.parse_args(command).directory is None
    for command in (["repair", "3"], ["reset"]):
        assert parser.parse_args(command).auto_migrate is False
        with pytest.raises(SystemExit):
            parser.parse_args([*command, "--directory", "/m"])  # they read no files
    for command in (["get", "k"], ["list"], ["check"], ["server", "status"]):
        assert parser.parse_args(command).auto_migrate is True, command


def test_migrations_module_offers_the_schema_commands_only(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """python -m amira_data_access.migrations is amira-config with its schema topic."""
    from amira_data_access.migrations import main as migrations_main

    assert migrations_main(["get", "k"]) == 2
    assert "invalid choice: 'get'" in capsys.readouterr().err
    assert migrations_main(["--help"]) == 0
    listed = capsys.readouterr().out
    for verb in ("migrate", "status", "verify", "baseline", "repair", "reset", "check"):
        assert f"    {verb} " in listed
    assert "    get " not in listed


def test_usage_error_exits_2_and_hides_a_password(capsys: pytest.CaptureFixture[str]) -> None:
    """argparse's own message quotes arguments: the DSN's password is scrubbed from it."""
    code = main(["--dsn", "host=h password=hunter2", "set", "k", "1", "hunter2-extra"])
    assert code == 2
    err = capsys.readouterr().err
    assert "unrecognized arguments" in err
    assert "hunter2" not in err


def test_data_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """AMIRA_CONFIG_HOME wins; else XDG (absolute only) or ~/.local/share; root gets /var/lib."""
    env = {"AMIRA_CONFIG_HOME": str(tmp_path / "h"), "HOME": "/home/u"}
    assert data_home(env) == tmp_path / "h"
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr("sys.platform", "linux")
    assert data_home({"HOME": "/home/u"}) == Path("/home/u/.local/share/amira-config")
    xdg = {"HOME": "/home/u", "XDG_DATA_HOME": "/data"}
    assert data_home(xdg) == Path("/data/amira-config")
    relative = {"HOME": "/home/u", "XDG_DATA_HOME": "rel"}
    assert data_home(relative) == Path("/home/u/.local/share/amira-config")
    monkeypatch.setattr("sys.platform", "darwin")
    mac = Path("/home/u/Library/Application Support/amira-config")
    assert data_home({"HOME": "/home/u"}) == mac
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert data_home({"HOME": "/root"}) == ROOT_HOME


def test_blocking_folder() -> None:
    """The first folder another account cannot traverse is found from the mode bits."""
    # Not pytest's tmp_path: its parents are 0700, which is what this test must control.
    with tempfile.TemporaryDirectory(dir=tempfile.gettempdir()) as name:
        base = Path(name)
        for folder in [*base.parents]:
            if folder.stat().st_mode & stat.S_IXOTH == 0:
                pytest.skip(f"{folder} is not world-traversable on this machine")
        base.chmod(0o755)
        outer = base / "outer"
        inner = outer / "inner"
        inner.mkdir(parents=True)
        stranger = (os.getuid() + 12345, os.getgid() + 12345)
        outer.chmod(0o755)
        assert blocking_folder(inner / "not-yet", *stranger) is None
        outer.chmod(0o700)
        assert blocking_folder(inner / "not-yet", *stranger) == outer
        assert blocking_folder(inner, os.getuid(), os.getgid()) is None  # the owner may
        outer.chmod(0o755)


def test_development_modules_stay_out_of_the_runtime_imports() -> None:
    """The library, the CLI and the migrations import nothing of _dev: the CLI loads the
    local PostgreSQL module only when it needs the embedded server."""
    probe = (
        "import sys, amira_data_access, amira_data_access.cli, amira_data_access.migrations; "
        "print(sorted(m for m in sys.modules if m.startswith('amira_data_access._dev')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"


def test_topic_commands_are_what_each_topic_adds() -> None:
    """TOPIC_COMMANDS names each topic's commands, in --help order: a command line naming
    one builds only that topic, so a command listed under the wrong topic would vanish."""
    from amira_data_access.cli import TOPIC_COMMANDS, topic

    for name, listed in TOPIC_COMMANDS.items():
        assert tuple(_commands(build_parser((topic(name),)))) == listed, name
    every = [command for listed in TOPIC_COMMANDS.values() for command in listed]
    assert list(_commands(build_parser())) == every


def test_a_command_imports_and_builds_only_its_topic() -> None:
    """``get`` imports the keys module and none of the other commands' modules."""
    probe = (
        "import contextlib, io, sys\n"
        "from amira_data_access.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    assert main(['--json', 'get', '--help']) == 0\n"
        "print(sorted(m for m in sys.modules if m.startswith('amira_data_access.cli.')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    loaded = done.stdout.strip()
    assert "amira_data_access.cli.keys" in loaded
    for other in ("transfer", "schema", "schemas", "history", "watching", "flags", "embedded"):
        assert f"amira_data_access.cli.{other}'" not in loaded, other


def test_one_topic_parses_helps_and_fails_as_the_whole_command_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Each command's --help and usage errors read the same as with every command built."""
    whole = _commands(build_parser())
    for name, sub in whole.items():
        assert main(["-q", name, "--help"]) == 0
        assert capsys.readouterr().out == sub.format_help(), name
    assert main(["--dsn", "host=nowhere port=1", "get"]) == 2  # KEY missing
    narrowed = capsys.readouterr().err
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--dsn", "host=nowhere port=1", "get"])
    assert narrowed == capsys.readouterr().err
    assert main(["--output", "bogus", "get", "k"]) == 2
    assert "invalid choice: 'bogus'" in capsys.readouterr().err
    # history prune --versions … is audit's command: that topic is the one built.
    assert main(["history", "prune", "--key", "k", "--versions", "1,2", "--help"]) == 0
    assert capsys.readouterr().out.startswith("usage: amira-config audit ")


@pytest.mark.parametrize("argv", [["-h", "get"], ["-qh", "get"], ["--help", "get", "k"]])
def test_help_before_a_command_lists_every_command(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """-h before the command is the top-level help: all the commands, not just get's topic."""
    assert main(argv) == 0
    listed = capsys.readouterr().out
    for command in ("get", "migrate", "watch", "server", "completion"):
        assert f"    {command} " in listed, command


def test_the_script_skips_the_last_collection_at_exit() -> None:
    """amira-config (cli.run) freezes the process's objects before exiting, so that Python's
    shutdown does not collect them all; main() itself, run in-process, freezes nothing."""
    import tomllib

    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    assert pyproject["project"]["scripts"]["amira-config"] == "amira_data_access.cli:run"
    probe = (
        "import atexit, gc, sys\n"
        "from amira_data_access.cli import main, run\n"
        "assert main(['--help']) == 0 and gc.get_freeze_count() == 0\n"
        "atexit.register(lambda: print('frozen', gc.get_freeze_count() > 0))\n"
        "sys.argv = ['amira-config', 'completion', 'bash']\n"
        "run()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.splitlines()[-1] == "frozen True"


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["audit", "prune", "--key", "k", "--versions", "x"], "--versions"),
        (["history", "prune", "--key", "k", "--versions", "0"], "--versions"),
        (["audit", "prune", "--older-than", "400"], "--older-than"),
    ],
)
def test_prune_arguments_that_do_not_parse_are_usage_errors(
    argv: list[str], option: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad --versions or --older-than is argparse's usage error (2) naming the option,
    not a traceback from inside the parser."""
    assert main(["--dsn", "host=nowhere", *argv]) == 2
    err = capsys.readouterr().err
    assert option in err
    assert "Traceback" not in err
