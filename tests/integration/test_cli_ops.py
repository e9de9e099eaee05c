# ruff: noqa: F811  # the fixtures cli and fresh_home are imported from test_cli
"""amira-config as operators use it (the operator-CLI issue), each case through a real process.

A pipe closed early, values that start with '-', every -o, the defaults of --by,
type changes, rollbacks in the history, import --prune, the exit codes of
refusals, the variables that named the database, -q/-v, a terminal (a pty) for
colours and the notice, shell completion, and the embedded server's binaries,
port and reconnecting watchers. No timing is asserted anywhere: waits are
bounded, results are checked.
"""

from __future__ import annotations

import json
import os
import pty
import select
import shutil
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from test_cli import CLI, cli, cli_env, fresh_home, run_cli  # noqa: F401  # fixtures

from amira_data_access import ConfigDAL, ConfigItem
from conftest import TestServer

MODULE = [sys.executable, "-m", "amira_data_access.cli"]


def _fill(dsn: str, count: int, prefix: str = "bulk.") -> None:
    with ConfigDAL(dsn) as dal:
        for start in range(0, count, 1000):
            dal.set_many(
                [
                    ConfigItem(f"{prefix}{i:05d}", i, "int")
                    for i in range(start, min(count, start + 1000))
                ],
                updated_by="loader",
            )


# -- 1. a reader that goes away ----------------------------------------------------------


