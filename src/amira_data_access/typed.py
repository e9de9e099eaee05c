"""Typed single reads: ``get_as(key, int)`` returns an ``int`` or raises, never ``Any``.

The value is checked with pydantic in strict mode (a dependency already, through
pydantic-settings; imported on first use): ``"3"`` is not an ``int``, ``1`` is not
a ``bool``, a JSON ``null`` is not an ``int`` (ask for ``int | None`` to allow it),
and an absent key is an error of its own rather than None.
"""

from __future__ import annotations

from collections.abc import Hashable
from functools import lru_cache
from typing import Any, TypeVar, cast

from .errors import ConfigurationAccessError, InvalidConfigurationError

__all__ = ["MissingConfigurationError", "WrongTypeError", "convert", "missing"]

T = TypeVar("T")


class MissingConfigurationError(ConfigurationAccessError, LookupError):
    """A key asked for with a type (``get_as``) does not exist and has no default."""

    def __init__(self, message: str, key: str) -> None:
        super().__init__(message)
        self.key = key


class WrongTypeError(InvalidConfigurationError, TypeError):
    """The stored value is not of the type asked for (nothing is coerced)."""

    def __init__(self, message: str, key: str) -> None:
        super().__init__(message)
        self.key = key


@lru_cache(maxsize=256)
def _adapter(type_: Any) -> Any:
    from pydantic import TypeAdapter

    return TypeAdapter(type_)


def _type_name(type_: Any) -> str:
    return getattr(type_, "__name__", None) or repr(type_)


def convert(key: str, value: Any, type_: type[T]) -> T:
    """``value`` (stored under ``key``) as a ``type_``, strictly, else :class:`WrongTypeError`.

    The message names the key, the type and the failing location, never the value.
    """
    from pydantic import ValidationError

    try:
        adapter = _adapter(cast(Hashable, type_))
    except TypeError:  # unhashable type: no cache
        from pydantic import TypeAdapter

        adapter = TypeAdapter(type_)
    try:
        result: T = adapter.validate_python(value, strict=True)
    except ValidationError as exc:
        problems = "; ".join(
            f"at {'.'.join(str(p) for p in error['loc']) or '$'}: {error['type']}"
            for error in exc.errors(include_url=False, include_input=False)
        )
        raise WrongTypeError(f"{key!r} is not a {_type_name(type_)} ({problems})", key) from None
    return result


def missing(key: str) -> MissingConfigurationError:
    """The error of a typed read of an absent key without a default."""
    return MissingConfigurationError(
        f"{key!r} does not exist and has no default (pass default=, or register one)", key
    )
