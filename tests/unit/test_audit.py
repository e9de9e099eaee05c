"""Pure parts of the audit trail: the row encoding the chain hashes, heads, CLI words."""

from __future__ import annotations

import argparse
from datetime import timedelta

import pytest

from amira_data_access import InvalidConfigurationError
from amira_data_access.audit import ChainHead, row_bytes
from amira_data_access.cli.audit import parse_age, spell_history_prune


def test_row_bytes_prefix_each_field_with_its_length_in_bytes() -> None:
    """Length in UTF-8 bytes, then ':' and the text; '~' for NULL: no two rows alike."""
    encoded = row_bytes(1, 2, "ké", 3, "update", '"v"', "str", None, "bob", None, "10", "r")
    fields = [b"1:1", b"1:2", b"3:k\xc3\xa9", b"1:3", b"6:update", b'3:"v"', b"3:str", b"~"]
    assert encoded == b"".join([*fields, b"3:bob", b"~", b"2:10", b"1:r"])


def test_moving_text_between_fields_changes_the_bytes() -> None:
    """('ab', None) and ('a', 'b') would join to the same text without the prefixes."""
    one = row_bytes(1, 1, "k", 1, "insert", "1", "int", "ab", "x", None, "0", None)
    two = row_bytes(1, 1, "k", 1, "insert", "1", "int", "a", "x", "b", "0", None)
    assert one != two


def test_a_chain_head_round_trips_and_refuses_garbage() -> None:
    head = ChainHead(12, "ab" * 32)
    assert ChainHead.parse(str(head)) == head
    for text in ("12", "x:" + "ab" * 32, "12:abc", "-1:" + "ab" * 32):
        with pytest.raises(InvalidConfigurationError):
            ChainHead.parse(text)


def test_ages() -> None:
    assert parse_age("400d") == timedelta(days=400)
    assert parse_age("12h") == timedelta(hours=12)
    with pytest.raises(argparse.ArgumentTypeError):
        parse_age("400")


def test_history_prune_is_audit_prune_only_with_a_prune_option() -> None:
    assert spell_history_prune(["--dsn", "x", "history", "prune", "--older-than", "1d"]) == [
        "--dsn", "x", "audit", "prune", "--older-than", "1d",
    ]  # fmt: skip
    assert spell_history_prune(["history", "prune", "--key=k", "--versions", "1"])[:2] == [
        "audit",
        "prune",
    ]
    assert spell_history_prune(["history", "prune"]) == ["history", "prune"]  # the key "prune"