@pytest.mark.parametrize("args", [["list", "bulk."], ["list", "--json"], ["export"]])
def test_a_pipe_closed_early_ends_quietly(dsn: str, args: list[str]) -> None:
    """`list bulk. | head -1` with 2,501 keys: no traceback, exit 141 (128 + SIGPIPE, what a
    shell reports for any program whose reader left), never 1 ("not found")."""
    _fill(dsn, 2501)
    process = subprocess.Popen(
        [*MODULE, "--dsn", dsn, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=cli_env(),
    )
    assert process.stdout is not None
    assert process.stdout.read(100)
    process.stdout.close()  # what head does after its first line
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 141, stderr.decode()
    assert stderr == b""


def test_a_pipe_closed_early_through_a_shell(dsn: str) -> None:
    """The same through sh and head, as typed: the shell sees 141, head got its line."""
    if shutil.which("head") is None:
        pytest.skip("no head")
    _fill(dsn, 2501)
    script = 'set -o pipefail; "$@" | head -1; echo "rc=$?" >&2'
    done = subprocess.run(
        ["bash", "-c", script, "sh", *MODULE, "--dsn", dsn, "list", "bulk."],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=120,
        check=False,
    )
    assert done.stdout.split()[:2] == ["KEY", "TYPE"]
    assert done.stderr.strip().splitlines() == ["rc=141"]


# -- 2-4. values that look like options; KEY=VALUE; --limit ------------------------------


def test_values_that_start_with_a_dash(cli: CLI) -> None:
    """The word after KEY is the VALUE; '--' ends the options anywhere; --value=--x is the
    value (no abbreviation turns it into --value-file)."""
    assert cli("set", "svc.offset", "-1e3", "--type", "float", "--by", "ops").code == 0
    assert cli("get", "svc.offset", "-o", "value").stdout == "-1000.0\n"
    assert cli("set", "svc.flag", "-v", "--type", "str").code == 0
    assert cli("set", "svc.dash", "--type", "str", "--by", "ops", "--", "--verbose").code == 0
    assert cli("set", "svc.eq", "--value=--verbose", "--type", "str").code == 0
    assert cli("set", "svc.n", "-5", "--type", "int", "--reason", "-x").code == 0
    values = cli("get", "svc.flag", "svc.dash", "svc.eq", "svc.n", "-o", "value").stdout
    assert values.splitlines() == ["-v", "--verbose", "--verbose", "-5"]
    assert cli("history", "svc.n", "-o", "json").json()[0]["change_reason"] == "-x"


def test_key_equals_value_says_what_to_type(cli: CLI) -> None:
    """`set svc.flagstr=hello` names the two-word form, not "not both"."""
    result = cli("set", "svc.flagstr=hello", "--type", "str", "--by", "ops")
    assert result.code == 2
    assert "KEY and VALUE are two words, e.g. amira-config set svc.flagstr hello" in result.stderr
    assert "not both" not in result.stderr


@pytest.mark.parametrize("limit", ["0", "-1"])
def test_history_limit_below_one_is_a_usage_error(cli: CLI, limit: str) -> None:
    """--limit 0 / -1: exit 2 naming --limit, not "never existed" (1)."""
    cli("set", "k", "1", "--type", "int")
    result = cli("history", "k", "--limit", limit)
    assert result.code == 2
    assert "argument --limit: must be at least 1" in result.stderr


# -- outputs -------------------------------------------------------------------------


def test_every_output_format(cli: CLI) -> None:
    """-o json|yaml|table|value|env on reads; --json stays; list --keys-only."""
    import yaml

    cli("set", "amira.chat.tone", "friendly", "--type", "str", "--description", "tone")
    cli("set", "amira.chat.policy", '{"allowed": ["formal", "it\'s"]}', "--type", "json")
    cli("set", "amira.chat.max_turns", "40", "--type", "int")
    assert cli("get", "amira.chat.tone", "-o", "value").stdout == "friendly\n"
    assert (
        cli("get", "amira.chat.policy", "-o", "value").stdout == '{"allowed":["formal","it\'s"]}\n'
    )
    as_json = cli("get", "amira.chat.tone", "-o", "json").json()
    assert as_json == cli("get", "amira.chat.tone", "--json").json()
    assert yaml.safe_load(cli("get", "amira.chat.tone", "-o", "yaml").stdout) == as_json
    env = cli("list", "amira.chat.", "-o", "env").stdout.strip()
    assert env.splitlines() == [
        "AMIRA_CHAT_MAX_TURNS=40",
        'AMIRA_CHAT_POLICY=\'{"allowed":["formal","it\'"\'"\'s"]}\'',
        "AMIRA_CHAT_TONE=friendly",
    ]
    read_back = subprocess.run(
        ["sh", "-c", f'{env.replace(chr(10), "; ")}; printf %s "$AMIRA_CHAT_POLICY"'],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    assert json.loads(read_back.stdout) == {"allowed": ["formal", "it's"]}
    keys = ["amira.chat.max_turns", "amira.chat.policy", "amira.chat.tone"]
    assert cli("list", "--keys-only").stdout.splitlines() == keys
    assert cli("list", "--keys-only", "-o", "json").json() == keys
    assert "KEY" in cli("list", "-o", "table").stdout
    refused = cli("migrate", "-o", "env")
    assert (refused.code, refused.stdout) == (2, "")
    assert "-o env is not available for migrate" in refused.stderr


def test_get_several_keys_a_version_and_a_time(cli: CLI) -> None:
    """get K1 K2: a table, the missing ones named (exit 1); --version N; --at TIME."""
    cli("set", "a.one", "1", "--type", "int")
    time.sleep(0.05)
    middle = datetime.now(UTC).isoformat()
    time.sleep(0.05)
    cli("set", "a.one", "2", "--by", "ops")
    cli("set", "a.two", "x", "--type", "str")
    both = cli("get", "a.one", "a.two", "a.nope", "-o", "json")
    assert both.code == 1
    assert [e["key"] for e in both.json()] == ["a.one", "a.two"]
    assert "'a.nope' not found" in both.stderr
    table = cli("get", "a.one", "a.two").stdout.splitlines()
    assert table[0].split()[:3] == ["KEY", "TYPE", "VERSION"]
    first = cli("get", "a.one", "--version", "1", "-o", "json").json()
    assert (first["version"], first["value"], first["operation"]) == (1, 1, "insert")
    assert "changed_by" in cli("get", "a.one", "--version", "1").stdout
    assert cli("get", "a.one", "--version", "9").code == 1
    assert cli("get", "a.one", "--at", middle, "-o", "value").stdout == "1\n"
    then = cli("get", "a.one", "a.two", "--at", middle, "-o", "json")
    assert (then.code, [r["key"] for r in then.json()]) == (1, ["a.one"])
    assert "did not exist at" in then.stderr
    cli("delete", "a.two")
    deleted = cli("get", "a.two", "--version", "2")
    assert deleted.code == 1
    assert "is its deletion" in deleted.stderr


# -- who, type changes, rollbacks --------------------------------------------------------


def test_by_defaults_to_the_actor_variable_then_user_at_host(cli: CLI) -> None:
    """No --by: AMIRA_CONFIG_ACTOR, else user@hostname; the history keeps it."""
    import getpass
    import socket

    assert cli("set", "w.a", "1", "--type", "int", AMIRA_CONFIG_ACTOR="ops-anna").code == 0
    assert cli("get", "w.a", "-o", "json").json()["updated_by"] == "ops-anna"
    assert cli("delete", "w.a").code == 0
    expected = f"{getpass.getuser()}@{socket.gethostname()}"
    assert cli("history", "w.a", "-o", "json").json()[0]["changed_by"] == expected


def test_a_type_change_needs_change_type_and_history_shows_types(cli: CLI) -> None:
    """int → float is refused without --change-type (nothing written); history has a TYPE
    column and marks the rollback with the version it restored."""
    cli("set", "svc.offset", "5", "--type", "int")
    refused = cli("set", "svc.offset", "5.5", "--type", "float")
    assert refused.code == 2
    assert "is stored as int (version 1): add --change-type" in refused.stderr
    assert cli("get", "svc.offset", "-o", "json").json()["version"] == 1
    done = cli("set", "svc.offset", "5.5", "--type", "float", "--change-type")
    assert "(float, was int, version 2)" in done.stdout
    assert cli("set", "svc.offset", "6", "--by", "ops").code == 0  # type kept: no flag needed
    back = cli("rollback", "svc.offset", "--to-version", "1", "--reason", "bad deploy")
    assert back.code == 0, back.stderr
    rows = [line.split() for line in cli("history", "svc.offset").stdout.splitlines()]
    assert rows[0][:3] == ["VERSION", "OPERATION", "TYPE"]
    assert [row[:3] for row in rows[1:]] == [
        ["4", "rollback→v1", "int"],
        ["3", "update", "float"],
        ["2", "update", "float"],
        ["1", "insert", "int"],
    ]
    newest = cli("history", "svc.offset", "-o", "json").json()[0]
    assert (newest["rollback_to"], newest["change_reason"]) == (1, "rollback to v1: bad deploy")


# -- import: summary, --diff, --prune ------------------------------------------------------


def _document(keys: range, value: int = 0) -> str:
    return json.dumps({f"bulk.{i:05d}": {"value": i + value, "data_type": "int"} for i in keys})


def test_import_summarises_and_diff_shows_everything(cli: CLI, tmp_path: Path) -> None:
    """A large import prints the first 20 changes and the counts; --diff the full diff."""
    path = tmp_path / "bulk.json"
    path.write_text(_document(range(50)))
    dry = cli("import", str(path), "--dry-run")
    lines = dry.stdout.splitlines()
    assert lines[:2] == ["+ bulk.00000", "+ bulk.00001"]
    assert lines[20:] == [
        "… and 30 more (--diff shows every change)",
        "would create 50, would update 0, unchanged 0 (dry run: nothing written)",
    ]
    full = cli("import", str(path), "--dry-run", "--diff").stdout
    assert full.count("--- bulk.") == 50
    assert cli("import", str(path)).stdout.splitlines()[-1] == "created 50, updated 0, unchanged 0"
    assert cli("import", str(path), "-q").stdout == ""  # a confirmation: -q leaves it out


def test_import_prune_deletes_what_the_file_lacks_in_the_same_revision(
    cli: CLI, dsn: str, tmp_path: Path
) -> None:
    """--prune --prefix: keys under the prefix absent from the file go, with the writes, in
    one transaction and one revision; --dry-run lists them; keys elsewhere stay."""
    _fill(dsn, 5)
    _fill(dsn, 1, prefix="other.")
    path = tmp_path / "want.json"
    path.write_text(_document(range(2, 4), value=100))  # bulk.00002-3 changed, 0/1/4 absent
    dry = cli("import", str(path), "--prune", "--prefix", "bulk.", "--dry-run")
    assert dry.code == 0, dry.stderr
    assert dry.stdout.splitlines() == [
        "~ bulk.00002 (value) = 102",
        "~ bulk.00003 (value) = 103",
        "- bulk.00000",
        "- bulk.00001",
        "- bulk.00004",
        "would create 0, would update 2, would delete 3, unchanged 0 (dry run: nothing written)",
    ]
    done = cli(
        "import", str(path), "--prune", "--prefix", "bulk.", "--reason", "sync", "-o", "json"
    )
    assert done.code == 0, done.stderr
    assert done.json()["deleted"] == ["bulk.00000", "bulk.00001", "bulk.00004"]
    with ConfigDAL(dsn) as dal:
        assert [e.key for e in dal.list()] == ["bulk.00002", "bulk.00003", "other.00000"]
        revisions = {dal.history(k)[0].revision for k in ("bulk.00000", "bulk.00002", "bulk.00004")}
        assert len(revisions) == 1  # writes and deletions: one transaction
    outside = cli("import", str(path), "--prefix", "other.")
    assert (outside.code, "not under --prefix 'other.'" in outside.stderr) == (2, True)


def test_import_prune_above_100_needs_yes(cli: CLI, dsn: str, tmp_path: Path) -> None:
    """Pruning more than 100 keys is refused without --yes (nothing written)."""
    _fill(dsn, 150)
    path = tmp_path / "few.json"
    path.write_text(_document(range(3)))
    refused = cli("import", str(path), "--prune", "--prefix", "bulk.")
    assert refused.code == 2
    assert "would delete 147 keys" in refused.stderr
    with ConfigDAL(dsn) as dal:
        assert len(dal.list("bulk.", limit=1000)) == 150
    assert cli("import", str(path), "--prune", "--prefix", "bulk.", "--yes").code == 0
    with ConfigDAL(dsn) as dal:
        assert len(dal.list("bulk.", limit=1000)) == 3


def test_import_refuses_type_changes_without_change_type(cli: CLI, tmp_path: Path) -> None:
    """An entry that changes a key's data_type needs --change-type, like set."""
    cli("set", "bulk.00000", "1", "--type", "int")
    path = tmp_path / "retype.json"
    path.write_text(json.dumps({"bulk.00000": {"value": 1.5, "data_type": "float"}}))
    refused = cli("import", str(path))
    assert refused.code == 2
    assert "int → float" in refused.stderr
    assert (
        "~ bulk.00000 (type int → float) = 1.5" in cli("import", str(path), "--change-type").stdout
    )


# -- exit codes of refusals ----------------------------------------------------------------


@pytest.fixture
def reader_dsn(pg_server: TestServer, dsn: str) -> object:
    """A login role that may read the configuration but not change it."""
    role = f"reader_{uuid.uuid4().hex[:8]}"
    password = "reader-pw-" + uuid.uuid4().hex[:6]
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
            sql.Identifier(role), sql.Literal(password)))  # fmt: skip
        conn.execute(
            sql.SQL("GRANT USAGE ON SCHEMA amira_config TO {}").format(sql.Identifier(role))
        )
        conn.execute(
            sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA amira_config TO {}").format(
                sql.Identifier(role)
            )
        )
    yield make_conninfo(dsn, user=role, password=password)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_permission_denied_exits_5_and_check_probes_writes(reader_dsn: str) -> None:
    """A role that can read but not write: reads work, a write exits 5, and check finds it
    (its probe write is rolled back either way)."""
    assert run_cli("--dsn", reader_dsn, "list").code == 0
    write = run_cli("--dsn", reader_dsn, "set", "k", "1", "--type", "int")
    assert write.code == 5, write.stderr
    assert "permission denied" in write.stderr
    check = run_cli("--dsn", reader_dsn, "check", "-o", "json")
    assert check.code == 5, check.stderr
    assert [(c["name"], c["ok"]) for c in check.json()["checks"]] == [
        ("settings", True), ("server", True), ("schema", True), ("access", False),
    ]  # fmt: skip


