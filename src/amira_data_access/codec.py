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

Two more rules keep what is stored usable by every reader, each also a
constraint of the table (migrations/0007):

* **Value limits** (:class:`ValueLimits`): a value is at most ``max_bytes`` of
  JSON text and ``max_depth`` levels deep, so a reader never runs out of stack
  (or memory) decoding it. Checked by one walk over the value, without
  recursion and without building its text first, so a 300 MB value is refused
  as cheaply as a small one.
* **The key grammar** (:func:`validate_key`): keys a person can tell apart on a
  screen: in NFC, without invisible characters, the letters all of one script.

Reading, a stored value Python cannot decode (written by raw SQL before those
constraints existed) becomes an :class:`UnreadableJson` marker in the driver
(:func:`read_json`) and then an :class:`~amira_data_access.errors.UnreadableValueError`
naming the key (:func:`decode_value`), never a ``RecursionError``.
"""

from __future__ import annotations

import bisect
import json
import math
import re
import sys
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from typing import Any, Final, Literal, get_args

from .errors import InvalidConfigurationError, UnreadableValueError
from .secrets import SECRET_TYPE, SealedSecret, is_secret, sealed_from_document

__all__ = [
    "DATA_TYPES",
    "DEFAULT_LIMITS",
    "KEY_NEUTRAL",
    "KEY_SCRIPTS",
    "UNSTORABLE_TEXT",
    "DataType",
    "PreparedValue",
    "UnreadableJson",
    "ValueLimits",
    "decode_value",
    "encode_json",
    "follows_key_grammar",
    "infer_data_type",
    "is_secret",
    "json_measure",
    "key_pattern",
    "prepare_value",
    "read_json",
    "validate_actor",
    "validate_description",
    "validate_key",
    "validate_prefix",
    "validate_stored_key",
    "value_limits",
]

# "secret": a str sealed by amira_data_access.secrets before it is sent (migrations/0009).
# "flag": a feature flag document checked against the flag schema (migrations/0012).
DataType = Literal["str", "int", "float", "bool", "json", "secret", "flag"]
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

# -- the key grammar (README "Values and types"; migrations/0007 has the same ranges) --
#
# A key is NFC text of: ASCII digits and punctuation (KEY_NEUTRAL), and the letters
# of ONE script of KEY_SCRIPTS (the ASCII letters are Latin). An allowlist, not a
# blocklist, so that every invisible character (format and bidi controls, variation
# selectors, fillers, blanks) is out without listing them, and so that PostgreSQL,
# which has no Unicode categories, checks the very same ranges.
#
# * Letters only, all precomposed: no combining marks (no stacked or invisible
#   ones); with NFC, 'é' has one spelling.
# * One script per key: 'amira.chat.tone' spelt with a Cyrillic o (U+043E) is
#   refused, so a lookalike cannot sit beside the real key (nor be read instead).
# * Left out on purpose: right-to-left scripts (their letters reorder around '.'
#   and '/' on screen, so two keys can show the same), fullwidth forms, symbols,
#   punctuation outside ASCII (U+2212 MINUS SIGN looks like '-'), and the Latin
#   click letters U+01C0-U+01C3 (they look like '|', '||', '!').
KEY_NEUTRAL: Final[tuple[tuple[int, int], ...]] = ((0x21, 0x40), (0x5B, 0x60), (0x7B, 0x7E))
KEY_SCRIPTS: Final[dict[str, tuple[tuple[int, int], ...]]] = {
    "Latin": (
        (0x41, 0x5A),  # A-Z
        (0x61, 0x7A),  # a-z
        (0xC0, 0xD6),  # Latin-1 letters (not the multiplication and division signs)
        (0xD8, 0xF6),
        (0xF8, 0x1BF),  # … Latin Extended-A and -B, but the click letters
        (0x1C4, 0x24F),
        (0x1E00, 0x1EFF),  # Latin Extended Additional (Vietnamese…)
    ),
    "Greek": (
        (0x386, 0x386),  # the modern Greek letters, with tonos and dialytika
        (0x388, 0x38A),
        (0x38C, 0x38C),
        (0x38E, 0x3A1),
        (0x3A3, 0x3CE),
    ),
    "Cyrillic": ((0x400, 0x481), (0x48A, 0x52F)),  # not the combining marks between
    "Han/Kana": (  # Chinese and Japanese, written together
        (0x3005, 0x3007),  # the iteration mark, closing mark and ideographic zero
        (0x3041, 0x3096),  # Hiragana
        (0x309D, 0x309F),
        (0x30A1, 0x30FA),  # Katakana
        (0x30FC, 0x30FF),  # the prolonged sound mark and the iteration marks
        (0x3400, 0x4DBF),  # CJK Unified Ideographs Extension A
        (0x4E00, 0x9FFF),  # CJK Unified Ideographs
    ),
    "Hangul": ((0xAC00, 0xD7A3),),  # the precomposed syllables
}


def key_pattern(ranges: tuple[tuple[int, int], ...]) -> str:
    """A regular-expression bracket body for code point ranges (sorted, adjacent ones
    merged), in escapes both Python's ``re`` and PostgreSQL read (``\\x21-\\x7e\\u00c0``)."""
    merged: list[tuple[int, int]] = []
    for first, last in sorted(ranges):
        if merged and first <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(last, merged[-1][1]))
        else:
            merged.append((first, last))
    parts = []
    for first, last in merged:
        low = f"\\x{first:02x}" if first < 0x80 else f"\\u{first:04x}"
        high = f"\\x{last:02x}" if last < 0x80 else f"\\u{last:04x}"
        parts.append(low if first == last else f"{low}-{high}")
    return "".join(parts)


