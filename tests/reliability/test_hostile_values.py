"""Hostile values on a real PostgreSQL: reproducers of the reliability issue's defects 5 and 6.

* A row nested 2000 levels deep, written by raw SQL before migration 0007 put a
  limit on depth (its constraints are NOT VALID: rows already there stay), broke
  ``get``, ``history``, ``get_many``, the whole ``list`` page it was on, and
  ``amira-config list/export/get`` (exit 70, a raw ``RecursionError``). Reads
  now raise :class:`~amira_data_access.UnreadableValueError` naming the key, and
  listings go on with the rest and report it.
* A 300 MB value was sent in full (24.8 s here) and refused by the server with a
  generic error; it is now refused before anything is sent, without a copy of it.
"""

from __future__ import annotations

import json
import shutil
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import psycopg.rows
import pytest
from structlog.testing import capture_logs

from amira_data_access import (
    ConfigDAL,
    InvalidConfigurationError,
    UnreadableValueError,
)
from amira_data_access._resources import sql_dir
from amira_data_access.cli import main
from amira_data_access.migrations import migrate
from conftest import TestServer

T = TypeVar("T")
DEEP = "legacy.deep"
DEEP_TEXT = "[" * 2000 + "]" * 2000  # the CHECKs of migrations 0001-0006 allow it
LOOKALIKE = "old.to\u200fne"  # a RIGHT-TO-LEFT MARK inside: allowed before 0007
FIRST_LIMITED = 7  # migrations/0007: the value limits and the key grammar


def at_stack_depth(frames: int, call: Callable[[], T]) -> T:
    """``call()`` made from ``frames`` more frames down the call stack."""
    if frames <= 0:
        return call()
    return at_stack_depth(frames - 1, call)


@pytest.fixture
def legacy_dsn(pg_server: TestServer, tmp_path: Path) -> Iterator[str]:
    """A database with rows written by raw SQL before 0007, then migrated to the end."""
    name = pg_server.create_database()
    dsn = pg_server.dsn(name)
    older = tmp_path / "before-limits"
    older.mkdir()
    for path in sorted(sql_dir("migrations").glob("*.sql")):
        if int(path.name[:4]) < FIRST_LIMITED:
            shutil.copy(path, older)
    migrate(dsn, directory=older)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO amira_config.configurations (key, value, data_type, updated_by)"
            " VALUES ('legacy.a', '1', 'int', 'dba'), (%s, %s::jsonb, 'json', 'dba'),"
            " ('legacy.z', '\"z\"', 'str', 'dba'), (%s, '1', 'int', 'dba'),"
            " ('old.z', '2', 'int', 'dba')",
            (DEEP, DEEP_TEXT, LOOKALIKE),
        )
    migrate(dsn)  # the limits apply to new writes; the rows stay
    try:
        yield dsn
    finally:
        pg_server.drop_database(name)


def test_reads_of_a_row_too_deep_to_decode_name_the_key(legacy_dsn: str) -> None:
    """get, get_entry, get_many, history, get_at: a clear error naming the key, at any stack
    depth, never a RecursionError; the other keys read as usual."""
    with ConfigDAL(legacy_dsn, max_size=2) as dal:
        # The rows' commit instant (history is stamped at commit, after updated_at).
        committed = dal.history("legacy.a")[0].changed_at
        reads: list[Callable[[], object]] = [
            lambda: dal.get(DEEP),
            lambda: dal.get_entry(DEEP),
            lambda: dal.get_many(["legacy.a", DEEP]),
            lambda: dal.history(DEEP),
            lambda: dal.get_at(DEEP, committed),
            lambda: dal.snapshot_at(committed, "legacy."),
        ]
        for frames in (0, 100, 500):
            for read in reads:
                with pytest.raises(UnreadableValueError, match=rf"'{DEEP}'.*nested too deeply"):
                    at_stack_depth(frames, read)
        with pytest.raises(UnreadableValueError) as many:
            dal.get_many(["legacy.a", DEEP])
        assert many.value.keys == (DEEP,)
        assert many.value.readable == {"legacy.a": 1}
        assert dal.get("legacy.a") == 1
        assert dal.delete(DEEP, deleted_by="dba")  # and it can be removed
        assert dal.get(DEEP) is None


