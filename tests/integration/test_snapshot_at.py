"""snapshot_at against its definition, on a real server and in memory.

The definition: for each key with the prefix, its last change committed at or
before the instant (latest changed_at, then highest version), unless that change
is a delete; the value decoded as ``get_at`` decodes it. snapshot_at reads JSON
chunks of 250 keys (get_snapshot_chunks_at) and only falls back to rows
(get_snapshot_at) for a chunk Python cannot decode: both must give this answer,
across chunk boundaries, for every kind of value.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest

from amira_data_access import ConfigDAL, ConfigItem, InMemoryConfigStore, Keyring, SealedSecret
from amira_data_access.backends.memory_sql import _DECODED_AS_READ, _SNAPSHOT_CHUNK
from amira_data_access.backends.postgres import load_queries
from amira_data_access.codec import decode_value
from amira_data_access.core.arguments import prefix_end

KEYRING = Keyring({"k1": bytes(range(32))})
PLAIN = "s3cr3t"

# Keys around the chunk size, with the characters LIKE would treat as wildcards.
MANY = [f"bulk.{i:04d}" for i in range(_SNAPSHOT_CHUNK * 2 + 7)]
ODD = ["odd_a", "odd%b", "oddxc", "odd_", "odd%"]


def _history(dsn: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT key, version, operation, value::text, data_type, changed_at"
            " FROM amira_config.configuration_history"
        ).fetchall()


def _revealed(key: str, value: Any) -> Any:
    return KEYRING.open(key, value) if isinstance(value, SealedSecret) else value


def _defined(history: list[tuple[Any, ...]], at: datetime, prefix: str) -> dict[str, Any]:
    """The snapshot by its definition, from the raw history rows."""
    last: dict[str, tuple[Any, ...]] = {}
    for row in history:
        key, version, _operation, _value, _type, changed_at = row
        if not key.startswith(prefix) or changed_at > at:
            continue
        seen = last.get(key)
        if seen is None or (changed_at, version) > (seen[5], seen[1]):
            last[key] = row
    return {
        key: _revealed(key, decode_value(json.loads(row[3]), row[4], key))
        for key, row in sorted(last.items())
        if row[2] != "delete"
    }


def _instants(dsn: str) -> list[datetime]:
    with psycopg.connect(dsn) as conn:
        commits = [
            row[0]
            for row in conn.execute(
                "SELECT DISTINCT changed_at FROM amira_config.configuration_history"
                " ORDER BY changed_at"
            )
        ]
    tiny = timedelta(microseconds=1)
    return sorted({t + d for t in commits for d in (-tiny, timedelta(0), tiny)})


def _write_everything(store: Any) -> None:
    store.set_many({key: i for i, key in enumerate(MANY)}, updated_by="t")
    store.set_many([ConfigItem(key, 1.5, data_type="float") for key in MANY[::97]], updated_by="t")
    store.set_many([ConfigItem(key, 2, data_type="float") for key in MANY[::97]], updated_by="t")
    store.set("bulk.0250", PLAIN, data_type="secret", updated_by="t")  # first of chunk 2
    store.set(
        "bulk.0249", {"a": [1, None, "x"]}, data_type="json", updated_by="t"
    )  # last of chunk 1
    store.delete("bulk.0100", deleted_by="t")
    store.delete("bulk.0300", deleted_by="t")
    store.set("bulk.0300", "back", updated_by="t")  # re-created
    for i, key in enumerate(ODD):
        store.set(key, f"v{i}", updated_by="t")
    store.delete("odd_", deleted_by="t")
    store.set("odd%", None, data_type="json", updated_by="t")


def test_snapshots_match_the_definition_at_every_commit(dsn: str) -> None:
    """At, just before and just after each commit, for prefixes with and without wildcards."""
    with ConfigDAL(dsn, keyring=KEYRING) as dal:
        _write_everything(dal)
        history = _history(dsn)
        instants = _instants(dsn)
        assert len(instants) >= 3 * 12
        for at in instants:
            for prefix in ("", "bulk.", "bulk.02", "odd_", "odd%", "odd", "none"):
                got = dal.snapshot_at(at, prefix)
                assert got == _defined(history, at, prefix), (at, prefix)
                assert list(got) == sorted(got)  # in key order


def test_chunks_and_rows_give_the_same_answer(dsn: str) -> None:
    """get_snapshot_chunks_at's documents hold exactly get_snapshot_at's rows."""
    with ConfigDAL(dsn, keyring=KEYRING) as dal:
        _write_everything(dal)
    queries = load_queries()
    with psycopg.connect(dsn) as conn:
        now = conn.execute("SELECT clock_timestamp()").fetchone()[0]  # type: ignore[index]
        params = {"at": now, "prefix": "", "prefix_end": prefix_end("")}
        rows = list(queries.get_snapshot_at(conn, **params))
        chunks = list(queries.get_snapshot_chunks_at(conn, **params))
    assert len(rows) == len(MANY) - 1 + len(ODD) - 1
    assert [len(values) for values, _ in chunks] == [
        min(_SNAPSHOT_CHUNK, len(rows) - first) for first in range(0, len(rows), _SNAPSHOT_CHUNK)
    ]
    merged = {key: value for values, _ in chunks for key, value in values.items()}
    typed = {key: kind for _, chunk in chunks if chunk for key, kind in chunk.items()}
    assert list(merged) == [row[0] for row in rows]
    assert merged == {row[0]: row[1] for row in rows}
    assert typed == {row[0]: row[2] for row in rows if row[2] not in _DECODED_AS_READ}
    assert set(typed.values()) == {"float", "secret"}


def test_the_memory_store_gives_the_same_snapshots(dsn: str) -> None:
    """InMemoryConfigStore answers each snapshot like PostgreSQL (its own clock)."""
    memory = InMemoryConfigStore(keyring=KEYRING)
    _write_everything(memory)
    with ConfigDAL(dsn, keyring=KEYRING) as dal:
        _write_everything(dal)
        now = datetime.now().astimezone()
        for prefix in ("", "bulk.", "odd_", "odd%"):
            assert memory.snapshot_at(now, prefix) == dal.snapshot_at(now, prefix)
    assert memory.snapshot_at(now)["bulk.0250"] == PLAIN


@pytest.mark.parametrize("data_type", sorted(_DECODED_AS_READ))
def test_the_types_left_out_of_typed_are_decoded_unchanged(data_type: str) -> None:
    """The SQL sends no data type for these: decode_value must return their values as read."""
    listed = re.search(r"data_type NOT IN \(([^)]*)\)", load_queries().get_snapshot_chunks_at.sql)
    assert listed is not None
    assert {name.strip(" '") for name in listed.group(1).split(",")} == _DECODED_AS_READ
    for value in ("x", 1, True, None, {"a": [1, 2.5]}, [1], 2.5):
        assert decode_value(value, data_type, "k") is value
