"""amira-config through its real entry point (a new Python process) against real PostgreSQL.

Every run is checked for the server's password in stdout and stderr, whatever
the command and however it ended.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from amira_data_access import ConfigDAL, ConfigItem
from conftest import TestServer

DB_VARIABLES = {"AMIRA_CONFIG_DSN", "DB_HOST", "DB_PORT", "DB_NAME", "DB_USER", "DB_PASSWORD"}
SECRET = "pa55-Wörd;'quote"  # a password that must never be printed


@dataclass
class Run:
    """What one amira-config process did."""

    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        """stdout as the one JSON document --json promises."""
        return json.loads(self.stdout)


def cli_env(**extra: str) -> dict[str, str]:
    """The environment without any database settings (so only --dsn counts), colours off."""
    env = {k: v for k, v in os.environ.items() if k.upper() not in DB_VARIABLES}
    for name in ("AMIRA_CONFIG_HOME", "AMIRA_CONFIG_ACTOR", "AMIRA_CONFIG_PORT"):
        env.pop(name, None)
    env["NO_COLOR"] = "1"
    env.update(extra)
    return env


def run_cli(
    *args: str,
    env: dict[str, str] | None = None,
    stdin: str | None = None,
    secrets: tuple[str, ...] = (),
) -> Run:
    """Run ``python -m amira_data_access.cli ARGS`` and check no secret was printed."""
    done = subprocess.run(
        [sys.executable, "-m", "amira_data_access.cli", *args],
        capture_output=True,
        text=True,
        input=stdin,
        env=env if env is not None else cli_env(),
        timeout=120,
        check=False,
    )
    for secret in secrets:
        assert secret not in done.stdout, f"password printed on stdout by {args}"
        assert secret not in done.stderr, f"password printed on stderr by {args}"
    return Run(done.returncode, done.stdout, done.stderr)


CLI = Callable[..., Run]


@pytest.fixture
def cli(dsn: str, pg_server: TestServer) -> CLI:
    """amira-config on the test database (via --dsn), checked for password leaks."""
    secrets = tuple(s for s in [pg_server.password] if s)

    def call(*args: str, stdin: str | None = None, **env: str) -> Run:
        return run_cli("--dsn", dsn, *args, env=cli_env(**env), stdin=stdin, secrets=secrets)

    return call


def _set(cli: CLI, key: str, value: str, data_type: str, *more: str) -> Run:
    result = cli("set", key, value, "--type", data_type, "--by", "tester", *more)
    assert result.code == 0, result.stderr
    return result


# -- reading and writing ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "data_type", "expected"),
    [
        ("en-US", "str", "en-US"),
        ("42", "str", "42"),
        ("40", "int", 40),
        ("123456789012345678901234567890", "int", 123456789012345678901234567890),
        ("0.82", "float", 0.82),
        ("1e300", "float", 1e300),
        ("3", "float", 3.0),
        ("true", "bool", True),
        ('{"default": "friendly", "allowed": ["formal", 1.5, null]}', "json", None),
        ('"just text"', "json", "just text"),
    ],
)
def test_set_then_get_keeps_value_and_type(
    cli: CLI, text: str, data_type: str, expected: Any
) -> None:
    """VALUE is text for str and JSON otherwise; get --json gives it back with its type."""
    if expected is None:
        expected = json.loads(text)
    written = _set(cli, "amira.k", text, data_type, "--description", "a key")
    assert "version 1" in written.stdout
    entry = cli("get", "amira.k", "--json").json()
    assert entry["value"] == expected
    assert type(entry["value"]) is type(expected)
    assert entry["data_type"] == data_type
    assert entry["description"] == "a key"
    assert entry["version"] == 1
    assert entry["updated_by"] == "tester"
    assert datetime.fromisoformat(entry["updated_at"]).tzinfo is not None


def test_get_shows_pretty_entry_and_says_which_database(cli: CLI) -> None:
    """Human get: a field per line, JSON indented, ISO 8601 times; stderr names the database."""
    _set(cli, "amira.tone", '{"a": [1, 2]}', "json", "--description", "tone")
    result = cli("-v", "get", "amira.tone")
    assert result.code == 0
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["key", "amira.tone"]
    assert '  "a": [' in result.stdout
    updated = next(line for line in lines if line.startswith("updated_at"))
    assert datetime.fromisoformat(updated.split()[1].replace("Z", "+00:00"))
    assert "amira-config: using host=" in result.stderr
    assert "dbname=" in result.stderr
    assert "\x1b[" not in result.stdout  # no colours when not on a terminal
    assert cli("get", "amira.tone").stderr == ""  # not a terminal, no -v: no notice


def test_get_missing_key_exits_1_with_json_error(cli: CLI) -> None:
    """A missing key: exit 1, one error line on stderr, and an error document with --json."""
    result = cli("--json", "get", "amira.absent")
    assert result.code == 1
    assert result.json()["error"]["code"] == 1
    assert "amira-config: error: 'amira.absent' not found" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["amira.n", "forty", "--type", "int"], "not valid for --type int"),
        (["amira.n", "4.5", "--type", "int"], "does not match data_type 'int'"),
        (["amira.n", "NaN", "--type", "float"], "not valid for --type float"),
        (["amira.n", "yes", "--type", "bool"], "not valid for --type bool"),
        (["amira.n", "{bad", "--type", "json"], "not valid for --type json"),
        (["bad key", "1", "--type", "int"], "whitespace"),
        (["amira.new", "1"], "give its --type"),
        (["amira.n", "1", "--type", "int", "--value-file", "x"], "not both"),
        (["amira.n", "1", "--value", "2"], "not both VALUE and --value"),
        (["amira.n"], "no VALUE given"),
        (["amira.n=5", "--type", "int"], "e.g. amira-config set amira.n 5"),
        (["amira.n", "1.5", "--type", "float"], "add --change-type to store it as float"),
        (["amira.n", "1", "--change-type"], "--change-type goes with the new --type"),
    ],
)
def test_bad_values_exit_2_and_write_nothing(cli: CLI, args: list[str], message: str) -> None:
    """Bad input is refused with a clear line and exit 2; the stored value is unchanged."""
    _set(cli, "amira.n", "1", "int")
    result = cli("set", *args, "--by", "tester")
    assert result.code == 2, result.stderr
    assert message in result.stderr
    assert result.stderr.count("\n") == 1  # the one error line
    assert cli("get", "amira.n", "--json").json()["version"] == 1


def test_set_without_type_keeps_the_stored_type(cli: CLI) -> None:
    """Omitting --type on an update parses VALUE by the stored type and keeps the description."""
    _set(cli, "amira.t", "0.5", "float", "--description", "threshold")
    assert cli("set", "amira.t", "1", "--by", "ops").code == 0
    entry = cli("get", "amira.t", "--json").json()
    assert (entry["value"], entry["data_type"], entry["description"]) == (1.0, "float", "threshold")


def test_expect_version_conflict_exits_3(cli: CLI) -> None:
    """--expect-version guards writes: a stale version is a conflict (3), the right one works."""
    _set(cli, "amira.c", "1", "int")
    stale = cli("set", "amira.c", "2", "--by", "b", "--expect-version", "5", "--json")
    assert stale.code == 3
    assert stale.json()["error"]["kind"] == "ConcurrentModificationError"
    assert "version 1" in stale.stderr
    assert cli("set", "amira.c", "2", "--by", "b", "--expect-version", "1").code == 0
    assert (
        cli("set", "amira.new", "1", "--type", "int", "--by", "b", "--expect-version", "0").code
        == 0
    )
    assert cli("set", "amira.new", "1", "--by", "b", "--expect-version", "0").code == 3
    assert cli("delete", "amira.c", "--by", "b", "--expect-version", "1").code == 3
    assert cli("delete", "amira.c", "--by", "b", "--expect-version", "2").code == 0


def test_value_from_file_and_stdin(cli: CLI, tmp_path: Path) -> None:
    """--value-file reads a file or stdin, without the final newline editors add."""
    path = tmp_path / "tone.json"
    path.write_text('{\n  "default": "formal"\n}\n')
    assert cli("set", "amira.f", "--value-file", str(path), "--type", "json", "--by", "a").code == 0
    assert cli("get", "amira.f", "--json").json()["value"] == {"default": "formal"}
    result = cli("set", "amira.s", "--value-file", "-", "--type", "str", "--by", "a", stdin="hi\n")
    assert result.code == 0
    assert cli("get", "amira.s", "--json").json()["value"] == "hi"
    missing = cli("set", "amira.s", "--value-file", str(tmp_path / "nope"), "--by", "a")
    assert missing.code == 2
    assert "cannot read --value-file" in missing.stderr


def test_delete_then_delete_again_is_not_found(cli: CLI) -> None:
    """delete removes the key (exit 0, JSON says so); a second delete finds nothing (exit 1)."""
    _set(cli, "amira.d", "x", "str")
    first = cli("delete", "amira.d", "--by", "ops", "--reason", "cleanup", "--json")
    assert (first.code, first.json()) == (0, {"key": "amira.d", "deleted": True})
    assert cli("delete", "amira.d", "--by", "ops").code == 1
    assert cli("get", "amira.d").code == 1


def test_delete_prefix_dry_run_lists_and_deletes_nothing(cli: CLI, dsn: str) -> None:
    """delete --prefix --dry-run prints every key it would delete, and deletes none."""
    with ConfigDAL(dsn) as dal:
        dal.set_many({"svc.a": 1, "svc.b": 2, "svcx": 3}, updated_by="t")
        dry = cli("delete", "--prefix", "svc.", "--by", "ops", "--dry-run")
        assert dry.code == 0, dry.stderr
        assert dry.stdout.split("\n")[:2] == ["would delete svc.a", "would delete svc.b"]
        assert "svcx" not in dry.stdout
        assert sorted(e.key for e in dal.list()) == ["svc.a", "svc.b", "svcx"]


def test_delete_prefix_deletes_all_in_one_revision(cli: CLI, dsn: str) -> None:
    """delete --prefix removes every key under the prefix at once and prints each one."""
    with ConfigDAL(dsn) as dal:
        dal.set_many({"svc.a": 1, "svc.b": 2, "svcx": 3}, updated_by="t")
        done = cli("delete", "--prefix", "svc.", "--by", "ops", "--reason", "retired", "--json")
        assert done.code == 0, done.stderr
        assert done.json() == {"prefix": "svc.", "deleted": ["svc.a", "svc.b"], "count": 2}
        assert [e.key for e in dal.list()] == ["svcx"]
        revisions = {dal.history(key)[0].revision for key in ("svc.a", "svc.b")}
        assert len(revisions) == 1
        assert dal.history("svc.a")[0].change_reason == "retired"
        assert cli("delete", "--prefix", "svc.", "--by", "ops").code == 1  # nothing left


def test_delete_prefix_above_100_keys_needs_yes(cli: CLI, dsn: str) -> None:
    """More than 100 keys under the prefix: refused (exit 2, nothing deleted) without --yes."""
    with ConfigDAL(dsn) as dal:
        dal.set_many({f"bulk.{i:03d}": i for i in range(101)}, updated_by="t")
        refused = cli("delete", "--prefix", "bulk.", "--by", "ops")
        assert refused.code == 2
        assert "101 keys" in refused.stderr
        assert "--yes" in refused.stderr
        assert len(dal.list("bulk.", limit=1000)) == 101
        done = cli("delete", "--prefix", "bulk.", "--by", "ops", "--yes")
        assert done.code == 0, done.stderr
        assert dal.list("bulk.") == []
        exactly = cli("delete", "--prefix", "few.", "--by", "ops")  # nothing there: not found
        assert exactly.code == 1


@pytest.mark.parametrize(
    "args",
    [
        ("delete", "--prefix", "", "--by", "ops"),
        ("delete", "k", "--prefix", "p.", "--by", "ops"),
        ("delete", "--prefix", "p.", "--expect-version", "1", "--by", "ops"),
        ("delete", "--by", "ops"),
        ("delete", "k", "--yes", "--by", "ops"),
    ],
)
def test_delete_usage_errors_exit_2(cli: CLI, args: tuple[str, ...]) -> None:
    """An empty prefix, KEY with --prefix, and other contradictions are usage errors."""
    result = cli(*args)
    assert result.code == 2, result.stderr


def test_list_reads_every_page(cli: CLI, dsn: str) -> None:
    """list gives all entries (past the 1000-row page), in key order; table columns align."""
    with ConfigDAL(dsn) as dal:
        for start in (0, 1000):
            items = [ConfigItem(f"bulk.{i:05d}", i, "int") for i in range(start, start + 1000)]
            dal.set_many(items[: 1005 - start] if start else items, updated_by="loader")
    entries = cli("list", "bulk.", "--json").json()
    assert [e["key"] for e in entries] == [f"bulk.{i:05d}" for i in range(1005)]
    assert entries[1004]["value"] == 1004
    table = cli("list", "bulk.0000").stdout.splitlines()
    assert table[0].split() == ["KEY", "TYPE", "VERSION", "UPDATED_AT", "UPDATED_BY", "VALUE"]
    assert len(table) == 11
    assert len({line.index("int") for line in table[1:]}) == 1  # one column, aligned
    assert cli("list", "nothing.here").stdout.strip() == "(no keys)"


def test_history_rollback_and_diff(cli: CLI) -> None:
    """history lists every change; rollback writes a new version; diff shows a unified diff."""
    _set(cli, "amira.r", '{"tone": "friendly"}', "json", "--description", "tone")
    _set(cli, "amira.r", '{"tone": "formal"}', "json", "--reason", "be formal")
    history = cli("history", "amira.r", "--json").json()
    assert [(h["version"], h["operation"]) for h in history] == [(2, "update"), (1, "insert")]
    assert history[0]["change_reason"] == "be formal"
    table = cli("history", "amira.r").stdout
    assert "be formal" in table
    assert table.splitlines()[0].split()[:4] == ["VERSION", "OPERATION", "TYPE", "CHANGED_AT"]

    diff = cli("diff", "amira.r", "1", "2")
    assert diff.code == 0
    assert '-    "tone": "friendly"' in diff.stdout
    assert '+    "tone": "formal"' in diff.stdout
    assert diff.stdout.startswith("--- amira.r@v1\n+++ amira.r@v2\n@@")

    back = cli("rollback", "amira.r", "--to-version", "1", "--by", "ops", "--json")
    assert back.code == 0
    assert (back.json()["version"], back.json()["value"]) == (3, {"tone": "friendly"})
    same = cli("diff", "amira.r", "1", "--json").json()  # against the current entry
    assert same["changed"] is False
    assert same["to"]["version"] == 3
    assert "no differences" in cli("diff", "amira.r", "1").stdout

    assert cli("rollback", "amira.r", "--to-version", "9", "--by", "ops").code == 1
    assert cli("diff", "amira.r", "9").code == 1
    assert cli("history", "amira.never").code == 1
    assert cli("history", "amira.r", "--limit", "1", "--json").json()[0]["version"] == 3


def test_diff_against_a_deleted_key(cli: CLI) -> None:
    """A deleted key diffs as absent; rolling back to a deletion is refused (exit 2)."""
    _set(cli, "amira.gone", "5", "int")
    cli("delete", "amira.gone", "--by", "ops")
    result = cli("diff", "amira.gone", "1", "--json").json()
    assert result["to"] == {"version": None, "entry": None}
    assert result["diff"].startswith("--- amira.gone@v1\n+++ amira.gone@current (absent)")
    assert cli("rollback", "amira.gone", "--to-version", "2", "--by", "ops").code == 2


# -- export / import ------------------------------------------------------------------


def _fill(cli: CLI) -> None:
    _set(cli, "amira.ui.lang", "en-US", "str", "--description", "language")
    _set(cli, "amira.nlu.threshold", "1e300", "float")
    _set(cli, "amira.chat.turns", "123456789012345678901234567890", "int")
    _set(cli, "amira.chat.tone", '{"x": [1, 1.0, true, null, "é"]}', "json", "--description", "t")
    _set(cli, "amira.flag", "false", "bool")
    _set(cli, "amira.jsontext", '"7"', "json")


@pytest.mark.parametrize("file_format", ["json", "yaml"])
def test_export_import_round_trip(
    cli: CLI, pg_server: TestServer, migrated_template: str, tmp_path: Path, file_format: str
) -> None:
    """export → import into another database → export gives the same file, types and all."""
    _fill(cli)
    exported = cli("export", "--format", file_format)
    assert exported.code == 0
    path = tmp_path / f"config.{file_format}"
    path.write_text(exported.stdout)
    other = pg_server.create_database(template=migrated_template)
    try:
        target = pg_server.dsn(other)
        secrets = (pg_server.password,) if pg_server.password else ()
        imported = run_cli("--dsn", target, "import", str(path), "--by", "restore", secrets=secrets)
        assert imported.code == 0, imported.stderr
        assert "created 6, updated 0, unchanged 0" in imported.stdout
        again = run_cli("--dsn", target, "export", "--format", file_format, secrets=secrets)
        assert again.stdout == exported.stdout
        twice = run_cli("--dsn", target, "import", str(path), "--by", "r", "--json")
        assert twice.json()["unchanged"] == sorted(twice.json()["unchanged"])
        assert len(twice.json()["unchanged"]) == 6  # nothing rewritten, no version bumps
    finally:
        pg_server.drop_database(other)
    document = json.loads(cli("export", "amira.chat.", "--json").stdout)
    assert document == {
        "amira.chat.tone": {
            "value": {"x": [1, 1.0, True, None, "é"]},
            "data_type": "json",
            "description": "t",
        },
        "amira.chat.turns": {
            "value": 123456789012345678901234567890,
            "data_type": "int",
            "description": None,
        },
    }


def test_export_at_a_past_instant(cli: CLI, dsn: str) -> None:
    """export --at gives entries as they were then, with the type and description of then."""
    _set(cli, "amira.p", "1", "int", "--description", "old")
    _set(cli, "amira.q", "x", "str")
    # The instant between the changes, on the server's clock: the one history is stamped
    # with (the client's may be off by more than any margin).
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT clock_timestamp()").fetchone()
    assert row is not None
    middle = row[0].isoformat()
    _set(cli, "amira.p", "2.5", "float", "--description", "new", "--change-type")
    cli("delete", "amira.q", "--by", "ops")
    _set(cli, "amira.later", "true", "bool")
    then = cli("export", "amira.", "--at", middle, "--json").json()
    assert then == {
        "amira.p": {"value": 1, "data_type": "int", "description": "old"},
        "amira.q": {"value": "x", "data_type": "str", "description": None},
    }
    assert cli("export", "--at", "yesterday-ish").code == 2


def test_import_dry_run_shows_a_diff_and_writes_nothing(cli: CLI, tmp_path: Path) -> None:
    """--dry-run prints the changes as a unified diff and leaves every version as it was."""
    _set(cli, "amira.a", "1", "int", "--description", "a")
    path = tmp_path / "changes.json"
    path.write_text(
        json.dumps(
            {
                "amira.a": {"value": 2, "data_type": "int", "description": "a"},
                "amira.b": {"value": "new", "data_type": "str", "description": None},
            }
        )
    )
    dry = cli("import", str(path), "--by", "ops", "--dry-run")
    assert dry.code == 0
    assert dry.stdout.splitlines() == [
        "~ amira.a (value) = 2",
        "+ amira.b",
        "would create 1, would update 1, unchanged 0 (dry run: nothing written)",
    ]
    diff = cli("import", str(path), "--by", "ops", "--dry-run", "--diff")
    assert "--- amira.a@v1 (current)" in diff.stdout
    assert '-  "value": 1' in diff.stdout
    assert '+  "value": 2' in diff.stdout
    assert "--- amira.b (absent)" in diff.stdout
    as_json = cli("import", str(path), "--by", "ops", "--dry-run", "--json").json()
    assert (as_json["created"], as_json["updated"], as_json["dry_run"]) == (
        ["amira.b"],
        ["amira.a"],
        True,
    )
    assert cli("get", "amira.a", "--json").json()["version"] == 1
    assert cli("get", "amira.b").code == 1
    done = cli("import", str(path), "--by", "ops", "--reason", "sync")
    assert done.code == 0
    revisions = {
        h["revision"]
        for k in ("amira.a", "amira.b")
        for h in cli("history", k, "--json").json()[:1]
    }
    assert len(revisions) == 1  # one transaction: one history revision


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            '{"amira.ok": {"value": 1, "data_type": "int"}, "amira.z": {"value": "x", '
            '"data_type": "int"}}',
            "entry 'amira.z': value of type str does not match",
        ),
        ('{"amira.ok": {"value": 1}, "bad key": {"value": 1}}', "entry 'bad key'"),
        ('{"amira.ok": {"value": 1}, "amira.z": {"data_type": "int"}}', "'amira.z': has no value"),
        ('{"amira.ok": {"value": 1}, "amira.z": {"value": 1, "colour": 2}}', "unknown field"),
        ('{"amira.ok": {"value": 1}, "amira.z": {"value": 1, "data_type": "list"}}', "'list'"),
        ('{"amira.ok": {"value": 1}, "amira.z": 5}', "entry 'amira.z': must be a mapping"),
        ('{"amira.ok": {"value": 1}, "amira.ok": {"value": 2}}', "appears twice"),
        ('{"amira.ok": {"value": NaN}}', "not valid JSON"),
        ("[1, 2]", "expected a mapping"),
    ],
)
def test_invalid_import_file_writes_nothing_and_names_the_entry(
    cli: CLI, tmp_path: Path, content: str, message: str
) -> None:
    """An invalid file is refused (exit 2) naming the wrong entry; nothing of it is written."""
    path = tmp_path / "bad.json"
    path.write_text(content)
    result = cli("import", str(path), "--by", "ops")
    assert result.code == 2
    assert message in result.stderr
    assert "bad.json" in result.stderr
    assert cli("get", "amira.ok").code == 1


def test_import_is_atomic_when_the_database_refuses(cli: CLI, dsn: str, tmp_path: Path) -> None:
    """A write the database refuses mid-import rolls back the entries written before it."""
    # A trigger refusing one key stands in for any server-side failure (constraint, lost lock…).
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE FUNCTION amira_config.refuse() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN IF NEW.key = 'amira.z' THEN RAISE check_violation USING MESSAGE = 'no z'; "
            "END IF; RETURN NEW; END $$"
        )
        conn.execute(
            "CREATE TRIGGER refuse BEFORE INSERT OR UPDATE ON amira_config.configurations "
            "FOR EACH ROW EXECUTE FUNCTION amira_config.refuse()"
        )
    path = tmp_path / "in.json"
    path.write_text(json.dumps({k: {"value": 1} for k in ("amira.a", "amira.b", "amira.z")}))
    result = cli("import", str(path), "--by", "ops")
    assert result.code == 2
    assert "'amira.z'" in result.stderr
    assert cli("list", "--json").json() == []


# -- migrations and health ----------------------------------------------------------------


def test_migrate_status_verify_on_an_empty_database(empty_dsn: str, pg_server: TestServer) -> None:
    """status shows pending files, migrate applies them, then status/verify/check are clean."""
    secrets = (pg_server.password,) if pg_server.password else ()

    def cli(*args: str) -> Run:
        return run_cli("--dsn", empty_dsn, *args, secrets=secrets)

    before = cli("status", "--json")
    assert before.code == 0
    assert before.json()["up_to_date"] is False
    pending = [m["filename"] for m in before.json()["pending"]]
    assert pending
    assert pending[0].startswith("0001_")
    check = cli("check", "--json")
    assert check.code == 6  # not migrated
    assert check.json()["ok"] is False
    assert "pending migration" in check.stderr
    assert "run amira-config migrate" in check.stderr
    assert cli("get", "amira.x").code == 6  # schema missing: "run the migrations"

    dry = cli("migrate", "--dry-run", "--json").json()
    assert [m["filename"] for m in dry["applied"]] == pending
    assert cli("status", "--json").json()["applied"] == []
    applied = cli("migrate")
    assert applied.code == 0
    assert f"applied {pending[0]}" in applied.stdout
    assert "up to date" in cli("migrate").stdout

    after = cli("status", "--json").json()
    assert after["up_to_date"] is True
    assert [row["filename"] for row in after["applied"]] == pending
    assert cli("status").stdout.splitlines()[-1] == "up to date"
    assert cli("verify").stdout.startswith(f"ok: {len(pending)} applied")
    ok = cli("check", "--json")
    assert ok.code == 0
    assert [c["name"] for c in ok.json()["checks"]] == ["settings", "server", "schema", "access"]

    refused = cli("baseline", "1")
    assert refused.code == 6
    assert "only writes into an empty history" in refused.stderr
    repaired = cli("repair", "1", "--json")
    assert repaired.code == 6
    assert "repair" in repaired.json()["error"]["message"]


def test_baseline_records_without_running(empty_dsn: str) -> None:
    """baseline VERSION records files as applied on a database whose schema came from elsewhere."""
    result = run_cli("--dsn", empty_dsn, "baseline", "1", "--json")
    assert result.code == 0, result.stderr
    assert [m["version"] for m in result.json()["baselined"]] == [1]
    status = run_cli("--dsn", empty_dsn, "status", "--json").json()
    assert [row["kind"] for row in status["applied"]] == ["baseline"]


def test_refusals_say_each_problem_once_on_its_own_line(empty_dsn: str, tmp_path: Path) -> None:
    """status, migrate and verify (with --directory) name every problem on a line of its own
    on stderr, once: not again on stdout, not folded into one long line."""
    (tmp_path / "0001_a.sql").write_text("CREATE TABLE a (x int);")
    (tmp_path / "0003_c.sql").write_text("CREATE TABLE c (x int);")
    folder = ["--directory", str(tmp_path)]
    assert run_cli("--dsn", empty_dsn, "migrate", *folder).code == 0
    (tmp_path / "0001_a.sql").write_text("CREATE TABLE a (x bigint);")
    (tmp_path / "0002_b.sql").write_text("CREATE TABLE b (x int);")
    changed = "0001_a.sql was changed after it was applied"
    late = "0002_b.sql is pending but older than the newest applied version 0003"

    for command, headline in [
        ("status", "migration history and files disagree:"),
        ("migrate", "refusing to migrate, nothing was applied:"),
        ("verify", "verify found problems:"),
    ]:
        result = run_cli("--dsn", empty_dsn, command, *folder)
        assert result.code == 6, (command, result.stderr)
        lines = [line for line in result.stderr.splitlines() if "using host=" not in line]
        assert lines[0] == f"amira-config: error: {headline}", command
        assert len(lines) == 3, (command, lines)
        assert lines[1].startswith(f"  - {changed}"), command
        assert lines[2].startswith(f"  - {late}"), command
        assert changed not in result.stdout, command
    assert "changed  0001_a.sql" in run_cli("--dsn", empty_dsn, "status", *folder).stdout
    document = run_cli("--dsn", empty_dsn, "status", *folder, "--json").json()
    assert [p.split(" (")[0].split(":")[0] for p in document["problems"]] == [changed, late]
    packaged = run_cli("--dsn", empty_dsn, "verify")  # no --directory: the package's files
    assert packaged.code == 6
    assert "0001_create_configurations.sql was changed" in packaged.stderr


def test_reset_needs_the_environment_switch(empty_dsn: str) -> None:
    """reset is refused in one line, before the database is even looked for, unless
    AMIRA_CONFIG_ALLOW_RESET=1; then the schema is gone and migrate starts over."""
    assert run_cli("--dsn", empty_dsn, "migrate").code == 0
    refused = run_cli("--dsn", empty_dsn, "reset")
    assert refused.code == 6
    assert refused.stderr.splitlines() == [
        "amira-config: error: reset drops every configuration and is for tests only: "
        "set AMIRA_CONFIG_ALLOW_RESET=1 to allow it"
    ]
    assert run_cli("--dsn", empty_dsn, "status", "--json").json()["up_to_date"] is True
    done = run_cli("--dsn", empty_dsn, "reset", env=cli_env(AMIRA_CONFIG_ALLOW_RESET="1"))
    assert (done.code, done.stdout) == (0, "reset: schema amira_config dropped\n")
    assert run_cli("--dsn", empty_dsn, "status", "--json").json()["applied"] == []


# -- failures: unreachable, wrong password, usage -----------------------------------------


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("command", [["get", "k"], ["list"], ["check"], ["migrate"], ["status"]])
@pytest.mark.parametrize("where", ["option", "environment"])
def test_unreachable_database_exits_4_without_the_password(command: list[str], where: str) -> None:
    """An unreachable server: exit 4, one line naming host and port, never the password."""
    dsn = make_conninfo(
        host="127.0.0.1", port=_closed_port(), dbname="amira", user="svc", password=SECRET
    )
    if where == "option":
        result = run_cli("--dsn", dsn, *command, "--json", secrets=(SECRET,))
    else:
        env = cli_env(AMIRA_CONFIG_DSN=dsn)
        result = run_cli(*command, "--json", env=env, secrets=(SECRET,))
    assert result.code == 4, result.stderr
    assert "host=127.0.0.1" in result.stderr
    assert "Traceback" not in result.stderr
    document = result.json()
    assert ("error" in document) or (document.get("ok") is False)


def test_wrong_password_and_debug_never_print_it(dsn: str) -> None:
    """A refused password (URI form, --debug on) fails with exit 4 and is scrubbed everywhere."""
    parts = conninfo_to_dict(dsn)
    password = quote(SECRET, safe="")
    uri = (
        f"postgresql://{parts['user']}:{password}@{parts['host']}:{parts['port']}/{parts['dbname']}"
    )
    result = run_cli("--dsn", uri, "--debug", "get", "k", secrets=(SECRET,))
    assert result.code == 5  # the login was refused
    assert "Traceback" in result.stderr  # --debug shows it, still without the password
    env_result = run_cli(
        "get",
        "k",
        env=cli_env(
            DB_HOST=str(parts["host"]),
            DB_PORT=str(parts["port"]),
            DB_NAME=str(parts["dbname"]),
            DB_USER=str(parts["user"]),
            DB_PASSWORD=SECRET,
        ),
        secrets=(SECRET,),
    )
    assert env_result.code == 5
    assert "Traceback" not in env_result.stderr
    # The variables that chose the database are named (the password as ***).
    assert f"named by DB_HOST={parts['host']} DB_PORT={parts['port']}" in env_result.stderr
    assert "DB_PASSWORD=***" in env_result.stderr


def test_invalid_dsn_and_usage_errors_exit_2_or_4() -> None:
    """A malformed DSN is a clean error (4); bad usage is argparse's exit 2, secret-free."""
    bad = f"host=x password='{SECRET}"
    result = run_cli("--dsn", bad, "get", "k", secrets=(SECRET,))
    assert result.code == 4
    assert "invalid connection string" in result.stderr
    usage = run_cli("--dsn", f"password={SECRET}", "bogus", "--json", secrets=(SECRET,))
    assert usage.code == 2
    assert usage.json()["error"]["code"] == 2
    assert run_cli("set", "k", "1", "--type", "int", "--bogus").code == 2
    assert run_cli("--help").code == 0