@cache
def _one_script() -> tuple[re.Pattern[str], ...]:
    """Each script's keys, neutral characters included: a key must fully match one of them.

    Compiled on first use (only non-ASCII keys need them): at import they cost ~15 ms
    of every process's start-up, amira-config's included.
    """
    return tuple(
        re.compile(f"[{key_pattern(KEY_NEUTRAL + ranges)}]+") for ranges in KEY_SCRIPTS.values()
    )


@cache
def _outside_grammar() -> re.Pattern[str]:
    allowed = tuple(sorted(r for ranges in KEY_SCRIPTS.values() for r in ranges))
    return re.compile(f"[^{key_pattern(KEY_NEUTRAL + allowed)}]")


# The script of a letter: bisect over the ranges' starts.
_SCRIPT_RANGES: Final = sorted(
    (first, last, script) for script, ranges in KEY_SCRIPTS.items() for first, last in ranges
)
_SCRIPT_STARTS: Final = [first for first, _, _ in _SCRIPT_RANGES]
# What shows as nothing, besides the format characters (Cf): variation selectors,
# the combining grapheme joiner, Hangul fillers, the blank Braille pattern.
_INVISIBLE: Final = re.compile(
    "[\u034f\u115f\u1160\u180b-\u180d\u2800\u3164\ufe00-\ufe0f\uffa0\U000e0100-\U000e01ef]"
)


def _describe(char: str) -> str:
    """``U+200F RIGHT-TO-LEFT MARK``: a character as a person can look it up."""
    name = unicodedata.name(char, "")
    return f"U+{ord(char):04X} {name}" if name else f"U+{ord(char):04X}"


def _script_of(char: str) -> str | None:
    code = ord(char)
    index = bisect.bisect_right(_SCRIPT_STARTS, code) - 1
    if index >= 0 and code <= _SCRIPT_RANGES[index][1]:
        return _SCRIPT_RANGES[index][2]
    return None


