"""Everything a store does around its I/O, shared by the sync and async DALs.

Validation and parameter building happen before any connection is touched, so
bad input never reaches the server; row conversion, error translation and the
one log event per operation live here too, so the DALs only do (or await) I/O.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Final

from psycopg.types.json import Jsonb

from .codec import (
    decode_value,
    prepare_value,
    validate_actor,
    validate_description,
    validate_key,
    validate_prefix,
)
from .errors import ConfigurationAccessError, InvalidConfigurationError, translate
from .logging import get_logger, is_enabled

__all__ = [
    "MAX_LIST_LIMIT",
    "Operation",
    "delete_params",
    "list_params",
    "set_params",
    "value_from_row",
]

MAX_LIST_LIMIT: Final = 1000


def _as_is(text: str) -> str:
    # codec.encode_json already produced the JSON text; Jsonb must not encode it again.
    return text


def set_params(
    key: str,
    value: object,
    *,
    data_type: str | None,
    description: str | None,
    updated_by: str,
) -> dict[str, Any]:
    """Validate a write and return the parameters of ``upsert_configuration``."""
    validate_key(key)
    try:
        validate_actor(updated_by)
        validate_description(description)
        prepared = prepare_value(value, data_type)
    except InvalidConfigurationError as exc:
        raise InvalidConfigurationError(f"config.set {key!r}: {exc}") from None
    return {
        "key": key,
        "value": Jsonb(prepared.json_text, dumps=_as_is),
        # None lets the database keep the stored type on update (see the query).
        "data_type": prepared.data_type if data_type is not None else None,
        "inferred_type": prepared.data_type,
        "description": description,
        "updated_by": updated_by,
    }


def delete_params(key: str, *, deleted_by: str) -> dict[str, Any]:
    """Validate a delete and return the parameters of ``delete_configuration``."""
    validate_key(key)
    validate_actor(deleted_by, field="deleted_by")
    return {"key": key}


def list_params(prefix: str, after: str | None, limit: int) -> dict[str, Any]:
    """Validate a listing request and return the parameters of ``list_configurations``."""
    validate_prefix(prefix)
    if after is not None:
        validate_key(after)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIST_LIMIT:
        raise InvalidConfigurationError(f"limit must be an int from 1 to {MAX_LIST_LIMIT}")
    return {"prefix": prefix, "after": after, "limit": limit}


def value_from_row(row: Iterable[Any] | None, default: Any) -> Any:
    """The decoded value of a ``(value, data_type)`` row, or ``default`` when there is no row."""
    if row is None:
        return default
    value, data_type = row
    return decode_value(value, data_type)


_TYPE_MISMATCH_CONSTRAINT: Final = "configurations_value_matches_type"


class Operation:
    """One call on a store: times it, logs one event, translates its failure."""

    __slots__ = ("key", "name", "started")

    def __init__(self, name: str, key: str | None = None) -> None:
        self.name = name
        self.key = key
        self.started = time.perf_counter()

    def _elapsed_ms(self) -> float:
        return round((time.perf_counter() - self.started) * 1000, 3)

    @contextmanager
    def validating(self) -> Iterator[None]:
        """Log refused input (outcome ``invalid``) raised inside the block, and re-raise it."""
        try:
            yield
        except InvalidConfigurationError as exc:
            get_logger().warning(
                self.name,
                key=self.key,
                outcome="invalid",
                error=str(exc),
                duration_ms=self._elapsed_ms(),
            )
            raise

    def done(self, outcome: str = "ok", *, level: str = "debug", **fields: Any) -> None:
        """Log the successful end of the operation (no work at all if nobody would see it)."""
        if not is_enabled(level):
            return
        getattr(get_logger(), level)(
            self.name, key=self.key, outcome=outcome, duration_ms=self._elapsed_ms(), **fields
        )

    def failed(
        self, exc: BaseException, secrets: Iterable[str | None] = ()
    ) -> ConfigurationAccessError:
        """Translate ``exc``, log it once, and return the error to raise ``from exc``."""
        error = translate(exc, operation=self.name, key=self.key, secrets=secrets)
        diag = getattr(exc, "diag", None)
        if getattr(diag, "constraint_name", None) == _TYPE_MISMATCH_CONSTRAINT:
            error = InvalidConfigurationError(
                f"{self.name} {self.key!r}: the value does not match the key's stored data_type; "
                "pass data_type= to change the type"
            )
        get_logger().error(
            self.name,
            key=self.key,
            outcome="error",
            error_type=type(error).__name__,
            error=str(error),
            duration_ms=self._elapsed_ms(),
        )
        return error
