"""Unit tests for amira_data_access.cli.values: VALUE parsing, instants, the import file format."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from amira_data_access.cli.values import (
    ImportEntry,
    UsageError,
    dump_document,
    parse_document,
    parse_instant,
    parse_value,
    strip_final_newline,
)


@pytest.mark.parametrize(
    ("text", "data_type", "expected"),
    [
        ("hello world", "str", "hello world"),
        ('"quoted"', "str", '"quoted"'),  # str is taken as typed, quotes and all
        ("42", "str", "42"),
        ("42", "int", 42),
        ("-7", "int", -7),
        ("0.82", "float", 0.82),
        ("1e300", "float", 1e300),
        ("true", "bool", True),
        ("false", "bool", False),
        ("null", "json", None),
        ('{"a": [1, 2.5]}', "json", {"a": [1, 2.5]}),
        ('"text"', "json", "text"),
    ],
)
def test_parse_value(text: str, data_type: str, expected: object) -> None:
    """VALUE is text for str and JSON for the other types."""
    value = parse_value(text, data_type)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("text", "data_type", "hint"),
    [
        ("forty", "int", "write an integer"),
        ("NaN", "float", "write a number"),
        ("Infinity", "float", "write a number"),
        ("yes", "bool", "write true or false"),
        ("{bad", "json", "write JSON"),
        ("plain", "json", "with its quotes"),
    ],
)
def test_parse_value_refuses_bad_syntax_with_a_hint(text: str, data_type: str, hint: str) -> None:
    """A VALUE that is not JSON names the value, the type and an example."""
    with pytest.raises(UsageError, match=hint) as caught:
        parse_value(text, data_type)
    assert repr(text) in str(caught.value)


def test_parse_value_refuses_an_unknown_type() -> None:
    """Only the library's five data types exist."""
    with pytest.raises(UsageError, match="unknown type"):
        parse_value("1", "list")


def test_parse_value_cuts_a_long_value_in_the_message() -> None:
    """A pasted blob is not echoed whole into the error line."""
    with pytest.raises(UsageError) as caught:
        parse_value("x" * 500, "int")
    assert len(str(caught.value)) < 200


@pytest.mark.parametrize(
    ("text", "expected"),
    [("a\n", "a"), ("a\r\n", "a"), ("a\n\n", "a\n"), ("a", "a"), ("", "")],
)
def test_strip_final_newline(text: str, expected: str) -> None:
    """Only the one newline an editor or echo adds is dropped."""
    assert strip_final_newline(text) == expected


def test_parse_instant() -> None:
    """ISO 8601 with Z or an offset; without one it is UTC, like the CLI's own output."""
    assert parse_instant("2025-01-31T12:00:00Z") == datetime(2025, 1, 31, 12, tzinfo=UTC)
    plus2 = parse_instant("2025-01-31T14:00:00+02:00")
    assert plus2 == datetime(2025, 1, 31, 12, tzinfo=UTC)
    assert plus2.utcoffset() == timedelta(hours=2)
    assert parse_instant("2025-01-31 12:00") == datetime(2025, 1, 31, 12, tzinfo=UTC)
    assert parse_instant("2025-01-31").tzinfo is UTC
    with pytest.raises(UsageError, match="ISO 8601"):
        parse_instant("last tuesday")


def test_parse_document_checks_and_sorts_entries() -> None:
    """A valid file gives checked entries in key order; missing type/description mean 'keep'."""
    text = json.dumps(
        {
            "b": {"value": 1, "data_type": "float", "description": "bee"},
            "a": {"value": [1, {"x": None}]},
        }
    )
    assert parse_document(text, "json", "f.json") == [
        ImportEntry("a", [1, {"x": None}], None, None),
        ImportEntry("b", 1.0, "float", "bee"),  # an int for float is stored as a float
    ]
    assert parse_document("", "yaml", "f.yaml") == []
    assert parse_document("{}", "json", "f.json") == []


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"ok": {"value": 1}, "bad key": {"value": 1}}, "entry 'bad key': key"),
        ({"k": {"value": "x", "data_type": "int"}}, "entry 'k': value of type str"),
        ({"k": {"value": 1, "data_type": "list"}}, "entry 'k': data_type 'list'"),
        ({"k": {"data_type": "int"}}, "entry 'k': has no value"),
        ({"k": {"value": 1, "extra": 2, "more": 3}}, "unknown field(s) extra, more"),
        ({"k": {"value": 1, "description": 5}}, "entry 'k': description must be a str"),
        ({"k": [1]}, "entry 'k': must be a mapping"),
        ({"k": {"value": "a\u0000b", "data_type": "str"}}, "entry 'k'"),
    ],
)
def test_parse_document_names_the_wrong_entry(document: object, message: str) -> None:
    """The first wrong entry is named with what is wrong, and the file too."""
    with pytest.raises(UsageError) as caught:
        parse_document(json.dumps(document), "json", "in.json")
    assert str(caught.value).startswith("in.json: ")
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"a": {"value": 1}, "a": {"value": 2}}', "key 'a' appears twice"),
        ('{"a": {"value": NaN}}', "not valid JSON"),
        ("{", "not valid JSON"),
        ("[1]", "expected a mapping"),
    ],
)
def test_parse_document_refuses_bad_json(text: str, message: str) -> None:
    """Duplicate keys, NaN, syntax errors and a non-mapping top level are refused."""
    with pytest.raises(UsageError, match=message):
        parse_document(text, "json", "in.json")


def test_yaml_errors_are_usage_errors() -> None:
    """Broken YAML is a usage error naming the file, not a traceback."""
    with pytest.raises(UsageError, match=r"in\.yaml: not valid YAML"):
        parse_document("a: [1, 2", "yaml", "in.yaml")


@pytest.mark.parametrize("file_format", ["json", "yaml"])
def test_dump_then_parse_round_trips_types(file_format: str) -> None:
    """What export writes, import reads back with the same values and Python types."""
    document = {
        "big": {"value": 10**40, "data_type": "int", "description": None},
        "float": {"value": 1e300, "data_type": "float", "description": "é"},
        "small": {"value": 5e-324, "data_type": "float", "description": None},
        "flag": {"value": False, "data_type": "bool", "description": None},
        "yes": {"value": "yes", "data_type": "str", "description": "not a YAML bool"},
        "nested": {"value": {"a": [1, 1.0, None, "1"]}, "data_type": "json", "description": ""},
    }
    text = dump_document(document, file_format)  # type: ignore[arg-type]
    assert text.endswith("\n")
    entries = {e.key: e for e in parse_document(text, file_format, "f")}  # type: ignore[arg-type]
    for key, fields in document.items():
        entry = entries[key]
        assert entry.value == fields["value"]
        assert json.dumps(entry.value) == json.dumps(fields["value"])  # 1 stays 1, 1.0 stays 1.0
        assert entry.data_type == fields["data_type"]
        assert entry.description == fields["description"]


def test_other_offsets_are_kept() -> None:
    """An explicit offset is respected (only a missing one means UTC)."""
    when = parse_instant("2025-06-01T00:00:00-05:00")
    assert when.tzinfo == timezone(timedelta(hours=-5))