def _check_basics(key: object, what: str) -> str:
    """The rules of migrations/0001: a str, 1 to 255 characters, no whitespace or control."""
    if not isinstance(key, str):
        raise InvalidConfigurationError(f"{what} must be a str, not {type(key).__name__}")
    if not 1 <= len(key) <= MAX_KEY_LENGTH:
        raise InvalidConfigurationError(
            f"{what} must be 1 to {MAX_KEY_LENGTH} characters long, got {len(key)}"
        )
    bad = _FORBIDDEN_KEY_CHARACTERS.search(key)
    if bad:
        raise InvalidConfigurationError(
            f"{what} {key[:40]!r} contains a whitespace or control character "
            f"(U+{ord(bad.group()):04X} at position {bad.start()})"
        )
    return key


def _check_grammar(text: str, what: str) -> None:
    """NFC, only the characters of the grammar, the letters of one script (non-ASCII text)."""
    if not unicodedata.is_normalized("NFC", text):
        normal = unicodedata.normalize("NFC", text)
        start = next(i for i, (a, b) in enumerate(zip(text, normal, strict=False)) if a != b)
        end = 0  # the common end of both spellings
        while end < len(normal) - start and text[-1 - end] == normal[-1 - end]:
            end += 1
        written = " ".join(f"U+{ord(c):04X}" for c in text[start : len(text) - end])
        composed = " ".join(f"U+{ord(c):04X}" for c in normal[start : len(normal) - end])
        raise InvalidConfigurationError(
            f"{what} {text!r} is not in Unicode NFC form ({written} at position {start} "
            f"is {composed} in NFC, which looks the same): write it as {normal!r}"
        )
    bad = _outside_grammar().search(text)
    if bad:
        char = bad.group()
        if unicodedata.category(char) == "Cf" or _INVISIBLE.match(char):
            kind = "an invisible or formatting character"
        elif unicodedata.category(char).startswith("M"):
            kind = "a combining mark"
        else:
            kind = "a character outside the key grammar"
        raise InvalidConfigurationError(
            f"{what} {text[:40]!r} contains {kind} ({_describe(char)} at position "
            f"{bad.start()}): keys hold ASCII letters, digits and punctuation, and the "
            f"letters of one of {', '.join(KEY_SCRIPTS)}"
        )
    if any(pattern.fullmatch(text) for pattern in _one_script()):
        return
    first: str | None = None
    for position, char in enumerate(text):
        script = _script_of(char)
        if script is None:
            continue
        if first is None:
            first = script
        elif script != first:
            raise InvalidConfigurationError(
                f"{what} {text!r} mixes letters of two scripts, {first} and {script} "
                f"({_describe(char)} at position {position}): "
                f"a {what}'s letters must all be of one script"
            )
    raise AssertionError(f"{text!r} is in one script but matched none")  # pragma: no cover


def follows_key_grammar(text: str) -> bool:
    """Whether ``text`` holds only the characters of the key grammar, with the letters of
    one script (the CHECK configurations_key_grammar; NFC is checked on its own)."""
    return any(pattern.fullmatch(text) for pattern in _one_script())


def validate_key(key: object) -> str:
    """Return ``key`` if it is a valid configuration key, else raise.

    A key is 1 to 255 characters, in Unicode NFC, of ASCII letters, digits and
    punctuation (not the space) and the letters of one script of
    :data:`KEY_SCRIPTS` (the ASCII letters count as Latin). Anything else is
    refused: whitespace, control and invisible characters, combining marks,
    symbols, letters of two scripts.
    """
    _check_basics(key, "key")
    assert isinstance(key, str)  # for mypy: _check_basics returned it
    if not key.isascii():  # ASCII without whitespace or control: the grammar holds
        _check_grammar(key, "key")
    return key


def validate_stored_key(key: object) -> str:
    """Return ``key`` if the table could hold it before the key grammar, else raise.

    For ``delete`` and ``list(after=…)``: a key stored before migrations/0007
    that breaks the grammar can still be paged past and removed.
    """
    return _check_basics(key, "key")


