"""Unit tests for amira_data_access.codec: validation, type inference and JSON encoding."""

from __future__ import annotations

import json
import re
import tracemalloc
import unicodedata
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from amira_data_access._resources import sql_dir
from amira_data_access.codec import (
    DATA_TYPES,
    DEFAULT_LIMITS,
    KEY_NEUTRAL,
    KEY_SCRIPTS,
    PreparedValue,
    UnreadableJson,
    ValueLimits,
    decode_value,
    encode_json,
    infer_data_type,
    json_measure,
    key_pattern,
    prepare_value,
    read_json,
    validate_actor,
    validate_description,
    validate_key,
    validate_prefix,
)
from amira_data_access.errors import InvalidConfigurationError, UnreadableValueError

# Text PostgreSQL can store: no NUL, no lone surrogates.
storable_text = st.text(
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\x00")
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | storable_text,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(storable_text, children, max_size=5)
    ),
    max_leaves=20,
)

EXPONENT_FLOATS = [1e300, 5e-324, 1e-7, -2.5e-10, 1.7976931348623157e308, 1e16, -1e22]


def assert_same_json(actual: Any, expected: Any) -> None:
    """Assert ``actual == expected`` with the same Python type at every level."""
    assert type(actual) is type(expected), (actual, expected)
    if isinstance(expected, list):
        assert len(actual) == len(expected)
        for got, want in zip(actual, expected, strict=True):
            assert_same_json(got, want)
    elif isinstance(expected, dict):
        assert list(actual) == list(expected)
        for name in expected:
            assert_same_json(actual[name], expected[name])
    else:
        assert actual == expected


def number_tokens(text: str) -> list[str]:
    """The literal number tokens of a JSON text, as the parser sees them."""
    tokens: list[str] = []

    def keep(token: str) -> Decimal:
        tokens.append(token)
        return Decimal(token)

    json.loads(text, parse_float=keep, parse_int=keep)
    return tokens


# --- validate_key -----------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    ["a", "app.timeout", "feature/flag-1", "modèle.é", "ключ", "日本語", "x" * 255, "a_b:c"],
)
def test_validate_key_accepts_valid_keys(key: str) -> None:
    """Valid keys, including unicode and 255-character ones, are returned unchanged."""
    assert validate_key(key) is key


@pytest.mark.parametrize(
    "key",
    [
        "",
        "x" * 256,
        "a b",
        "a\tb",
        "a\nb",
        "a\x00b",
        "a\u00a0b",
        "a\u2028b",
        "\ufeffkey",
        "a\ud800b",
        "a\x7fb",
        "a\u3000b",
        "a\u200bb",
    ],
)
def test_validate_key_refuses_invalid_strings(key: str) -> None:
    """Empty, too long, and whitespace/control/surrogate-containing keys are refused."""
    with pytest.raises(InvalidConfigurationError):
        validate_key(key)


@pytest.mark.parametrize("key", [None, 1, b"key", ["key"], 1.5, True])
def test_validate_key_refuses_non_strings(key: object) -> None:
    """A key that is not a str is refused with a message naming its type."""
    with pytest.raises(InvalidConfigurationError, match=type(key).__name__):
        validate_key(key)


def test_validate_key_error_names_the_offending_character() -> None:
    """The error for a forbidden character gives its code point and position."""
    with pytest.raises(InvalidConfigurationError, match=r"U\+0009 at position 3"):
        validate_key("abc\tdef")


@given(st.text(max_size=300))
def test_validate_key_returns_or_refuses_any_text(key: str) -> None:
    """Any text is either returned unchanged as a storable key or refused cleanly."""
    try:
        result = validate_key(key)
    except InvalidConfigurationError:
        return
    assert result == key
    assert 1 <= len(key) <= 255
    key.encode("utf-8")  # storable: no lone surrogates
    for char in key:
        assert not char.isspace(), repr(char)
        assert unicodedata.category(char) not in ("Cc", "Cs"), repr(char)


