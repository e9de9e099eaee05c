"""Secrets: values of ``data_type="secret"``, encrypted before they leave the process.

Envelope encryption with AES-256-GCM (the ``cryptography`` package):

* each value gets a fresh random **data key** (32 bytes), which encrypts the
  plaintext under a random 96-bit nonce, with the configuration key's name as
  associated data: a ciphertext moved to another key does not open;
* the data key is itself encrypted (**wrapped**) by a **key-encryption key** of
  the :class:`Keyring`, also with AES-256-GCM, its associated data naming the
  key id and the configuration key: rotation re-wraps the data key under another
  key id and leaves the ciphertext as it is.

What is stored (the table, its history, NOTIFY payloads, backups, ``export``) is
the envelope, a versioned JSON document of base64 fields::

    {"v": 1, "kid": "k1", "dek": "<nonce+wrapped data key>", "nonce": "…", "ct": "…"}

Its shape is also a CHECK constraint of the table (migrations/0009,
``configurations_secret_sealed``): raw SQL cannot store a plaintext secret.

Key material is never in a ``repr``, a message or a log line: a :class:`Keyring`
shows its key ids only, a :class:`SealedSecret` its key id only, and
:data:`MASK` stands for a secret's value wherever one is shown.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import secrets as _random
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from .errors import ConcurrentModificationError, InvalidConfigurationError, SecretUnavailableError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from .store import ConfigStore

__all__ = [
    "ENVELOPE_VERSION",
    "KEYS_ENV",
    "KEYS_FILE_ENV",
    "KEY_ID_ENV",
    "MASK",
    "SECRET_TYPE",
    "Keyring",
    "SealedSecret",
    "is_envelope_document",
    "is_secret",
    "masked",
    "rotate_secrets",
    "sealed_from_document",
    "storable_value",
    "store_keyring",
]

SECRET_TYPE: Final = "secret"  # noqa: S105  # a data type name, not a password
MASK: Final = "••••••"  # what every output shows for a secret's value, unless revealed
ENVELOPE_VERSION: Final = 1

KEYS_ENV: Final = "AMIRA_CONFIG_SECRET_KEYS"  # "k1:<base64 32 bytes>,k2:<…>"
KEYS_FILE_ENV: Final = "AMIRA_CONFIG_SECRET_KEYS_FILE"  # the same, one or more per line
KEY_ID_ENV: Final = "AMIRA_CONFIG_SECRET_KEY_ID"  # which key id seals new secrets

_KEY_BYTES: Final = 32  # AES-256
_NONCE_BYTES: Final = 12  # the 96-bit nonce GCM is designed for
_TAG_BYTES: Final = 16
# nonce + the data key encrypted + its tag: 60 bytes, 80 base64 characters.
_WRAPPED_BYTES: Final = _NONCE_BYTES + _KEY_BYTES + _TAG_BYTES

# The envelope's grammar. migrations/0009 has the same patterns (tests compare them).
KEY_ID_PATTERN: Final = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
WRAPPED_KEY_PATTERN: Final = "^[A-Za-z0-9+/]{80}$"
NONCE_PATTERN: Final = "^[A-Za-z0-9+/]{16}$"
# Padded base64 of at least the 16-byte tag (24 characters).
CIPHERTEXT_PATTERN: Final = "^([A-Za-z0-9+/]{4})+([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"
_FIELDS: Final = ("v", "kid", "dek", "nonce", "ct")

_KEY_ID: Final = re.compile(KEY_ID_PATTERN)
_WRAPPED: Final = re.compile(WRAPPED_KEY_PATTERN)
_NONCE: Final = re.compile(NONCE_PATTERN)
_CIPHERTEXT: Final = re.compile(CIPHERTEXT_PATTERN)
_MIN_CIPHERTEXT_CHARS: Final = 24


def is_secret(data_type: object) -> bool:
    """Whether values of ``data_type`` are secrets: never carry them in clear (NOTIFY
    payloads, snapshots, logs), show :data:`MASK` instead."""
    return data_type == SECRET_TYPE


def masked(value: Any, data_type: object) -> Any:
    """``value`` as outputs show it: :data:`MASK` for a secret, else unchanged."""
    return MASK if is_secret(data_type) else value


def storable_value(value: Any) -> Any:
    """``value`` as it may be written outside the store (a snapshot file, an export): a
    secret's envelope document (ciphertext only), any other value unchanged.

    Read it back with :func:`sealed_from_document` (data_type ``secret``).
    """
    return value.document() if isinstance(value, SealedSecret) else value


def store_keyring(keyring: object) -> Keyring | None:
    """A store's ``keyring=`` option: a :class:`Keyring`, or None (no secret opens)."""
    if keyring is not None and not isinstance(keyring, Keyring):
        raise TypeError(f"keyring must be a Keyring or None, not {type(keyring).__name__}")
    return keyring


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@dataclass(frozen=True, slots=True, repr=False)
class SealedSecret:
    """A secret as stored: its envelope. Holds no plaintext, only ciphertext.

    What entries, revisions, exports and the caches carry for a secret; open it
    with :meth:`Keyring.open` (a store given a keyring does that in ``get``).
    """

    key_id: str
    wrapped_key: bytes  # nonce + the data key encrypted by the key id's key + tag
    nonce: bytes
    ciphertext: bytes  # the plaintext encrypted by the data key + tag

    def __repr__(self) -> str:
        return f"SealedSecret(key_id={self.key_id!r}, value={MASK})"

    def __str__(self) -> str:
        return MASK

    def document(self) -> dict[str, Any]:
        """The envelope as a JSON object (what the table stores and ``export`` writes)."""
        return {
            "v": ENVELOPE_VERSION,
            "kid": self.key_id,
            "dek": _b64(self.wrapped_key),
            "nonce": _b64(self.nonce),
            "ct": _b64(self.ciphertext),
        }


