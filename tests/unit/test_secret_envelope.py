"""The envelope encryption of secrets (amira_data_access.secrets): pure, no database."""

from __future__ import annotations

import base64
import dataclasses
import json
import pickle
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from amira_data_access.codec import decode_value, infer_data_type, is_secret, prepare_value
from amira_data_access.errors import (
    InvalidConfigurationError,
    SecretUnavailableError,
    UnreadableValueError,
)
from amira_data_access.secrets import (
    MASK,
    Keyring,
    SealedSecret,
    is_envelope_document,
    masked,
    sealed_from_document,
)

KEY1 = bytes(range(32))
KEY2 = bytes(range(100, 132))


def keyring(active: str = "k1") -> Keyring:
    return Keyring({"k1": KEY1, "k2": KEY2}, active=active)


# Text as UTF-8 can carry it: no lone surrogates (a str that cannot be encoded).
plaintexts = st.text(st.characters(exclude_categories=["Cs"]), max_size=300)


@settings(max_examples=200, deadline=None)
@given(plaintext=plaintexts, key=st.sampled_from(["svc.api_key", "a", "ключ.тон"]))
def test_what_is_sealed_opens_to_the_same_text(plaintext: str, key: str) -> None:
    ring = keyring()
    sealed = ring.seal(key, plaintext)
    assert ring.open(key, sealed) == plaintext
    # And through the stored document, as the table holds it.
    document = json.loads(json.dumps(sealed.document()))
    assert is_envelope_document(document)
    assert ring.open(key, sealed_from_document(document)) == plaintext
    if len(plaintext) >= 4:
        assert plaintext not in json.dumps(document, ensure_ascii=False)


def test_each_seal_is_fresh() -> None:
    ring = keyring()
    one, two = ring.seal("k", "same"), ring.seal("k", "same")
    assert one.nonce != two.nonce
    assert one.wrapped_key != two.wrapped_key
    assert one.ciphertext != two.ciphertext


def test_a_ciphertext_moved_to_another_key_does_not_open() -> None:
    ring = keyring()
    sealed = ring.seal("svc.api_key", "hunter2-secret")
    with pytest.raises(SecretUnavailableError, match=r"svc\.other_key"):
        ring.open("svc.other_key", sealed)
    # Nor its data key alone, nor its ciphertext alone, spliced into another envelope.
    other = ring.seal("svc.other_key", "another-secret")
    spliced = dataclasses.replace(other, ciphertext=sealed.ciphertext, nonce=sealed.nonce)
    with pytest.raises(SecretUnavailableError):
        ring.open("svc.other_key", spliced)
    with pytest.raises(SecretUnavailableError):
        ring.rewrap("svc.other_key", sealed, to="k2")


def test_other_key_material_under_the_same_id_does_not_open() -> None:
    sealed = keyring().seal("svc.api_key", "hunter2-secret")
    impostor = Keyring({"k1": KEY2})
    with pytest.raises(SecretUnavailableError, match="does not open with key id 'k1'") as info:
        impostor.open("svc.api_key", sealed)
    assert "hunter2" not in str(info.value)


def test_a_missing_key_id_is_named() -> None:
    sealed = keyring(active="k2").seal("svc.api_key", "hunter2-secret")
    with pytest.raises(SecretUnavailableError, match="key id 'k2', which the keyring lacks"):
        Keyring({"k1": KEY1}).open("svc.api_key", sealed)


@pytest.mark.parametrize("field", ["wrapped_key", "nonce", "ciphertext"])
def test_an_altered_envelope_does_not_open(field: str) -> None:
    ring = keyring()
    sealed = ring.seal("k", "hunter2-secret")
    data = bytearray(getattr(sealed, field))
    data[-1] ^= 1
    with pytest.raises(SecretUnavailableError):
        ring.open("k", dataclasses.replace(sealed, **{field: bytes(data)}))