def test_check_leaves_nothing_behind(cli: CLI, dsn: str) -> None:
    """The write probe of check is rolled back: no key, no history row."""
    result = cli("check")
    assert result.code == 0, result.stderr
    assert "ok    access" in result.stdout
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT count(*) FROM amira_config.configuration_history").fetchone()
        assert rows == (0,)


def test_a_partial_db_variable_set_is_named(tmp_path: Path) -> None:
    """DB_PORT=3306 left by another application: the error names it."""
    result = run_cli("get", "k", env=cli_env(DB_PORT="3306", AMIRA_CONFIG_HOME=str(tmp_path)))
    assert result.code == 4
    assert "the environment has DB_PORT=3306 but not DB_HOST, DB_NAME, DB_USER" in result.stderr


def test_variables_that_name_an_unreachable_database_are_named() -> None:
    """A refused connection to a database chosen by DB_*: the variables are in the error."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = cli_env(DB_HOST="127.0.0.1", DB_PORT=str(port), DB_NAME="app", DB_USER="svc",
                  DB_PASSWORD="hunter22")  # fmt: skip
    result = run_cli("get", "k", env=env, secrets=("hunter22",))
    assert result.code == 4
    assert f"named by DB_HOST=127.0.0.1 DB_PORT={port} DB_NAME=app DB_USER=svc DB_PASSWORD=***" in (
        result.stderr
    )


# -- -q, -v, --version, terminals ---------------------------------------------------------


def test_quiet_verbose_and_version(cli: CLI) -> None:
    """-q: no confirmation; -v: the notice naming the database; --version."""
    quiet = cli("set", "q.k", "1", "--type", "int", "-q")
    assert (quiet.code, quiet.stdout, quiet.stderr) == (0, "", "")
    assert cli("get", "q.k", "-q", "-o", "value").stdout == "1\n"  # reads still print
    assert "amira-config: using host=" in cli("-v", "get", "q.k").stderr
    version = run_cli("--version")
    assert version.code == 0
    assert version.stdout.startswith("amira-config 0.")


def _run_on_a_terminal(argv: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run with stdin, stdout and stderr on a pseudo-terminal; return code and output."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(argv, stdin=follower, stdout=follower, stderr=follower, env=env)
    os.close(follower)
    chunks: list[bytes] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 1)
        if ready:
            try:
                data = os.read(leader, 65536)
            except OSError:  # the terminal closed: the process ended
                break
            if not data:
                break
            chunks.append(data)
        elif process.poll() is not None:
            break
    os.close(leader)
    return process.wait(timeout=30), b"".join(chunks).decode(errors="replace")


def test_on_a_terminal_colours_and_the_notice_unless_no_color(cli: CLI, dsn: str) -> None:
    """On a terminal: bold field names and the `using` notice; NO_COLOR turns colours off
    but keeps the notice; off a terminal neither (checked in test_cli)."""
    cli("set", "t.k", "1", "--type", "int")
    env = {k: v for k, v in cli_env().items() if k != "NO_COLOR"}
    env["TERM"] = "xterm"
    code, screen = _run_on_a_terminal([*MODULE, "--dsn", dsn, "get", "t.k"], env)
    assert code == 0, screen
    assert "\x1b[1m" in screen
    assert "amira-config: using host=" in screen
    code, plain = _run_on_a_terminal(
        [*MODULE, "--dsn", dsn, "get", "t.k"], {**env, "NO_COLOR": "1"}
    )
    assert code == 0, plain
    assert "\x1b[" not in plain
    assert "amira-config: using host=" in plain
    code, quiet = _run_on_a_terminal([*MODULE, "--dsn", dsn, "-q", "get", "t.k"], env)
    assert "using" not in quiet


# -- completion ----------------------------------------------------------------------


def test_completion_candidates(dsn: str) -> None:
    """__complete: commands, options, choices, and key names from the store."""
    with ConfigDAL(dsn) as dal:
        dal.set_many({"amira.chat.tone": "x", "amira.chat.turns": 3, "amira.ui": 1}, updated_by="t")

    def complete(*words: str, **env: str) -> list[str]:
        done = run_cli("__complete", *words, env=cli_env(**env))
        assert (done.code, done.stderr) == (0, "")
        return done.stdout.splitlines()

    assert complete("ge") == ["get"]
    assert "--output" in complete("list", "--o")
    assert complete("list", "-o", "") == ["env", "json", "table", "value", "yaml"]
    assert complete("set", "k", "v", "--type", "fl") == ["flag", "float"]
    assert complete("server", "") == ["dsn", "env", "psql", "start", "status", "stop"]
    assert complete("completion", "") == ["bash", "fish", "zsh"]
    assert complete("get", "amira.chat.", AMIRA_CONFIG_DSN=dsn) == [
        "amira.chat.tone",
        "amira.chat.turns",
    ]
    assert complete("--dsn", dsn, "history", "amira.u") == ["amira.ui"]
    assert complete("get", "amira.", AMIRA_CONFIG_DSN="host=127.0.0.1 port=1 dbname=x") == []


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts(shell: str) -> None:
    """completion SHELL prints a script that calls __complete; bash's parses."""
    done = run_cli("completion", shell)
    assert done.code == 0
    assert "amira-config __complete" in done.stdout
    if shell == "bash":
        syntax = subprocess.run(["bash", "-n"], input=done.stdout, text=True, check=False)
        assert syntax.returncode == 0


