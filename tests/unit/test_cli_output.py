"""Unit tests for amira_data_access.cli.output: tables, values, times, diffs, colours."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from amira_data_access.cli.output import (
    Style,
    compact_value,
    entry_to_json,
    iso,
    pretty_value,
    render_entry,
    render_table,
    revision_to_json,
    unified_diff,
)
from amira_data_access.entries import ConfigEntry, ConfigRevision

WHEN = datetime(2025, 1, 31, 13, 0, 5, 123456, tzinfo=timezone(timedelta(hours=1)))


def _entry(value: object = None, data_type: str = "json") -> ConfigEntry:
    return ConfigEntry(
        key="amira.k",
        value={"b": [1, 2], "a": "é"} if value is None else value,
        data_type=data_type,  # type: ignore[arg-type]
        description="what it is",
        version=3,
        created_at=WHEN,
        updated_at=WHEN,
        updated_by="ops",
    )


def test_iso_is_utc_with_z() -> None:
    """People get seconds, machines microseconds; always UTC with a Z."""
    assert iso(WHEN) == "2025-01-31T12:00:05Z"
    assert iso(WHEN, precise=True) == "2025-01-31T12:00:05.123456Z"
    assert iso(None) == ""


def test_render_table_aligns_columns() -> None:
    """Every column starts at the same offset on every line; the last one is not padded."""
    text = render_table(["KEY", "V"], [["a", "1"], ["longer.key", "22"]])
    lines = text.splitlines()
    assert lines == ["KEY         V", "a           1", "longer.key  22"]


def test_compact_value() -> None:
    """One line per value: text as is, JSON compact and sorted, long ones cut, newlines escaped."""
    assert compact_value("en-US", "str") == "en-US"
    assert compact_value({"b": 1, "a": [True, None]}, "json") == '{"a":[true,null],"b":1}'
    assert compact_value("line\nbreak", "str") == "line\\nbreak"
    cut = compact_value("x" * 100, "str", width=10)
    assert cut == "x" * 9 + "…"
    assert compact_value(0.5, "float") == "0.5"


def test_pretty_value() -> None:
    """Values for people: text untouched, JSON indented with sorted keys."""
    assert pretty_value("a\nb", "str") == "a\nb"
    assert pretty_value({"b": 1, "a": 2}, "json") == '{\n  "a": 2,\n  "b": 1\n}'
    assert pretty_value(True, "bool") == "true"


def test_render_entry_indents_multiline_values() -> None:
    """The value's continuation lines line up under its first line."""
    lines = render_entry(_entry()).splitlines()
    assert lines[0] == "key          amira.k"
    assert lines[1] == "value        {"
    assert lines[2] == '               "a": "é",'
    assert "version      3" in lines
    assert "updated_at   2025-01-31T12:00:05Z" in lines


def test_entry_and_revision_json_are_serialisable() -> None:
    """The --json forms hold plain JSON types, times as ISO strings."""
    document = entry_to_json(_entry())
    assert json.loads(json.dumps(document))["updated_at"] == "2025-01-31T12:00:05.123456Z"
    revision = ConfigRevision(
        key="k",
        version=2,
        revision=7,
        operation="update",
        value=1,
        data_type="int",
        description=None,
        changed_by="a",
        changed_at=WHEN,
        change_reason="why",
    )
    assert revision_to_json(revision)["change_reason"] == "why"
    assert revision_to_json(revision)["changed_at"].endswith("Z")


def test_unified_diff() -> None:
    """Changed documents give a unified diff with labels; equal ones give nothing."""
    before = {"value": {"tone": "friendly"}, "data_type": "json", "description": None}
    after = {**before, "value": {"tone": "formal"}}
    text = unified_diff(before, after, before_label="k@v1", after_label="k@v2")
    assert text.splitlines()[:2] == ["--- k@v1", "+++ k@v2"]
    assert '-    "tone": "friendly"' in text
    assert '+    "tone": "formal"' in text
    assert unified_diff(before, dict(before), before_label="a", after_label="b") == ""
    created = unified_diff(None, after, before_label="k (absent)", after_label="file")
    assert "@@ -0,0 +1,7 @@" in created


def test_style_colours_only_when_enabled() -> None:
    """Plain text by default; ANSI codes only when enabled."""
    assert Style().red("x") == "x"
    assert Style(enabled=True).red("x") == "\x1b[31mx\x1b[0m"
    assert Style(enabled=True).red("") == ""
    coloured = unified_diff(
        {"v": 1}, {"v": 2}, before_label="a", after_label="b", style=Style(enabled=True)
    )
    assert "\x1b[32m+" in coloured


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_style_for_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    """Colours on a terminal only, and never with NO_COLOR or TERM=dumb."""
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert Style.for_stream(io.StringIO()).enabled is False
    assert Style.for_stream(_Terminal()).enabled is True
    monkeypatch.setenv("NO_COLOR", "1")
    assert Style.for_stream(_Terminal()).enabled is False
    monkeypatch.delenv("NO_COLOR")
    monkeypatch.setenv("TERM", "dumb")
    assert Style.for_stream(_Terminal()).enabled is False


def test_utc_input_stays_the_same_instant() -> None:
    """A UTC time prints unchanged."""
    assert iso(datetime(2025, 1, 1, tzinfo=UTC)) == "2025-01-01T00:00:00Z"
