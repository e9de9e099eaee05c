"""What every store's ``evaluate`` does with the entry it read: compile once, evaluate.

A flag is compiled (schema-checked, turned into closures) once per stored version
and kept here, process-wide, so an evaluation from the cache costs the rules, not
the schema. A stored flag the schema refuses (raw SQL can store one the table's
CHECK lets through) evaluates to the caller's default with reason ``ERROR``, and is
logged once per version, not once per evaluation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from ..errors import InvalidConfigurationError
from ..logging import get_logger
from ._evaluate import CompiledFlag, ErrorCode, FlagEvaluation, compile_flag, error_evaluation

if TYPE_CHECKING:
    from ..entries import ConfigEntry

__all__ = ["check_context", "evaluate_entry"]

# Flags kept compiled; past this many, start again (a process has a few hundred flags).
_MAX_COMPILED: Final = 10_000
# key -> (version, the document it was compiled from, the flag or why it is invalid)
_compiled: dict[str, tuple[int, Any, CompiledFlag | str]] = {}


def check_context(context: object) -> Mapping[str, Any] | None:
    """Refuse an evaluation context that is not a mapping (before any I/O)."""
    if context is not None and not isinstance(context, Mapping):
        raise InvalidConfigurationError(
            f"an evaluation context is a mapping (targetingKey and attributes), "
            f"not {type(context).__name__}"
        )
    return context


def _compiled_flag(entry: ConfigEntry) -> CompiledFlag | str:
    held = _compiled.get(entry.key)
    # The cache hands back the same value object until the flag changes: `is` first.
    if (
        held is not None
        and held[0] == entry.version
        and (held[1] is entry.value or held[1] == entry.value)
    ):
        return held[2]
    try:
        flag: CompiledFlag | str = compile_flag(entry.key, entry.value)
    except InvalidConfigurationError as exc:
        flag = str(exc)
        get_logger().warning("flag.invalid", key=entry.key, version=entry.version, problem=flag)
    if len(_compiled) >= _MAX_COMPILED:
        _compiled.clear()
    _compiled[entry.key] = (entry.version, entry.value, flag)
    return flag


def evaluate_entry(
    flag: str, entry: ConfigEntry | None, context: Mapping[str, Any] | None, default: Any
) -> FlagEvaluation:
    """Evaluate the stored ``entry`` of ``flag`` (None: absent) for ``context``."""
    if entry is None:
        return error_evaluation(
            flag, default, ErrorCode.FLAG_NOT_FOUND, f"no flag {flag!r} in the store"
        )
    if entry.data_type != "flag":
        return error_evaluation(
            flag,
            default,
            ErrorCode.TYPE_MISMATCH,
            f"{flag!r} is a {entry.data_type} key, not a flag",
            entry.version,
        )
    compiled = _compiled_flag(entry)
    if isinstance(compiled, str):
        return error_evaluation(flag, default, ErrorCode.PARSE_ERROR, compiled, entry.version)
    return compiled.evaluate(context, default, version=entry.version)