def test_bash_completes_commands_and_keys_on_a_terminal(dsn: str, tmp_path: Path) -> None:
    """Typed in an interactive bash (a pty): TAB completes the command and a key."""
    script = Path(sys.executable).parent / "amira-config"
    if not script.exists() or shutil.which("bash") is None:
        pytest.skip("needs the installed amira-config script and bash")
    with ConfigDAL(dsn) as dal:
        dal.set("amira.completion.only_key", 1, updated_by="t")
    rc = tmp_path / "rc"
    rc.write_text(
        f'export PATH="{script.parent}:$PATH"\n'
        f"export AMIRA_CONFIG_DSN='{dsn}'\n"
        'eval "$(amira-config completion bash)"\n'
        "PS1='$ '\n"
    )
    env = {**cli_env(), "TERM": "dumb", "INPUTRC": "/dev/null"}
    leader, follower = pty.openpty()
    bash = subprocess.Popen(
        ["bash", "--noprofile", "--rcfile", str(rc), "-i"],
        stdin=follower, stdout=follower, stderr=follower, env=env, start_new_session=True,
    )  # fmt: skip
    os.close(follower)

    def read_until(text: str) -> str:
        seen = b""
        deadline = time.monotonic() + 60
        while text.encode() not in seen and time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 1)
            if ready:
                seen += os.read(leader, 65536)
        return seen.decode(errors="replace")

    try:
        read_until("$ ")
        os.write(leader, b"amira-config hist\t")
        assert "amira-config history " in read_until("history ")
        os.write(leader, b"amira.completion.o\t")
        assert "amira.completion.only_key" in read_until("only_key")
    finally:
        os.killpg(bash.pid, signal.SIGKILL)
        bash.wait(timeout=30)
        os.close(leader)


