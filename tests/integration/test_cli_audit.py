# ruff: noqa: F811  # the fixture cli is imported from test_cli
"""``amira-config audit verify|export|prune``, ``history prune`` and ``access``."""

from __future__ import annotations

import json

import psycopg
from test_cli import CLI, cli  # noqa: F401  # fixture

from amira_data_access import ConfigDAL


def _seed(dsn: str) -> None:
    with ConfigDAL(dsn) as dal:
        for value in range(3):
            dal.set("c.a", value, updated_by="t")
        dal.set("c.b", "x", updated_by="t")


def test_verify_says_ok_and_prints_the_head(cli: CLI, dsn: str) -> None:
    _seed(dsn)
    run = cli("audit", "verify", "-o", "json")
    assert run.code == 0, run.stderr
    document = run.json()
    assert (document["ok"], document["rows"], document["head"].split(":")[0]) == (True, 4, "4")
    again = cli("audit", "verify", "--expect", document["head"])
    assert again.code == 0, again.stderr
    assert again.stdout.startswith("ok: 4 rows")


def test_verify_exits_3_naming_a_rewritten_row(cli: CLI, dsn: str) -> None:
    _seed(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")
        conn.execute(
            "UPDATE amira_config.configuration_history SET value = '7'"
            " WHERE key = 'c.a' AND version = 2"
        )
    run = cli("audit", "verify")
    assert run.code == 3
    assert "rewritten: 'c.a' version 2" in run.stdout
    assert "1 problem" in run.stderr


def test_export_writes_a_json_line_per_row_after_a_position(cli: CLI, dsn: str) -> None:
    _seed(dsn)
    run = cli("audit", "export", "--after", "1")
    assert run.code == 0, run.stderr
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    assert [(d["chain_position"], d["key"], d["version"]) for d in lines] == [
        (2, "c.a", 2),
        (3, "c.a", 3),
        (4, "c.b", 1),
    ]
    assert lines[-1]["value"] == "x"
    assert {"login", "changed_by", "digest", "revision", "changed_at"} <= set(lines[0])


def test_history_prune_purges_versions_and_the_chain_still_verifies(cli: CLI, dsn: str) -> None:
    _seed(dsn)
    run = cli("history", "prune", "--key", "c.a", "--versions", "1,2")
    assert run.code == 0, run.stderr
    assert "pruned 2" in run.stdout
    history = cli("history", "c.a", "-o", "json").json()
    assert [r["version"] for r in history] == [3]
    verify = cli("audit", "verify", "-o", "json").json()
    assert (verify["ok"], verify["rows"], verify["stubs"]) == (True, 2, 2)
    exported = [json.loads(line) for line in cli("audit", "export").stdout.splitlines()]
    assert [d.get("pruned", False) for d in exported] == [True, True, False, False]
    assert "value" not in exported[0]


def test_retention_keeps_the_newest_rows(cli: CLI, dsn: str) -> None:
    _seed(dsn)
    run = cli("audit", "prune", "--older-than", "0d", "--keep-last", "2")
    assert run.code == 0, run.stderr
    assert "pruned 1" in run.stdout


def test_prune_needs_an_age_or_versions(cli: CLI, dsn: str) -> None:
    run = cli("audit", "prune")
    assert run.code == 2
    assert "--older-than" in run.stderr


def test_access_grant_list_revoke(cli: CLI, dsn: str) -> None:
    assert cli("access", "grant", "svc_chat", "amira.chat.").code == 0
    scopes = cli("access", "scopes", "-o", "json").json()
    assert [(s["role"], s["prefix"]) for s in scopes] == [("svc_chat", "amira.chat.")]
    assert "revoked" in cli("access", "revoke", "svc_chat", "amira.chat.").stdout
    assert "no write scopes" in cli("access", "scopes").stdout
