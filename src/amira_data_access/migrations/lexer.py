"""A small SQL lexer: where a script's statements end and how each one starts.

Enough of PostgreSQL's lexical rules to find where statements end and how they
start, so that a file is refused *before* anything in it runs. It is not a
parser: the server still parses every statement; this only has to agree with it
about comments, quotes and semicolons. Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import MigrationError

__all__ = ["Statement", "cannot_run_in_transaction", "ends_transaction", "split_statements"]


@dataclass(frozen=True, slots=True)
class Statement:
    """One statement of a script."""

    text: str  # its source, without the terminating semicolon
    line: int  # 1-based line where it starts
    words: tuple[str, ...]  # its unquoted words (keywords, names), lower-case, in order

    @property
    def keyword(self) -> str:
        """The first word, upper-case (``COMMIT``, ``CREATE``…); '' when it has none."""
        return self.words[0].upper() if self.words else ""


class _SqlSyntaxError(MigrationError):
    """The script ends inside a comment, string, quoted name or dollar-quoted body."""


# PostgreSQL's ident_start / ident_cont and dollar-quote delimiters (scan.l).
_WORD = re.compile(r"[A-Za-z_\u0080-\U0010ffff][A-Za-z_0-9$\u0080-\U0010ffff]*")
_DOLLAR_QUOTE = re.compile(r"\$(?:[A-Za-z_\u0080-\U0010ffff][A-Za-z_0-9\u0080-\U0010ffff]*)?\$")


def split_statements(sql: str) -> list[Statement]:
    """Split a script on its top-level semicolons; comments-only and empty statements vanish.

    Skips ``--`` and (nested) ``/* */`` comments, ``'…'`` strings (``''`` inside,
    and backslash escapes in ``E'…'``), ``"…"`` names and ``$tag$…$tag$`` bodies.
    Like psql, a semicolon inside parentheses or inside the ``BEGIN ATOMIC … END``
    body of ``CREATE FUNCTION``/``PROCEDURE`` does not end the statement.
    Raises :class:`MigrationError` when the script ends inside one of those.
    """
    statements: list[Statement] = []
    length = len(sql)
    pos = 0
    start: int | None = None  # where the current statement's first token is
    words: list[str] = []
    parens = 0
    begins = 0  # BEGIN … END depth inside a CREATE FUNCTION/PROCEDURE body

    def finish(end: int) -> None:
        nonlocal start, words, parens, begins
        if start is not None:
            line = sql.count("\n", 0, start) + 1
            statements.append(Statement(sql[start:end].rstrip(), line, tuple(words)))
        start, words, parens, begins = None, [], 0, 0

    while pos < length:
        char = sql[pos]
        if char.isspace():
            pos += 1
            continue
        if sql.startswith("--", pos):
            newline = sql.find("\n", pos)
            pos = length if newline < 0 else newline + 1
            continue
        if sql.startswith("/*", pos):
            pos = _skip_block_comment(sql, pos)
            continue
        if char == ";" and parens == 0 and begins == 0:
            finish(pos)
            pos += 1
            continue
        if start is None:
            start = pos
        if char == "'":
            pos = _skip_string(sql, pos, backslashes=False)
        elif char == '"':
            pos = _skip_quoted_name(sql, pos)
        elif char == "$" and (dollar := _DOLLAR_QUOTE.match(sql, pos)):
            close = sql.find(dollar.group(), dollar.end())
            if close < 0:
                raise _SqlSyntaxError(
                    f"dollar-quoted text opened with {dollar.group()} on line "
                    f"{_line(sql, pos)} is never closed"
                )
            pos = close + len(dollar.group())
        elif word := _WORD.match(sql, pos):
            pos = word.end()
            lowered = word.group().lower()
            if lowered == "e" and sql.startswith("'", pos):  # E'…': backslash escapes
                pos = _skip_string(sql, pos, backslashes=True)
                continue
            words.append(lowered)
            if parens == 0 and _is_routine_definition(words):
                if lowered == "begin" or (lowered == "case" and begins > 0):
                    begins += 1  # CASE … END only matters inside a BEGIN block, as in psql
                elif lowered == "end" and begins > 0:
                    begins -= 1
        elif char == "(":
            parens += 1
            pos += 1
        elif char == ")":
            parens = max(0, parens - 1)
            pos += 1
        else:
            pos += 1  # numbers, operators, $1 parameters, a lone semicolon in parentheses
    finish(length)
    return statements


def _is_routine_definition(words: Sequence[str]) -> bool:
    """``CREATE [OR REPLACE] FUNCTION|PROCEDURE``: psql's test for a BEGIN ATOMIC body."""
    head = list(words[:4])
    if head[:2] == ["create", "or"] and len(head) >= 4 and head[2] == "replace":
        return head[3] in ("function", "procedure")
    return len(head) >= 2 and head[0] == "create" and head[1] in ("function", "procedure")


def _skip_block_comment(sql: str, pos: int) -> int:
    depth = 0
    index = pos
    while index < len(sql):
        if sql.startswith("/*", index):
            depth += 1
            index += 2
        elif sql.startswith("*/", index):
            depth -= 1
            index += 2
            if depth == 0:
                return index
        else:
            index += 1
    raise _SqlSyntaxError(f"the /* comment opened on line {_line(sql, pos)} is never closed")


def _skip_string(sql: str, pos: int, *, backslashes: bool) -> int:
    index = pos + 1
    while index < len(sql):
        char = sql[index]
        if backslashes and char == "\\":
            index += 2
        elif char == "'":
            if sql.startswith("''", index):
                index += 2
            else:
                return index + 1
        else:
            index += 1
    raise _SqlSyntaxError(f"the string opened on line {_line(sql, pos)} is never closed")


def _skip_quoted_name(sql: str, pos: int) -> int:
    index = pos + 1
    while True:
        close = sql.find('"', index)
        if close < 0:
            raise _SqlSyntaxError(
                f'the quoted name (") opened on line {_line(sql, pos)} is never closed'
            )
        if not sql.startswith('""', close):
            return close + 1
        index = close + 2


def _line(sql: str, pos: int) -> int:
    return sql.count("\n", 0, pos) + 1


def ends_transaction(statement: Statement) -> bool:
    """COMMIT, ROLLBACK, END, ABORT, BEGIN, START TRANSACTION, PREPARE TRANSACTION."""
    first, second = (*statement.words[:2], "", "")[:2]
    if first in ("commit", "end", "abort", "begin", "start"):
        return True
    if first == "rollback":
        return second != "to"  # ROLLBACK TO SAVEPOINT stays inside the transaction
    return first == "prepare" and second == "transaction"


def cannot_run_in_transaction(statement: Statement) -> bool:
    """Statements PostgreSQL refuses inside a transaction block (the common ones)."""
    words = statement.words
    first, second = (*words[:2], "", "")[:2]
    if first in ("create", "drop", "reindex") and "concurrently" in words:
        return True  # CREATE/DROP INDEX CONCURRENTLY, REINDEX … CONCURRENTLY
    if first == "alter" and "detach" in words and "concurrently" in words:
        return True  # ALTER TABLE … DETACH PARTITION … CONCURRENTLY
    return first == "vacuum" or (
        first in ("create", "drop") and second in ("database", "tablespace")
    )
