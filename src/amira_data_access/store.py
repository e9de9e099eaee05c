"""What every configuration store offers: the types to write your service against.

Annotate with :class:`ConfigStore` (or :class:`AsyncConfigStore`) instead of a
concrete class, and production passes a :class:`~amira_data_access.dal.ConfigDAL`
(or a transaction of one) while unit tests pass an
:class:`~amira_data_access.memory.InMemoryConfigStore`::

    def greeting(config: ConfigStore) -> str:
        return config.get("amira.chat.greeting", default="Hello")

The ``if TYPE_CHECKING`` block at the end makes ``mypy --strict`` prove that
each store satisfies its Protocol, signatures included.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from .entries import ConfigEntry, ConfigItem, ConfigRevision

__all__ = ["AsyncConfigStore", "ConfigStore"]

# ``list`` is also a method name inside the Protocols: spell the types out here.
_EntryList = list[ConfigEntry]
_RevisionList = list[ConfigRevision]


@runtime_checkable
class ConfigStore(Protocol):
    """Reads and writes of configuration: ConfigDAL, ConfigTransaction, InMemoryConfigStore.

    Each method is documented on :class:`~amira_data_access.dal.ConfigDAL`.
    """

    def get(self, key: str, default: Any = None) -> Any: ...

    def get_entry(self, key: str) -> ConfigEntry | None: ...

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

    def rollback(
        self, key: str, *, to_version: int, updated_by: str, reason: str | None = None
    ) -> ConfigEntry: ...


@runtime_checkable
class AsyncConfigStore(Protocol):
    """:class:`ConfigStore` as coroutines: AsyncConfigDAL, AsyncConfigTransaction,
    AsyncInMemoryConfigStore."""

    async def get(self, key: str, default: Any = None) -> Any: ...

    async def get_entry(self, key: str) -> ConfigEntry | None: ...

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

    async def rollback(
        self, key: str, *, to_version: int, updated_by: str, reason: str | None = None
    ) -> ConfigEntry: ...


if TYPE_CHECKING:
    # Static proofs, never run: mypy checks each assignment against the Protocol.
    from .aio import AsyncConfigDAL, AsyncConfigTransaction
    from .dal import ConfigDAL, ConfigTransaction
    from .memory import AsyncInMemoryConfigStore, InMemoryConfigStore, InMemoryTransaction

    def _sync_stores(
        dal: ConfigDAL, tx: ConfigTransaction, memory: InMemoryConfigStore, mtx: InMemoryTransaction
    ) -> list[ConfigStore]:
        return [dal, tx, memory, mtx]

    def _async_stores(
        dal: AsyncConfigDAL, tx: AsyncConfigTransaction, memory: AsyncInMemoryConfigStore
    ) -> list[AsyncConfigStore]:
        return [dal, tx, memory]