def is_envelope_document(document: object) -> bool:
    """Whether ``document`` has the envelope's shape: the CHECK constraint
    ``configurations_secret_sealed`` of migrations/0009, in Python (the in-memory twin)."""
    if not isinstance(document, dict) or sorted(document) != sorted(_FIELDS):
        return False
    version, kid, dek, nonce, ct = (document[name] for name in _FIELDS)
    return (
        type(version) is int
        and version == ENVELOPE_VERSION
        and all(isinstance(text, str) for text in (kid, dek, nonce, ct))
        and _KEY_ID.match(kid) is not None
        and _WRAPPED.match(dek) is not None
        and _NONCE.match(nonce) is not None
        and len(ct) >= _MIN_CIPHERTEXT_CHARS
        and _CIPHERTEXT.match(ct) is not None
    )


def sealed_from_document(document: object, key: str | None = None) -> SealedSecret:
    """The :class:`SealedSecret` of an envelope document (stored, or read from an export).

    Raises :class:`~amira_data_access.errors.InvalidConfigurationError` for anything
    else, without showing it (it might be a plaintext written where an envelope belongs).
    """
    if not is_envelope_document(document):
        where = "" if key is None else f" of {key!r}"
        raise InvalidConfigurationError(
            f"the secret{where} is not a sealed envelope (a JSON object of "
            f"{', '.join(_FIELDS)}, version {ENVELOPE_VERSION})"
        )
    assert isinstance(document, dict)  # for mypy: checked above
    try:
        return SealedSecret(
            key_id=document["kid"],
            wrapped_key=base64.b64decode(document["dek"], validate=True),
            nonce=base64.b64decode(document["nonce"], validate=True),
            ciphertext=base64.b64decode(document["ct"], validate=True),
        )
    except binascii.Error:  # pragma: no cover  # the patterns admit only valid base64
        raise InvalidConfigurationError("the secret's envelope is not valid base64") from None


def _aad(*parts: str) -> bytes:
    # Length-prefixed, so no two different lists of parts give the same bytes.
    return b"amira-secret/v1" + b"".join(
        len(encoded).to_bytes(4, "big") + encoded for encoded in (p.encode() for p in parts)
    )


