"""The arguments of the operations, checked and turned into query parameters (pure).

Everything here raises :class:`~amira_data_access.errors.InvalidConfigurationError`
before any statement is sent, so bad input never reaches a server, and every
store refuses the same input with the same message.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Final

from psycopg.types.json import Jsonb

from ..codec import (
    DEFAULT_LIMITS,
    UNSTORABLE_TEXT,
    ValueLimits,
    prepare_value,
    validate_actor,
    validate_description,
    validate_key,
    validate_prefix,
    validate_stored_key,
)
from ..entries import ConfigItem
from ..errors import InvalidConfigurationError, SecretUnavailableError
from ..secrets import SECRET_TYPE, Keyring, SealedSecret

__all__ = [
    "MAX_BATCH",
    "MAX_HISTORY_LIMIT",
    "MAX_LIST_LIMIT",
    "MAX_VERSION",
    "batch_items",
    "key_list",
    "list_params",
    "prefix_end",
    "validate_count",
    "validate_instant",
    "validate_limit",
    "validate_reason",
    "validate_version",
    "write_params",
]

MAX_BATCH: Final = 1000
MAX_LIST_LIMIT: Final = 1000
MAX_HISTORY_LIMIT: Final = 1000
# Versions and counts are bigint columns: a larger number cannot match anything, and
# PostgreSQL would refuse to compare it ("out of range") where the fake would not.
MAX_VERSION: Final = 2**63 - 1


def _as_is(text: str) -> str:
    # codec.encode_json already produced the JSON text; Jsonb must not encode it again.
    return text


def write_params(
    key: str,
    value: object,
    *,
    data_type: str | None,
    description: str | None,
    updated_by: str,
    limits: ValueLimits = DEFAULT_LIMITS,
    keyring: Keyring | None = None,
) -> dict[str, Any]:
    """Validate one write (the value within ``limits``) and return the parameters of
    ``upsert_configuration``. A secret's plaintext is sealed here, with ``keyring``."""
    validate_key(key)
    try:
        validate_actor(updated_by)
        validate_description(description)
        if data_type == SECRET_TYPE and not isinstance(value, SealedSecret):
            value = seal(key, value, keyring)
        prepared = prepare_value(value, data_type, limits=limits)
    except InvalidConfigurationError as exc:
        raise InvalidConfigurationError(f"config.set {key!r}: {exc}") from None
    return {
        "key": key,
        "value": Jsonb(prepared.json_text, dumps=_as_is),
        # None lets the database keep the stored type on update (see the query).
        "data_type": prepared.data_type if data_type is not None else None,
        "inferred_type": prepared.data_type,
        "description": description,
        "updated_by": updated_by,
    }


def seal(key: str, plaintext: object, keyring: Keyring | None) -> SealedSecret:
    """``plaintext`` sealed as the secret of ``key``, or the refusal (no keyring, not a str)."""
    if keyring is None:
        raise SecretUnavailableError(
            f"config.set {key!r}: writing a secret needs a store given a keyring "
            "(keyring=Keyring(...), or AMIRA_CONFIG_SECRET_KEYS in the environment)"
        )
    return keyring.seal(key, plaintext)  # type: ignore[arg-type]  # seal() checks it is a str


def list_params(prefix: str, after: str | None, limit: int) -> dict[str, Any]:
    """Validate a listing request and return the parameters of ``list_configurations``."""
    validate_prefix(prefix)
    if after is not None:
        validate_stored_key(after)  # a position: the last key of a page, stored before 0007 too
    validate_limit(limit, MAX_LIST_LIMIT)
    return {"prefix": prefix, "prefix_end": prefix_end(prefix), "after": after, "limit": limit}


_LAST_CODE_POINT: Final = 0x10FFFF
_SURROGATES: Final = range(0xD800, 0xE000)
# Greater than every key (at most 255 characters, each at most U+10FFFF), in the
# code point order that COLLATE "C" (UTF-8 byte order) gives the keys.
_AFTER_EVERY_KEY: Final = chr(_LAST_CODE_POINT) * 256


