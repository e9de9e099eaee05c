"""Live settings on a real server and its change feed: readers on many threads never see a
half-updated model while changes keep arriving (each change writes both fields in one batch)."""

from __future__ import annotations

import threading

from pydantic import BaseModel

from amira_data_access import CachedConfigDAL, ConfigDAL

CHANGES = 30
READERS = 4


class Pair(BaseModel):
    left: int
    right: int


def test_readers_never_see_a_half_updated_model(dal: ConfigDAL, dsn: str) -> None:
    dal.set_many({"svc.pair.left": 0, "svc.pair.right": 0}, updated_by="ops")
    with CachedConfigDAL(dsn) as service:
        pair = service.bind_settings(Pair, prefix="svc.pair.")
        done = threading.Event()
        seen: list[int] = []
        torn: list[Pair] = []

        @pair.on_change
        def changed(old: Pair, new: Pair) -> None:
            seen.append(new.left)
            if new.left == CHANGES:
                done.set()

        def read() -> None:
            while not done.is_set():
                current = pair.current
                if current.left != current.right:
                    torn.append(current)

        readers = [threading.Thread(target=read) for _ in range(READERS)]
        for reader in readers:
            reader.start()
        try:
            for n in range(1, CHANGES + 1):
                # Written by another client, in one statement: one revision, both keys.
                dal.set_many({"svc.pair.left": n, "svc.pair.right": n}, updated_by="ops")
            assert done.wait(60), f"the last change never arrived (saw {seen[-1:]})"
        finally:
            done.set()
            for reader in readers:
                reader.join()
        assert torn == []
        assert pair.current.model_dump() == {"left": CHANGES, "right": CHANGES}
        assert seen == sorted(seen)  # swaps in commit order: never back to an older model
        pair.close()


class Turns(BaseModel):
    max_turns: int


def test_a_raw_sql_write_its_schema_refuses_is_not_applied(dal: ConfigDAL, dsn: str) -> None:
    import psycopg

    dal.set("svc.chat.max_turns", 10, updated_by="ops")
    dal.set_schema("svc.chat.", {"type": "integer", "maximum": 50}, updated_by="ops")
    with ConfigDAL(dsn) as service:
        turns = service.bind_settings(Turns, prefix="svc.chat.")
        refused = threading.Event()
        turns.on_invalid(lambda error: refused.set())
        with psycopg.connect(dsn, autocommit=True) as conn:  # bypasses the library's check
            conn.execute(
                "UPDATE amira_config.configurations SET value = '500' "
                "WHERE key = 'svc.chat.max_turns'"
            )
        assert refused.wait(60)
        assert turns.current.max_turns == 10
        assert turns.error is not None
        assert "fails maximum 50" in turns.error
        assert service.health().settings_errors == (turns.error,)
        turns.close()
