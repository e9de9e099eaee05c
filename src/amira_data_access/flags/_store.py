"""What every store's ``evaluate`` does with the entry it read: compile once, evaluate.

Each store keeps its flags compiled (schema-checked, turned into closures) per key
and stored version (:class:`FlagCompiler`), so an evaluation costs the rules, not the
schema; the cached stores look the version up in their cache and evaluate without
even copying the document out (:meth:`FlagCompiler.compiled_at`). A stored flag the
schema refuses (raw SQL can store one the table's CHECK lets through) evaluates to
the caller's default with reason ``ERROR``, logged once per version, not once per
evaluation.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from ..errors import InvalidConfigurationError
from ..logging import get_logger
from ._evaluate import CompiledFlag, ErrorCode, FlagEvaluation, compile_flag, error_evaluation

if TYPE_CHECKING:
    from ..entries import ConfigEntry

__all__ = ["FlagCompiler"]

# Flags kept compiled per store; past this many, start again (a store has a few hundred).
_MAX_COMPILED: Final = 10_000


class FlagCompiler:
    """One store's compiled flags: key -> (version, updated_at, the flag or why it is invalid).

    Within one store a key's (version, updated_at) names one document: every change
    bumps the version, and a key deleted and created again restarts at version 1 at
    a later instant. (Process-wide, two databases could repeat a pair: hence per store.)
    """

    __slots__ = ("_compiled",)

    def __init__(self) -> None:
        self._compiled: dict[str, tuple[int, datetime, CompiledFlag | str]] = {}

    def compiled_at(
        self, key: str, version: int, updated_at: datetime
    ) -> CompiledFlag | str | None:
        """The flag compiled from ``key`` at that version, if held (None: compile it)."""
        held = self._compiled.get(key)
        if held is not None and held[0] == version and held[1] == updated_at:
            return held[2]
        return None

    def _compile(self, entry: ConfigEntry) -> CompiledFlag | str:
        found = self.compiled_at(entry.key, entry.version, entry.updated_at)
        if found is not None:
            return found
        try:
            flag: CompiledFlag | str = compile_flag(entry.key, entry.value)
        except InvalidConfigurationError as exc:
            flag = str(exc)
            get_logger().warning("flag.invalid", key=entry.key, version=entry.version, problem=flag)
        if len(self._compiled) >= _MAX_COMPILED:
            self._compiled.clear()
        self._compiled[entry.key] = (entry.version, entry.updated_at, flag)
        return flag

    def evaluate(
        self,
        flag: str,
        entry: ConfigEntry | None,
        context: Mapping[str, Any] | None,
        default: Any,
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
        return self.evaluate_compiled(self._compile(entry), flag, entry.version, context, default)

    @staticmethod
    def evaluate_compiled(
        compiled: CompiledFlag | str,
        flag: str,
        version: int,
        context: Mapping[str, Any] | None,
        default: Any,
    ) -> FlagEvaluation:
        """Evaluate a flag :meth:`compiled_at` returned."""
        if isinstance(compiled, str):
            return error_evaluation(flag, default, ErrorCode.PARSE_ERROR, compiled, version)
        return compiled.evaluate(context, default, version=version)
