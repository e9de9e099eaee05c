#!/usr/bin/env python3
"""Generate the sync twins of the async modules: one hand-written source, one generated copy.

Why: the async and the sync facades (``AsyncConfigDAL`` / ``ConfigDAL`` and friends) must offer
the same methods, options, results and errors. Written twice they drift apart; so the async
module is the one we write and review, and its sync twin is derived from it, like psycopg 3
does (``tools/async_to_sync.py`` there). CI runs ``--check`` (first step of ``just lint``) and
fails when a generated file is stale or was edited by hand.

Usage::

    python tools/async_to_sync.py            # regenerate every twin in PAIRS (`just generate`)
    python tools/async_to_sync.py --check    # exit 1 naming each stale or missing twin
    python tools/async_to_sync.py src/amira_data_access/dal_async.py   # only these pairs

What the transform does, on the tokens of the source (so comments and layout survive):

1. ``async def``/``async with``/``async for`` lose ``async`` (comprehensions too), and
   ``await EXPR`` becomes ``EXPR``; parentheses left redundant by that (``(await f()).x``,
   ``await (f())``) go as well, and so does what only the sync side can simplify: a ``with``
   nested in a ``with`` (one was ``async with``) is merged into one, ``[x async for x in y]``
   becomes ``list(y)`` (ruff's SIM117 and C416 would fail the twin otherwise).
2. Every identifier in NAMES is renamed (``AsyncConfigDAL`` -> ``ConfigDAL``, ``__aenter__``
   -> ``__enter__``...), wherever it appears: names, attributes, imports, keywords.
3. In comments and strings (docstrings included) the same names are renamed as whole words,
   and ``async``/``await`` are dropped where they begin code: anywhere inside a ``code span``
   or a doctest line, and in prose only before an unmistakable code shape (``await x.y(``,
   ``async with f(``, ``async for x in``, ``async def f(``). Other words, ``asyncio``
   included, are left alone.
4. The marked differences (below) keep their sync side.
5. ruff sorts the imports, drops the ones only the async side used (``asyncio``, ``ASYNC``...)
   and formats the result under the repository's configuration; the output must then pass
   the repository's ``ruff check``, or generation fails naming the line (a comment or a
   string too long for the line, say: ruff format cannot split those).

The first two lines of a generated file say it is generated, and from what.

Marking a difference: the source imports ``ASYNC`` (``True``) from ``._acompat`` and writes ::

    if ASYNC:
        await asyncio.sleep(delay)  # the async side: dropped from the twin
    else:
        time.sleep(delay)  # the sync side: kept, dedented, in place of the whole `if`

Exactly ``if ASYNC:`` (no ``elif``, no ``not ASYNC``, no other use of ``ASYNC``); without an
``else`` the statement simply disappears from the twin. Comments inside a branch go with it.

Adding a name to rename is one line in NAMES; adding a module is one line in PAIRS.

Refused, with the file and line: ``await`` inside an f-string (hoist it into a variable),
``elif`` after ``if ASYNC:`` or ``elif ASYNC:`` (nest the ``if``), a branch of the marker on
the line of its ``if``/``else``, and any output that fails ``ruff check``.
"""

from __future__ import annotations

import argparse
import ast
import bisect
import difflib
import functools
import io
import keyword
import re
import shutil
import subprocess
import sys
import tokenize
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeGuard

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Pair:
    """A hand-written async module and its generated sync twin, relative to the root."""

    source: str
    generated: str


PAIRS: tuple[Pair, ...] = (
    Pair("src/amira_data_access/dal_async.py", "src/amira_data_access/dal.py"),
    Pair("src/amira_data_access/store_async.py", "src/amira_data_access/store.py"),
    Pair("src/amira_data_access/memory_async.py", "src/amira_data_access/memory.py"),
    Pair("src/amira_data_access/feed/cache_async.py", "src/amira_data_access/feed/cache.py"),
    Pair("src/amira_data_access/live_async.py", "src/amira_data_access/live.py"),
)

