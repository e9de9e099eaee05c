"""``completion bash|zsh|fish``: shell completion of commands, options, choices and key names.

The script a shell sources calls ``amira-config __complete WORD...`` (the words
after the program name, the last one being completed) and offers what it prints,
one candidate per line. Commands, options and their choices come from the parser
itself, so they cannot drift from it; key names come from the store, read with a
short timeout, and only from a database that is already there: completion never
starts the embedded server, and prints nothing rather than waiting or failing.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Sequence
from typing import Final

from .context import Context, Outcome, Subcommands, add_command

__all__ = ["COMPLETE_COMMAND", "KEY_COMMANDS", "add_commands", "candidates", "complete", "script"]

COMPLETE_COMMAND: Final = "__complete"  # hidden: what the scripts call
# Commands whose first positional is a key (or a key prefix).
KEY_COMMANDS: Final = frozenset(
    {"get", "set", "delete", "list", "history", "diff", "rollback", "export", "watch"}
)
MAX_KEYS: Final = 200  # key names offered at once
KEY_TIMEOUT_MS: Final = 1500  # the whole lookup; libpq's connect_timeout cannot go below 2 s

_BASH = """\
# amira-config completion for bash: source it, or put it in
# ~/.local/share/bash-completion/completions/amira-config
_amira_config() {
    local IFS=$'\\n'
    COMPREPLY=($(amira-config __complete "${COMP_WORDS[@]:1:COMP_CWORD}" 2>/dev/null))
}
complete -o default -F _amira_config amira-config
"""

_ZSH = """\
#compdef amira-config
# amira-config completion for zsh: put it in a folder of $fpath as _amira-config,
# or source it after compinit
_amira_config() {
    local out
    out=$(amira-config __complete "${(@)words[2,CURRENT]}" 2>/dev/null)
    if [[ -n $out ]]; then
        compadd -- "${(@f)out}"
    else
        _files
    fi
}
compdef _amira_config amira-config
"""

_FISH = """\
# amira-config completion for fish: save as ~/.config/fish/completions/amira-config.fish
function __amira_config_complete
    set -l words (commandline -opc)[2..-1] (commandline -ct)
    amira-config __complete $words 2>/dev/null
end
complete -c amira-config -f -a '(__amira_config_complete)'
"""

SCRIPTS: Final = {"bash": _BASH, "zsh": _ZSH, "fish": _FISH}


def add_commands(commands: Subcommands) -> None:
    """Register completion."""
    completion = add_command(
        commands,
        "completion",
        summary="print the shell completion script for bash, zsh or fish",
        examples=[
            'eval "$(amira-config completion bash)"          # in ~/.bashrc',
            "amira-config completion zsh > ~/.zfunc/_amira-config",
            "amira-config completion fish > ~/.config/fish/completions/amira-config.fish",
        ],
        run=cmd_completion,
        outputs=("table",),
        details="Completes commands, options, their choices and the key names in the store.",
    )
    completion.add_argument("shell", choices=sorted(SCRIPTS), metavar="SHELL")


def script(shell: str) -> str:
    """The completion script for ``shell``."""
    return SCRIPTS[shell]


def cmd_completion(ctx: Context) -> Outcome:
    """``completion SHELL``: the script, on stdout."""
    return Outcome({"shell": ctx.args.shell}, script(ctx.args.shell).rstrip("\n"))


# -- answering the shell ---------------------------------------------------------------


def _actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return list(parser._actions)  # argparse offers no public list


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in _actions(parser):
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _option_actions(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {option: action for action in _actions(parser) for option in action.option_strings}


def _starting(prefix: str, words: Iterable[str]) -> list[str]:
    return sorted({word for word in words if word.startswith(prefix)})


def candidates(
    parser: argparse.ArgumentParser, words: Sequence[str], keys: KeyLookup | None = None
) -> list[str]:
    """What may come in place of ``words[-1]`` after ``words[:-1]`` (all after the program)."""
    if not words:
        words = [""]
    *before, current = words
    commands = _subcommands(parser)
    command: str | None = None
    command_at = 0
    options = _option_actions(parser)
    skip = False
    for index, word in enumerate(before):
        if skip:
            skip = False
            continue
        action = options.get(word)
        if action is not None:
            skip = action.nargs != 0
            continue
        if word in commands:
            command, command_at = word, index
            break
    if command is None:
        if current.startswith("-"):
            return _starting(current, options)
        return _starting(current, (name for name in commands if not name.startswith("_")))
    sub = commands[command]
    sub_options = _option_actions(sub)
    previous = before[-1] if before else ""
    previous_action = sub_options.get(previous)
    if (
        previous_action is not None
        and previous_action.nargs != 0
        and previous_action.option_strings
    ):
        if previous_action.choices:
            return _starting(current, (str(choice) for choice in previous_action.choices))
        return []  # a free value (a file, a reason): the shell's default
    if current.startswith("-"):
        return _starting(current, sub_options)
    positionals = [a for a in _actions(sub) if not a.option_strings]
    given = _positionals_given(before[command_at + 1 :], sub_options)
    choices = positionals[given].choices if given < len(positionals) else None
    if choices:
        return _starting(current, (str(choice) for choice in choices))
    if command in KEY_COMMANDS and (given == 0 or command == "get"):
        lookup = keys if keys is not None else KeyLookup(words)
        return lookup.keys(current)
    return []


def _positionals_given(words: Sequence[str], options: dict[str, argparse.Action]) -> int:
    count, skip = 0, False
    for word in words:
        if skip:
            skip = False
        elif word in options:
            skip = options[word].nargs != 0
        elif not word.startswith("-") or word == "-":
            count += 1
    return count


class KeyLookup:
    """Key names from the store the command line names, or none at all."""

    def __init__(self, words: Sequence[str]) -> None:
        self._dsn: str | None = None
        for index, word in enumerate(words[:-1]):
            if word == "--dsn" and index + 1 < len(words) - 1:
                self._dsn = words[index + 1]
            elif word.startswith("--dsn="):
                self._dsn = word.removeprefix("--dsn=")

    def _conninfo(self) -> str | None:
        from psycopg.conninfo import make_conninfo

        from ..settings import conninfo_from_env, database_variables

        dsn = self._dsn
        if dsn is None and database_variables():
            dsn = conninfo_from_env()
        if dsn is None:
            from .server import EmbeddedServer, data_home

            dsn = EmbeddedServer(data_home()).running_dsn()  # never starts it
        if dsn is None:
            return None
        return make_conninfo(
            dsn, connect_timeout=2, options=f"-c statement_timeout={KEY_TIMEOUT_MS}"
        )

    def keys(self, prefix: str) -> list[str]:
        """Up to MAX_KEYS keys starting with ``prefix``; [] when the store does not answer."""
        try:
            conninfo = self._conninfo()
            if conninfo is None:
                return []
            from ..dal import ConfigDAL

            with ConfigDAL(conninfo, min_size=0, max_size=1, connect_timeout=2) as dal:
                return [entry.key for entry in dal.list(prefix, limit=MAX_KEYS)]
        except Exception:  # completion must never print an error or a traceback
            return []


def complete(parser: argparse.ArgumentParser, words: Sequence[str]) -> int:
    """``__complete WORD...``: print the candidates, one per line; always exit 0."""
    import logging

    logging.disable(logging.CRITICAL)  # nothing but candidates on the shell's screen
    for candidate in candidates(parser, words):
        print(candidate)
    return 0