@given(
    st.one_of(
        st.none(),
        st.integers(),
        st.floats(),
        st.binary(),
        st.lists(st.text()),
        st.tuples(st.text()),
        st.sets(st.integers()),
        st.dictionaries(st.text(), st.text()),
        st.builds(object),
    )
)
def test_validate_key_refuses_any_non_string(key: object) -> None:
    """Any non-str object is refused with InvalidConfigurationError, never another error."""
    with pytest.raises(InvalidConfigurationError):
        validate_key(key)


# --- validate_actor / validate_description / validate_prefix ---------------------------


@pytest.mark.parametrize("actor", ["alice", "deploy-bot@ci", "Zoë Ångström", "x" * 255])
def test_validate_actor_accepts_printable_names(actor: str) -> None:
    """A non-blank printable actor of at most 255 characters is returned."""
    assert validate_actor(actor) == actor


@pytest.mark.parametrize(
    "actor", ["", "   ", "\t", None, 42, "x" * 256, "a\x00b", "a\nb", "a\ud800b", "a\x1bb"]
)
def test_validate_actor_refuses_bad_actors(actor: object) -> None:
    """Blank, non-str, too long, non-printable and unstorable actors are refused."""
    with pytest.raises(InvalidConfigurationError, match="updated_by"):
        validate_actor(actor)


def test_validate_actor_names_the_field() -> None:
    """The error message names the field given by the caller."""
    with pytest.raises(InvalidConfigurationError, match="deleted_by"):
        validate_actor("", field="deleted_by")


@pytest.mark.parametrize("description", [None, "", "Timeout in seconds.\nSecond line\t!", "é"])
def test_validate_description_accepts_none_and_text(description: str | None) -> None:
    """None and any storable text (newlines and tabs included) are accepted."""
    assert validate_description(description) == description


@pytest.mark.parametrize("description", [1, b"text", ["a"], "a\x00b", "\udfff"])
def test_validate_description_refuses_bad_values(description: object) -> None:
    """Non-str descriptions and text with NUL or lone surrogates are refused."""
    with pytest.raises(InvalidConfigurationError):
        validate_description(description)


@pytest.mark.parametrize(
    "prefix", ["", "app.", "a%_", "x" * 255, "mod\u00e8le.", "\u043a\u043b\u044e\u0447.", "\u8a2d"]
)
def test_validate_prefix_accepts_the_start_of_a_key(prefix: str) -> None:
    """A prefix may be empty, else is the start of a key, up to 255 characters."""
    assert validate_prefix(prefix) == prefix


@pytest.mark.parametrize(
    "prefix",
    [
        None,
        1,
        b"app",
        "x" * 256,
        "a\x00",
        "\ud800",
        "a b",
        "app\t",
        "amira.chat.t\u043e",  # Latin and Cyrillic
        "amira\u200f.",
        "caf" + "e\u0301",
    ],
)
def test_validate_prefix_refuses_what_no_key_can_start_with(prefix: object) -> None:
    """Non-str, too long, unstorable prefixes, and those breaking the key grammar (no
    valid key starts with them: a typo worth saying) are refused."""
    with pytest.raises(InvalidConfigurationError):
        validate_prefix(prefix)


# --- infer_data_type --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, "bool"),
        (False, "bool"),
        (0, "int"),
        (-(10**30), "int"),
        (1.5, "float"),
        (0.0, "float"),
        ("", "str"),
        ("1", "str"),
        (None, "json"),
        ([1, 2], "json"),
        ({"a": 1}, "json"),
    ],
)
def test_infer_data_type(value: object, expected: str) -> None:
    """Each Python type maps to its data type, with bool checked before int."""
    assert infer_data_type(value) == expected