def test_the_key_id_is_bound_to_the_wrapped_key() -> None:
    # Same material under two ids: relabelling the envelope's key id still fails.
    ring = Keyring({"k1": KEY1, "k2": KEY1}, active="k1")
    sealed = ring.seal("k", "hunter2-secret")
    with pytest.raises(SecretUnavailableError):
        ring.open("k", dataclasses.replace(sealed, key_id="k2"))


def test_rewrap_changes_the_key_id_and_keeps_the_ciphertext() -> None:
    ring = keyring()
    sealed = ring.seal("svc.api_key", "hunter2-secret")
    moved = ring.rewrap("svc.api_key", sealed, to="k2")
    assert moved.key_id == "k2"
    assert moved.ciphertext == sealed.ciphertext
    assert Keyring({"k2": KEY2}).open("svc.api_key", moved) == "hunter2-secret"
    with pytest.raises(SecretUnavailableError):
        Keyring({"k1": KEY1}).open("svc.api_key", moved)


def test_key_material_never_shows() -> None:
    ring = keyring()
    sealed = ring.seal("k", "hunter2-secret")
    for text in (repr(ring), str(ring), repr(sealed), str(sealed)):
        for secret in (KEY1, KEY2):
            assert base64.b64encode(secret).decode() not in text
            assert secret.hex() not in text
        assert "hunter2" not in text
    assert repr(ring) == "Keyring(key_ids=('k1', 'k2'), active='k1')"
    assert str(sealed) == MASK
    assert MASK in repr(sealed)
    with pytest.raises(TypeError):
        pickle.dumps(ring)


def test_keyring_from_the_environment(tmp_path: Path) -> None:
    one, two = base64.b64encode(KEY1).decode(), base64.b64encode(KEY2).decode()
    assert Keyring.from_env({}) is None
    ring = Keyring.from_env({"AMIRA_CONFIG_SECRET_KEYS": f"k1:{one}, k2:{two}",
                             "AMIRA_CONFIG_SECRET_KEY_ID": "k2"})  # fmt: skip
    assert ring is not None
    assert ring.key_ids == ("k1", "k2")
    assert ring.active == "k2"
    path = tmp_path / "keys"
    path.write_text(f"# rotated 2026-12\nk1:{one}\nk2:{two}\n")
    ring = Keyring.from_env({"AMIRA_CONFIG_SECRET_KEYS_FILE": str(path),
                             "AMIRA_CONFIG_SECRET_KEY_ID": "k1"})  # fmt: skip
    assert ring is not None
    assert ring.active == "k1"


@pytest.mark.parametrize(
    ("listed", "message"),
    [
        ("k1:" + base64.b64encode(b"short").decode(), "must be 32 bytes"),
        ("k1:not base64!", "not valid base64"),
        ("k1", "key_id:base64key"),
        ("", "lists no key"),
        ("k1:{0},k2:{0}", "needs active="),
        ("k1:{0},k1:{0}", "listed twice"),
        ("bad id:{0}", "key id"),
    ],
)
def test_a_bad_keyring_is_refused_without_showing_keys(listed: str, message: str) -> None:
    encoded = base64.b64encode(KEY1).decode()
    with pytest.raises(ValueError, match=message) as info:
        Keyring.parse(listed.format(encoded))
    assert encoded not in str(info.value)


def test_the_active_id_must_be_in_the_keyring() -> None:
    with pytest.raises(ValueError, match="not in the keyring"):
        Keyring({"k1": KEY1}, active="k9")
    with pytest.raises(SecretUnavailableError, match="'k9' is not in the keyring"):
        keyring().with_active("k9")
    assert keyring().with_active("k2").active == "k2"


def test_generated_keys_make_a_keyring() -> None:
    ring = Keyring.parse(f"new:{Keyring.generate_key()}")
    assert ring.open("k", ring.seal("k", "x")) == "x"