def validate_prefix(prefix: object) -> str:
    """Return ``prefix`` (the start of keys to list; may be empty) if valid, else raise.

    A prefix follows the key grammar as far as it goes: no valid key starts with
    a prefix that breaks it, so such a prefix is a mistake worth a message.
    """
    if not isinstance(prefix, str) or len(prefix) > MAX_KEY_LENGTH:
        raise InvalidConfigurationError(
            f"prefix must be a str of at most {MAX_KEY_LENGTH} characters"
        )
    if UNSTORABLE_TEXT.search(prefix):
        raise InvalidConfigurationError("prefix contains a NUL character or a lone surrogate")
    if prefix:
        _check_basics(prefix, "prefix")
        if not prefix.isascii():
            _check_grammar(prefix, "prefix")
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
    if isinstance(value, SealedSecret):
        return SECRET_TYPE
    return "json"


@dataclass(frozen=True, slots=True)
class ValueLimits:
    """How large and how deeply nested a value may be; checked before anything is sent.

    ``max_bytes`` counts the value's JSON text as PostgreSQL prints it
    (``octet_length(value::text)``: UTF-8 bytes, with a space after every ``,``
    and ``:``), default 1 MiB. ``max_depth`` counts arrays and objects inside
    each other (``1`` is 0 levels, ``[1]`` and ``{}`` are 1, ``{"a": [1]}`` 2),
    default 64: far from Python's recursion limit, so every reader can decode
    (and print, compare, export) what was stored.

    The table has the same two limits as constraints (migrations/0007), the
    values of ``amira_config.max_value_bytes()`` and ``amira_config.max_value_depth()``
    (1 MiB and 64 unless a DBA redefined them): they bound every client, so a
    store given larger limits has the database refuse what goes beyond them.
    """

    max_bytes: int = 1024 * 1024
    max_depth: int = 64

    def __post_init__(self) -> None:
        for name, least in (("max_bytes", 1), ("max_depth", 0)):
            number = getattr(self, name)
            if isinstance(number, bool) or not isinstance(number, int) or number < least:
                raise ValueError(f"ValueLimits.{name} must be an int >= {least}, got {number!r}")


DEFAULT_LIMITS: Final = ValueLimits()


def value_limits(limits: object) -> ValueLimits:
    """A store's ``limits=`` option: a :class:`ValueLimits`, or None for the defaults."""
    if limits is None:
        return DEFAULT_LIMITS
    if not isinstance(limits, ValueLimits):
        raise TypeError(f"limits must be a ValueLimits or None, not {type(limits).__name__}")
    return limits


_UNLIMITED: Final = ValueLimits(max_bytes=sys.maxsize, max_depth=sys.maxsize)


class PreparedValue:
    """A validated value with its data type and its JSON text, ready to bind."""

    __slots__ = ("data_type", "json_text", "value")

    def __init__(self, value: Any, data_type: DataType, json_text: str) -> None:
        self.value = value
        self.data_type = data_type
        self.json_text = json_text


def prepare_value(
    value: object, data_type: str | None = None, *, limits: ValueLimits = DEFAULT_LIMITS
) -> PreparedValue:
    """Validate ``value`` against ``data_type`` (or infer one) and encode it.

    ``float`` accepts an int (not a bool) and stores it as a float. Raises
    :class:`InvalidConfigurationError` for unknown types, mismatches, values
    beyond ``limits`` and anything that is not exactly representable as JSON
    in PostgreSQL.
    """
    resolved = _resolve_data_type(value, data_type)
    if resolved == SECRET_TYPE:
        # Only an envelope: the store seals a plaintext first (core.arguments.write_params),
        # so no code path can hand a plaintext secret to a statement.
        if not isinstance(value, SealedSecret):
            raise InvalidConfigurationError(
                f"a secret's value must be sealed first, not a {type(value).__name__}"
            )
        return PreparedValue(value, resolved, encode_json(value.document(), limits))
    if resolved == "float" and isinstance(value, int) and not isinstance(value, bool):
        value = _int_as_float(value)
    _check_matches(value, resolved)
    return PreparedValue(value, resolved, encode_json(value, limits))


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
    if data_type == "flag":  # a feature flag: the flag document's JSON Schema and more
        from .flags import validate_flag  # imported on the first flag: jsonschema is heavy

        validate_flag(value)
        return
    expected = _PYTHON_TYPES.get(data_type)
    if expected is None:  # json: any JSON value, checked by encode_json
        return
    # bool is an int subclass; an int-typed setting must not accept True.
    if not isinstance(value, expected) or (data_type == "int" and isinstance(value, bool)):
        raise InvalidConfigurationError(
            f"value of type {type(value).__name__} does not match data_type {data_type!r}"
        )


