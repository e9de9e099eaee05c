"""Data types, validation and the JSON encoding of configuration values.

Pure functions, no I/O: the sync and async DALs and the in-memory store all call
these, so a value is accepted or refused the same way whichever store holds it.

Guarantee: a value accepted by :func:`prepare_value` comes back from PostgreSQL
equal (``==``) to what went in, with the same Python types. Two things stand in
the way and are handled here:

* jsonb stores numbers as ``numeric`` and prints them without an exponent, so
  ``1e300`` would come back as a 301-digit *int*. Floats are therefore written
  in positional notation with a fractional part, which jsonb keeps digit for
  digit and which parses back to the same float.
* Some JSON text PostgreSQL refuses or changes (``\\u0000`` in a string, lone
  surrogates, non-string object keys that ``json`` would silently stringify,
  NaN/Infinity): refused here, before any SQL runs.

Reading, a stored value Python cannot decode (written by raw SQL, say)
becomes an :class:`UnreadableJson` marker in the driver (:func:`read_json`) and
then an :class:`~amira_data_access.errors.UnreadableValueError` naming the key
(:func:`decode_value`), never a ``RecursionError``.
"""

from __future__ import annotations

import json
import math
import re
import sys
from decimal import Decimal
from typing import Any, Final, Literal, get_args

from .errors import InvalidConfigurationError, UnreadableValueError

__all__ = [
    "DATA_TYPES",
    "UNSTORABLE_TEXT",
    "DataType",
    "PreparedValue",
    "UnreadableJson",
    "decode_value",
    "encode_json",
    "infer_data_type",
    "prepare_value",
    "read_json",
    "validate_actor",
    "validate_description",
    "validate_key",
    "validate_prefix",
]

DataType = Literal["str", "int", "float", "bool", "json"]
DATA_TYPES: Final[tuple[DataType, ...]] = get_args(DataType)

MAX_KEY_LENGTH: Final = 255
MAX_ACTOR_LENGTH: Final = 255
# Python refuses to turn longer ints into text (sys.int_info.default_max_str_digits),
# so psycopg could not read such a value back: refuse it on the way in.
_MAX_INT_DIGITS: Final = sys.int_info.default_max_str_digits
_INT_LIMIT: Final = 10 ** (_MAX_INT_DIGITS - 1)

# Kept identical to the CHECK constraint configurations_key_characters in
# migrations/0001: control characters, spaces and Unicode separators, plus NUL and
# lone surrogates, which PostgreSQL text cannot hold at all.
_FORBIDDEN_KEY_CHARACTERS: Final = re.compile(
    "[\x00-\x20\x7f-\xa0\u1680\u2000-\u200b\u2028\u2029\u202f\u205f\u3000\ufeff\ud800-\udfff]"
)
# Text PostgreSQL cannot store: NUL, and surrogates (not encodable as UTF-8).
UNSTORABLE_TEXT: Final = re.compile("[\x00\ud800-\udfff]")


def validate_key(key: object) -> str:
    """Return ``key`` if it is a valid configuration key, else raise.

    A key is 1 to 255 characters with no whitespace or control characters.
    """
    if not isinstance(key, str):
        raise InvalidConfigurationError(f"key must be a str, not {type(key).__name__}")
    if not 1 <= len(key) <= MAX_KEY_LENGTH:
        raise InvalidConfigurationError(
            f"key must be 1 to {MAX_KEY_LENGTH} characters long, got {len(key)}"
        )
    bad = _FORBIDDEN_KEY_CHARACTERS.search(key)
    if bad:
        raise InvalidConfigurationError(
            f"key {key[:40]!r} contains a whitespace or control character "
            f"(U+{ord(bad.group()):04X} at position {bad.start()})"
        )
    return key


def validate_prefix(prefix: object) -> str:
    """Return ``prefix`` (the start of keys to list; may be empty) if valid, else raise."""
    if not isinstance(prefix, str) or len(prefix) > MAX_KEY_LENGTH:
        raise InvalidConfigurationError(
            f"prefix must be a str of at most {MAX_KEY_LENGTH} characters"
        )
    if UNSTORABLE_TEXT.search(prefix):
        raise InvalidConfigurationError("prefix contains a NUL character or a lone surrogate")
    return prefix