def _watcher(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "amira_data_access.cli", "watch", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env or cli_env(),
    )


def test_watch_streams_changes_with_value_time_and_revision(cli: CLI, dsn: str) -> None:
    """watch prints each change with its value, type, time and revision: JSON lines with
    -o json, one line per change for people."""
    as_json = _watcher("--dsn", dsn, "amira.", "--json")
    as_text = _watcher("--dsn", dsn, "amira.")
    try:
        for watcher in (as_json, as_text):
            assert watcher.stderr is not None
            assert "watching amira." in watcher.stderr.readline()
        time.sleep(0.5)  # the listener is subscribed once the process has started
        _set(cli, "amira.w", "41", "int")
        cli("delete", "amira.w", "--by", "ops")
        assert as_json.stdout is not None
        event = json.loads(as_json.stdout.readline())
        assert (event["key"], event["version"], event["operation"]) == ("amira.w", 1, "insert")
        assert (event["value"], event["data_type"], event["changed_by"]) == (41, "int", "tester")
        assert isinstance(event["revision"], int)
        assert datetime.fromisoformat(event["changed_at"])
        deleted = json.loads(as_json.stdout.readline())
        assert (deleted["operation"], deleted["value"]) == ("delete", None)
        assert as_text.stdout is not None
        line = as_text.stdout.readline()
        assert f"rev {event['revision']} insert amira.w v1 by tester = 41" in line
        assert line.startswith(event["changed_at"][:19])  # the time first, to the second
    finally:
        for watcher in (as_json, as_text):
            watcher.terminate()
            watcher.communicate(timeout=30)