# -- the embedded server ---------------------------------------------------------------


def _home_env(home: Path, **extra: str) -> dict[str, str]:
    return cli_env(AMIRA_CONFIG_HOME=str(home), **extra)


def test_embedded_port_is_kept_and_can_be_pinned(fresh_home: Path) -> None:
    """The port survives stop/start (server.json records it and the binaries); --port pins
    another one from then on; it cannot change under a running server."""
    env = _home_env(fresh_home)
    assert run_cli("set", "e.k", "1", "--type", "int", env=env).code == 0
    record = json.loads((fresh_home / "postgres" / "server.json").read_text())
    port = record["port"]
    assert Path(record["bindir"], "pg_ctl").exists()
    assert record["major_version"] >= 13
    for _ in range(2):
        assert run_cli("server", "stop", env=env).code == 0
        assert run_cli("get", "e.k", env=env).code == 0
        assert run_cli("server", "status", "-o", "json", env=env).json()["port"] == port
    moving = run_cli("server", "start", "--port", str(port + 1), env=env)
    assert moving.code == 2
    assert f"already runs on port {port}" in moving.stderr
    run_cli("server", "stop", env=env)
    stopped = run_cli("server", "status", env=env).stdout
    assert f"port {port} kept for the next start" in stopped
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        pinned = sock.getsockname()[1]
    assert run_cli("server", "start", "--port", str(pinned), env=env).code == 0
    assert run_cli("server", "dsn", "-o", "json", env=env).json()["port"] == str(pinned)
    run_cli("server", "stop", env=env)
    assert run_cli("get", "e.k", env=env).code == 0  # the pinned port is the one kept now
    assert run_cli("server", "status", "-o", "json", env=env).json()["port"] == pinned


