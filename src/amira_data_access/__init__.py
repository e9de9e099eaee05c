"""amira-data-access: AMIRA's configuration store on plain PostgreSQL.

Public surface (everything else is private and may change):
"""

from ._retry import RetryPolicy
from .aio import AsyncConfigDAL, AsyncConfigTransaction
from .cache import CachedConfigDAL
from .codec import DATA_TYPES, DataType
from .dal import ConfigDAL, ConfigTransaction, Health
from .entries import ConfigChange, ConfigEntry, ConfigItem, ConfigRevision
from .errors import (
    ConcurrentModificationError,
    ConfigurationAccessError,
    DatabaseConnectionError,
    InvalidConfigurationError,
    MigrationError,
    SchemaNotReadyError,
)
from .logging import configure_logging
from .memory import AsyncInMemoryConfigStore, InMemoryConfigStore
from .settings import DatabaseSettings
from .store import AsyncConfigStore, ConfigStore

# The facade (sync and async), the store Protocols and the in-memory fakes for
# unit tests; what they return; the value types; the errors (all subclasses of
# ConfigurationAccessError); setup helpers for applications.
__all__ = [
    "DATA_TYPES",
    "AsyncConfigDAL",
    "AsyncConfigStore",
    "AsyncConfigTransaction",
    "AsyncInMemoryConfigStore",
    "CachedConfigDAL",
    "ConcurrentModificationError",
    "ConfigChange",
    "ConfigDAL",
    "ConfigEntry",
    "ConfigItem",
    "ConfigRevision",
    "ConfigStore",
    "ConfigTransaction",
    "ConfigurationAccessError",
    "DataType",
    "DatabaseConnectionError",
    "DatabaseSettings",
    "Health",
    "InMemoryConfigStore",
    "InvalidConfigurationError",
    "MigrationError",
    "RetryPolicy",
    "SchemaNotReadyError",
    "configure_logging",
]

__version__ = "0.1.0"
