"""Words that start with ``-`` but are values: put each where argparse cannot mistake it.

argparse decides from its shape whether a word is an option, so on its own it
refuses ``set svc.offset -1e3`` ("unrecognized arguments: -1e3"), ``--reason
-x`` ("expected one argument") and, because an optional positional is filled
(with nothing) as soon as KEY is seen, ``set k --by ops -- --verbose``. Before
parsing, :func:`normalize` rewrites the command's words with the parser's own
knowledge of its options, as getopt would read them:

- an option that takes a value takes the next word, whatever it looks like
  (``--reason -x`` becomes ``--reason=-x``);
- after ``--`` every word is positional, wherever the options are;
- a command may name one positional that may start with ``-`` (``set``'s VALUE):
  the word right after KEY is the VALUE unless it is a long option of the
  command (``--type``…) or ``-h``, so ``set k -1e3``, ``set k -v`` store
  ``-1e3`` and ``-v``; elsewhere a dash-word that is no option of the command
  fills it while it is empty (``set k --type float -1e3``).

The result is the options, then ``--`` and the positionals: the same command,
spelled so argparse reads it as meant. Anything it does not recognise is left
for argparse to report.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

__all__ = ["DASH_VALUE_SLOT", "normalize", "top_command"]

# set_defaults(dash_value_slot=N): the Nth positional (0-based) may start with "-".
DASH_VALUE_SLOT = "dash_value_slot"


def _arity(parser: argparse.ArgumentParser) -> dict[str, int]:
    """Option string -> how many words it takes (0 or 1; we have no other kind)."""
    # argparse has no public list of a parser's options; _actions is stable since 2.7.
    taken: dict[str, int] = {}
    for action in parser._actions:
        for option in action.option_strings:
            taken[option] = 0 if action.nargs == 0 else 1
    return taken


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _joined(option: str, value: str) -> str:
    # "--by=x" and "-o=x" are both read by argparse as the option with value x,
    # whatever x looks like (even "--verbose" or "=a=b").
    return f"{option}={value}"


def _known_with_value(word: str, arity: dict[str, int]) -> bool:
    """``--name=value`` or ``-ovalue`` for an option that takes a value."""
    if word.startswith("--"):
        return arity.get(word.split("=", 1)[0]) == 1
    return len(word) > 2 and arity.get(word[:2]) == 1


def _global_words(parser: argparse.ArgumentParser, words: Sequence[str]) -> tuple[list[str], int]:
    """The global options before the command (``--dsn X`` joined as ``--dsn=X``), and
    the index of the word after them: the command, if any."""
    top = _arity(parser)
    before: list[str] = []
    index = 0
    while index < len(words):
        word = words[index]
        if word in top and top[word] == 1 and index + 1 < len(words):
            before.append(_joined(word, words[index + 1]))
            index += 2
        elif word.startswith("-") and word != "-" and word != "--":
            before.append(word)
            index += 1
        else:
            break
    return before, index


def top_command(
    parser: argparse.ArgumentParser, argv: Sequence[str]
) -> tuple[list[str], str] | None:
    """The global options before the command and the command's name, as :func:`normalize`
    finds them with ``parser``'s global options (None: no word left for a command)."""
    words = list(argv)
    before, index = _global_words(parser, words)
    return (before, words[index]) if index < len(words) else None


def normalize(parser: argparse.ArgumentParser, argv: Sequence[str]) -> list[str]:
    """``argv`` spelled so that argparse reads it as a person means it (module docstring)."""
    words = list(argv)
    commands = _commands(parser)
    before, index = _global_words(parser, words)
    if index >= len(words) or words[index] not in commands:
        return words  # no command (or an unknown one): argparse says so
    command = [words[index]]
    sub = commands[words[index]]
    rest = words[index + 1 :]
    # A command with commands of its own (``schema set``): the pair is the command.
    verbs = _commands(sub)
    if rest and rest[0] in verbs:
        command.append(rest[0])
        sub = verbs[rest[0]]
        rest = rest[1:]
    arity = _arity(sub)
    slot = sub.get_default(DASH_VALUE_SLOT)
    options: list[str] = []
    positionals: list[str] = []
    position = 0
    after_key = False  # the previous word was the first positional (KEY)
    while position < len(rest):
        word = rest[position]
        position += 1
        was_after_key, after_key = after_key, False
        if word == "--":
            positionals.extend(rest[position:])
            break
        dashed = word.startswith("-") and word != "-"
        if not dashed:
            positionals.append(word)
            after_key = len(positionals) == 1
            continue
        if (
            slot is not None
            and len(positionals) == slot
            and was_after_key
            and not word.startswith("--")
            and word != "-h"
        ):
            positionals.append(word)  # the word right after KEY is the VALUE
            continue
        if word in arity:
            if arity[word] == 1 and position < len(rest):
                options.append(_joined(word, rest[position]))
                position += 1
            else:
                options.append(word)
            continue
        if _known_with_value(word, arity):
            options.append(word)
            continue
        if slot is not None and len(positionals) == slot:
            positionals.append(word)  # no option of this command: the value it may take
            continue
        options.append(word)  # unknown: argparse reports it
    result = [*before, *command, *options]
    if positionals:
        result += ["--", *positionals]
    return result
