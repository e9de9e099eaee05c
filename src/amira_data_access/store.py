# GENERATED from src/amira_data_access/store_async.py by tools/async_to_sync.py: do not edit.
# Edit the source, then run `just generate`.
"""What every configuration store offers: the types to write your service against.

Written once, as async code; ``tools/async_to_sync.py`` generates the sync
form (whose first line says so).

Annotate with :class:`ConfigStore` instead of a concrete class, and
production passes an :class:`~amira_data_access.ConfigDAL` (or its cached
variant) while unit tests pass an
:class:`~amira_data_access.InMemoryConfigStore`::

    def greeting(config: ConfigStore) -> str:
        return config.get("amira.chat.greeting", default="Hello")

:class:`ConfigOperations` is the part a transaction offers too (reads and
writes). The ``if TYPE_CHECKING`` block at the end makes ``mypy --strict``
prove that each store satisfies its Protocol, signatures included.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, Self, TypeVar, runtime_checkable

from .entries import ConfigChange, ConfigEntry, ConfigItem, ConfigRevision, Health
from .feed.streams import ChangeStream, Subscription
from .schemas import SchemaEntry, SchemaViolation

if TYPE_CHECKING:
    from pydantic import BaseModel

    from .flags import FlagEvaluation
    from .live import LiveSettings
    from .migrations import Migration, MigrationStatus

__all__ = ["ConfigOperations", "ConfigStore"]

# ``list`` is also a method name inside the Protocols: spell the types out here.
_EntryList = list[ConfigEntry]
_KeyList = list[str]
_RevisionList = list[ConfigRevision]
_MigrationList = list["Migration"]
_SchemaList = list[SchemaEntry]
_ViolationList = list[SchemaViolation]

T = TypeVar("T")
M = TypeVar("M", bound="BaseModel")


@runtime_checkable
class ConfigOperations(Protocol):
    """Reads and writes of configuration: every store, and a transaction of one.

    Each method is documented on :class:`~amira_data_access.ConfigDAL`.
    """

    def get(self, key: str, default: Any = ...) -> Any: ...

    def get_entry(self, key: str) -> ConfigEntry | None: ...

    def evaluate(
        self, flag: str, context: Mapping[str, Any] | None = None, default: Any = None
    ) -> FlagEvaluation: ...

    def is_enabled(self, flag: str, context: Mapping[str, Any] | None = None) -> bool: ...

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]: ...

    def list(
        self, prefix: str = "", *, after: str | None = None, limit: int = 100
    ) -> _EntryList: ...

    def history(
        self, key: str, *, limit: int = 100, before_version: int | None = None
    ) -> _RevisionList: ...

    def get_at(self, key: str, when: datetime) -> Any: ...

    def snapshot_at(self, when: datetime, prefix: str = "") -> dict[str, Any]: ...

    def set(
        self,
        key: str,
        value: Any,
        *,
        data_type: str | None = None,
        description: str | None = None,
        updated_by: str,
        reason: str | None = None,
        expected_version: int | None = None,
    ) -> ConfigEntry: ...

    def set_default(
        self,
        key: str,
        value: Any,
        *,
        data_type: str | None = None,
        description: str | None = None,
        updated_by: str,
    ) -> ConfigEntry: ...

    def set_many(
        self,
        items: Mapping[str, Any] | Iterable[ConfigItem],
        *,
        updated_by: str,
        reason: str | None = None,
    ) -> _EntryList: ...

    def delete(
        self,
        key: str,
        *,
        deleted_by: str,
        reason: str | None = None,
        expected_version: int | None = None,
    ) -> bool: ...

    def delete_many(
        self,
        keys: Iterable[str],
        *,
        deleted_by: str,
        reason: str | None = None,
        expected_count: int | None = None,
    ) -> _KeyList: ...

    def delete_prefix(
        self,
        prefix: str,
        *,
        deleted_by: str,
        reason: str | None = None,
        expected_count: int | None = None,
    ) -> _KeyList: ...

    def rollback(
        self, key: str, *, to_version: int, updated_by: str, reason: str | None = None
    ) -> ConfigEntry: ...

    def get_as(self, key: str, type_: type[T], default: Any = ...) -> T: ...

    def set_schema(
        self,
        target: str,
        schema: Any,
        *,
        prefix: bool | None = None,
        description: str | None = None,
        updated_by: str,
        force: bool = False,
    ) -> SchemaEntry: ...

    def get_schema(self, target: str, *, prefix: bool | None = None) -> SchemaEntry | None: ...

    def list_schemas(self) -> _SchemaList: ...

    def delete_schema(
        self, target: str, *, prefix: bool | None = None, deleted_by: str
    ) -> bool: ...

    def check_schemas(self, prefix: str = "") -> _ViolationList: ...


@runtime_checkable
class ConfigStore(ConfigOperations, Protocol):
    """A whole store: reads and writes, transactions, defaults, the change feed, health.

    :class:`~amira_data_access.ConfigDAL`, :class:`~amira_data_access.CachedConfigDAL`
    and :class:`~amira_data_access.InMemoryConfigStore` (documented on the DAL).
    """

    @property
    def target(self) -> str: ...

    def open(self) -> None: ...

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc_info: object) -> None: ...

    def transaction(self) -> AbstractContextManager[ConfigOperations]: ...

    def register_defaults(self, defaults: Mapping[str, Any]) -> None: ...

    def ensure_defaults(self, *, updated_by: str) -> _EntryList: ...

    def watch(self, prefix: str = "", *, since_revision: int | None = None) -> ChangeStream: ...

    def subscribe(
        self, callback: Callable[[ConfigChange], None], prefix: str = ""
    ) -> Subscription: ...

    def health(self) -> Health: ...

    def bind_settings(
        self, model: type[M], *, prefix: str, require_valid: bool = True
    ) -> LiveSettings[M]: ...

    def migrate(self) -> _MigrationList: ...

    def migration_status(self) -> MigrationStatus: ...


if TYPE_CHECKING:
    # Static proofs, never run: mypy checks each assignment against the Protocol.
    from .dal import ConfigDAL, ConfigTransaction
    from .feed.cache import CachedConfigDAL
    from .memory import InMemoryConfigStore, InMemoryTransaction

    def _stores(
        dal: ConfigDAL, cached: CachedConfigDAL, memory: InMemoryConfigStore
    ) -> list[ConfigStore]:
        return [dal, cached, memory]

    def _transactions(tx: ConfigTransaction, memory: InMemoryTransaction) -> list[ConfigOperations]:
        return [tx, memory]
