"""What the store hands back: frozen, typed records built from database rows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .codec import DataType, decode_value

__all__ = ["ConfigEntry", "entry_from_row"]


@dataclass(frozen=True, slots=True)
class ConfigEntry:
    """One configuration key as stored, with its audit fields."""

    key: str
    value: Any
    data_type: DataType
    description: str | None
    version: int
    created_at: datetime
    updated_at: datetime
    updated_by: str


def entry_from_row(row: Sequence[Any]) -> ConfigEntry:
    """Build a :class:`ConfigEntry` from a row in the column order of queries/configurations.sql."""
    key, value, data_type, description, version, created_at, updated_at, updated_by = row
    return ConfigEntry(
        key=key,
        value=decode_value(value, data_type),
        data_type=data_type,
        description=description,
        version=version,
        created_at=created_at,
        updated_at=updated_at,
        updated_by=updated_by,
    )