# Async name -> sync name. Exact whole identifiers in code; whole words in comments/strings.
NAMES: dict[str, str] = {
    "AsyncConfigDAL": "ConfigDAL",
    "identify_async": "identify",  # backends/pooler.py (scale)
    "AsyncConfigTransaction": "ConfigTransaction",
    "AsyncCachedConfigDAL": "CachedConfigDAL",
    "AsyncCachedTransaction": "CachedTransaction",
    "AsyncInMemoryConfigStore": "InMemoryConfigStore",
    "AsyncInMemoryTransaction": "InMemoryTransaction",
    "AsyncConfigStore": "ConfigStore",
    "AsyncConfigOperations": "ConfigOperations",
    "AsyncChangeStream": "ChangeStream",
    "AsyncConnectionPool": "ConnectionPool",
    "AsyncConnection": "Connection",
    "AsyncIterator": "Iterator",
    "AsyncIterable": "Iterable",
    "AsyncGenerator": "Generator",
    "AbstractAsyncContextManager": "AbstractContextManager",
    "asynccontextmanager": "contextmanager",
    "__aenter__": "__enter__",
    "__aexit__": "__exit__",
    "__aiter__": "__iter__",
    "__anext__": "__next__",
    "aclose": "close",
    "StopAsyncIteration": "StopIteration",
    "_acompat": "_compat",
    "dal_async": "dal",
    "store_async": "store",
    "memory_async": "memory",
    "cache_async": "cache",
    "async_queries": "sync_queries",
    "AsyncLifecycle": "Lifecycle",
    "AsyncExitStack": "ExitStack",
    "AsyncLiveSettings": "LiveSettings",
    "live_async": "live",
}

MARKER = "ASYNC"  # `if ASYNC:` marks a difference; the twin keeps the `else:` side
LINE_LENGTH = 100  # ruff's line-length in pyproject.toml: the header must fit in it
HEADER_MARK = "# GENERATED from "
HEADER_CONTINUATION = "# Edit the source, then run `just generate`."


class GenerationError(Exception):
    """A source the tool cannot turn into a correct sync twin; the message names file:line."""


# --- the whole pipeline --------------------------------------------------------------------


def generate(source_text: str, source: str, generated: str, root: Path = ROOT) -> str:
    """The generated file for ``source`` (relative path): transformed, headed, ruff-clean."""
    text = header(source) + to_sync(strip_header(source_text), filename=source)
    text = ruff_fix_and_format(text, generated, root)
    ruff_verify(text, generated, root)
    return text


def to_sync(text: str, filename: str = "<source>") -> str:
    """Rules 1 to 4 on a module's text: the sync code, before ruff."""
    tree = _parse(text, filename)
    _validate(tree, text, filename)
    text = resolve_markers(text, filename)
    text = drop_async(text, filename)
    return merge_nested_withs(text, filename)


def header(source: str) -> str:
    """The generated file's first two lines. (As one line the two sentences never fit in
    LINE_LENGTH: they take 100 characters without the source's path.)"""
    first = f"{HEADER_MARK}{source} by tools/async_to_sync.py: do not edit."
    if len(first) > LINE_LENGTH:
        raise GenerationError(f"{source}: path too long for the generated header")
    return f"{first}\n{HEADER_CONTINUATION}\n"


def strip_header(text: str) -> str:
    """``text`` without a generated header, so running on a generated file is idempotent."""
    lines = _lines(text)
    if not lines or not lines[0].startswith(HEADER_MARK):
        return text
    drop = 2 if len(lines) > 1 and lines[1].rstrip("\n") == HEADER_CONTINUATION else 1
    return "".join(lines[drop:])


# --- checks on the source ------------------------------------------------------------------


def _parse(text: str, filename: str) -> ast.Module:
    try:
        return ast.parse(text, filename=filename)
    except SyntaxError as exc:
        raise GenerationError(f"{filename}:{exc.lineno}: {exc.msg}") from None


def _is_marker(node: ast.AST) -> TypeGuard[ast.If]:
    return isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == MARKER


def _validate(tree: ast.Module, text: str, filename: str) -> None:
    """Refuse what the transform cannot do correctly, naming the line."""
    lines = _lines(text)
    marker_tests: set[int] = set()
    for node in ast.walk(tree):
        if _is_marker(node):
            marker_tests.add(id(node.test))
            _validate_marker(node, lines, filename)
        elif isinstance(node, ast.JoinedStr) and any(
            isinstance(inner, ast.Await) for inner in ast.walk(node)
        ):
            # Inside an f-string the await is no token of its own (before 3.12): hoist it.
            raise GenerationError(f"{filename}:{node.lineno}: `await` inside an f-string")
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id == MARKER and id(node) not in marker_tests:
            raise GenerationError(
                f"{filename}:{node.lineno}: {MARKER} may only be used as `if {MARKER}:`"
            )


