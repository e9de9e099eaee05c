"""Unit tests for the pure parts of migrations: checksum() and discover()."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from amira_data_access.errors import MigrationError
from amira_data_access.migrations import checksum, discover

SQL = "CREATE TABLE t (id int);\nINSERT INTO t VALUES (1);\n"


def test_checksum_format() -> None:
    """The checksum is 'v1:sha256:' followed by 64 lowercase hex digits."""
    assert re.fullmatch(r"v1:sha256:[0-9a-f]{64}", checksum(SQL.encode()))


def test_checksum_known_value() -> None:
    """The checksum of empty content is the sha256 of nothing."""
    assert checksum(b"") == (
        "v1:sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )


@pytest.mark.parametrize(
    "variant",
    [
        SQL.replace("\n", "\r\n").encode(),
        SQL.replace("\n", "\r").encode(),
        b"\xef\xbb\xbf" + SQL.encode(),
        b"\xef\xbb\xbf" + SQL.replace("\n", "\r\n").encode(),
    ],
)
def test_checksum_ignores_line_endings_and_bom(variant: bytes) -> None:
    """CRLF, CR and a UTF-8 BOM give the same checksum as plain LF."""
    assert checksum(variant) == checksum(SQL.encode())


def test_checksum_counts_line_breaks() -> None:
    """Where lines break still counts: 'a\\nb' and 'ab' differ."""
    assert checksum(b"a\nb") != checksum(b"ab")


def test_checksum_counts_a_changed_character() -> None:
    """Changing one character changes the checksum."""
    assert checksum(SQL.encode()) != checksum(SQL.replace("(1)", "(2)").encode())


def test_checksum_counts_unicode_content() -> None:
    """Non-ASCII content is hashed as UTF-8 and differs from a look-alike."""
    assert checksum("SELECT 'é';".encode()) != checksum("SELECT 'e\u0301';".encode())


@pytest.mark.parametrize("content", [b"\xff\xfe", b"SELECT '\xe9';", b"\xc3"])
def test_checksum_refuses_invalid_utf8(content: bytes) -> None:
    """Content that is not valid UTF-8 raises MigrationError."""
    with pytest.raises(MigrationError, match="not valid UTF-8"):
        checksum(content)


def write(folder: Path, name: str, sql: str = "SELECT 1;\n") -> Path:
    """Write one migration file and return its path."""
    path = folder / name
    path.write_text(sql, encoding="utf-8")
    return path


def test_discover_orders_by_version(tmp_path: Path) -> None:
    """Files are returned in version order with their names, SQL and checksums."""
    write(tmp_path, "0010_ten.sql", "SELECT 10;\n")
    write(tmp_path, "0002_two.sql", "SELECT 2;\n")
    write(tmp_path, "0001_one_first.sql", "SELECT 1;\n")
    migrations = discover(tmp_path)
    assert [(m.version, m.name, m.filename) for m in migrations] == [
        (1, "one_first", "0001_one_first.sql"),
        (2, "two", "0002_two.sql"),
        (10, "ten", "0010_ten.sql"),
    ]
    assert migrations[2].sql == "SELECT 10;\n"
    assert migrations[2].checksum == checksum(b"SELECT 10;\n")
    assert migrations[0].path == tmp_path / "0001_one_first.sql"


def test_discover_strips_bom_from_sql(tmp_path: Path) -> None:
    """A BOM is dropped from the SQL text and does not change the checksum."""
    (tmp_path / "0001_bom.sql").write_bytes(b"\xef\xbb\xbfSELECT 1;\n")
    (migration,) = discover(tmp_path)
    assert migration.sql == "SELECT 1;\n"
    assert migration.checksum == checksum(b"SELECT 1;\n")


def test_discover_empty_folder(tmp_path: Path) -> None:
    """A folder without .sql files has no migrations."""
    assert discover(tmp_path) == []


@pytest.mark.parametrize(
    "name", ["1_x.sql", "0001_Bad.sql", "0001-x.sql", "00001_x.sql", "0001_.sql", "0001_a b.sql"]
)
def test_discover_refuses_badly_named_sql(tmp_path: Path, name: str) -> None:
    """A .sql file not named NNNN_lowercase_slug.sql is refused by name."""
    write(tmp_path, "0001_good.sql")
    write(tmp_path, name)
    with pytest.raises(MigrationError, match=re.escape(name)):
        discover(tmp_path)


def test_discover_refuses_duplicate_versions(tmp_path: Path) -> None:
    """Two files with the same version are refused, naming both."""
    write(tmp_path, "0001_first.sql")
    write(tmp_path, "0001_second.sql")
    with pytest.raises(MigrationError) as info:
        discover(tmp_path)
    message = str(info.value)
    assert "0001_first.sql" in message
    assert "0001_second.sql" in message
    assert "0001" in message


def test_discover_ignores_other_files(tmp_path: Path) -> None:
    """Files that do not end in .sql are ignored, whatever their name."""
    write(tmp_path, "0001_one.sql")
    write(tmp_path, "README.md", "notes")
    write(tmp_path, "0002_draft.sql.bak")
    write(tmp_path, "Bad Name.txt")
    assert [m.filename for m in discover(tmp_path)] == ["0001_one.sql"]


def test_discover_refuses_invalid_utf8_file(tmp_path: Path) -> None:
    """A migration file that is not UTF-8 raises MigrationError."""
    (tmp_path / "0001_latin1.sql").write_bytes(b"SELECT '\xe9';\n")
    with pytest.raises(MigrationError):
        discover(tmp_path)


def test_discover_default_finds_project_migrations() -> None:
    """Without an argument, discover() finds the project's own migrations, version 1 first."""
    migrations = discover()
    assert migrations
    assert migrations[0].version == 1
    assert migrations[0].filename.startswith("0001_")
    assert [m.version for m in migrations] == sorted({m.version for m in migrations})
    for migration in migrations:
        assert migration.checksum == checksum(migration.path.read_bytes())
        assert migration.sql.strip()
