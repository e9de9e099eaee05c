"""Hostile values on a real PostgreSQL: reproducers of the reliability issue's defect 5.

A row nested 2000 levels deep, written by raw SQL (the table's CHECKs allow it),
broke ``get``, ``history``, ``get_many``, the whole ``list`` page it was on, and
``amira-config list/export/get`` (exit 70, a raw ``RecursionError``). Reads now
raise :class:`~amira_data_access.UnreadableValueError` naming the key, and
listings go on with the rest and report it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TypeVar

import psycopg
import psycopg.rows
import pytest

from amira_data_access import ConfigDAL, UnreadableValueError
from amira_data_access.cli import main

T = TypeVar("T")
DEEP = "legacy.deep"
DEEP_TEXT = "[" * 2000 + "]" * 2000  # the table's CHECKs allow it


def at_stack_depth(frames: int, call: Callable[[], T]) -> T:
    """``call()`` made from ``frames`` more frames down the call stack."""
    if frames <= 0:
        return call()
    return at_stack_depth(frames - 1, call)


@pytest.fixture
def legacy_dsn(dsn: str) -> str:
    """A database with rows written by raw SQL, one of them too deep for Python."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO amira_config.configurations (key, value, data_type, updated_by)"
            " VALUES ('legacy.a', '1', 'int', 'dba'), (%s, %s::jsonb, 'json', 'dba'),"
            " ('legacy.z', '\"z\"', 'str', 'dba')",
            (DEEP, DEEP_TEXT),
        )
    return dsn


def test_reads_of_a_row_too_deep_to_decode_name_the_key(legacy_dsn: str) -> None:
    """get, get_entry, get_many, history, get_at: a clear error naming the key, at any stack
    depth, never a RecursionError; the other keys read as usual."""
    with ConfigDAL(legacy_dsn, max_size=2) as dal:
        now = dal.get_entry("legacy.a")
        assert now is not None
        reads: list[Callable[[], object]] = [
            lambda: dal.get(DEEP),
            lambda: dal.get_entry(DEEP),
            lambda: dal.get_many(["legacy.a", DEEP]),
            lambda: dal.history(DEEP),
            lambda: dal.get_at(DEEP, now.updated_at),
            lambda: dal.snapshot_at(now.updated_at, "legacy."),
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