class Keyring:
    """The key-encryption keys a store seals and opens secrets with.

    ``keys`` maps each key id to its 32 bytes (AES-256); ``active`` is the id new
    secrets are sealed with (needed when there are several). Older ids stay to
    open what they sealed until ``amira-config secrets rotate`` re-wraps it.

    ::

        Keyring({"k1": key1, "k2": key2}, active="k2")
        Keyring.from_env()   # AMIRA_CONFIG_SECRET_KEYS(_FILE) + AMIRA_CONFIG_SECRET_KEY_ID

    Its ``repr`` shows the key ids, never the keys.
    """

    __slots__ = ("_active", "_ciphers", "_keys")

    def __init__(self, keys: Mapping[str, bytes], *, active: str | None = None) -> None:
        if not isinstance(keys, Mapping) or not keys:
            raise ValueError("a Keyring needs at least one key: {key_id: 32 bytes}")
        checked: dict[str, bytes] = {}
        for key_id, material in keys.items():
            if not isinstance(key_id, str) or _KEY_ID.match(key_id) is None:
                raise ValueError(
                    f"key id {key_id!r} must be 1 to 64 letters, digits, '.', '_' or '-'"
                )
            if not isinstance(material, bytes) or len(material) != _KEY_BYTES:
                raise ValueError(f"key {key_id!r} must be {_KEY_BYTES} bytes (AES-256)")
            checked[key_id] = material
        if active is None:
            if len(checked) > 1:
                raise ValueError(
                    f"a Keyring of several keys needs active= (one of {', '.join(checked)})"
                )
            active = next(iter(checked))
        if active not in checked:
            raise ValueError(f"active key id {active!r} is not in the keyring")
        self._keys = checked
        self._active = active
        self._ciphers: dict[str, AESGCM] = {}

    def __repr__(self) -> str:
        return f"Keyring(key_ids={self.key_ids!r}, active={self._active!r})"

    def __reduce__(self) -> Any:
        # No pickling: a pickle would carry the key material wherever it went.
        raise TypeError("a Keyring cannot be pickled")

    @property
    def active(self) -> str:
        """The key id new secrets are sealed with."""
        return self._active

    @property
    def key_ids(self) -> tuple[str, ...]:
        """Every key id this keyring can open."""
        return tuple(self._keys)

    def with_active(self, key_id: str) -> Keyring:
        """The same keys, sealing with ``key_id`` (``secrets rotate --to``)."""
        if key_id not in self._keys:
            raise SecretUnavailableError(
                f"key id {key_id!r} is not in the keyring (it has {', '.join(self._keys)})"
            )
        return Keyring(self._keys, active=key_id)

    # -- from the environment --------------------------------------------------------

    @staticmethod
    def generate_key() -> str:
        """A new random key, in base64: what ``AMIRA_CONFIG_SECRET_KEYS`` lists."""
        return _b64(_random.token_bytes(_KEY_BYTES))

    @classmethod
    def parse(cls, text: str, *, active: str | None = None, origin: str = KEYS_ENV) -> Keyring:
        """A keyring from ``"k1:<base64>,k2:<base64>"`` (commas or newlines between; lines
        starting with ``#`` are comments). Errors name the key id, never the key."""
        keys: dict[str, bytes] = {}
        for line in text.splitlines():
            if line.strip().startswith("#"):
                continue
            for item in line.split(","):
                if not item.strip():
                    continue
                key_id, colon, encoded = item.strip().partition(":")
                if not colon:
                    raise ValueError(f"{origin}: each item is key_id:base64key")
                try:
                    material = base64.b64decode(encoded.strip(), validate=True)
                except binascii.Error:
                    raise ValueError(f"{origin}: key {key_id!r} is not valid base64") from None
                if key_id in keys:
                    raise ValueError(f"{origin}: key id {key_id!r} is listed twice")
                keys[key_id] = material
        if not keys:
            raise ValueError(f"{origin} lists no key")
        try:
            return cls(keys, active=active)
        except ValueError as exc:
            raise ValueError(f"{origin}: {exc}") from None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Keyring | None:
        """The keyring the environment names, or None when it names none.

        ``AMIRA_CONFIG_SECRET_KEYS`` (or a file named by ``AMIRA_CONFIG_SECRET_KEYS_FILE``,
        better: the keys stay out of the process list and the environment dumps) lists
        ``key_id:base64key`` items; ``AMIRA_CONFIG_SECRET_KEY_ID`` picks the active one.
        """
        env = os.environ if environ is None else environ
        active = env.get(KEY_ID_ENV) or None
        path = env.get(KEYS_FILE_ENV)
        if path:
            try:
                text = Path(path).read_text(encoding="utf-8")
            except OSError as exc:
                raise ValueError(f"{KEYS_FILE_ENV}: cannot read {path}: {exc.strerror}") from None
            return cls.parse(text, active=active, origin=KEYS_FILE_ENV)
        listed = env.get(KEYS_ENV)
        if listed:
            return cls.parse(listed, active=active)
        return None

    # -- sealing and opening ----------------------------------------------------------

    def _cipher(self, key_id: str, key: str) -> AESGCM:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        # Imported on first use: a process that holds no secret does not pay for it.
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            material = self._keys.get(key_id)
            if material is None:
                raise SecretUnavailableError(
                    f"the secret {key!r} was sealed with key id {key_id!r}, which the keyring "
                    f"lacks (it has {', '.join(self._keys)})"
                )
            cipher = self._ciphers[key_id] = AESGCM(material)
        return cipher

    def seal(self, key: str, plaintext: str) -> SealedSecret:
        """Encrypt ``plaintext`` as the value of configuration key ``key``."""
        if not isinstance(plaintext, str):
            raise InvalidConfigurationError(f"a secret is a str, not {type(plaintext).__name__}")
        try:
            data = plaintext.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidConfigurationError("a secret cannot hold a lone surrogate") from None
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        data_key = AESGCM.generate_key(bit_length=256)
        nonce = _random.token_bytes(_NONCE_BYTES)
        ciphertext = AESGCM(data_key).encrypt(nonce, data, _aad(key))
        return SealedSecret(
            self._active, self._wrap(self._active, key, data_key), nonce, ciphertext
        )

    def _wrap(self, key_id: str, key: str, data_key: bytes) -> bytes:
        nonce = _random.token_bytes(_NONCE_BYTES)
        return nonce + self._cipher(key_id, key).encrypt(nonce, data_key, _aad(key_id, key))

    def _unwrap(self, key: str, sealed: SealedSecret) -> bytes:
        from cryptography.exceptions import InvalidTag

        cipher = self._cipher(sealed.key_id, key)
        wrapped = sealed.wrapped_key
        if len(wrapped) != _WRAPPED_BYTES:
            raise self._does_not_open(key, sealed)
        try:
            return cipher.decrypt(
                wrapped[:_NONCE_BYTES], wrapped[_NONCE_BYTES:], _aad(sealed.key_id, key)
            )
        except InvalidTag:
            raise self._does_not_open(key, sealed) from None

    @staticmethod
    def _does_not_open(key: str, sealed: SealedSecret) -> SecretUnavailableError:
        return SecretUnavailableError(
            f"the secret {key!r} does not open with key id {sealed.key_id!r}: it was sealed for "
            "another configuration key, with other key material under that id, or altered"
        )

    def open(self, key: str, sealed: SealedSecret) -> str:
        """The plaintext of ``sealed``, the value of configuration key ``key``.

        Raises :class:`~amira_data_access.errors.SecretUnavailableError` when the key id
        is not in the keyring, or the envelope does not open (sealed for another key,
        other key material, altered).
        """
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        data_key = self._unwrap(key, sealed)
        try:
            data = AESGCM(data_key).decrypt(sealed.nonce, sealed.ciphertext, _aad(key))
        except InvalidTag:
            raise self._does_not_open(key, sealed) from None
        return data.decode("utf-8")

    def rewrap(self, key: str, sealed: SealedSecret, *, to: str | None = None) -> SealedSecret:
        """``sealed`` with its data key wrapped by key id ``to`` (default: the active one).

        The ciphertext is kept; the data key is checked to open the value first, so a
        rotation never stores what it could not read back.
        """
        target = self._active if to is None else to
        data_key = self._unwrap(key, sealed)
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        try:
            AESGCM(data_key).decrypt(sealed.nonce, sealed.ciphertext, _aad(key))
        except InvalidTag:
            raise self._does_not_open(key, sealed) from None
        return SealedSecret(
            target, self._wrap(target, key, data_key), sealed.nonce, sealed.ciphertext
        )