def validate_actor(actor: object, *, field: str = "updated_by") -> str:
    """Return ``actor`` (who makes a change) if it is a non-blank short string, else raise."""
    if not isinstance(actor, str) or not actor.strip():
        raise InvalidConfigurationError(f"{field} must be a non-empty string naming who acts")
    if len(actor) > MAX_ACTOR_LENGTH or UNSTORABLE_TEXT.search(actor) or not actor.isprintable():
        raise InvalidConfigurationError(
            f"{field} must be at most {MAX_ACTOR_LENGTH} printable characters"
        )
    return actor


def validate_description(description: object) -> str | None:
    """Return ``description`` if it is None or storable text, else raise."""
    if description is None:
        return None
    if not isinstance(description, str):
        raise InvalidConfigurationError(
            f"description must be a str or None, not {type(description).__name__}"
        )
    if UNSTORABLE_TEXT.search(description):
        raise InvalidConfigurationError(
            "description contains a NUL character or a lone surrogate, which cannot be stored"
        )
    return description


def infer_data_type(value: object) -> DataType:
    """The data type a value gets when the caller does not name one."""
    # bool first: bool is a subclass of int, but True is not the integer 1 here.
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    return "json"


class PreparedValue:
    """A validated value with its data type and its JSON text, ready to bind."""

    __slots__ = ("data_type", "json_text", "value")

    def __init__(self, value: Any, data_type: DataType, json_text: str) -> None:
        self.value = value
        self.data_type = data_type
        self.json_text = json_text


def prepare_value(value: object, data_type: str | None = None) -> PreparedValue:
    """Validate ``value`` against ``data_type`` (or infer one) and encode it.

    ``float`` accepts an int (not a bool) and stores it as a float. Raises
    :class:`InvalidConfigurationError` for unknown types, mismatches and anything
    that is not exactly representable as JSON in PostgreSQL.
    """
    resolved = _resolve_data_type(value, data_type)
    if resolved == "float" and isinstance(value, int) and not isinstance(value, bool):
        value = _int_as_float(value)
    _check_matches(value, resolved)
    return PreparedValue(value, resolved, encode_json(value))


def _int_as_float(value: int) -> float:
    # Only ints a float holds exactly: 2**53 + 1 would silently come back different.
    try:
        converted = float(value)
    except OverflowError:
        raise InvalidConfigurationError("int is too large for a float (beyond 1.8e308)") from None
    if converted != value:
        raise InvalidConfigurationError(f"int {value} cannot be stored exactly as a float")
    return converted


def _resolve_data_type(value: object, data_type: str | None) -> DataType:
    if data_type is None:
        return infer_data_type(value)
    if data_type not in DATA_TYPES:
        raise InvalidConfigurationError(
            f"data_type must be one of {', '.join(DATA_TYPES)}; got {data_type!r}"
        )
    return data_type  # narrowed to DataType by the membership test above


_PYTHON_TYPES: Final[dict[str, tuple[type, ...]]] = {
    "str": (str,),
    "int": (int,),
    "float": (float,),
    "bool": (bool,),
}


def _check_matches(value: object, data_type: DataType) -> None:
    expected = _PYTHON_TYPES.get(data_type)
    if expected is None:  # json: any JSON value, checked by encode_json
        return
    # bool is an int subclass; an int-typed setting must not accept True.
    if not isinstance(value, expected) or (data_type == "int" and isinstance(value, bool)):
        raise InvalidConfigurationError(
            f"value of type {type(value).__name__} does not match data_type {data_type!r}"
        )


def encode_json(value: object) -> str:
    """Encode a JSON value as text PostgreSQL's jsonb stores and returns unchanged.

    Raises :class:`InvalidConfigurationError` for anything else.
    """
    try:
        if not _check_json(value, "value"):
            # Fast path: no float needs special formatting.
            return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        return _dump(value)
    except RecursionError:
        raise InvalidConfigurationError("value is nested too deeply or contains itself") from None