# --- prepare_value ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "data_type", "json_text"),
    [
        ("hello", "str", '"hello"'),
        ("é\n", "str", '"é\\n"'),
        (42, "int", "42"),
        (-7, "int", "-7"),
        (1.25, "float", "1.25"),
        (True, "bool", "true"),
        (False, "bool", "false"),
        (None, "json", "null"),
        ({"a": [1, 2.5, None, "x"]}, "json", '{"a":[1,2.5,null,"x"]}'),
        ("text", "json", '"text"'),
        (3, "json", "3"),
    ],
)
def test_prepare_value_accepts_matching_types(
    value: object, data_type: str, json_text: str
) -> None:
    """A value matching its explicit data type is kept and encoded as compact JSON."""
    prepared = prepare_value(value, data_type)
    assert isinstance(prepared, PreparedValue)
    assert prepared.value == value
    assert prepared.data_type == data_type
    assert prepared.json_text == json_text


def test_prepare_value_infers_type_when_omitted() -> None:
    """Without a data type the inferred one is used (bool, not int, for True)."""
    assert prepare_value(True).data_type == "bool"
    assert prepare_value(1).data_type == "int"
    assert prepare_value(1.0).data_type == "float"
    assert prepare_value("1").data_type == "str"
    assert prepare_value([1]).data_type == "json"


def test_prepare_value_float_accepts_int_and_makes_it_float() -> None:
    """An int given for a float setting is stored as a float with a fractional part."""
    prepared = prepare_value(3, "float")
    assert type(prepared.value) is float
    assert prepared.value == 3.0
    assert prepared.json_text == "3.0"


@pytest.mark.parametrize(
    ("value", "data_type"),
    [
        (True, "int"),
        (False, "int"),
        (True, "float"),
        (1.0, "int"),
        ("1", "int"),
        (1, "str"),
        (1, "bool"),
        ("true", "bool"),
        (None, "str"),
        (b"bytes", "str"),
    ],
)
def test_prepare_value_refuses_type_mismatch(value: object, data_type: str) -> None:
    """A value of the wrong Python type for its data type is refused (True is not an int)."""
    with pytest.raises(InvalidConfigurationError, match="does not match data_type"):
        prepare_value(value, data_type)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("data_type", [None, "float", "json"])
def test_prepare_value_refuses_non_finite_floats(value: float, data_type: str | None) -> None:
    """NaN and infinities are not JSON and are refused."""
    with pytest.raises(InvalidConfigurationError, match="NaN"):
        prepare_value(value, data_type)


def test_prepare_value_refuses_non_finite_float_nested() -> None:
    """A NaN deep inside a JSON value is refused too."""
    with pytest.raises(InvalidConfigurationError):
        prepare_value({"a": [1, {"b": float("nan")}]})


@pytest.mark.parametrize(
    "value",
    [
        (1, 2),
        {1, 2},
        frozenset(),
        b"bytes",
        bytearray(b"x"),
        object(),
        Decimal("1.5"),
        [1, (2, 3)],
        {"a": {1}},
    ],
)
def test_prepare_value_refuses_non_json_values(value: object) -> None:
    """Tuples, sets, bytes, Decimals and arbitrary objects are not JSON values."""
    with pytest.raises(InvalidConfigurationError, match="not a JSON value"):
        prepare_value(value)


@pytest.mark.parametrize("value", [{1: "a"}, {None: 1}, {"ok": {2.5: "x"}}, {("a",): 1}])
def test_prepare_value_refuses_non_string_object_keys(value: dict[Any, Any]) -> None:
    """Dicts with non-str keys are refused instead of being silently stringified."""
    with pytest.raises(InvalidConfigurationError, match="object keys must be str"):
        prepare_value(value)


@pytest.mark.parametrize(
    ("value", "data_type"),
    [
        ("a\x00b", "str"),
        ("a\x00b", "json"),
        ("\ud800", "str"),
        (["ok", "bad\x00"], "json"),
        ({"k\x00": 1}, "json"),
        ({"\udc80": 1}, "json"),
    ],
)
def test_prepare_value_refuses_unstorable_text(value: object, data_type: str) -> None:
    """Strings or object keys containing NUL or lone surrogates are refused."""
    with pytest.raises(InvalidConfigurationError, match="NUL"):
        prepare_value(value, data_type)