# How often rotate_secrets reads a key again when it changed between its read and its write.
_ROTATE_ATTEMPTS: Final = 3
_PAGE: Final = 500


def rotate_secrets(
    store: ConfigStore,
    keyring: Keyring,
    *,
    to: str | None = None,
    updated_by: str,
    prefix: str = "",
    reason: str | None = None,
    dry_run: bool = False,
) -> list[str]:
    """Re-wrap every secret (under ``prefix``) not sealed with key id ``to`` (default: the
    keyring's active id); return the keys re-wrapped (or, with ``dry_run``, to re-wrap).

    Only each value's data key is re-encrypted: the ciphertext stays, and each
    envelope is checked to open before it is written back. Each key is one
    write at the version read (``expected_version``), so a concurrent change is
    never overwritten: the key is read again. Needs ``keyring`` to hold both the
    old and the new key ids; afterwards the old id can leave the keyring. ``reason``
    (default ``"secrets rotate to <id>"``) goes into each key's history.
    """
    target = keyring.active if to is None else to
    keyring.with_active(target)  # refuses an id the keyring lacks, before anything is read
    rotated: list[str] = []
    after: str | None = None
    while True:
        page = store.list(prefix, after=after, limit=_PAGE)
        if not page:
            return rotated
        after = page[-1].key
        for entry in page:
            if not is_secret(entry.data_type) or not isinstance(entry.value, SealedSecret):
                continue
            if entry.value.key_id == target:
                continue
            rotated.append(entry.key)
            if not dry_run:
                why = reason if reason is not None else f"secrets rotate to {target}"
                _rotate_one(store, keyring, entry.key, target, updated_by, why)


def _rotate_one(
    store: ConfigStore, keyring: Keyring, key: str, to: str, updated_by: str, reason: str
) -> None:
    for _ in range(_ROTATE_ATTEMPTS):
        entry = store.get_entry(key)
        if entry is None or not isinstance(entry.value, SealedSecret) or entry.value.key_id == to:
            return  # deleted, retyped, or rotated by someone else meanwhile
        try:
            store.set(
                key,
                keyring.rewrap(key, entry.value, to=to),
                data_type=SECRET_TYPE,
                updated_by=updated_by,
                reason=reason,
                expected_version=entry.version,
            )
            return
        except ConcurrentModificationError:
            continue
    raise SecretUnavailableError(f"secrets rotate: {key!r} changed under every attempt")
