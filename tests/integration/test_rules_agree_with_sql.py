"""The library and the table refuse the same keys and values (migrations/0007).

Hypothesis draws keys and values; each is checked by the library
(:func:`~amira_data_access.codec.validate_key`,
:func:`~amira_data_access.codec.prepare_value`) and inserted by raw SQL into a
real table, in a transaction rolled back at once: both must give the same
verdict. The sizes and depths the library (and the in-memory twin) count must
be the ones PostgreSQL computes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from amira_data_access.backends.memory_sql import _printed_measure
from amira_data_access.codec import (
    KEY_NEUTRAL,
    KEY_SCRIPTS,
    ValueLimits,
    encode_json,
    json_measure,
    prepare_value,
    validate_key,
)
from amira_data_access.errors import InvalidConfigurationError

INSERT = (
    "INSERT INTO amira_config.configurations (key, value, data_type, updated_by)"
    " VALUES (%s, %s::jsonb, 'json', 'test')"
)
DEPTH_AT_LEAST = (
    "SELECT jsonb_path_exists(%s::jsonb,"
    " ('strict $.**{' || %s::int || '} ? (@.type() == \"array\" || @.type() == \"object\")')"
    "::jsonpath)"
)
SMALL = ValueLimits(max_bytes=120, max_depth=3)
EXAMPLES = settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture
def conn(dsn: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(dsn, autocommit=True) as connection:
        yield connection


def table_accepts(conn: psycopg.Connection[Any], key: str, json_text: str) -> bool:
    """Whether the table takes the row (rolled back either way)."""
    try:
        with conn.transaction(force_rollback=True):
            conn.execute(INSERT, (key, json_text))
    except psycopg.errors.CheckViolation:
        return False
    return True


def library_accepts_key(key: str) -> bool:
    try:
        validate_key(key)
    except InvalidConfigurationError:
        return False
    return True


# Keys: mostly near the edges of the grammar (every script's ranges and just outside
# them, marks, invisible characters, other scripts), some anything at all.
_edges = sorted(
    {
        code
        for first, last in [*KEY_NEUTRAL, *(r for rs in KEY_SCRIPTS.values() for r in rs)]
        for code in (first - 1, first, last, last + 1)
    }
)
_key_characters = st.one_of(
    st.sampled_from([chr(code) for code in _edges if 0 < code < 0xD800 or code > 0xDFFF]),
    st.sampled_from(list("az.-_/:09AZ")),
    st.sampled_from(
        ["\u0301", "\u200f", "\u00ad", "\ufe0f", "\u3164", "\u05d0", "\uff41", "\u3099"]
    ),
    st.characters(codec="utf-8", exclude_characters="\x00"),
)
keys = st.one_of(
    st.text(_key_characters, min_size=1, max_size=12),
    st.text(
        st.characters(min_codepoint=0x21, max_codepoint=0x7E) | st.sampled_from("éкοキ값"),
        min_size=1,
        max_size=12,
    ),
)


@EXAMPLES
@given(key=keys)
def test_the_table_and_the_library_agree_on_every_key(
    conn: psycopg.Connection[Any], key: str
) -> None:
    """A key the library refuses, the table refuses, and the other way round."""
    assert table_accepts(conn, key, "1") == library_accepts_key(key), ascii(key)


def test_the_lookalikes_of_the_issue_are_refused_by_both(conn: psycopg.Connection[Any]) -> None:
    """The reproducers: invisible characters, e + U+0301, a Cyrillic o among Latin letters."""
    for char in ["\u200c", "\u200d", "\u200e", "\u200f", "\u202a", "\u202e", "\u2060", "\u2066"]:
        assert not table_accepts(conn, f"amira.chat{char}.tone", "1")
    assert not table_accepts(conn, "amira.chat.caf" + "e\u0301", "1")
    assert not table_accepts(conn, "amira.chat.t\u043ene", "1")
    assert table_accepts(conn, "amira.chat.caf\u00e9", "1")


text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([-0.0, 0.0, 1e300, 5e-324, -2.5e-10, 1e16])
    | text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(text, children, max_size=4),
    max_leaves=16,
)


@EXAMPLES
@given(value=json_values)
def test_sizes_and_depths_are_the_ones_postgresql_computes(
    conn: psycopg.Connection[Any], value: Any
) -> None:
    """json_measure (the library) and the twin's reading of the text count what
    octet_length(value::text) and the jsonpath of the depth constraint find."""
    json_text = encode_json(value, ValueLimits(max_bytes=10**9, max_depth=10**6))
    size, depth = json_measure(value)
    row = conn.execute("SELECT octet_length(%s::jsonb::text)", (json_text,)).fetchone()
    assert row is not None
    assert size == row[0]
    for level, expected in ((depth - 1, True), (depth, False)):
        if level >= 0:
            found = conn.execute(DEPTH_AT_LEAST, (json_text, level)).fetchone()
            assert found is not None
            assert found[0] is expected, (level, json_text)
    assert _printed_measure(json_text) == (size, depth)


@EXAMPLES
@given(value=json_values)
def test_the_table_and_the_library_agree_on_every_value(
    conn: psycopg.Connection[Any], value: Any
) -> None:
    """With the table's limit functions redefined (as a DBA may), a value the library
    refuses under the same limits, the table refuses, and the other way round."""
    json_text = encode_json(value, ValueLimits(max_bytes=10**9, max_depth=10**6))
    try:
        prepare_value(value, limits=SMALL)
    except InvalidConfigurationError:
        library = False
    else:
        library = True
    with conn.transaction(force_rollback=True):
        conn.execute(
            f"CREATE OR REPLACE FUNCTION amira_config.max_value_bytes() RETURNS integer"
            f" LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT {SMALL.max_bytes} $$"
        )
        conn.execute(
            f"CREATE OR REPLACE FUNCTION amira_config.max_value_depth() RETURNS integer"
            f" LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT {SMALL.max_depth} $$"
        )
        try:
            with conn.transaction():  # a savepoint: the functions stay redefined
                conn.execute(INSERT, ("k", json_text))
        except psycopg.errors.CheckViolation:
            table = False
        else:
            table = True
    assert table == library, json_text
