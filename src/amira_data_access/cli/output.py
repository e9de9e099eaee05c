"""How the CLI shows things: aligned tables, ISO 8601 times, pretty values, JSON documents.

Pure functions over the library's records, so they are unit-tested without a
database. Colour is an on/off :class:`Style` decided once from the stream (a
terminal, and no ``NO_COLOR``), never by the functions that build the text.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from ..entries import ConfigEntry, ConfigRevision
    from ..secrets import Keyring

__all__ = [
    "MAX_CELL",
    "ROLLBACK_REASON",
    "Style",
    "bare_value",
    "compact_value",
    "entry_document",
    "entry_to_json",
    "env_lines",
    "env_name",
    "iso",
    "pretty_value",
    "render_entry",
    "render_revision",
    "render_table",
    "reveal_secrets",
    "revision_to_json",
    "rolled_back_to",
    "to_json",
    "to_yaml",
    "unified_diff",
    "visible_value",
]

MAX_CELL = 60  # longest value shown in a table cell before it is cut with "…"


@dataclass(frozen=True, slots=True)
class Style:
    """ANSI colours when writing to a terminal, plain text otherwise."""

    enabled: bool = False

    @classmethod
    def for_stream(cls, stream: TextIO) -> Style:
        """Colours only on a terminal, and never when ``NO_COLOR`` is set (no-color.org)."""
        isatty = getattr(stream, "isatty", None)
        on_tty = bool(isatty and isatty())
        return cls(on_tty and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb")

    def _wrap(self, code: str, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.enabled and text else text

    def bold(self, text: str) -> str:
        """Headers."""
        return self._wrap("1", text)

    def dim(self, text: str) -> str:
        """Secondary information (timestamps, authors)."""
        return self._wrap("2", text)

    def red(self, text: str) -> str:
        """Errors and removed lines."""
        return self._wrap("31", text)

    def green(self, text: str) -> str:
        """Success and added lines."""
        return self._wrap("32", text)

    def cyan(self, text: str) -> str:
        """Diff hunk headers."""
        return self._wrap("36", text)


def iso(when: datetime | None, *, precise: bool = False) -> str:
    """ISO 8601 in UTC with a ``Z``; seconds for people, microseconds for machines."""
    if when is None:
        return ""
    text = when.astimezone(UTC).isoformat(timespec="microseconds" if precise else "seconds")
    return text.replace("+00:00", "Z")


def to_json(document: Any) -> str:
    """One JSON document, indented, non-ASCII kept readable."""
    return json.dumps(document, indent=2, ensure_ascii=False, allow_nan=False)


def to_yaml(document: Any) -> str:
    """The same document as YAML (PyYAML is checked for before the command runs)."""
    import yaml

    text: str = yaml.safe_dump(
        document, sort_keys=False, allow_unicode=True, default_flow_style=False
    )
    return text.rstrip("\n")


# Spelled out (secrets.SECRET_TYPE, secrets.MASK): building the parser imports no library.
_SECRET = "secret"  # noqa: S105  # a data type name
MASK = "••••••"
_TEXT_TYPES = ("str", _SECRET)  # shown as text, not as JSON


class _Revealing:
    """The keyring ``--reveal`` opens secrets with, for the one command being run."""

    keyring: Keyring | None = None


def reveal_secrets(keyring: Keyring | None) -> None:
    """Show secrets' plaintext (opened with ``keyring``) until called again with None.

    Set by ``--reveal`` for one command (and reset by ``main`` after it); without it,
    every output shows :data:`MASK` for a secret.
    """
    _Revealing.keyring = keyring


def visible_value(key: str, value: Any, data_type: str) -> Any:
    """The value of ``key`` as the command line shows it to a person or a shell.

    The one place where secret values are masked: every value shown by ``get``,
    ``list``, ``history``, ``watch``, in tables, JSON/YAML documents and by
    ``-o value``/``-o env`` goes through here. A secret is :data:`MASK`, or its
    plaintext with ``--reveal``.
    """
    if data_type != _SECRET:
        return value
    keyring = _Revealing.keyring
    if keyring is None:
        return MASK
    from ..secrets import SealedSecret

    return keyring.open(key, value) if isinstance(value, SealedSecret) else MASK


def bare_value(value: Any, data_type: str) -> str:
    """``-o value``: text as is, everything else as compact JSON on one line."""
    if data_type in _TEXT_TYPES and isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


_NOT_IN_NAME = re.compile(r"[^A-Z0-9_]")


def env_name(key: str) -> str:
    """A key as an environment variable name: ``amira.chat.tone`` -> ``AMIRA_CHAT_TONE``."""
    name = _NOT_IN_NAME.sub("_", key.upper())
    return f"_{name}" if name[:1].isdigit() else name


def env_lines(items: Iterable[tuple[str, Any, str]]) -> str:
    """``-o env``: ``NAME='value'`` lines a POSIX shell reads back (``eval``, ``set -a; .``).

    Raises ValueError when two keys would give the same name.
    """
    import shlex

    lines: list[str] = []
    seen: dict[str, str] = {}
    for key, value, data_type in items:
        name = env_name(key)
        if name in seen:
            raise ValueError(f"{seen[name]!r} and {key!r} would both be ${name}")
        seen[name] = key
        lines.append(f"{name}={shlex.quote(bare_value(value, data_type))}")
    return "\n".join(lines)


def pretty_value(value: Any, data_type: str) -> str:
    """A value for a person: text as is, everything else as indented JSON."""
    if data_type in _TEXT_TYPES and isinstance(value, str):
        return value
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)


def compact_value(value: Any, data_type: str, width: int = MAX_CELL) -> str:
    """A value on one line for a table cell, cut to ``width`` characters."""
    if data_type in _TEXT_TYPES and isinstance(value, str):
        text = value
    else:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    # A newline or tab would break the table's alignment: show it escaped.
    text = text.encode("unicode_escape").decode("ascii") if not text.isprintable() else text
    return text if len(text) <= width else text[: width - 1] + "…"


def entry_to_json(entry: ConfigEntry) -> dict[str, Any]:
    """A stored entry as a JSON object (times at full precision)."""
    return {
        "key": entry.key,
        "value": visible_value(entry.key, entry.value, entry.data_type),
        "data_type": entry.data_type,
        "description": entry.description,
        "version": entry.version,
        "created_at": iso(entry.created_at, precise=True),
        "updated_at": iso(entry.updated_at, precise=True),
        "updated_by": entry.updated_by,
    }


def revision_to_json(revision: ConfigRevision) -> dict[str, Any]:
    """A history row as a JSON object."""
    return {
        "key": revision.key,
        "version": revision.version,
        "revision": revision.revision,
        "operation": revision.operation,
        "value": visible_value(revision.key, revision.value, revision.data_type),
        "data_type": revision.data_type,
        "description": revision.description,
        "changed_by": revision.changed_by,
        "changed_at": iso(revision.changed_at, precise=True),
        "change_reason": revision.change_reason,
        "rollback_to": rolled_back_to(revision.change_reason),
    }


# The CLI's rollback records why in the history's reason: "rollback to v3[: why]".
# (The library records a rollback as an ordinary update; this is how it is told apart.)
ROLLBACK_REASON = "rollback to v"
_ROLLBACK = re.compile(r"^rollback to v(\d+)(?::|$)")


def rolled_back_to(reason: str | None) -> int | None:
    """The version a change restored, when its reason is the one ``amira-config rollback``
    records; None otherwise."""
    found = _ROLLBACK.match(reason or "")
    return int(found.group(1)) if found else None


def entry_document(value: Any, data_type: str, description: str | None) -> dict[str, Any]:
    """The ``{value, data_type, description}`` shape shared by export, import and diff.

    A secret's value is its sealed envelope (a JSON object of base64 ciphertext): what
    ``export`` writes and ``import`` takes back, never the plaintext (``--reveal`` or
    not); ``diff`` shows it masked (:func:`unified_diff`).
    """
    if data_type == _SECRET and hasattr(value, "document"):
        value = value.document()
    return {"value": value, "data_type": data_type, "description": description}


def _masked_document(document: Mapping[str, Any]) -> Mapping[str, Any]:
    """A document whose secret shows as the mask, its key id and a digest of its ciphertext
    (which tells two envelopes apart, and nothing of the plaintext)."""
    value = document.get("value")
    if document.get("data_type") != _SECRET or not isinstance(value, dict):
        return document
    import hashlib

    digest = hashlib.sha256(str(value.get("ct", "")).encode()).hexdigest()[:12]
    shown = f"{MASK} (key id {value.get('kid')}, ciphertext {digest})"
    return {**document, "value": shown}


def render_table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], style: Style | None = None
) -> str:
    """Columns padded to their widest cell; the last column is not padded."""
    style = style or Style()
    widths = [len(header) for header in headers]
    for row in rows:
        for index, cell in enumerate(row):
            widths[index] = max(widths[index], len(cell))

    def line(cells: Sequence[str]) -> str:
        padded = [cell.ljust(widths[i]) for i, cell in enumerate(cells[:-1])]
        return "  ".join([*padded, cells[-1]]).rstrip()

    out = [style.bold(line(headers))]
    out.extend(line(row) for row in rows)
    return "\n".join(out)


def render_entry(entry: ConfigEntry, style: Style | None = None) -> str:
    """One entry as ``field  value`` lines, the value pretty-printed and indented."""
    value = visible_value(entry.key, entry.value, entry.data_type)
    return _render_fields(
        [
            ("key", entry.key),
            ("value", pretty_value(value, entry.data_type)),
            ("data_type", entry.data_type),
            ("description", entry.description or ""),
            ("version", str(entry.version)),
            ("created_at", iso(entry.created_at)),
            ("updated_at", iso(entry.updated_at)),
            ("updated_by", entry.updated_by),
        ],
        style,
    )


def render_revision(revision: ConfigRevision, style: Style | None = None) -> str:
    """One history row (``get --version``/``--at``) as ``field  value`` lines."""
    value = visible_value(revision.key, revision.value, revision.data_type)
    restored = rolled_back_to(revision.change_reason)
    operation = revision.operation + (f" (rollback to v{restored})" if restored else "")
    return _render_fields(
        [
            ("key", revision.key),
            ("value", pretty_value(value, revision.data_type)),
            ("data_type", revision.data_type),
            ("description", revision.description or ""),
            ("version", str(revision.version)),
            ("revision", str(revision.revision)),
            ("operation", operation),
            ("changed_at", iso(revision.changed_at)),
            ("changed_by", revision.changed_by),
            ("reason", revision.change_reason or ""),
        ],
        style,
    )


def _render_fields(fields: Sequence[tuple[str, str]], style: Style | None) -> str:
    style = style or Style()
    width = max(len(name) for name, _ in fields)
    lines: list[str] = []
    for name, text in fields:
        first, *rest = text.split("\n") if text else [""]
        lines.append(f"{style.bold(name.ljust(width))}  {first}".rstrip())
        lines.extend(" " * (width + 2) + more for more in rest)
    return "\n".join(lines)


def _document_lines(document: Mapping[str, Any] | None) -> list[str]:
    if document is None:
        return []
    text = json.dumps(_masked_document(document), indent=2, ensure_ascii=False, sort_keys=True)
    return [line + "\n" for line in text.split("\n")]


def unified_diff(
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any] | None,
    *,
    before_label: str,
    after_label: str,
    style: Style | None = None,
) -> str:
    """A unified diff of two documents as sorted, indented JSON ("" when equal).

    ``None`` stands for "absent" (a key not yet created, or deleted).
    """
    import difflib

    style = style or Style()
    lines = difflib.unified_diff(
        _document_lines(before),
        _document_lines(after),
        fromfile=before_label,
        tofile=after_label,
    )
    out: list[str] = []
    for raw in lines:
        text = raw.rstrip("\n")
        if text.startswith(("---", "+++")):
            out.append(style.bold(text))
        elif text.startswith("@@"):
            out.append(style.cyan(text))
        elif text.startswith("+"):
            out.append(style.green(text))
        elif text.startswith("-"):
            out.append(style.red(text))
        else:
            out.append(text)
    return "\n".join(out)
