"""Feature flags: ``data_type="flag"`` documents, evaluated locally and deterministically.

The evaluator (:func:`compile_flag`, :class:`CompiledFlag`) is pure: no I/O, the
same answer in every process. Every store's ``evaluate(flag, context, default)``
and ``is_enabled(flag, context)`` read the flag as they read any key (the cached
stores from memory) and evaluate it here. :func:`to_flagd` writes the same flag
for flagd. Needs the ``flags`` extra (``jsonschema``, ``mmh3``).
"""

from __future__ import annotations

from ._bucketing import bucket_of
from ._evaluate import (
    CompiledFlag,
    ErrorCode,
    FlagEvaluation,
    Reason,
    compile_flag,
    parse_semver,
    validate_flag,
    value_kind,
)
from ._flagd import to_flagd
from ._schema import FLAG_SCHEMA, OPERATORS

__all__ = [
    "FLAG_SCHEMA",
    "OPERATORS",
    "CompiledFlag",
    "ErrorCode",
    "FlagEvaluation",
    "Reason",
    "bucket_of",
    "compile_flag",
    "parse_semver",
    "to_flagd",
    "validate_flag",
    "value_kind",
]
