"""The library and the table refuse the same values (migrations/0007).

Hypothesis draws values; each is checked by the library
(:func:`~amira_data_access.codec.prepare_value`) and inserted by raw SQL into
a real table, in a transaction rolled back at once: both must give the same
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
from amira_data_access.codec import ValueLimits, encode_json, json_measure, prepare_value
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