def test_a_callers_connection_is_protected_and_left_as_it_was(legacy_dsn: str) -> None:
    """bind(conn): our statements read jsonb safely on your connection; your own loaders
    (and row factory) are back afterwards."""
    jsonb = psycopg.adapters.types["jsonb"].oid
    with (
        ConfigDAL(legacy_dsn, max_size=2) as dal,
        psycopg.connect(legacy_dsn, row_factory=psycopg.rows.dict_row) as conn,
    ):
        theirs = conn.adapters.get_loader(jsonb, psycopg.pq.Format.TEXT)
        with pytest.raises(UnreadableValueError, match=DEEP):
            dal.bind(conn).get(DEEP)
        assert dal.bind(conn).get("legacy.a") == 1
        assert conn.adapters.get_loader(jsonb, psycopg.pq.Format.TEXT) is theirs
        assert conn.execute("SELECT '[1]'::jsonb AS v").fetchone() == {"v": [1]}
        conn.rollback()


def test_a_list_page_holding_it_gives_the_rest_and_names_it(legacy_dsn: str) -> None:
    """list: the error names the key and carries the page's readable entries."""
    with ConfigDAL(legacy_dsn, max_size=2) as dal:
        with pytest.raises(UnreadableValueError, match=DEEP) as listed:
            dal.list("legacy.")
        assert listed.value.keys == (DEEP,)
        assert [e.key for e in listed.value.readable] == ["legacy.a", "legacy.z"]


def test_the_command_line_lists_and_exports_the_rest_and_reports_it(
    legacy_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """amira-config list/export go on with the other keys and report the unreadable one
    (exit 4, not the 70 of a bug); get names it."""
    code = main(["--dsn", legacy_dsn, "list", "legacy."])
    out, err = capsys.readouterr()
    assert code == 4, err
    assert "legacy.a" in out
    assert "legacy.z" in out
    assert DEEP in err
    assert "Traceback" not in err

    code = main(["--dsn", legacy_dsn, "export", "legacy."])
    out, err = capsys.readouterr()
    assert code == 4, err
    assert set(json.loads(out)) == {"legacy.a", "legacy.z"}
    assert DEEP in err

    code = main(["--dsn", legacy_dsn, "--json", "get", DEEP])
    out, err = capsys.readouterr()
    assert code == 4, err
    assert DEEP in json.loads(out)["error"]["message"]
    assert "Traceback" not in err


def test_a_key_stored_before_the_grammar_is_listed_and_can_be_deleted(legacy_dsn: str) -> None:
    """Reading it by name is refused (a lookalike must not answer for another key), but it
    is listed, can be paged past, and deleted, so the constraint can then be validated."""
    with ConfigDAL(legacy_dsn, max_size=2) as dal:
        assert [e.key for e in dal.list("old.")] == [LOOKALIKE, "old.z"]
        assert [e.key for e in dal.list("old.", after=LOOKALIKE)] == ["old.z"]
        with pytest.raises(InvalidConfigurationError, match="invisible"):
            dal.get(LOOKALIKE)
        with pytest.raises(InvalidConfigurationError, match="invisible"):
            dal.set(LOOKALIKE, 2, updated_by="dba")
        assert dal.delete(LOOKALIKE, deleted_by="dba")
        assert dal.delete_many([LOOKALIKE, "old.z"], deleted_by="dba") == ["old.z"]
        assert dal.list("old.") == []


def test_new_rows_too_deep_are_refused_by_the_table(legacy_dsn: str) -> None:
    """After 0007 raw SQL cannot write what the library refuses (the constraint's name says)."""
    with (
        psycopg.connect(legacy_dsn, autocommit=True) as conn,
        pytest.raises(psycopg.errors.CheckViolation, match="configurations_value_depth"),
    ):
        conn.execute(
            "INSERT INTO amira_config.configurations (key, value, data_type, updated_by)"
            " VALUES ('legacy.new', %s::jsonb, 'json', 'dba')",
            (DEEP_TEXT,),
        )


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(lambda: "x" * 300_000_000, id="one-300-MB-string"),
        pytest.param(lambda: ["x" * 1_000_000] * 300, id="300-MB-of-shared-strings"),
    ],
)
def test_a_300_mb_value_is_refused_before_anything_is_sent(
    dsn: str, build: Callable[[], Any]
) -> None:
    """Refused in validation (no statement sent), naming key, limit and excess, and without
    building a copy of it: the refusal allocates almost nothing."""
    value = build()
    with ConfigDAL(dsn, max_size=2) as dal:
        dal.get("warm.up")  # the pool is open: what follows is the refusal alone
        tracemalloc.start()
        try:
            with (
                capture_logs() as logs,
                pytest.raises(
                    InvalidConfigurationError,
                    match=r"^config\.set 'big\.value': value is (at least )?\d{7,} bytes "
                    r"of JSON text, over the limit of 1048576 by (at least )?\d+",
                ),
            ):
                dal.set("big.value", value, updated_by="ops")
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 1_000_000, f"the refusal allocated {peak} bytes"
        assert [(e["event"], e["outcome"]) for e in logs] == [("config.set", "invalid")]
        assert dal.get_entry("big.value") is None