def _validate_marker(node: ast.If, lines: Sequence[str], filename: str) -> None:
    where = f"{filename}:{node.lineno}"
    if lines[node.lineno - 1].lstrip().startswith("elif"):
        raise GenerationError(f"{where}: `elif {MARKER}:` is not supported: nest the `if`")
    if node.body[0].lineno == node.lineno:
        raise GenerationError(f"{where}: put the body of `if {MARKER}:` on its own lines")
    if not node.orelse:
        return
    first = node.orelse[0]
    if isinstance(first, ast.If) and lines[first.lineno - 1].lstrip().startswith("elif"):
        raise GenerationError(f"{where}: `elif` after `if {MARKER}:` is not supported")
    if _else_line(node, lines) == first.lineno:
        raise GenerationError(f"{where}: put the body of its `else:` on its own lines")


# --- rule 4: `if ASYNC:` keeps its else branch ---------------------------------------------


def resolve_markers(text: str, filename: str = "<source>") -> str:
    """Replace each ``if ASYNC:`` by its dedented ``else:`` body (or nothing, or ``pass``)."""
    # One marker at a time, outermost first, parsing again after each: the line numbers of
    # everything after an edit move, and a marker nested in a kept branch is found next time.
    while True:
        tree = _parse(text, filename)
        found = _first_marker(tree)
        if found is None:
            return text
        node, alone = found
        text = _resolve_one(text, node, alone)


def _first_marker(tree: ast.Module) -> tuple[ast.If, bool] | None:
    """The first ``if ASYNC:`` in the file, and whether it is alone in its block."""
    found = [
        (stmt, len(block) == 1)
        for parent in ast.walk(tree)
        for block in _blocks(parent)
        for stmt in block
        if _is_marker(stmt)
    ]
    return min(found, key=lambda item: item[0].lineno, default=None)


def _blocks(node: ast.AST) -> Iterator[list[ast.stmt]]:
    """The statement lists of a node: a body, an else, a finally."""
    for field in ("body", "orelse", "finalbody"):
        block = getattr(node, field, None)
        if isinstance(block, list):
            yield block


def _resolve_one(text: str, node: ast.If, alone: bool) -> str:
    lines = _lines(text)
    indent = node.col_offset  # an `if` starts its line: its column is its indentation
    end = _extent_end(node, lines, indent)
    if node.orelse:
        else_line = _else_line(node, lines)
        assert else_line is not None  # _validate_marker saw the else
        keep = _dedent(lines, else_line + 1, end, node.orelse[0].col_offset - indent, text)
    else:
        keep = [" " * indent + "pass\n"] if alone else []
    return "".join(lines[: node.lineno - 1] + keep + lines[end:])


def _extent_end(node: ast.stmt, lines: Sequence[str], indent: int) -> int:
    """The last line of the statement, counting the comments after it that its last branch
    owns (indented deeper than the ``if``); blank lines only count before such a comment."""
    end = node.end_lineno or node.lineno
    last = end
    for number in range(end + 1, len(lines) + 1):
        stripped = lines[number - 1].strip()
        if not stripped:
            continue
        if stripped.startswith("#") and _indentation(lines[number - 1]) > indent:
            last = number
            continue
        break
    return last


def _else_line(node: ast.If, lines: Sequence[str]) -> int | None:
    """The line of the ``else:`` of an ``if``: between its body and its orelse, only blank
    lines, comments and that keyword can appear."""
    last_body = node.body[-1].end_lineno or node.body[-1].lineno
    for number in range(last_body + 1, node.orelse[0].lineno + 1):
        line = lines[number - 1]
        if _indentation(line) == node.col_offset and re.match(r"\s*else\s*:", line):
            return number
    return None


def _dedent(lines: Sequence[str], first: int, last: int, by: int, text: str) -> list[str]:
    """Lines ``first``..``last`` (1-based) dedented by ``by`` columns, except the inside of
    multi-line strings, whose value would change."""
    in_string = _string_continuation_lines(text)
    out = []
    for number in range(first, last + 1):
        line = lines[number - 1]
        if number not in in_string:
            line = line[min(by, _indentation(line)) :] if line.strip() else "\n"
        out.append(line)
    return out