def test_embedded_port_taken_by_another_program_is_refused(fresh_home: Path) -> None:
    """A kept port somebody else now listens on: exit 4 naming it, no silent new port."""
    import socket

    env = _home_env(fresh_home)
    assert run_cli("list", env=env).code == 0
    port = run_cli("server", "status", "-o", "json", env=env).json()["port"]
    run_cli("server", "stop", env=env)
    with socket.socket() as squatter:
        # As servers do: the last run's connections in TIME_WAIT do not block the bind.
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        result = run_cli("list", env=env)
    assert result.code == 4
    assert f"127.0.0.1:{port} (the port this cluster has always used) is in use" in result.stderr
    assert "server start --port N" in result.stderr


def test_server_dsn_env_and_psql_never_show_the_password(fresh_home: Path) -> None:
    """server dsn/env give a DSN with a passfile instead of the password; psql connects."""
    env = _home_env(fresh_home)
    assert run_cli("set", "e.k", "7", "--type", "int", env=env).code == 0
    password = (fresh_home / "postgres" / "credentials").read_text().strip()
    dsn = run_cli("server", "dsn", "-o", "value", env=env, secrets=(password,)).stdout.strip()
    parts = conninfo_to_dict(dsn)
    assert (parts["dbname"], parts["user"], "password" in parts) == ("amira", "amira", False)
    assert oct(Path(str(parts["passfile"])).stat().st_mode & 0o777) == "0o600"
    with ConfigDAL(dsn) as dal:
        assert dal.get("e.k") == 7
    exports = run_cli("server", "env", env=env, secrets=(password,)).stdout
    assert "export PGPASSFILE=" in exports
    assert "export AMIRA_CONFIG_DSN=" in exports
    psql = run_cli("server", "psql", "--", "-tAc", "select 40 + 2", env=env, secrets=(password,))
    assert (psql.code, psql.stdout.strip()) == (0, "42")


