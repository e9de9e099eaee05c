"""Unit tests for the migration runner's SQL lexer and the file checks built on it."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from amira_data_access.errors import MigrationError
from amira_data_access.migrations import checksum, discover
from amira_data_access.migrations.files import content_problems
from amira_data_access.migrations.lexer import split_statements


def keywords(sql: str) -> list[str]:
    """The first keyword of each statement of ``sql``."""
    return [statement.keyword for statement in split_statements(sql)]


def test_splits_on_top_level_semicolons() -> None:
    """Each semicolon outside quotes and comments ends a statement."""
    assert keywords("CREATE TABLE t (a int); INSERT INTO t VALUES (1);\nCOMMIT") == [
        "CREATE",
        "INSERT",
        "COMMIT",
    ]


def test_statement_text_and_line() -> None:
    """A statement keeps its source text, without the semicolon, and its starting line."""
    statements = split_statements("-- header\n\nSELECT 1;\n  SELECT\n 2 ;")
    assert [(s.text, s.line) for s in statements] == [("SELECT 1", 3), ("SELECT\n 2", 4)]


def test_empty_statements_and_comment_only_scripts_vanish() -> None:
    """Stray semicolons, blank lines and comments do not make statements."""
    assert split_statements(";;\n -- only a comment\n/* and another */ ;") == []
    assert keywords("SELECT 1;;; -- trailing\n") == ["SELECT"]


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT 'a;b'; SELECT 2", ["SELECT", "SELECT"]),
        ("SELECT 'it''s; fine'; SELECT 2", ["SELECT", "SELECT"]),
        ("SELECT E'a\\';b'; SELECT 2", ["SELECT", "SELECT"]),
        ("SELECT e'\\\\'; SELECT 2", ["SELECT", "SELECT"]),
        ("SELECT 'a\\'; SELECT 2", ["SELECT", "SELECT"]),  # standard strings: \ is literal
        ("SELECT U&'d\\0061t;'; SELECT 2", ["SELECT", "SELECT"]),
        ('SELECT 1 AS "x;y"; SELECT 2', ["SELECT", "SELECT"]),
        ('SELECT 1 AS "say ""hi;"""; SELECT 2', ["SELECT", "SELECT"]),
        ("SELECT 1 -- a; comment\n; SELECT 2", ["SELECT", "SELECT"]),
        ("SELECT /* a; /* nested; */ still; */ 1; SELECT 2", ["SELECT", "SELECT"]),
        ("DO $$ BEGIN COMMIT; END $$; SELECT 2", ["DO", "SELECT"]),
        ("DO $body$ SELECT '$$'; $$ $body$; SELECT 2", ["DO", "SELECT"]),
        ("SELECT $1, $2; SELECT 2", ["SELECT", "SELECT"]),
        ("SELECT a$b$c FROM t; SELECT 2", ["SELECT", "SELECT"]),
        (
            "CREATE RULE r AS ON INSERT TO t DO ALSO (NOTIFY a; NOTIFY b); SELECT 2",
            ["CREATE", "SELECT"],
        ),
    ],
)
def test_semicolons_inside_quotes_comments_and_bodies_do_not_split(
    sql: str, expected: list[str]
) -> None:
    """Strings, E-strings, quoted names, comments, dollar quotes and parentheses hide semicolons."""
    assert keywords(sql) == expected


def test_begin_atomic_body_is_one_statement() -> None:
    """A SQL-standard function body (BEGIN ATOMIC … END) keeps its semicolons, as in psql."""
    sql = (
        "CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE sql\n"
        "BEGIN ATOMIC\n  SELECT CASE WHEN true THEN 1 END;\n  SELECT 2;\nEND;\n"
        "COMMIT;"
    )
    assert keywords(sql) == ["CREATE", "COMMIT"]


def test_words_are_lower_case_and_skip_quoted_text() -> None:
    """The words of a statement are its unquoted tokens, lower-cased."""
    (statement,) = split_statements("Create INDEX CONCURRENTLY \"Commit\" ON t ('x')")
    assert statement.words == ("create", "index", "concurrently", "on", "t")


@pytest.mark.parametrize(
    ("sql", "what"),
    [
        ("SELECT 'open", "string"),
        ("SELECT E'open\\'", "string"),
        ('SELECT "open', "quoted name"),
        ("SELECT 1; /* open /* nested */", "comment"),
        ("DO $x$ BEGIN END $y$", "dollar-quoted"),
    ],
)
def test_unterminated_constructs_are_refused_with_their_line(sql: str, what: str) -> None:
    """A script ending inside a string, name, comment or dollar quote is refused."""
    with pytest.raises(MigrationError, match=rf"{what}.*line 1"):
        split_statements(sql)


# The pieces a script is made of: each (text, number of statements it closes).
_PIECES = st.sampled_from(
    [
        ("SELECT 1", 0),
        (";", 1),
        (" ", 0),
        ("\n", 0),
        ("-- c; ' \" $$\n", 0),
        ("/* c; /* ' */ \" */", 0),
        ("'s;''\"$$'", 0),
        ("E's\\';'", 0),
        ('"n;""\'"', 0),
        ("$$ ; ' \" -- $$", 0),
        ("$t$ ; $$ $t$", 0),
        ("(a; b)", 0),
        ("x", 0),
    ]
)