MALFORMED: list[object] = [
    "hunter2",
    None,
    {},
    {"v": 1, "kid": "k1", "dek": "A" * 80, "nonce": "A" * 16},
    {"v": 1, "kid": "k1", "dek": "A" * 80, "nonce": "A" * 16, "ct": "A" * 24, "x": 1},
    {"v": 2, "kid": "k1", "dek": "A" * 80, "nonce": "A" * 16, "ct": "A" * 24},
    {"v": 1.0, "kid": "k1", "dek": "A" * 80, "nonce": "A" * 16, "ct": "A" * 24},
    {"v": True, "kid": "k1", "dek": "A" * 80, "nonce": "A" * 16, "ct": "A" * 24},
    {"v": 1, "kid": "", "dek": "A" * 80, "nonce": "A" * 16, "ct": "A" * 24},
    {"v": 1, "kid": "k1", "dek": "A" * 79, "nonce": "A" * 16, "ct": "A" * 24},
    {"v": 1, "kid": "k1", "dek": "A" * 80, "nonce": "A" * 16, "ct": "A" * 20},
    {"v": 1, "kid": "k1", "dek": "A" * 80, "nonce": "A" * 16, "ct": "hunter2 secret value"},
    {"v": 1, "kid": "k1", "dek": "A" * 80, "nonce": "A" * 16, "ct": 12345},
    {"v": 1, "kid": "k1", "dek": "A" * 80, "nonce": "A" * 16, "ct": "A" * 26 + "="},
    {"v": 1, "kid": "k1 x", "dek": "A" * 80, "nonce": "A" * 16, "ct": "A" * 24},
    {"v": "1", "kid": "k1", "dek": "A" * 80, "nonce": "A" * 16, "ct": "A" * 24},
    ["v", "kid", "dek", "nonce", "ct"],
]


@pytest.mark.parametrize("document", MALFORMED)
def test_only_an_envelope_is_a_stored_secret(document: object) -> None:
    assert not is_envelope_document(document)
    with pytest.raises(InvalidConfigurationError, match="not a sealed envelope") as info:
        sealed_from_document(document, "svc.api_key")
    assert "hunter2" not in str(info.value)
    with pytest.raises(UnreadableValueError, match=r"svc\.api_key"):
        decode_value(document, "secret", "svc.api_key")


def test_the_codec_knows_a_secret() -> None:
    sealed = keyring().seal("k", "hunter2-secret")
    assert is_secret("secret")
    assert not is_secret("str")
    assert infer_data_type(sealed) == "secret"
    prepared = prepare_value(sealed, "secret")
    assert json.loads(prepared.json_text) == sealed.document()
    assert decode_value(sealed.document(), "secret", "k") == sealed
    # A plaintext never gets as far as JSON text: the store seals it first.
    with pytest.raises(InvalidConfigurationError, match="must be sealed first"):
        prepare_value("hunter2-secret", "secret")
    assert masked("hunter2", "secret") == MASK
    assert masked("x", "str") == "x"


def test_a_secret_is_a_str() -> None:
    with pytest.raises(InvalidConfigurationError, match="a secret is a str"):
        keyring().seal("k", 42)  # type: ignore[arg-type]
    with pytest.raises(InvalidConfigurationError, match="surrogate"):
        keyring().seal("k", "\ud800")


def test_sealed_secret_is_a_frozen_value() -> None:
    sealed = keyring().seal("k", "x")
    assert isinstance(sealed, SealedSecret)
    with pytest.raises(dataclasses.FrozenInstanceError):
        sealed.key_id = "k2"  # type: ignore[misc]


def test_the_table_constraint_has_the_same_patterns() -> None:
    """migrations/0009's CHECK spells the envelope's grammar as secrets.py does."""
    from amira_data_access import secrets

    sql = (Path(__file__).parents[2] / "migrations" / "0009_secret_values.sql").read_text()
    for pattern in (
        secrets.KEY_ID_PATTERN,
        secrets.WRAPPED_KEY_PATTERN,
        secrets.NONCE_PATTERN,
        secrets.CIPHERTEXT_PATTERN,
    ):
        assert f"'{pattern}'" in sql
    assert "ARRAY['v', 'kid', 'dek', 'nonce', 'ct']" in sql