def prefix_end(prefix: str) -> str:
    """The first string, in key order, after every string starting with ``prefix``.

    ``"amira."`` -> ``"amira/"``; a prefix ending in U+10FFFF carries over, and
    the empty prefix (every key) gives a string greater than any key.
    """
    head = prefix
    while head:
        last = ord(head[-1]) + 1
        if last in _SURROGATES:  # no text holds a lone surrogate: skip them
            last = _SURROGATES.stop
        if last <= _LAST_CODE_POINT:
            return head[:-1] + chr(last)
        head = head[:-1]
    return _AFTER_EVERY_KEY


def validate_version(value: object, name: str, *, minimum: int) -> int:
    """An int version (or count) from ``minimum`` to the largest a bigint holds."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidConfigurationError(f"{name} must be an int >= {minimum}, got {value!r}")
    if value > MAX_VERSION:
        raise InvalidConfigurationError(
            f"{name} must be at most {MAX_VERSION} (the largest bigint), got {value}"
        )
    return value


def validate_count(value: object, name: str = "expected_count") -> int | None:
    """None, or a count of keys (>= 0)."""
    if value is None:
        return None
    return validate_version(value, name, minimum=0)


def validate_instant(when: object) -> datetime:
    """A timezone-aware datetime."""
    if not isinstance(when, datetime) or when.tzinfo is None or when.utcoffset() is None:
        raise InvalidConfigurationError(
            "when must be a timezone-aware datetime (e.g. datetime.now(timezone.utc))"
        )
    return when


def validate_reason(reason: object) -> str | None:
    """None, or text the history can store."""
    if reason is None:
        return None
    if not isinstance(reason, str) or UNSTORABLE_TEXT.search(reason):
        raise InvalidConfigurationError(
            "reason must be a str without NUL characters or lone surrogates, or None"
        )
    return reason


def validate_limit(limit: object, maximum: int) -> int:
    """An int page size from 1 to ``maximum``."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= maximum:
        raise InvalidConfigurationError(f"limit must be an int from 1 to {maximum}")
    return limit


def key_list(
    keys: object, *, what: str, maximum: int | None = None, stored: bool = False
) -> list[str]:
    """Distinct valid keys, in the order given, from an iterable that is not one str.

    ``stored``: keys the table may hold from before the key grammar (for deletes).
    """
    if isinstance(keys, str | bytes) or not isinstance(keys, Iterable):
        raise InvalidConfigurationError(
            f"{what} takes an iterable of keys (a list, a set…), not {type(keys).__name__}"
        )
    check = validate_stored_key if stored else validate_key
    unique = list(dict.fromkeys(check(key) for key in keys))
    if maximum is not None and len(unique) > maximum:
        raise InvalidConfigurationError(f"{what} takes at most {maximum} keys, got {len(unique)}")
    return unique


def batch_items(items: object) -> list[ConfigItem]:
    """The items of a ``set_many`` call, in key order, refusing duplicates and bad sizes."""
    if isinstance(items, Mapping):
        batch = [ConfigItem(key, value) for key, value in items.items()]
    elif isinstance(items, Iterable) and not isinstance(items, str | bytes):
        batch = list(items)
    else:
        raise InvalidConfigurationError(
            "set_many takes a mapping of key to value, or ConfigItem objects, "
            f"not {type(items).__name__}"
        )
    for item in batch:
        if not isinstance(item, ConfigItem):
            raise InvalidConfigurationError(
                "set_many takes a mapping of key to value, or ConfigItem objects"
            )
        validate_key(item.key)
    if not 1 <= len(batch) <= MAX_BATCH:
        raise InvalidConfigurationError(f"set_many takes 1 to {MAX_BATCH} items")
    keys = [item.key for item in batch]
    if len(set(keys)) != len(keys):
        raise InvalidConfigurationError("set_many got the same key twice")
    # Key order: concurrent batches lock rows in the same order and cannot deadlock.
    return sorted(batch, key=lambda item: item.key)