@given(st.lists(_PIECES, max_size=30))
def test_statement_count_matches_top_level_semicolons(pieces: list[tuple[str, int]]) -> None:
    """Whatever the mix of quoted pieces, only the top-level semicolons separate statements."""
    sql = " ".join(text for text, _ in pieces)  # spaces: no piece runs into the next
    # Count the statements by hand: a piece between two top-level ';' makes one if
    # it has anything but blanks and comments.
    expected = 0
    current_has_code = False
    for text, closes in pieces:
        if closes:
            expected += current_has_code
            current_has_code = False
        elif text.strip() and not text.startswith(("--", "/*")):
            current_has_code = True
    expected += current_has_code
    assert len(split_statements(sql)) == expected


def problems(tmp_path: Path, sql: str, name: str = "0001_a.sql") -> list[str]:
    """What the runner would refuse in a file with this content."""
    (tmp_path / name).write_text(sql, encoding="utf-8")
    (found,) = discover(tmp_path)
    return content_problems(found)


@pytest.mark.parametrize(
    "statement",
    ["COMMIT", "commit prepared 'x'", "END", "ROLLBACK", "ABORT", "BEGIN", "START TRANSACTION"],
)
def test_transactional_file_may_not_end_its_transaction(tmp_path: Path, statement: str) -> None:
    """COMMIT, ROLLBACK, BEGIN… at statement level are refused, naming the file and line."""
    found = problems(tmp_path, f"CREATE TABLE a (x int);\n{statement};\nCREATE TABLE b ();")
    assert len(found) == 1
    assert "0001_a.sql line 2" in found[0]
    assert statement.split()[0].upper() in found[0]


def test_transaction_words_inside_bodies_and_savepoints_are_fine(tmp_path: Path) -> None:
    """COMMIT inside a DO body or a string, and ROLLBACK TO SAVEPOINT, are not refused."""
    sql = (
        "DO $$ BEGIN PERFORM 1; END $$;\n"
        "SELECT 'COMMIT;';\n"
        "SAVEPOINT s;\nROLLBACK TO SAVEPOINT s;\nRELEASE SAVEPOINT s;\n"
    )
    assert problems(tmp_path, sql) == []


@pytest.mark.parametrize(
    "statement",
    [
        "CREATE INDEX CONCURRENTLY i ON t (a)",
        "DROP INDEX CONCURRENTLY i",
        "REINDEX INDEX CONCURRENTLY i",
        "VACUUM t",
        "CREATE DATABASE d",
    ],
)
def test_transactional_file_with_non_transactional_statement_points_to_the_header(
    tmp_path: Path, statement: str
) -> None:
    """A statement that cannot run in a transaction is refused with the header to use."""
    (found,) = problems(tmp_path, f"{statement};")
    assert "-- migrate:no-transaction" in found


def test_no_transaction_header_sets_transactional_false(tmp_path: Path) -> None:
    """The header on the first non-blank line makes the file non-transactional."""
    sql = "\n  -- migrate:no-transaction\nCREATE INDEX CONCURRENTLY i ON t (a);\n"
    (tmp_path / "0001_a.sql").write_text(sql, encoding="utf-8")
    (found,) = discover(tmp_path)
    assert not found.transactional
    assert content_problems(found) == []
    assert found.checksum == checksum(sql.encode())


def test_header_elsewhere_is_just_a_comment(tmp_path: Path) -> None:
    """The header counts only on the first non-blank line."""
    (tmp_path / "0001_a.sql").write_text("SELECT 1;\n-- migrate:no-transaction\n")
    (found,) = discover(tmp_path)
    assert found.transactional


def test_no_transaction_file_holds_exactly_one_statement(tmp_path: Path) -> None:
    """Two statements in a no-transaction file are refused, and so is none."""
    (found,) = problems(
        tmp_path,
        "-- migrate:no-transaction\nCREATE INDEX CONCURRENTLY i ON t (a);\nSELECT 1;",
    )
    assert "exactly one statement" in found
    assert "it has 2" in found
    (empty,) = problems(tmp_path, "-- migrate:no-transaction\n-- nothing here\n")
    assert "no SQL statement" in empty


def test_unknown_directive_is_refused(tmp_path: Path) -> None:
    """A misspelt directive is refused rather than silently run in a transaction."""
    (found,) = problems(tmp_path, "-- migrate:no-transactions\nSELECT 1;")
    assert "unknown directive" in found


def test_unterminated_file_is_refused_by_name(tmp_path: Path) -> None:
    """A file the lexer cannot finish is refused, naming file and line."""
    (found,) = problems(tmp_path, "SELECT 1;\nSELECT 'oops;\n")
    assert found.startswith("0001_a.sql: ")
    assert "line 2" in found


def test_project_migrations_pass_the_content_checks() -> None:
    """The shipped migrations split cleanly and contain nothing the runner would refuse."""
    for found in discover():
        assert content_problems(found) == [], found.filename