def _system_and_wheel_majors() -> tuple[Path, Path]:
    from amira_data_access._dev.local_postgres import candidate_binaries

    found = {b.major_version(): b for b in reversed(candidate_binaries())}
    if len(found) < 2:
        pytest.skip("needs PostgreSQL binaries of two major versions (the wheel and the system's)")
    newest, oldest = max(k for k in found if k), min(k for k in found if k)
    return found[oldest].bindir, found[newest].bindir


def test_a_cluster_keeps_the_binaries_that_created_it(fresh_home: Path) -> None:
    """Made by the older PostgreSQL, it is started by that one again even though the newer
    (the wheel) comes first; forced onto the newer one it is refused saying what to do,
    on several lines, and server status says why it cannot start."""
    older, newer = _system_and_wheel_majors()
    made = run_cli("set", "e.k", "1", "--type", "int",
                   env=_home_env(fresh_home, AMIRA_CONFIG_PG_BINDIR=str(older)))  # fmt: skip
    assert made.code == 0, made.stderr
    run_cli("server", "stop", env=_home_env(fresh_home))
    again = run_cli("get", "e.k", "-o", "value", env=_home_env(fresh_home))  # no override now
    assert (again.code, again.stdout) == (0, "1\n"), again.stderr
    run_cli("server", "stop", env=_home_env(fresh_home))
    forced = _home_env(fresh_home, AMIRA_CONFIG_PG_BINDIR=str(newer))
    refused = run_cli("get", "e.k", env=forced)
    assert refused.code == 4
    lines = refused.stderr.splitlines()
    assert "was created by PostgreSQL" in lines[0]
    assert any("install PostgreSQL" in line for line in lines[1:])
    assert any("delete" in line for line in lines[1:])
    status = run_cli("server", "status", env=forced)
    assert status.code == 4
    assert "the embedded server cannot start" in status.stderr