# -- the embedded server ----------------------------------------------------------------


@pytest.fixture
def fresh_home() -> Iterator[Path]:
    """A new AMIRA_CONFIG_HOME under /tmp that the server's account can enter; stopped after."""
    from amira_data_access._dev.local_postgres import PostgresUnavailableError, find_binaries

    try:
        find_binaries()
    except PostgresUnavailableError as exc:
        if os.environ.get("AMIRA_CONFIG_REQUIRE_DB") == "1":
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    import shutil
    import tempfile

    home = Path(tempfile.mkdtemp(prefix="amira-cli-home-", dir="/tmp"))
    home.chmod(0o755)  # mkdtemp's 0700 would keep the 'postgres' account out when root
    try:
        yield home
    finally:
        run_cli("server", "stop", env=cli_env(AMIRA_CONFIG_HOME=str(home)))
        shutil.rmtree(home, ignore_errors=True)


def test_embedded_server_starts_serves_two_commands_and_stops(fresh_home: Path) -> None:
    """No DSN: the first command creates, starts and migrates a server; the next reuses it."""
    env = cli_env(AMIRA_CONFIG_HOME=str(fresh_home))
    assert run_cli("server", "status", "--json", env=env).json()["initialized"] is False

    first = run_cli("-v", "set", "amira.e", "0.5", "--type", "float", "--by", "me", env=env)
    assert first.code == 0, first.stderr
    assert f"using embedded PostgreSQL at {fresh_home / 'postgres'}" in first.stderr
    password = (fresh_home / "postgres" / "credentials").read_text().strip()
    assert password not in first.stdout + first.stderr

    state = run_cli("server", "status", "--json", env=env).json()
    assert (state["initialized"], state["running"]) == (True, True)
    second = run_cli("get", "amira.e", "--json", "-v", env=env, secrets=(password,))
    assert second.json()["value"] == 0.5
    assert f"127.0.0.1:{state['port']}" in second.stderr  # the same server, still running

    stopped = run_cli("server", "stop", "--json", env=env, secrets=(password,))
    assert stopped.code == 0
    assert stopped.json()["stopped"] is True
    assert run_cli("server", "status", "--json", env=env).json()["running"] is False
    assert "not running" in run_cli("server", "stop", env=env).stdout

    # Started again on demand, with the data kept.
    again = run_cli("get", "amira.e", "--json", env=env, secrets=(password,))
    assert again.code == 0, again.stderr
    assert again.json()["value"] == 0.5


@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs the server as another account")
def test_root_refuses_a_home_the_server_account_cannot_enter(tmp_path: Path) -> None:
    """As root, a home under a 0700 folder is refused naming the folder, before anything starts."""
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    result = run_cli("list", env=cli_env(AMIRA_CONFIG_HOME=str(private / "home")))
    assert result.code == 4
    assert "cannot enter" in result.stderr
    assert "chmod o+x" in result.stderr
    assert not (private / "home").exists()