def test_prepare_value_int_digit_limit() -> None:
    """Ints up to 4299 digits are accepted; 4300 digits or more are refused."""
    largest = 10**4299 - 1
    assert prepare_value(largest, "int").json_text == str(largest)
    assert prepare_value(-largest).json_text == "-" + str(largest)
    for too_big in (10**4299, -(10**4299), 10**5000):
        with pytest.raises(InvalidConfigurationError, match="digits"):
            prepare_value(too_big, "int")
    with pytest.raises(InvalidConfigurationError, match="digits"):
        prepare_value({"n": [10**4300]})


@pytest.mark.parametrize("data_type", ["", "string", "INT", "list", "dict", "Float"])
def test_prepare_value_refuses_unknown_data_type(data_type: str) -> None:
    """An unknown data type name is refused with the list of valid ones."""
    with pytest.raises(InvalidConfigurationError, match="data_type must be one of"):
        prepare_value("x", data_type)


def test_prepare_value_refuses_int_too_large_for_float() -> None:
    """An int too large to become a float is refused as invalid input, not OverflowError."""
    with pytest.raises(InvalidConfigurationError):
        prepare_value(10**400, "float")


def test_prepare_value_refuses_circular_value() -> None:
    """A list that contains itself is refused as invalid input, not RecursionError."""
    circular: list[Any] = []
    circular.append(circular)
    with pytest.raises(InvalidConfigurationError):
        prepare_value(circular)


# --- encode_json / decode_value -----------------------------------------------------------


@pytest.mark.parametrize("value", EXPONENT_FLOATS)
def test_encode_json_writes_exponent_floats_positionally(value: float) -> None:
    """Floats whose repr has an exponent are written without one, with a '.', and read back."""
    text = encode_json(value)
    assert "e" not in text.lower()
    assert "." in text
    decoded = json.loads(text)
    assert type(decoded) is float
    assert decoded == value


def test_encode_json_positional_digits() -> None:
    """The positional form has exactly the digits of the shortest repr."""
    assert encode_json(1e-7) == "0.0000001"
    assert encode_json(-2.5e-10) == "-0.00000000025"
    assert encode_json(1e16) == "10000000000000000.0"
    assert encode_json(1e300) == "1" + "0" * 300 + ".0"
    assert encode_json(5e-324) == "0." + "0" * 323 + "5"


@pytest.mark.parametrize("value", EXPONENT_FLOATS)
def test_encode_json_exponent_floats_nested(value: float) -> None:
    """Exponent floats nested in lists and dicts are positional and keep their type."""
    document = {"a": [1, value, {"b": value, "s": "1e5"}], "n": None, "t": True, "x": 2.5}
    text = encode_json(document)
    assert all("e" not in token.lower() for token in number_tokens(text))
    assert_same_json(json.loads(text), document)


@pytest.mark.parametrize("value", [0.1, 1.5, -2.75, 123456.789, 0.0, -0.0, 1e15, 0.0001])
def test_encode_json_keeps_repr_of_ordinary_floats(value: float) -> None:
    """Floats without an exponent in their repr are written as their repr."""
    assert encode_json(value) == repr(value)
    assert encode_json([value]) == f"[{value!r}]"


def test_encode_json_is_compact_and_keeps_non_ascii() -> None:
    """The encoding has no spaces between tokens and writes non-ASCII text as is."""
    assert encode_json({"clé": ["é", 1]}) == '{"clé":["é",1]}'
    assert encode_json({"clé": ["é", 1e300]}).startswith('{"clé":["é",1000')


