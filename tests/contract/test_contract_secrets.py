"""Secrets (data_type "secret") on every store: sealed on write, opened by get with the key."""

from __future__ import annotations

from datetime import datetime

import pytest
from pydantic import BaseModel, SecretStr

from amira_data_access import (
    ConfigItem,
    InvalidConfigurationError,
    Keyring,
    SealedSecret,
    SecretUnavailableError,
    rotate_secrets,
)
from amira_data_access.secrets import MASK

from .conftest import Subject

KEYRING = Keyring({"k1": bytes(range(32)), "k2": bytes(range(1, 33))}, active="k1")
PLAIN = "sk-live-contract-7f3a"
OTHER_PLAIN = "sk-live-contract-other-19"

with_keyring = pytest.mark.store_options(keyring=KEYRING)


@with_keyring
def test_a_secret_is_stored_sealed_and_read_in_clear(subject: Subject) -> None:
    store = subject.store
    entry = store.set("svc.api_key", PLAIN, data_type="secret", updated_by="ops")
    assert entry.data_type == "secret"
    assert isinstance(entry.value, SealedSecret)
    assert entry.value.key_id == "k1"
    assert PLAIN not in repr(entry)
    assert MASK in repr(entry)
    assert store.get("svc.api_key") == PLAIN
    assert store.get("svc.api_key") == PLAIN  # twice: a cached store answers from memory
    assert store.get_many(["svc.api_key", "nope"]) == {"svc.api_key": PLAIN}
    listed = store.list("svc.")
    assert [e.key for e in listed] == ["svc.api_key"]
    assert isinstance(listed[0].value, SealedSecret)
    (revision,) = store.history("svc.api_key")
    assert isinstance(revision.value, SealedSecret)
    assert PLAIN not in repr(revision)


@with_keyring
def test_point_in_time_reads_open_secrets(subject: Subject) -> None:
    store = subject.store
    store.set("svc.api_key", PLAIN, data_type="secret", updated_by="ops")
    between: datetime = subject.instant()
    store.set("svc.api_key", OTHER_PLAIN, data_type="secret", updated_by="ops")
    assert store.get_at("svc.api_key", between) == PLAIN
    assert store.snapshot_at(between, "svc.") == {"svc.api_key": PLAIN}
    store.rollback("svc.api_key", to_version=1, updated_by="ops")
    assert store.get("svc.api_key") == PLAIN


@with_keyring
def test_batches_and_transactions_seal_too(subject: Subject) -> None:
    store = subject.store
    entries = store.set_many(
        [ConfigItem("svc.a", PLAIN, data_type="secret"), ConfigItem("svc.b", 1)],
        updated_by="ops",
    )
    assert isinstance(entries[0].value, SealedSecret)
    with subject.transaction() as tx:
        tx.set("svc.c", OTHER_PLAIN, data_type="secret", updated_by="ops")
        assert tx.get("svc.c") == OTHER_PLAIN
    assert store.get_many(["svc.a", "svc.b", "svc.c"]) == {
        "svc.a": PLAIN,
        "svc.b": 1,
        "svc.c": OTHER_PLAIN,
    }
    default = store.set_default("svc.d", PLAIN, data_type="secret", updated_by="ops")
    assert isinstance(default.value, SealedSecret)
    assert store.get("svc.d") == PLAIN


def test_without_a_keyring_a_secret_is_neither_written_nor_read(subject: Subject) -> None:
    store = subject.store
    with pytest.raises(SecretUnavailableError, match="needs a store given a keyring"):
        store.set("svc.api_key", PLAIN, data_type="secret", updated_by="ops")
    assert store.get_entry("svc.api_key") is None
    # Sealed by a store with the key: this one lists the envelope, and get() refuses.
    sealed = KEYRING.seal("svc.api_key", PLAIN)
    store.set("svc.api_key", sealed, updated_by="ops")  # an envelope needs no keyring
    entry = store.get_entry("svc.api_key")
    assert entry is not None
    assert entry.value == sealed
    with pytest.raises(SecretUnavailableError, match=r"'svc\.api_key' is a secret"):
        store.get("svc.api_key")
    with pytest.raises(SecretUnavailableError):
        store.get_many(["svc.api_key"])