def encode_json(value: object, limits: ValueLimits = DEFAULT_LIMITS) -> str:
    """Encode a JSON value as text PostgreSQL's jsonb stores and returns unchanged.

    Raises :class:`InvalidConfigurationError` for anything else, and for a value
    beyond ``limits`` (saying by how much).
    """
    scan = _scan(value, limits)
    if scan.depth > limits.max_depth:
        raise InvalidConfigurationError(
            f"value is nested {scan.depth} levels deep, over the limit of "
            f"{limits.max_depth} by {scan.depth - limits.max_depth}"
        )
    try:
        if scan.positional:
            return _dump(value)
        # No float needs special formatting, and the walk ruled out cycles.
        return json.dumps(
            value, ensure_ascii=False, allow_nan=False, separators=(",", ":"), check_circular=False
        )
    except RecursionError:
        raise InvalidConfigurationError(
            f"value ({scan.depth} levels deep) cannot be encoded this deep in the call stack"
        ) from None


def json_measure(value: object) -> tuple[int, int]:
    """``(bytes, depth)`` of a JSON value as :class:`ValueLimits` counts them: the size of
    its text as PostgreSQL prints it (``octet_length(value::text)``), and its nesting."""
    scan = _scan(value, _UNLIMITED)
    return scan.size, scan.depth


@dataclass(frozen=True, slots=True)
class _Scan:
    """What the walk over a value found, besides its refusals."""

    size: int  # of the JSON text as PostgreSQL prints it
    depth: int
    positional: bool  # a float needs the positional form (see _format_float)


_END: Final = object()
# What json.dumps escapes in ASCII text: controls (NUL among them), '"' and '\'.
_ASCII_ESCAPED: Final = re.compile('[\x00-\x1f"\\\\]')