def _check_json(value: object, path: str) -> bool:
    """Raise on values jsonb cannot round-trip; return whether a float needs positional form."""
    if value is None or isinstance(value, bool):
        return False
    if isinstance(value, str):
        _check_text(value, path)
        return False
    if isinstance(value, int):
        if abs(value) >= _INT_LIMIT:
            raise InvalidConfigurationError(
                f"{path}: integer has more than {_MAX_INT_DIGITS - 1} digits"
            )
        return False
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidConfigurationError(f"{path}: NaN and Infinity are not JSON values")
        return "e" in repr(value)
    if isinstance(value, list):
        needs = False
        for index, item in enumerate(value):
            needs = _check_json(item, f"{path}[{index}]") or needs
        return needs
    if isinstance(value, dict):
        needs = False
        for name, item in value.items():
            if not isinstance(name, str):
                raise InvalidConfigurationError(
                    f"{path}: object keys must be str, got {type(name).__name__} {name!r}"
                )
            _check_text(name, f"{path} key")
            needs = _check_json(item, f"{path}[{name!r}]") or needs
        return needs
    raise InvalidConfigurationError(
        f"{path}: {type(value).__name__} is not a JSON value "
        "(use str, int, float, bool, None, list or dict)"
    )


def _check_text(text: str, path: str) -> None:
    if UNSTORABLE_TEXT.search(text):
        raise InvalidConfigurationError(
            f"{path}: text contains a NUL character or a lone surrogate, which jsonb cannot store"
        )


def _format_float(value: float) -> str:
    text = repr(value)
    if "e" not in text:
        return text
    # Positional form of the shortest repr, keeping a fractional digit so it
    # reads back as a float: 1e+300 -> "1000…000.0", 5e-324 -> "0.000…5".
    positional = format(Decimal(text), "f")
    return positional if "." in positional else positional + ".0"


def _dump(value: object) -> str:
    if isinstance(value, float):
        return _format_float(value)
    if isinstance(value, list):
        return "[" + ",".join(_dump(item) for item in value) + "]"
    if isinstance(value, dict):
        return (
            "{"
            + ",".join(
                json.dumps(name, ensure_ascii=False) + ":" + _dump(item)
                for name, item in value.items()
            )
            + "}"
        )
    return json.dumps(value, ensure_ascii=False)


class UnreadableJson:
    """What :func:`read_json` gives, in place of a value, for stored JSON text Python
    cannot decode; :func:`decode_value` turns it into an error naming the key."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __repr__(self) -> str:
        return f"UnreadableJson({self.reason!r})"


def read_json(data: str | bytes, **options: Any) -> Any:
    """``json.loads`` for values read from the database, which never raises.

    It runs inside the driver (psycopg's jsonb loader) or the in-memory twin,
    row by row: an exception there would break the whole result, every row of a
    page, and name no key. So a text nested too deeply for the call stack, or
    holding a number of more digits than Python converts (both storable by raw
    SQL), gives an :class:`UnreadableJson` instead.
    """
    try:
        return json.loads(data, **options)
    except RecursionError:
        return UnreadableJson("it is nested too deeply for Python to decode")
    except ValueError as exc:  # an integer of more than 4300 digits, say
        return UnreadableJson(f"Python cannot decode it ({str(exc).splitlines()[0]})")


def decode_value(
    value: Any, data_type: str, key: str | None = None, *, version: int | None = None
) -> Any:
    """Turn a value read from the database back into its Python form.

    jsonb has one number type; a ``float`` setting whose stored number has no
    fractional part (written by raw SQL, say) is still returned as a float. A
    value the reader could not decode raises
    :class:`~amira_data_access.errors.UnreadableValueError` naming ``key`` (and
    the history ``version``).
    """
    if value.__class__ is UnreadableJson:
        where = repr(key) if version is None else f"{key!r} at version {version}"
        raise UnreadableValueError(
            f"the stored value of {where} cannot be read: {value.reason}",
            keys=() if key is None else (key,),
        )
    if data_type == "float" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value
