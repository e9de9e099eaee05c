"""The last-known-good snapshot of a cached DAL, on a real server: written after each sync
(atomic, 0600, revision and checksum inside), served from at a start-up with the database
unreachable, refused whole when corrupt or modified, caught up from when the database returns."""

from __future__ import annotations

import json
import socket
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from psycopg.conninfo import make_conninfo
from pydantic import BaseModel

from amira_data_access import CachedConfigDAL, ConfigDAL, DatabaseConnectionError
from amira_data_access.feed.snapshot import SnapshotError


class Chat(BaseModel):
    max_turns: int
    tone: str = "friendly"


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def unreachable(dsn: str) -> str:
    """``dsn`` on a port nobody listens on (the server is down, as far as a client can tell)."""
    return make_conninfo(dsn, host="127.0.0.1", port=str(_closed_port()), connect_timeout="2")


def write_snapshot_of(dsn: str, path: Path, values: dict[str, Any]) -> None:
    with CachedConfigDAL(dsn, snapshot=path) as service:
        written = threading.Event()
        # Subscribed after the snapshot's own subscription: called once it has written.
        subscription = service.subscribe(lambda change: written.set())
        service.set_many(values, updated_by="ops")
        assert written.wait(30)
        subscription.close()


def test_the_snapshot_is_written_atomically_owner_only_with_revision_and_checksum(
    dsn: str, tmp_path: Path
) -> None:
    path = tmp_path / "state" / "config.snapshot"
    write_snapshot_of(dsn, path, {"amira.chat.max_turns": 12, "amira.chat.tone": "formal"})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    document = json.loads(path.read_text())
    assert document["format"] == "amira-config-snapshot/1"
    assert document["revision"] >= 1
    assert len(document["sha256"]) == 64
    assert {row[0]: row[1] for row in document["rows"]} == {
        "amira.chat.max_turns": 12,
        "amira.chat.tone": "formal",
    }
    assert [p.name for p in path.parent.iterdir()] == ["config.snapshot"]  # no temporary left


def test_started_with_the_database_unreachable_it_serves_the_snapshot(
    dsn: str, tmp_path: Path
) -> None:
    path = tmp_path / "config.snapshot"
    write_snapshot_of(dsn, path, {"amira.chat.max_turns": 12, "amira.chat.tone": "formal"})
    with CachedConfigDAL(unreachable(dsn), snapshot=path) as service:
        assert service.get("amira.chat.max_turns") == 12
        assert service.get_entry("amira.chat.tone").value == "formal"  # type: ignore[union-attr]
        assert service.get_many(["amira.chat.tone", "amira.absent"]) == {
            "amira.chat.tone": "formal"
        }
        assert service.get("amira.absent", default="d") == "d"
        assert [e.key for e in service.list("amira.chat.")] == [
            "amira.chat.max_turns",
            "amira.chat.tone",
        ]
        chat = service.bind_settings(Chat, prefix="amira.chat.")
        assert chat.current.max_turns == 12
        health = service.health()
        assert health.reachable is False
        assert health.serving_from_snapshot is True
        assert health.snapshot_age_seconds is not None
        assert health.snapshot_age_seconds >= 0
    # Without a snapshot the same start-up fails, as it always did.
    with pytest.raises(DatabaseConnectionError):
        CachedConfigDAL(unreachable(dsn)).open()


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda text: text.replace("formal", "casual"), id="value-edited"),
        pytest.param(lambda text: text[: len(text) // 2], id="truncated"),
        pytest.param(lambda text: "not json", id="garbage"),
        pytest.param(lambda text: text.replace('"revision": ', '"revision": 1'), id="revision"),
    ],
)
def test_a_corrupt_or_modified_snapshot_is_refused_whole(
    dsn: str, tmp_path: Path, damage: Callable[[str], str]
) -> None:
    path = tmp_path / "config.snapshot"
    write_snapshot_of(dsn, path, {"amira.chat.tone": "formal"})
    path.write_text(damage(path.read_text()))
    service = CachedConfigDAL(unreachable(dsn), snapshot=path)
    with pytest.raises(SnapshotError, match="refused, nothing of it is used"):
        service.open()
    with pytest.raises(SnapshotError):  # every use refuses it: nothing half-loaded serves
        service.get("amira.chat.tone")
    assert service.health().serving_from_snapshot is False
    service.close()


def test_it_catches_up_when_the_database_returns(
    restartable: Any, dsn: str, tmp_path: Path
) -> None:
    local = restartable.local
    path = tmp_path / "config.snapshot"
    write_snapshot_of(dsn, path, {"amira.chat.tone": "formal"})
    local.stop()
    try:
        service = CachedConfigDAL(dsn, snapshot=path, connect_timeout=2)
        service.open()
        assert service.get("amira.chat.tone") == "formal"
        assert service.health().serving_from_snapshot
    finally:
        local.start()
    try:
        with ConfigDAL(dsn) as writer:
            writer.set("amira.chat.tone", "friendly", updated_by="after")
        deadline = time.monotonic() + 60
        while service.get("amira.chat.tone") != "friendly":
            assert time.monotonic() < deadline, "never caught up"
            time.sleep(0.05)
        assert not service.health().serving_from_snapshot
        rows = json.loads(path.read_text())["rows"]
        assert [row[1] for row in rows] == ["friendly"]  # the snapshot caught up too
    finally:
        service.close()


def test_secrets_stay_sealed_in_the_snapshot(dsn: str, tmp_path: Path) -> None:
    from amira_data_access import Keyring

    keyring = Keyring({"k1": bytes(range(32))}, active="k1")
    path = tmp_path / "config.snapshot"
    with CachedConfigDAL(dsn, snapshot=path, keyring=keyring) as service:
        written = threading.Event()
        subscription = service.subscribe(lambda change: written.set())
        service.set("amira.api.token", "sk-plain-text", data_type="secret", updated_by="ops")
        assert written.wait(30)
        subscription.close()
    assert "sk-plain-text" not in path.read_text()
    with CachedConfigDAL(unreachable(dsn), snapshot=path, keyring=keyring) as service:
        assert service.get("amira.api.token") == "sk-plain-text"  # opened when read