def _indentation(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def _string_continuation_lines(text: str) -> set[int]:
    """Lines that begin inside a string literal (the 2nd and later lines of a multi-line one)."""
    inside: set[int] = set()
    for start, end in _string_spans(list(_tokens(text))):
        inside.update(range(start[0] + 1, end[0] + 1))
    return inside


# --- rules 1 to 3, on tokens ---------------------------------------------------------------


def _tokens(text: str) -> Iterator[tokenize.TokenInfo]:
    return tokenize.generate_tokens(io.StringIO(text).readline)


def _lines(text: str) -> list[str]:
    """The lines as tokenize and ast count them: split at "\\n" only (str.splitlines would
    also split at a form feed or U+2028 inside a string)."""
    return io.StringIO(text).readlines()


# 3.12 splits f-strings (3.14 t-strings) into tokens; we treat each as one string, as 3.11 does.
_STRING_OPENERS = {
    getattr(tokenize, n) for n in ("FSTRING_START", "TSTRING_START") if hasattr(tokenize, n)
}
_STRING_CLOSERS = {
    getattr(tokenize, n) for n in ("FSTRING_END", "TSTRING_END") if hasattr(tokenize, n)
}

Position = tuple[int, int]  # (line 1-based, column in characters), as tokenize reports


def _string_spans(tokens: Sequence[tokenize.TokenInfo]) -> Iterator[tuple[Position, Position]]:
    """(start, end) of every string literal, an f-string counting as one."""
    depth = 0
    start: Position = (0, 0)
    for tok in tokens:
        if tok.type in _STRING_OPENERS:
            if depth == 0:
                start = tok.start
            depth += 1
        elif tok.type in _STRING_CLOSERS:
            depth -= 1
            if depth == 0:
                yield start, tok.end
        elif tok.type == tokenize.STRING and depth == 0:
            yield tok.start, tok.end


@dataclass(frozen=True, order=True)
class _Edit:
    """Replace text[start:end] (offsets in characters) by ``new``."""

    start: int
    end: int
    new: str = ""


class _Text:
    """The text being transformed, with its tokens and the AST's positions as offsets."""

    def __init__(self, text: str, filename: str) -> None:
        self.text = text
        self.tree = _parse(text, filename)
        self.tokens = list(_tokens(text))
        self._line_starts = [0]
        for line in _lines(text):
            self._line_starts.append(self._line_starts[-1] + len(line))
        self._lines = _lines(text)
        self._starts = [self.offset(t.start) for t in self.tokens]
        # Zero-width tokens (DEDENT, a last NEWLINE) share offsets with real ones: the real
        # token is the last to start at an offset and the first to end there.
        self.index_at_start = {start: i for i, start in enumerate(self._starts)}
        self.index_at_end: dict[int, int] = {}
        for i, tok in enumerate(self.tokens):
            self.index_at_end.setdefault(self.offset(tok.end), i)

    def offset(self, position: Position) -> int:
        return self._line_starts[position[0] - 1] + position[1]

    def between(self, start: int, end: int) -> list[tokenize.TokenInfo]:
        """The tokens lying wholly within text[start:end]."""
        first = bisect.bisect_left(self._starts, start)
        last = bisect.bisect_left(self._starts, end)
        return [t for t in self.tokens[first:last] if self.offset(t.end) <= end]

    def node_start(self, node: ast.expr) -> int:
        return self._byte_offset(node.lineno, node.col_offset)

    def node_end(self, node: ast.expr) -> int:
        assert node.end_lineno is not None
        assert node.end_col_offset is not None
        return self._byte_offset(node.end_lineno, node.end_col_offset)

    def _byte_offset(self, lineno: int, col: int) -> int:
        # ast columns count UTF-8 bytes, tokenize columns count characters.
        prefix = self._lines[lineno - 1].encode()[:col].decode()
        return self._line_starts[lineno - 1] + len(prefix)


def drop_async(text: str, filename: str = "<source>") -> str:
    """Rules 1 to 3: drop ``async``/``await``, rename NAMES, fix comments and strings."""
    src = _Text(text, filename)
    edits = _await_edits(src)
    edits += _token_edits(src)
    return _apply(text, edits, filename)


def _token_edits(src: _Text) -> list[_Edit]:
    """The edits token by token: strings and comments (rule 3), ``async``, NAMES."""
    tokens = src.tokens
    edits = []
    strings = list(_string_spans(tokens))
    string_starts = {src.offset(start): src.offset(end) for start, end in strings}
    skip_until = -1
    for i, tok in enumerate(tokens):
        start = src.offset(tok.start)
        if start < skip_until:
            continue  # inside an f-string, handled as a whole
        if start in string_starts:
            end = string_starts[start]
            skip_until = end
            edits.append(_Edit(start, end, sync_words(src.text[start:end])))
        elif tok.type == tokenize.COMMENT:
            edits.append(_Edit(start, src.offset(tok.end), sync_words(tok.string)))
        elif tok.type == tokenize.NAME and tok.string == "async":
            # `async` is a keyword since 3.7: always followed by def, with or for.
            edits.append(_Edit(start, src.offset(tokens[i + 1].start)))
        elif tok.type == tokenize.NAME and tok.string in NAMES:
            edits.append(_Edit(start, src.offset(tok.end), NAMES[tok.string]))
    return edits


# Expressions that bind tighter than any operator: `(X)` and `X` mean the same wherever
# they stand, so parentheses around them are redundant.
_PRIMARY = (ast.Name, ast.Attribute, ast.Call, ast.Subscript)


def _await_edits(src: _Text) -> list[_Edit]:
    """Drop every ``await`` and the parentheses that dropping it makes redundant."""
    edits: list[_Edit] = []
    for node in ast.walk(src.tree):
        if not isinstance(node, ast.Await):
            continue
        start, end = src.node_start(node), src.node_end(node)
        value_start, value_end = src.node_start(node.value), src.node_end(node.value)
        await_index = src.index_at_start[start]
        primary = isinstance(node.value, _PRIMARY)
        if primary and _inner_parens(src, await_index, value_start, value_end, end):
            # `await (f())` -> `f()`: the parentheses go with the `await`.
            edits += [_Edit(start, value_start), _Edit(value_end, end)]
        else:
            edits.append(_Edit(start, src.offset(src.tokens[await_index + 1].start)))
        if primary:
            edits += _outer_parens(src, start, end)
    return edits


def _inner_parens(src: _Text, await_index: int, value_start: int, value_end: int, end: int) -> bool:
    """Whether it is ``await (X)``, with nothing but parentheses and line breaks around X,
    and X's own line breaks all inside its brackets: X without them is then the same."""
    before = src.between(src.offset(src.tokens[await_index].end), value_start)
    after = src.between(value_end, end)
    return (
        any(t.string == "(" for t in before)
        and not any(t.type == tokenize.COMMENT for t in before + after)
        and _breaks_bracketed(src, value_start, value_end)
    )


def _outer_parens(src: _Text, start: int, end: int) -> list[_Edit]:
    """``(await X).y`` -> ``X.y``: the grouping parentheses around an await whose value is a
    primary expression. Call and subscript brackets (``f(await x)``) stay, of course."""
    before_index = src.index_at_start[start] - 1
    after_index = src.index_at_end[end] + 1
    while before_index >= 0 and src.tokens[before_index].type == tokenize.NL:
        before_index -= 1
    while src.tokens[after_index].type == tokenize.NL:
        after_index += 1  # ENDMARKER stops it
    if before_index < 0:
        return []
    opening, closing = src.tokens[before_index], src.tokens[after_index]
    if opening.string != "(" or closing.string != ")" or _is_call_bracket(src, before_index):
        return []
    if not _breaks_bracketed(src, start, end):
        return []
    open_start, close_end = src.offset(opening.start), src.offset(closing.end)
    # `return(await x)` must not become `returnx`, nor `(await x)if` become `xif`.
    text = src.text
    space_before = " " if _word_char(text[open_start - 1 : open_start]) else ""
    space_after = " " if _word_char(text[close_end : close_end + 1]) else ""
    return [_Edit(open_start, start, space_before), _Edit(end, close_end, space_after)]


_STATEMENT_START = (tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT)


def _is_call_bracket(src: _Text, index: int) -> bool:
    """Whether the ``(`` at ``index`` opens a call's arguments rather than a group: it does
    after a name that is not a keyword, after a closing bracket (``f()(x)``) and, to be
    safe, after anything unusual (a string, an f-string's end)."""
    index -= 1
    while index >= 0 and src.tokens[index].type in (tokenize.NL, tokenize.COMMENT):
        index -= 1  # inside brackets: the line break does not matter
    if index < 0:
        return False
    previous = src.tokens[index]
    if previous.type == tokenize.NAME:
        return not keyword.iskeyword(previous.string)
    if previous.type == tokenize.OP:
        return previous.string in ")]}"
    return previous.type not in _STATEMENT_START


def _breaks_bracketed(src: _Text, start: int, end: int) -> bool:
    """Whether every line break between start and end is inside brackets opened there too,
    so the expression stays valid without the parentheses around it."""
    depth = 0
    for tok in src.between(start, end):
        if tok.type == tokenize.OP and tok.string in "([{":
            depth += 1
        elif tok.type == tokenize.OP and tok.string in ")]}":
            depth -= 1
        elif tok.type in (tokenize.NL, tokenize.COMMENT) and depth == 0:
            return False
    return True


def _word_char(char: str) -> bool:
    return bool(char) and (char.isalnum() or char == "_")


def _apply(text: str, edits: list[_Edit], filename: str) -> str:
    out = []
    position = 0
    for edit in sorted(edits):
        if edit.start < position:
            raise GenerationError(f"{filename}: internal error, overlapping edits at {edit}")
        out += [text[position : edit.start], edit.new]
        position = edit.end
    out.append(text[position:])
    return "".join(out)


# --- rule 1, continued: `with` nested in `with` ------------------------------------------


def merge_nested_withs(text: str, filename: str = "<source>") -> str:
    """``with a:`` whose whole body is ``with b:`` becomes ``with (a, b):``, as ruff's SIM117
    wants: the source could not write it so when one of the two was ``async with``. (ruff's
    own fix gives up when the merged line is too long; ruff format splits ours.)"""
    while True:  # one chain at a time, parsing again: every line after it moves
        src = _Text(text, filename)
        nested = [
            node
            for node in ast.walk(src.tree)
            if isinstance(node, ast.With) and len(node.body) == 1
            if isinstance(node.body[0], ast.With)
        ]
        # Outermost first: a chain is merged whole, from its first `with`.
        for outer in sorted(nested, key=lambda node: node.lineno):
            merged = _merge_withs(src, outer, filename)
            if merged is not None:
                text = merged
                break
        else:
            return text


def _merge_withs(src: _Text, outer: ast.With, filename: str) -> str | None:
    """The text with the chain of ``with`` statements from ``outer`` merged into one, the
    comments after each header moved inside the parentheses, next to its items. None (left
    to ruff, which then names the line) for a comment inside a header, or a body on the
    last header's line."""
    chain = [outer]
    while len(chain[-1].body) == 1 and isinstance(chain[-1].body[0], ast.With):
        chain.append(chain[-1].body[0])
    colons = [_header_colon(src, node) for node in chain]
    if chain[-1].body[0].lineno == colons[-1][0]:
        return None
    parts: list[str] = []
    comments: list[tokenize.TokenInfo] = []
    for index, (node, colon) in enumerate(zip(chain, colons, strict=True)):
        if _comments(src, (node.lineno, 0), colon):
            return None
        # Own-line comments between the previous header and this one, before its items.
        own_lines = _comments(src, (colons[index - 1][0] + 1, 0), (node.lineno, 0)) if index else []
        parts += [tok.string for tok in own_lines]
        parts += [f"{_with_item(src.text, item)}," for item in node.items]
        # A comment after the colon ends the line of the header's last item.
        after = _comments(src, colon, (colon[0] + 1, 0))
        parts[-1] += "".join(f"  {tok.string}" for tok in after)
        comments += own_lines + after
    indent = " " * outer.col_offset
    if comments:  # one item a line, so that each comment keeps its place
        head = [f"{indent}with (\n", *(f"{indent}    {part}\n" for part in parts), f"{indent}):\n"]
    else:  # one line, no trailing comma: ruff format splits it only if it is too long
        head = [f"{indent}with ({', '.join(part.removesuffix(',') for part in parts)}):\n"]
    lines = _lines(src.text)
    end = _extent_end(outer, lines, outer.col_offset)
    by = chain[-1].col_offset - outer.col_offset
    body = _dedent(lines, colons[-1][0] + 1, end, by, src.text)
    merged = "".join([*lines[: outer.lineno - 1], *head, *body, *lines[end:]])
    try:
        ast.parse(merged, filename=filename)
    except SyntaxError:
        return None  # an item that needs its own parentheses: left to ruff, which names it
    return merged


def _comments(src: _Text, start: Position, end: Position) -> list[tokenize.TokenInfo]:
    tokens = src.between(src.offset(start), src.offset(end))
    return [tok for tok in tokens if tok.type == tokenize.COMMENT]


def _header_colon(src: _Text, node: ast.With) -> Position:
    """Where the ``:`` ending a ``with`` header is: the first one outside brackets after its
    last item (a closing parenthesis of ``with (a, b):`` may come first)."""
    last = node.items[-1]
    end = src.node_end(last.optional_vars or last.context_expr)
    depth = 0
    for tok in src.tokens[src.index_at_end[end] + 1 :]:
        if tok.type == tokenize.OP and tok.string in "([{":
            depth += 1
        elif tok.type == tokenize.OP and tok.string in ")]}":
            depth -= 1
        elif tok.type == tokenize.OP and tok.string == ":" and depth <= 0:
            return tok.start
    raise AssertionError("a with statement without its colon")


def _with_item(text: str, item: ast.withitem) -> str:
    expr = ast.get_source_segment(text, item.context_expr)
    target = item.optional_vars
    return f"{expr} as {ast.get_source_segment(text, target)}" if target else f"{expr}"


# --- rule 3: words in comments and strings -------------------------------------------------


@functools.cache
def _names_pattern(names: tuple[str, ...]) -> re.Pattern[str]:
    """NAMES as whole words (built from the current NAMES, so a test may extend it)."""
    alternatives = "|".join(re.escape(name) for name in names)
    return re.compile(rf"\b(?:{alternatives})\b")


# Inside code (a ``span`` or a doctest line) async/await go wherever they start code.
_CODE_ASYNC_RE = re.compile(r"\basync\s+(?=(?:def|with|for)\b)|\bawait\s+(?=[A-Za-z_(\[])")
# In prose only before an unmistakable code shape: "await the lock" stays as it is.
_PROSE_ASYNC_RE = re.compile(
    r"\basync\s+(?=def\s+\w+\s*\(|with\s+[\w.]+\(|for\s+\w+(?:\s*,\s*\w+)*\s+in\s+\w)"
    r"|\bawait\s+(?=[A-Za-z_][\w.]*[(\[]|[A-Za-z_]\w*\.[A-Za-z_])"
)
_CODE_SPAN_RE = re.compile(r"(`+)([^`\n]+?)\1")
_DOCTEST_RE = re.compile(r"^([ \t#]*(?:>>>|\.\.\.) )(.*)$", re.MULTILINE)


def sync_words(text: str) -> str:
    """Rule 3 on the text of a comment or string literal."""
    text = _DOCTEST_RE.sub(lambda m: m[1] + _CODE_ASYNC_RE.sub("", m[2]), text)
    text = _CODE_SPAN_RE.sub(lambda m: m[1] + _CODE_ASYNC_RE.sub("", m[2]) + m[1], text)
    text = _PROSE_ASYNC_RE.sub("", text)
    return _names_pattern(tuple(NAMES)).sub(lambda m: NAMES[m[0]], text)


# --- rule 5: ruff ---------------------------------------------------------------------------


def _ruff() -> list[str]:
    """The ruff next to this Python (the venv's: the version pyproject.toml pins), else the
    module."""
    exe = shutil.which("ruff", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "ruff"]


def _run_ruff(args: Sequence[str], text: str, root: Path) -> subprocess.CompletedProcess[str]:
    # From the root, so the repository's pyproject.toml applies to the generated path.
    return subprocess.run(
        [*_ruff(), *args], input=text, capture_output=True, text=True, cwd=root, check=False
    )


# The lint fixes the transform makes necessary, as ruff check arguments:
RUFF_FIXES = (
    # `[row async for row in rows]` became `[row for row in rows]`: `list(rows)` (C416). Its
    # fix is "unsafe" for a dict comprehension over a mapping; an async iterable is none.
    ["--select", "C416", "--unsafe-fixes"],
    # Imports renamed (I), or left unused by the sync side (F401: asyncio, ASYNC...).
    ["--select", "I,F401"],
)


def ruff_fix_and_format(text: str, generated: str, root: Path = ROOT) -> str:
    """Apply RUFF_FIXES, then format, as ruff would the file at ``generated``."""
    steps = [
        *(["check", "--fix", "--exit-zero", "--quiet", *fix] for fix in RUFF_FIXES),
        ["format", "--quiet"],
    ]
    for step in steps:
        done = _run_ruff([*step, "--stdin-filename", generated, "-"], text, root)
        if done.returncode != 0:
            raise GenerationError(f"{generated}: ruff {step[0]} failed:\n{done.stderr.strip()}")
        text = done.stdout
    return text


def ruff_verify(text: str, generated: str, root: Path = ROOT) -> None:
    """Fail, naming the lines, when the twin would not pass ``ruff check`` (a comment or a
    string too long for the line length, say): fix the source rather than ship that."""
    args = ["check", "--no-fix", "--output-format", "full", "--stdin-filename", generated, "-"]
    done = _run_ruff(args, text, root)
    if done.returncode != 0:
        findings = (done.stdout + done.stderr).strip()
        raise GenerationError(f"{generated}: the generated file fails ruff check:\n{findings}")


# --- command line ---------------------------------------------------------------------------


def _select(paths: Sequence[str], pairs: Sequence[Pair], root: Path) -> list[Pair]:
    """The pairs named by ``paths`` (a source or a generated file, either side); all if none."""
    if not paths:
        return list(pairs)
    chosen = []
    for path in paths:
        # Relative to the current directory, or else to the root.
        named = {Path(path).resolve(), (root / path).resolve()}
        match = [p for p in pairs if named & {root / p.source, root / p.generated}]
        if not match:
            raise GenerationError(f"{path}: not a source (or twin) listed in PAIRS")
        chosen += [p for p in match if p not in chosen]
    return chosen


def _diff(old: str, new: str, pair: Pair, limit: int = 40) -> str:
    lines = list(
        difflib.unified_diff(
            old.splitlines(keepends=True),
            new.splitlines(keepends=True),
            fromfile=f"{pair.generated} (on disk)",
            tofile=f"{pair.generated} (generated from {pair.source})",
        )
    )
    shown = "".join(line if line.endswith("\n") else line + "\n" for line in lines[:limit])
    if len(lines) > limit:
        shown += f"... {len(lines) - limit} more diff lines\n"
    return shown


def _process(pair: Pair, root: Path, check: bool) -> bool:
    """Generate (or check) one twin; False when it was stale, missing or not generated."""
    source, target = root / pair.source, root / pair.generated
    if not source.exists():
        print(f"error: source {pair.source} does not exist (listed in PAIRS)", file=sys.stderr)
        return False
    try:
        fresh = generate(source.read_text(encoding="utf-8"), pair.source, pair.generated, root)
    except GenerationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return False
    current = target.read_text(encoding="utf-8") if target.exists() else None
    if current == fresh:
        return True
    if check:
        if current is None:
            print(f"missing: {pair.generated} (generate it from {pair.source}: `just generate`)")
        else:
            print(f"stale: {pair.generated} (regenerate it from {pair.source}: `just generate`)")
            print(_diff(current, fresh, pair), end="")
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(fresh, encoding="utf-8", newline="\n")
    print(f"generated {pair.generated} from {pair.source}")
    return True


def main(
    argv: Sequence[str] | None = None, *, root: Path = ROOT, pairs: Sequence[Pair] = PAIRS
) -> int:
    """Command line: 0 when every twin is (now) fresh, 1 otherwise, 2 on a usage error."""
    parser = argparse.ArgumentParser(
        description="Generate the sync twins of the async modules (see the module docstring)."
    )
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if a twin is stale or missing"
    )
    parser.add_argument("paths", nargs="*", help="only these sources (default: all of PAIRS)")
    args = parser.parse_args(argv)
    try:
        chosen = _select(args.paths, pairs, root.resolve())
    except GenerationError as exc:
        parser.error(str(exc))
    results = [_process(pair, root, args.check) for pair in chosen]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