def test_watch_says_when_the_server_goes_and_comes_back(fresh_home: Path) -> None:
    """server stop, server start under a running watch: it says so on stderr, reconnects
    (same port) and goes on printing changes, including one made while it was away."""
    env = _home_env(fresh_home)
    assert run_cli("set", "w.k", "1", "--type", "int", env=env).code == 0
    watcher = subprocess.Popen(
        [*MODULE, "watch", "w.", "-o", "json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert watcher.stderr is not None
        assert watcher.stdout is not None
        assert "watching w." in watcher.stderr.readline()
        time.sleep(0.5)  # subscribed once the process has started
        assert run_cli("server", "stop", env=env).code == 0
        assert "watch: connection lost" in watcher.stderr.readline()
        assert run_cli("set", "w.k", "2", env=env).code == 0  # starts the server again
        assert "watch: reconnected" in watcher.stderr.readline()
        missed = json.loads(watcher.stdout.readline())
        assert (missed["key"], missed["version"], missed["value"]) == ("w.k", 2, 2)
        assert run_cli("set", "w.k", "3", env=env).code == 0
        assert json.loads(watcher.stdout.readline())["version"] == 3
    finally:
        watcher.terminate()
        watcher.communicate(timeout=30)


# -- the API demo ----------------------------------------------------------------------


def test_api_demo_refuses_a_database_it_did_not_create(dsn: str) -> None:
    """The tour writes and deletes keys: not in the database AMIRA_CONFIG_DSN names,
    unless told so."""
    done = subprocess.run(
        [sys.executable, "-m", "amira_data_access._dev.api_demo"],
        capture_output=True, text=True, env=cli_env(AMIRA_CONFIG_DSN=dsn), timeout=120,
        check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "--allow-existing-database" in done.stderr
    with ConfigDAL(dsn) as dal:
        assert dal.list() == []
    allowed = subprocess.run(
        [sys.executable, "-m", "amira_data_access._dev.api_demo", "--allow-existing-database"],
        capture_output=True, text=True, env=cli_env(AMIRA_CONFIG_DSN=dsn), timeout=120,
        check=False,
    )  # fmt: skip
    assert allowed.returncode == 0, allowed.stderr
    with ConfigDAL(dsn) as dal:
        assert dal.get("amira.ui.default_language") == "en-US"
