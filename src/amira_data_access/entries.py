"""What the store hands back: frozen, typed records built from database rows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from .codec import DataType, decode_value

__all__ = [
    "ConfigChange",
    "ConfigEntry",
    "ConfigItem",
    "ConfigRevision",
    "Health",
    "entry_from_row",
    "revision_from_row",
]


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
        value=decode_value(value, data_type, key),
        data_type=data_type,
        description=description,
        version=version,
        created_at=created_at,
        updated_at=updated_at,
        updated_by=updated_by,
    )


@dataclass(frozen=True, slots=True)
class ConfigRevision:
    """One change of a key, as recorded in the history.

    ``revision`` is shared by every change made in the same transaction, and
    given at its commit (in commit order, without gaps), when ``changed_at`` is
    too. For a ``delete``, ``value``/``data_type``/``description`` are what the key held.
    """

    key: str
    version: int
    revision: int
    operation: Literal["insert", "update", "delete"]
    value: Any
    data_type: DataType
    description: str | None
    changed_by: str
    changed_at: datetime
    change_reason: str | None


def revision_from_row(row: Sequence[Any]) -> ConfigRevision:
    """Build a :class:`ConfigRevision` from a row in the column order of queries/history.sql."""
    revision, key, version, operation, value, data_type, description, by, at, reason = row
    return ConfigRevision(
        key=key,
        version=version,
        revision=revision,
        operation=operation,
        value=decode_value(value, data_type, key, version=version),
        data_type=data_type,
        description=description,
        changed_by=by,
        changed_at=at,
        change_reason=reason,
    )


@dataclass(frozen=True, slots=True)
class ConfigItem:
    """One key to write in a batch (``set_many``), with its optional type and description."""

    key: str
    value: Any
    data_type: DataType | None = None
    description: str | None = None


@dataclass(frozen=True, slots=True)
class ConfigChange:
    """A committed change, as the change feed read it from the history (without the value)."""

    key: str
    version: int
    operation: Literal["insert", "update", "delete"]
    changed_by: str
    revision: int


@dataclass(frozen=True, slots=True)
class Health:
    """What ``health()`` found (None: not applicable / not known)."""

    reachable: bool
    latency_ms: float
    server_version: str | None
    schema_up_to_date: bool
    pool: dict[str, int]
    listener_connected: bool | None  # None: no change feed in use
    cache_size: int | None  # None: no cache
    cache_age_seconds: float | None  # since the cache's feed last (re)synchronised
    error: str | None = None
    # Why the store works, but not fully: the change feed refused the server, or its
    # heartbeat went unheard (a cache then reads the database); None when all is well.
    degraded: str | None = None
    # Live settings (bind_settings) whose latest values do not validate: the last good
    # model is being served. One line each, naming the keys, never the values.
    settings_errors: tuple[str, ...] = ()
    # A cached DAL with a snapshot file: how old the snapshot is, and whether reads are
    # being answered from it (started while the database was unreachable).
    snapshot_age_seconds: float | None = None
    serving_from_snapshot: bool = False
