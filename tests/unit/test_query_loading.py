"""Unit tests for how the named SQL of queries/ is loaded (backends/postgres.py)."""

from __future__ import annotations

import aiosql

from amira_data_access._resources import sql_dir
from amira_data_access.backends.postgres import _QueryLoader, load_queries


def _described(queries: object) -> dict[str, tuple[object, ...]]:
    return {
        name: (
            fn.sql,
            fn.operation,
            fn.parameters,
            fn.__doc__,
            str(fn.__signature__),
        )
        for name in queries.available_queries  # type: ignore[attr-defined]
        if (fn := getattr(queries, name))
    }


def test_queries_are_parsed_once_per_adapter() -> None:
    """load_queries() and load_queries("psycopg") are one object: the files parsed once."""
    assert load_queries() is load_queries("psycopg")
    assert load_queries("apsycopg") is load_queries("apsycopg")
    assert load_queries("apsycopg") is not load_queries()


def test_our_loader_reads_queries_as_aiosql_does() -> None:
    """Skipping the /* */ scan changes nothing: every query as aiosql's own loader makes it."""
    for adapter in ("psycopg", "apsycopg"):
        ours = _described(load_queries(adapter))
        theirs = _described(aiosql.from_path(sql_dir("queries"), adapter))
        assert ours == theirs
        assert len(ours) > 50


def test_a_text_with_a_block_comment_still_has_it_removed() -> None:
    """A /* … */ comment (none in queries/ today) still goes through aiosql's removal."""
    text = (
        "-- name: first()^\n-- The first.\nSELECT 1 /* gone */ AS one;\n\n"
        "-- name: second()$\n-- The second.\nSELECT '/* kept */';\n"
    )
    ours = _described(aiosql.from_str(text, "psycopg", loader_cls=_QueryLoader))
    assert ours == _described(aiosql.from_str(text, "psycopg"))
    assert "gone" not in str(ours["first"][0])
    assert "kept" in str(ours["second"][0])
    plain = "-- name: third(key)^\n-- The third.\nSELECT :key AS k;\n"
    assert _described(aiosql.from_str(plain, "psycopg", loader_cls=_QueryLoader)) == _described(
        aiosql.from_str(plain, "psycopg")
    )