def test_encode_json_refuses_non_json() -> None:
    """encode_json raises InvalidConfigurationError for values that are not JSON."""
    with pytest.raises(InvalidConfigurationError):
        encode_json({"a": object()})


def test_decode_value_float_from_int() -> None:
    """A float setting stored as a whole number comes back as a float."""
    result = decode_value(3, "float")
    assert type(result) is float
    assert result == 3.0


@pytest.mark.parametrize(
    ("value", "data_type"),
    [(3, "int"), (True, "float"), (True, "bool"), ("3", "str"), ([1], "json"), (2.5, "float")],
)
def test_decode_value_leaves_other_values_alone(value: object, data_type: str) -> None:
    """Values other than an int for a float setting are returned unchanged."""
    assert decode_value(value, data_type) is value


# --- property tests ----------------------------------------------------------------------


@settings(max_examples=300)
@given(json_values)
def test_encode_json_round_trips_any_json_value(value: Any) -> None:
    """Any storable JSON value round-trips through encode_json with equal values and types."""
    text = encode_json(value)
    assert_same_json(json.loads(text), value)
    for token in number_tokens(text):
        assert "e" not in token.lower(), token


@settings(max_examples=300)
@given(json_values)
def test_prepare_value_accepts_any_json_value(value: Any) -> None:
    """Any storable JSON value is accepted with its inferred type and round-trips."""
    prepared = prepare_value(value)
    assert prepared.data_type == infer_data_type(value)
    assert_same_json(json.loads(prepared.json_text), prepared.value)


class _Text(str):
    """A str subclass, as an application's own types are."""


class _Number(int):
    """An int subclass (an IntEnum-like value)."""