def _scan(value: object, limits: ValueLimits) -> _Scan:
    """Walk ``value`` once, without recursion and without building its text: refuse what
    jsonb cannot round-trip, and the value as soon as its size passes ``limits.max_bytes``.

    The size counted is that of the text PostgreSQL prints (``value::text``):
    a space after each ``,`` and ``:``, and ``-0.0`` as ``0.0``, since jsonb's
    numbers have no negative zero. Strings are measured in place; only one that
    needs escapes or is not ASCII is encoded to measure it, and only when it
    could still fit, so a value far too large costs no copy.
    """
    budget = limits.max_bytes
    size = depth = 0
    positional = False
    iterators: list[Iterator[tuple[Any, Any]]] = []  # one per open list or dict
    objects: list[bool] = []  # whether each open container is a dict
    remaining: list[int] = []  # how many items each open container has left
    trail: list[Any] = []  # the index or name of the item looked at, per open container
    open_ids: list[int] = []  # the open containers: a value that holds itself is refused
    item: Any = value
    while True:
        if isinstance(item, str):
            size += _text_size(item, size, budget, trail, key=False)
        elif item is None or item is True:
            size += 4
        elif item is False:
            size += 5
        elif isinstance(item, int):
            if not -_INT_LIMIT < item < _INT_LIMIT:
                raise _refusal(trail, f"integer has more than {_MAX_INT_DIGITS - 1} digits")
            size += len(int.__repr__(item))
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise _refusal(trail, "NaN and Infinity are not JSON values")
            text = float.__repr__(item)
            if "e" in text:
                positional = True
                text = _format_float(item)
            size += len(text) - (item == 0 and text[0] == "-")  # -0.0 prints 0.0
        elif isinstance(item, list | dict):
            if id(item) in open_ids:
                raise _refusal(trail, "value contains itself")
            count = len(item)
            if isinstance(item, dict):
                size += 4 * count if count else 2  # {}, ': ' after each name, ', ' between
                iterators.append(iter(item.items()))
            else:
                size += 2 * count if count else 2  # [], ', ' between
                iterators.append(enumerate(item))
            objects.append(isinstance(item, dict))
            remaining.append(count)
            open_ids.append(id(item))
            trail.append(None)
            depth = max(depth, len(iterators))
        else:
            raise _refusal(
                trail,
                f"{type(item).__name__} is not a JSON value "
                "(use str, int, float, bool, None, list or dict)",
            )
        if size > budget:  # exact only if nothing is left to count
            raise _too_large(size, budget, exact=not any(remaining))
        # Then the next item of the innermost container that has one left.
        while iterators:
            step: Any = next(iterators[-1], _END)
            if step is _END:
                iterators.pop()
                objects.pop()
                remaining.pop()
                open_ids.pop()
                trail.pop()
                continue
            name: Any = step[0]
            item = step[1]
            remaining[-1] -= 1
            if objects[-1]:
                if not isinstance(name, str):
                    raise _refusal(
                        trail[:-1], f"object keys must be str, got {type(name).__name__} {name!r}"
                    )
                size += _text_size(name, size, budget, trail[:-1], key=True)
            trail[-1] = name
            break
        else:
            return _Scan(size, depth, positional)


def _text_size(text: str, size: int, budget: int, trail: list[Any], *, key: bool) -> int:
    """The size of a string's JSON text, quotes included (the value has ``size`` so far).

    Each character is at least a byte: a string that cannot fit is refused before it
    is scanned if far too large (beyond twice the limit), or not ASCII, so a refusal
    reads at most twice the limit of any string, and copies none.
    """
    least = size + len(text) + 2
    if least > budget and (least > 2 * budget or not text.isascii()):
        raise _too_large(least, budget, exact=False)
    if text.isascii():
        if _ASCII_ESCAPED.search(text) is None:
            return len(text) + 2  # the common case: no copy, no escape
        if "\x00" in text:
            raise _refusal(trail, _UNSTORABLE_PROBLEM, key=key)
    elif UNSTORABLE_TEXT.search(text):
        raise _refusal(trail, _UNSTORABLE_PROBLEM, key=key)
    if least > budget:  # escapes only add to it
        raise _too_large(least, budget, exact=False)
    encoded = json.dumps(text, ensure_ascii=False)
    return len(encoded) if encoded.isascii() else len(encoded.encode("utf-8"))


_UNSTORABLE_PROBLEM: Final = (
    "text contains a NUL character or a lone surrogate, which jsonb cannot store"
)


def _too_large(size: int, budget: int, *, exact: bool) -> InvalidConfigurationError:
    least = "" if exact else "at least "
    return InvalidConfigurationError(
        f"value is {least}{size} bytes of JSON text, over the limit of {budget} "
        f"by {least}{size - budget}"
    )


def _refusal(trail: list[Any], problem: str, *, key: bool = False) -> InvalidConfigurationError:
    """The error for the item at ``trail``: ``value[0]['name']: problem``."""
    path = "value" + "".join(f"[{step!r}]" for step in trail)
    return InvalidConfigurationError(f"{path}{' key' if key else ''}: {problem}")


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
    SQL before migrations/0007), gives an :class:`UnreadableJson` instead.
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
    if is_secret(data_type):
        try:
            return sealed_from_document(value, key)
        except InvalidConfigurationError as exc:
            raise UnreadableValueError(str(exc), keys=() if key is None else (key,)) from None
    return value
