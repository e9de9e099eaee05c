"""The CLI's output functions and a secret: masked, revealed only by --reveal (no database)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from typing import Any, cast

import pytest

from amira_data_access import ConfigChange, InMemoryConfigStore, Keyring
from amira_data_access.cli.changes import describe_change
from amira_data_access.cli.context import Context
from amira_data_access.cli.output import (
    MASK,
    Style,
    entry_document,
    entry_to_json,
    render_entry,
    reveal_secrets,
    revision_to_json,
    unified_diff,
    visible_value,
)
from amira_data_access.cli.watching import _shown

PLAIN = "sk-live-UNIT-PLAINTEXT-31"
KEYRING = Keyring({"k1": bytes(range(32))})


@pytest.fixture
def store() -> Iterator[InMemoryConfigStore]:
    with InMemoryConfigStore(keyring=KEYRING) as memory:
        memory.set("svc.api_key", PLAIN, data_type="secret", updated_by="ops")
        yield memory
    reveal_secrets(None)


def test_watch_masks_a_secret_in_every_format(store: InMemoryConfigStore) -> None:
    change = ConfigChange("svc.api_key", 1, "insert", "ops", 1)
    shown = describe_change(store, change)  # type: ignore[arg-type]  # the store's history()
    assert shown.value == MASK
    for output in ("table", "json", "yaml", "value", "env"):
        ctx = Context(argparse.Namespace(output=output), Style())
        line = _shown(ctx, shown)
        assert PLAIN not in line
        assert MASK in line
    reveal_secrets(KEYRING)
    assert describe_change(store, change).value == PLAIN  # type: ignore[arg-type]


def test_records_and_documents_mask_a_secret(store: InMemoryConfigStore) -> None:
    entry = store.get_entry("svc.api_key")
    assert entry is not None
    (revision,) = store.history("svc.api_key")
    texts = [
        json.dumps(entry_to_json(entry)),
        json.dumps(revision_to_json(revision)),
        render_entry(entry),
        repr(entry),
        repr(revision),
        str(entry.value),
    ]
    document = entry_document(entry.value, entry.data_type, None)
    assert cast(dict[str, Any], document["value"])["kid"] == "k1"  # export: the envelope
    texts.append(json.dumps(document))
    other = entry_document(KEYRING.seal("svc.api_key", "x"), "secret", None)
    diff = unified_diff(document, other, before_label="a", after_label="b")
    assert MASK in diff
    texts.append(diff)
    assert [text for text in texts if PLAIN in text] == []
    assert visible_value("svc.api_key", entry.value, "secret") == MASK
    reveal_secrets(KEYRING)
    assert visible_value("svc.api_key", entry.value, "secret") == PLAIN
    assert PLAIN not in json.dumps(entry_document(entry.value, entry.data_type, None))


def test_no_log_event_holds_a_plaintext() -> None:
    from structlog.testing import capture_logs

    from amira_data_access import SecretUnavailableError

    with capture_logs() as events, InMemoryConfigStore(keyring=KEYRING) as memory:
        memory.set("svc.api_key", PLAIN, data_type="secret", updated_by="ops")
        assert memory.get("svc.api_key") == PLAIN
        memory.list("svc.")
        memory.history("svc.api_key")
        with pytest.raises(ValueError, match="sealed envelope"):
            memory.set("svc.api_key", PLAIN + "-2", updated_by="ops")
        with pytest.raises(SecretUnavailableError):
            InMemoryConfigStore(memory.database).get("svc.api_key")
    assert len(events) >= 6
    assert [event for event in events if PLAIN in repr(event)] == []
