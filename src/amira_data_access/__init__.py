"""amira-data-access: AMIRA's configuration store on plain PostgreSQL.

Public surface (everything else is private and may change):
"""

from .backends.memory_sql import MemoryDatabase
from .backends.postgres import Timeouts
from .codec import DATA_TYPES, DataType
from .core.retry import RetryPolicy
from .dal import ConfigDAL, ConfigTransaction
from .dal_async import AsyncConfigDAL, AsyncConfigTransaction
from .entries import ConfigChange, ConfigEntry, ConfigItem, ConfigRevision, Health
from .errors import (
    AuthenticationError,
    ConcurrentModificationError,
    ConfigurationAccessError,
    ConflictError,
    DatabaseConnectionError,
    DatabaseTimeoutError,
    InvalidConfigurationError,
    MigrationError,
    OutcomeUnknownError,
    PermissionDeniedError,
    SchemaNotReadyError,
    UnexpectedCountError,
)
from .feed.cache import CachedConfigDAL
from .feed.cache_async import AsyncCachedConfigDAL
from .feed.streams import AsyncChangeStream, ChangeStream, Subscription
from .logging import configure_logging
from .memory import InMemoryConfigStore, InMemoryTransaction
from .memory_async import AsyncInMemoryConfigStore, AsyncInMemoryTransaction
from .settings import DatabaseSettings
from .store import ConfigOperations, ConfigStore
from .store_async import AsyncConfigOperations, AsyncConfigStore

# The stores (sync and async: the DAL, the cached DAL, the in-memory fake for unit
# tests), their transactions and the Protocols they satisfy; what they return; the
# value types; the errors (all subclasses of ConfigurationAccessError); setup
# helpers for applications.
__all__ = [
    "DATA_TYPES",
    "AsyncCachedConfigDAL",
    "AsyncChangeStream",
    "AsyncConfigDAL",
    "AsyncConfigOperations",
    "AsyncConfigStore",
    "AsyncConfigTransaction",
    "AsyncInMemoryConfigStore",
    "AsyncInMemoryTransaction",
    "AuthenticationError",
    "CachedConfigDAL",
    "ChangeStream",
    "ConcurrentModificationError",
    "ConfigChange",
    "ConfigDAL",
    "ConfigEntry",
    "ConfigItem",
    "ConfigOperations",
    "ConfigRevision",
    "ConfigStore",
    "ConfigTransaction",
    "ConfigurationAccessError",
    "ConflictError",
    "DataType",
    "DatabaseConnectionError",
    "DatabaseSettings",
    "DatabaseTimeoutError",
    "Health",
    "InMemoryConfigStore",
    "InMemoryTransaction",
    "InvalidConfigurationError",
    "MemoryDatabase",
    "MigrationError",
    "OutcomeUnknownError",
    "PermissionDeniedError",
    "RetryPolicy",
    "SchemaNotReadyError",
    "Subscription",
    "Timeouts",
    "UnexpectedCountError",
    "configure_logging",
]

__version__ = "0.1.0"