hostile_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**300), max_value=10**300),
    # Beyond a float's range (int -> float overflows) and beyond the 4,300 digits
    # Python turns into text (int -> str raises): both must be refused, not crash.
    st.integers(min_value=10**308, max_value=10**310) | st.integers(max_value=-(10**308)),
    # (made by map: a strategy's repr showing a 4,300-digit int would itself raise)
    st.sampled_from([4299, 4300, 5000]).map(
        lambda digits: -(10**digits) if digits % 2 else 10**digits
    ),
    st.floats(),
    st.text(),
    # Lone surrogates (no UTF-8 spelling), NUL and other code points PostgreSQL refuses.
    st.text(alphabet=st.characters(categories=["Cs"]) | st.just("\x00"), min_size=1),
    st.builds(_Text, st.text()),
    st.builds(_Number, st.integers()),
    st.binary(),
    st.decimals(),
    st.complex_numbers(),
    st.builds(object),
    st.frozensets(st.integers()),
)
hostile_values = st.recursive(
    hostile_leaves,
    lambda children: (
        st.lists(children, max_size=4)
        | st.tuples(children, children)
        | st.sets(st.integers() | st.text(), max_size=4)
        | st.dictionaries(st.text() | st.integers() | st.none(), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=300)
@given(
    hostile_values,
    st.one_of(st.none(), st.sampled_from(DATA_TYPES), st.text(max_size=10)),
)
def test_prepare_value_never_raises_anything_else(value: object, data_type: str | None) -> None:
    """prepare_value either returns a PreparedValue or raises InvalidConfigurationError."""
    try:
        prepared = prepare_value(value, data_type)
    except InvalidConfigurationError:
        return
    assert isinstance(prepared, PreparedValue)
    assert prepared.data_type in DATA_TYPES
    json.loads(prepared.json_text)


# --- the key grammar: keys a person can tell apart ------------------------------------------

# Invisible or reordering characters: format and bidi controls (Cf), variation selectors,
# the combining grapheme joiner, fillers and blanks that render as nothing.
INVISIBLE_CHARACTERS = [
    "\u200c",  # ZERO WIDTH NON-JOINER
    "\u200d",  # ZERO WIDTH JOINER
    "\u200e",  # LEFT-TO-RIGHT MARK
    "\u200f",  # RIGHT-TO-LEFT MARK
    "\u202a",  # LEFT-TO-RIGHT EMBEDDING
    "\u202e",  # RIGHT-TO-LEFT OVERRIDE
    "\u2060",  # WORD JOINER
    "\u2066",  # LEFT-TO-RIGHT ISOLATE
    "\u00ad",  # SOFT HYPHEN
    "\u061c",  # ARABIC LETTER MARK
    "\u180e",  # MONGOLIAN VOWEL SEPARATOR
    "\ufe0f",  # VARIATION SELECTOR-16
    "\u034f",  # COMBINING GRAPHEME JOINER
    "\u3164",  # HANGUL FILLER
    "\u115f",  # HANGUL CHOSEONG FILLER
    "\u2800",  # BRAILLE PATTERN BLANK
    "\U000e0041",  # TAG LATIN CAPITAL LETTER A
    "\U000e0100",  # VARIATION SELECTOR-17
]


@pytest.mark.parametrize("char", INVISIBLE_CHARACTERS)
def test_validate_key_refuses_invisible_characters(char: str) -> None:
    """A key with a character that shows as nothing (or reorders the text) is refused."""
    with pytest.raises(InvalidConfigurationError, match=rf"U\+{ord(char):04X}"):
        validate_key(f"amira.chat{char}.tone")


def test_validate_key_refuses_keys_not_in_nfc() -> None:
    """'e' + COMBINING ACUTE ACCENT is refused, naming the NFC form to write instead."""
    decomposed = "amira.caf" + "e\u0301"
    with pytest.raises(InvalidConfigurationError, match="NFC") as refused:
        validate_key(decomposed)
    assert repr(unicodedata.normalize("NFC", decomposed)) in str(refused.value)
    assert validate_key("amira.caf\u00e9") == "amira.caf\u00e9"


@pytest.mark.parametrize(
    ("key", "scripts"),
    [
        ("amira.chat.t\u043ene", "Latin and Cyrillic"),  # a Cyrillic o among Latin letters
        ("\u0430mira", "Cyrillic and Latin"),
        ("amira.\u03bfk", "Latin and Greek"),  # Greek omicron
        ("\u043a\u043b\u044e\u0447.\u03ba", "Cyrillic and Greek"),
        ("amira.\u65e5\u672c", "Latin and Han/Kana"),
        ("\uc124\uc815.\u65e5", "Hangul and Han/Kana"),
    ],
)
def test_validate_key_refuses_letters_of_two_scripts(key: str, scripts: str) -> None:
    """Letters of two scripts in one key are refused, naming both and the first intruder."""
    with pytest.raises(InvalidConfigurationError, match=scripts):
        validate_key(key)


@pytest.mark.parametrize(
    "key",
    [
        "amira.chat.tone",
        "Feature/Flag-1_x:y@z#1",
        "mod\u00e8le.\u00e9t\u00e9.\u0153uvre",  # Latin with accents
        "vi\u1ec7t.nam",  # Latin Extended Additional
        "\u043a\u043b\u044e\u0447.\u0442\u043e\u043d-2",  # Cyrillic, digits and punctuation
        "\u0395\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac.1",  # Greek
        "\u8a2d\u5b9a.\u30ad\u30fc.\u3072\u3089\u304c\u306a",  # Japanese: Han, Katakana, Hiragana
        "\u4eba\u3005",  # the ideographic iteration mark
        "\uc124\uc815.\uac12",  # Hangul
    ],
)
def test_validate_key_accepts_keys_of_one_script(key: str) -> None:
    """Letters of one supported script, with ASCII digits and punctuation, are accepted."""
    assert validate_key(key) is key


@pytest.mark.parametrize(
    "char",
    [
        "\u01c3",  # LATIN LETTER RETROFLEX CLICK, which looks like '!'
        "\u05d0",  # HEBREW LETTER ALEF: right-to-left scripts reorder around '.'
        "\u0627",  # ARABIC LETTER ALEF
        "\uff54",  # FULLWIDTH LATIN SMALL LETTER T
        "\u00d7",  # MULTIPLICATION SIGN
        "\u2212",  # MINUS SIGN, which looks like '-'
        "\ue000",  # a private-use character
        "\U0001f600",  # an emoji
    ],
)
def test_validate_key_refuses_characters_outside_the_grammar(char: str) -> None:
    """Characters outside the key grammar are refused by code point, even visible ones."""
    with pytest.raises(InvalidConfigurationError, match=rf"U\+{ord(char):04X}"):
        validate_key(f"amira.{char}")


_INTERESTING_KEY_CHARACTERS = st.sampled_from(
    [*INVISIBLE_CHARACTERS, "a", ".", "\u00e9", "e\u0301", "\u043e", "\u03bf", "\u65e5", "\uac12"]
)


@given(st.lists(st.text(max_size=4) | _INTERESTING_KEY_CHARACTERS, max_size=8).map("".join))
def test_an_accepted_key_is_visible_nfc_text_of_one_script(key: str) -> None:
    """Whatever text comes in, an accepted key is NFC, has no invisible character and no
    character of a category a person cannot see or place (controls, formats, marks, spaces,
    private use, unassigned)."""
    try:
        validate_key(key)
    except InvalidConfigurationError:
        return
    assert unicodedata.is_normalized("NFC", key)
    for char in key:
        assert unicodedata.category(char)[0] not in "CMZ", repr(char)


def test_the_table_checks_the_same_key_grammar_as_the_library() -> None:
    """migrations/0007 holds, script by script, the very ranges of codec.KEY_SCRIPTS."""
    sql = (sql_dir("migrations") / "0007_value_limits_and_key_grammar.sql").read_text()
    patterns = re.findall(r"key ~ '\^\[(.*?)\]\+\$'  -- (\S+)", sql)
    assert patterns == [
        (key_pattern(KEY_NEUTRAL + ranges), script) for script, ranges in KEY_SCRIPTS.items()
    ]


def test_key_patterns_merge_adjacent_ranges_in_escapes_both_engines_read() -> None:
    """Sorted, merged, ``\\xhh`` below U+0080 and ``\\uhhhh`` above."""
    assert key_pattern(((0x61, 0x7A), (0x21, 0x60), (0x3A3, 0x3A3))) == r"\x21-\x7a\u03a3"


# --- value limits: nesting depth and size --------------------------------------------------


def nested_lists(depth: int) -> Any:
    """``depth`` lists, each holding the next: ``[[[]]]`` is 3 deep."""
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


def test_prepare_value_refuses_a_value_nested_deeper_than_the_default_limit() -> None:
    """64 levels are accepted; 65, and 500 (once accepted), are refused with how far over."""
    assert prepare_value(nested_lists(64)).json_text == "[" * 64 + "]" * 64
    with pytest.raises(InvalidConfigurationError, match=r"65 levels deep.*limit of 64.*by 1"):
        prepare_value(nested_lists(65))
    with pytest.raises(InvalidConfigurationError, match=r"500 levels deep.*by 436"):
        prepare_value({"a": nested_lists(499)})


def test_prepare_value_refuses_a_value_larger_than_the_default_limit() -> None:
    """1 MiB of JSON text (as PostgreSQL prints it) is accepted; one byte more is refused."""
    limit = 1024 * 1024
    assert len(prepare_value("x" * (limit - 2)).json_text) == limit  # with its two quotes
    with pytest.raises(InvalidConfigurationError, match=r"1048577 bytes.*limit of 1048576.*by 1"):
        prepare_value("x" * (limit - 1))
    # PostgreSQL prints a space after each ',' and ':', which counts.
    spaced = ["xxxxxxxxxx"] * (limit // 14)  # '"xxxxxxxxxx", ' is 14 bytes
    assert len(encode_json(spaced)) < limit
    with pytest.raises(InvalidConfigurationError, match=r"limit of 1048576"):
        prepare_value([*spaced, "x" * 100])


def test_the_table_has_the_default_limits_of_the_library() -> None:
    """migrations/0007's limit functions return the defaults of ValueLimits."""
    sql = (sql_dir("migrations") / "0007_value_limits_and_key_grammar.sql").read_text()
    body = "RETURNS integer\nLANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT {} $$"
    assert f"max_value_bytes() {body.format(DEFAULT_LIMITS.max_bytes)}" in sql
    assert f"max_value_depth() {body.format(DEFAULT_LIMITS.max_depth)}" in sql


@pytest.mark.parametrize(
    ("value", "size", "depth"),
    [
        (1, 1, 0),
        ("\u00e9\n", 6, 0),  # quotes, 2 bytes of é, 2 of the escape
        ([], 2, 1),
        ({"a": [1, 2], "b": None}, len('{"a": [1, 2], "b": null}'), 2),
        ([-0.0, 1e300], len("[0.0, 1" + "0" * 300 + ".0]"), 1),
        (nested_lists(5), 10, 5),
    ],
)
def test_json_measure_counts_the_text_postgresql_prints(value: Any, size: int, depth: int) -> None:
    """Bytes of ``value::text`` (a space after ',' and ':', -0.0 printed 0.0) and depth."""
    assert json_measure(value) == (size, depth)


@pytest.mark.parametrize(
    ("limits", "problem"),
    [
        ({"max_bytes": 0}, "max_bytes"),
        ({"max_depth": -1}, "max_depth"),
        ({"max_depth": True}, "max_depth"),
    ],
)
def test_value_limits_must_be_sensible(limits: dict[str, Any], problem: str) -> None:
    """A store cannot be given limits nothing fits in."""
    with pytest.raises(ValueError, match=problem):
        ValueLimits(**limits)


def test_a_store_takes_its_own_limits_to_the_encoding() -> None:
    """Smaller limits refuse earlier, naming them; a nested circular value is refused too."""
    small = ValueLimits(max_bytes=10, max_depth=1)
    assert prepare_value([1, 2], limits=small).json_text == "[1,2]"
    with pytest.raises(InvalidConfigurationError, match="2 levels deep, over the limit of 1 by 1"):
        prepare_value([[]], limits=small)
    with pytest.raises(InvalidConfigurationError, match=r"11 bytes .* limit of 10 by 1"):
        prepare_value("x" * 9, limits=small)
    loop: dict[str, Any] = {}
    loop["again"] = [loop]
    with pytest.raises(
        InvalidConfigurationError, match=r"value\['a'\]\['again'\]\[0\]: value contains itself"
    ):
        prepare_value({"a": loop})


def test_a_far_too_large_value_is_refused_without_a_copy() -> None:
    """A 200 MB string, or 300 MB of one shared string, costs the refusal almost no memory."""
    for value in ("\u00e9" * 100_000_000, ["x" * 1_000_000] * 300):
        tracemalloc.start()
        try:
            with pytest.raises(InvalidConfigurationError, match="at least"):
                prepare_value(value)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 100_000, peak


# --- reading what Python cannot decode ---------------------------------------------------


def test_read_json_gives_a_marker_instead_of_raising() -> None:
    """Too deep for Python, or a number of too many digits: a marker decode_value names."""
    deep = read_json("[" * 5000 + "]" * 5000)
    long_number = read_json("1" * 5000)
    assert isinstance(deep, UnreadableJson)
    assert "nested too deeply" in deep.reason
    assert isinstance(long_number, UnreadableJson)
    assert "digits" in long_number.reason
    with pytest.raises(
        UnreadableValueError, match=r"'k' at version 3 cannot be read: it is nested"
    ):
        decode_value(deep, "json", "k", version=3)
    assert read_json(b'{"a": [1]}') == {"a": [1]}
