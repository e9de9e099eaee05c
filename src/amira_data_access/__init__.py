"""amira-data-access: AMIRA's configuration store on plain PostgreSQL.

Public surface (everything else is private and may change):
"""

from ._retry import RetryPolicy
from .codec import DATA_TYPES, DataType
from .dal import ConfigDAL, ConfigTransaction
from .entries import ConfigEntry, ConfigItem, ConfigRevision
from .errors import (
    ConcurrentModificationError,
    ConfigurationAccessError,
    DatabaseConnectionError,
    InvalidConfigurationError,
    MigrationError,
    SchemaNotReadyError,
)
from .logging import configure_logging
from .settings import DatabaseSettings

# The facade and what it returns; the value types; the errors (all subclasses of
# ConfigurationAccessError); setup helpers for applications.
__all__ = [
    "DATA_TYPES",
    "ConcurrentModificationError",
    "ConfigDAL",
    "ConfigEntry",
    "ConfigItem",
    "ConfigRevision",
    "ConfigTransaction",
    "ConfigurationAccessError",
    "DataType",
    "DatabaseConnectionError",
    "DatabaseSettings",
    "InvalidConfigurationError",
    "MigrationError",
    "RetryPolicy",
    "SchemaNotReadyError",
    "configure_logging",
]

__version__ = "0.1.0"
