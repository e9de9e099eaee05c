# ruff: noqa: F811  # the fixture cli is imported from test_cli
"""JSON Schemas on a real server: the CLI's schema commands, set/import refused by a schema,
and a raw-SQL write that bypasses the library found by ``schema check``."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
from test_cli import CLI, cli  # noqa: F401  # the fixture

from amira_data_access import ConfigDAL

TURNS = {"type": "integer", "minimum": 1, "maximum": 50}


def test_schema_set_get_list_delete(cli: CLI, tmp_path: Path) -> None:
    schema_file = tmp_path / "turns.json"
    schema_file.write_text(json.dumps(TURNS))
    done = cli("schema", "set", "amira.chat.", str(schema_file), "--by", "ops", "-o", "json")
    assert done.code == 0, done.stderr
    assert done.json()["kind"] == "prefix"
    assert done.json()["schema"] == TURNS
    shown = cli("schema", "get", "amira.chat.")
    assert shown.code == 0
    assert json.loads(shown.stdout) == TURNS
    assert cli("schema", "get", "amira.chat.", "--key").code == 1  # no key schema there
    listed = cli("schema", "list", "-o", "json")
    assert [s["target"] for s in listed.json()] == ["amira.chat."]
    assert cli("schema", "delete", "amira.chat.", "--by", "ops").code == 0
    assert cli("schema", "delete", "amira.chat.", "--by", "ops").code == 1
    assert cli("schema").code == 2  # needs a subcommand


def test_set_and_import_refused_by_a_schema_write_nothing(
    cli: CLI,
    tmp_path: Path,
    dsn: str,
) -> None:
    schema_file = tmp_path / "turns.json"
    schema_file.write_text(json.dumps(TURNS))
    assert cli("schema", "set", "amira.chat.max_turns", str(schema_file)).code == 0
    refused = cli("set", "amira.chat.max_turns", "500", "--type", "int", "--by", "ops")
    assert refused.code == 2
    assert "amira.chat.max_turns" in refused.stderr
    assert "key 'amira.chat.max_turns'" in refused.stderr
    assert "at $" in refused.stderr
    assert cli("set", "amira.chat.max_turns", "5", "--type", "int", "--by", "ops").code == 0
    document = {
        "amira.chat.max_turns": {"value": 99, "data_type": "int"},
        "amira.chat.tone": {"value": "formal", "data_type": "str"},
    }
    import_file = tmp_path / "import.json"
    import_file.write_text(json.dumps(document))
    imported = cli("import", str(import_file), "--by", "ops")
    assert imported.code == 2, imported.stderr
    with ConfigDAL(dsn) as dal:
        assert dal.get("amira.chat.max_turns") == 5
        assert dal.get("amira.chat.tone") is None  # all or nothing


def test_raw_sql_violations_are_found_by_schema_check(
    cli: CLI,
    dsn: str,
) -> None:
    with ConfigDAL(dsn) as dal:
        dal.set_many({"amira.chat.max_turns": 10, "amira.chat.other": 1}, updated_by="ops")
        dal.set_schema("amira.chat.", {"type": "integer", "maximum": 50}, updated_by="ops")
        assert dal.check_schemas() == []
    clean = cli("schema", "check")
    assert clean.code == 0, clean.stderr
    with psycopg.connect(dsn, autocommit=True) as conn:  # a DBA in psql: no library
        conn.execute(
            "UPDATE amira_config.configurations SET value = '500' "
            "WHERE key = 'amira.chat.max_turns'"
        )
    found = cli("schema", "check", "-o", "json")
    assert found.code == 3
    assert found.json() == [
        {
            "key": "amira.chat.max_turns",
            "schema": "prefix 'amira.chat.'",
            "path": "$",
            "message": "fails maximum 50",
        }
    ]
    table = cli("schema", "check")
    assert table.code == 3
    assert "amira.chat.max_turns" in table.stdout
    assert "violate" in table.stderr


def test_the_import_file_may_carry_schemas(cli: CLI, tmp_path: Path, dsn: str) -> None:
    turns = {"value": 10, "data_type": "int", "schema": TURNS}
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"amira.chat.max_turns": turns}))
    done = cli("import", str(good), "--by", "ops")
    assert done.code == 0, done.stderr
    with ConfigDAL(dsn) as dal:
        entry = dal.get_schema("amira.chat.max_turns")
        assert entry is not None
        assert entry.schema == TURNS
    exported = cli("export", "amira.chat.")
    assert exported.json()["amira.chat.max_turns"]["schema"] == TURNS  # it travels with the key
    again = tmp_path / "again.json"
    again.write_text(exported.stdout)
    assert cli("import", str(again), "--by", "ops").code == 0
    with ConfigDAL(dsn) as dal:
        assert dal.get_schema("amira.chat.max_turns").version == 1  # type: ignore[union-attr]
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(
            {
                "amira.chat.max_turns": {**turns, "value": 99, "schema": {"maximum": 200}},
                "amira.chat.tone": {"value": 5, "data_type": "int", "schema": {"type": "string"}},
            }
        )
    )
    refused = cli("import", str(bad), "--by", "ops")
    assert refused.code == 2
    assert "amira.chat.tone" in refused.stderr
    with ConfigDAL(dsn) as dal:  # nothing of it: not the value, not the schemas
        assert dal.get("amira.chat.max_turns") == 10
        assert dal.get_schema("amira.chat.max_turns").schema == TURNS  # type: ignore[union-attr]
        assert dal.get_schema("amira.chat.tone") is None