@with_keyring
def test_a_plaintext_never_replaces_a_secret_by_accident(subject: Subject) -> None:
    store = subject.store
    store.set("svc.api_key", PLAIN, data_type="secret", updated_by="ops")
    with pytest.raises(InvalidConfigurationError, match="sealed envelope") as info:
        store.set("svc.api_key", OTHER_PLAIN, updated_by="ops")  # the stored type is kept
    assert OTHER_PLAIN not in str(info.value)
    assert store.get("svc.api_key") == PLAIN
    with pytest.raises(InvalidConfigurationError, match="a secret is a str"):
        store.set("svc.other", 42, data_type="secret", updated_by="ops")


@with_keyring
def test_an_envelope_of_another_key_does_not_open(subject: Subject) -> None:
    store = subject.store
    store.set("svc.api_key", KEYRING.seal("svc.other_key", PLAIN), updated_by="ops")
    with pytest.raises(SecretUnavailableError, match="does not open") as info:
        store.get("svc.api_key")
    assert PLAIN not in str(info.value)


@with_keyring
def test_rotation_rewraps_every_secret(subject: Subject) -> None:
    store = subject.store
    store.set("svc.a", PLAIN, data_type="secret", description="API key", updated_by="ops")
    store.set("svc.b", OTHER_PLAIN, data_type="secret", updated_by="ops")
    store.set("svc.plain", "not a secret", updated_by="ops")
    assert rotate_secrets(store, KEYRING, to="k2", updated_by="ops", dry_run=True) == [
        "svc.a",
        "svc.b",
    ]
    assert rotate_secrets(store, KEYRING, to="k2", updated_by="ops") == ["svc.a", "svc.b"]
    for key in ("svc.a", "svc.b"):
        entry = store.get_entry(key)
        assert entry is not None
        assert isinstance(entry.value, SealedSecret)
        assert entry.value.key_id == "k2"
        assert entry.version == 2
    assert store.get_entry("svc.a").description == "API key"  # type: ignore[union-attr]
    assert rotate_secrets(store, KEYRING, to="k2", updated_by="ops") == []  # nothing left
    # The old key id can now leave the keyring.
    only_new = Keyring({"k2": bytes(range(1, 33))})
    for key, plain in (("svc.a", PLAIN), ("svc.b", OTHER_PLAIN)):
        entry = store.get_entry(key)
        assert entry is not None
        assert isinstance(entry.value, SealedSecret)
        assert only_new.open(key, entry.value) == plain
    assert store.get("svc.a") == PLAIN
    with pytest.raises(SecretUnavailableError, match="'k9' is not in the keyring"):
        rotate_secrets(store, KEYRING, to="k9", updated_by="ops")


class _Payments(BaseModel):
    api_key: SecretStr
    timeout: int = 5


@with_keyring
def test_live_settings_get_the_plaintext_of_a_secret(subject: Subject) -> None:
    store = subject.store
    store.set("svc.pay.api_key", PLAIN, data_type="secret", updated_by="ops")
    store.set("svc.pay.timeout", 7, updated_by="ops")
    bound = store.bind_settings(_Payments, prefix="svc.pay.")
    try:
        assert bound.error is None
        assert bound.current.api_key.get_secret_value() == PLAIN
        assert PLAIN not in repr(bound.current)
        assert bound.current.timeout == 7
    finally:
        bound.close()


@with_keyring
def test_json_schemas_judge_a_secret_by_its_plaintext(subject: Subject) -> None:
    """A schema that applies to a secret's key judges the plaintext (opened with the
    store's keyring), never the envelope that is stored, and its refusal shows neither;
    nothing is written."""
    store = subject.store
    store.set("svc.pay.api_key", PLAIN, data_type="secret", updated_by="ops")
    store.set_schema("svc.pay.", {"type": "string", "pattern": "^sk-live-"}, updated_by="ops")
    assert store.check_schemas("svc.") == []
    store.set("svc.pay.api_key", OTHER_PLAIN, data_type="secret", updated_by="ops")
    with pytest.raises(InvalidConfigurationError, match="pattern") as refused:
        store.set("svc.pay.api_key", "pk-test-not-live", data_type="secret", updated_by="ops")
    assert "pk-test-not-live" not in str(refused.value)
    with pytest.raises(InvalidConfigurationError, match="pattern"):
        store.set_many(
            [ConfigItem("svc.pay.other", "pk-test-2", data_type="secret")], updated_by="ops"
        )
    assert store.get("svc.pay.api_key") == OTHER_PLAIN
    assert store.get("svc.pay.other") is None
