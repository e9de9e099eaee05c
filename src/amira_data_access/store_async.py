"""What every configuration store offers: the types to write your service against.

Written once, as async code; ``tools/async_to_sync.py`` generates the sync
form (whose first line says so).

Annotate with :class:`AsyncConfigStore` instead of a concrete class, and
production passes an :class:`~amira_data_access.AsyncConfigDAL` (or its cached
variant) while unit tests pass an
:class:`~amira_data_access.AsyncInMemoryConfigStore`::

    async def greeting(config: AsyncConfigStore) -> str:
        return await config.get("amira.chat.greeting", default="Hello")

:class:`AsyncConfigOperations` is the part a transaction offers too (reads and
writes). The ``if TYPE_CHECKING`` block at the end makes ``mypy --strict``
prove that each store satisfies its Protocol, signatures included.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, Self, TypeVar, runtime_checkable

from .entries import ConfigChange, ConfigEntry, ConfigItem, ConfigRevision, Health
from .feed.streams import AsyncChangeStream, Subscription
from .schemas import SchemaEntry, SchemaViolation

if TYPE_CHECKING:
    from pydantic import BaseModel

    from .flags import FlagEvaluation
    from .live_async import AsyncLiveSettings
    from .migrations import Migration, MigrationStatus

__all__ = ["AsyncConfigOperations", "AsyncConfigStore"]

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
class AsyncConfigOperations(Protocol):
    """Reads and writes of configuration: every store, and a transaction of one.

    Each method is documented on :class:`~amira_data_access.AsyncConfigDAL`.
    """

    async def get(self, key: str, default: Any = ...) -> Any: ...

    async def get_entry(self, key: str) -> ConfigEntry | None: ...

    async def evaluate(
        self, flag: str, context: Mapping[str, Any] | None = None, default: Any = None
    ) -> FlagEvaluation: ...

    async def is_enabled(self, flag: str, context: Mapping[str, Any] | None = None) -> bool: ...

    async def get_many(self, keys: Iterable[str]) -> dict[str, Any]: ...

    async def list(
        self, prefix: str = "", *, after: str | None = None, limit: int = 100
    ) -> _EntryList: ...

    async def history(
        self, key: str, *, limit: int = 100, before_version: int | None = None
    ) -> _RevisionList: ...

    async def get_at(self, key: str, when: datetime) -> Any: ...

    async def snapshot_at(self, when: datetime, prefix: str = "") -> dict[str, Any]: ...

    async def set(
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

    async def set_default(
        self,
        key: str,
        value: Any,
        *,
        data_type: str | None = None,
        description: str | None = None,
        updated_by: str,
    ) -> ConfigEntry: ...

    async def set_many(
        self,
        items: Mapping[str, Any] | Iterable[ConfigItem],
        *,
        updated_by: str,
        reason: str | None = None,
    ) -> _EntryList: ...

    async def delete(
        self,
        key: str,
        *,
        deleted_by: str,
        reason: str | None = None,
        expected_version: int | None = None,
    ) -> bool: ...

    async def delete_many(
        self,
        keys: Iterable[str],
        *,
        deleted_by: str,
        reason: str | None = None,
        expected_count: int | None = None,
    ) -> _KeyList: ...

    async def delete_prefix(
        self,
        prefix: str,
        *,
        deleted_by: str,
        reason: str | None = None,
        expected_count: int | None = None,
    ) -> _KeyList: ...

    async def rollback(
        self, key: str, *, to_version: int, updated_by: str, reason: str | None = None
    ) -> ConfigEntry: ...

    async def get_as(self, key: str, type_: type[T], default: Any = ...) -> T: ...

    async def set_schema(
        self,
        target: str,
        schema: Any,
        *,
        prefix: bool | None = None,
        description: str | None = None,
        updated_by: str,
        force: bool = False,
    ) -> SchemaEntry: ...

    async def get_schema(
        self, target: str, *, prefix: bool | None = None
    ) -> SchemaEntry | None: ...

    async def list_schemas(self) -> _SchemaList: ...

    async def delete_schema(
        self, target: str, *, prefix: bool | None = None, deleted_by: str
    ) -> bool: ...

    async def check_schemas(self, prefix: str = "") -> _ViolationList: ...


@runtime_checkable
class AsyncConfigStore(AsyncConfigOperations, Protocol):
    """A whole store: reads and writes, transactions, defaults, the change feed, health.

    :class:`~amira_data_access.AsyncConfigDAL`, :class:`~amira_data_access.AsyncCachedConfigDAL`
    and :class:`~amira_data_access.AsyncInMemoryConfigStore` (documented on the DAL).
    """

    @property
    def target(self) -> str: ...

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, *exc_info: object) -> None: ...

    def transaction(self) -> AbstractAsyncContextManager[AsyncConfigOperations]: ...

    def register_defaults(self, defaults: Mapping[str, Any]) -> None: ...

    async def ensure_defaults(self, *, updated_by: str) -> _EntryList: ...

    def watch(
        self, prefix: str = "", *, since_revision: int | None = None
    ) -> AsyncChangeStream: ...

    async def subscribe(
        self, callback: Callable[[ConfigChange], None], prefix: str = ""
    ) -> Subscription: ...

    async def health(self) -> Health: ...

    async def bind_settings(
        self, model: type[M], *, prefix: str, require_valid: bool = True
    ) -> AsyncLiveSettings[M]: ...

    async def migrate(self) -> _MigrationList: ...

    async def migration_status(self) -> MigrationStatus: ...


if TYPE_CHECKING:
    # Static proofs, never run: mypy checks each assignment against the Protocol.
    from .dal_async import AsyncConfigDAL, AsyncConfigTransaction
    from .feed.cache_async import AsyncCachedConfigDAL
    from .memory_async import AsyncInMemoryConfigStore, AsyncInMemoryTransaction

    def _stores(
        dal: AsyncConfigDAL, cached: AsyncCachedConfigDAL, memory: AsyncInMemoryConfigStore
    ) -> list[AsyncConfigStore]:
        return [dal, cached, memory]

    def _transactions(
        tx: AsyncConfigTransaction, memory: AsyncInMemoryTransaction
    ) -> list[AsyncConfigOperations]:
        return [tx, memory]
