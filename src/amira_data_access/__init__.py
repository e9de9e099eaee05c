"""amira-data-access: AMIRA's configuration store on plain PostgreSQL.

Public surface (everything else is private and may change). Each name is imported
on first use (PEP 562): ``import amira_data_access`` alone loads nothing heavy, so
``amira-config --help`` and a service's start-up do not pay for psycopg, the pool
and the SQL until they use them (the CLI's start-up was 0.4 s, mostly this).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .backends.memory_sql import MemoryDatabase
    from .backends.postgres import Timeouts
    from .codec import DATA_TYPES, DataType, ValueLimits
    from .core.retry import RetryPolicy
    from .dal import ConfigDAL, ConfigTransaction
    from .dal_async import AsyncConfigDAL, AsyncConfigTransaction
    from .entries import ConfigChange, ConfigEntry, ConfigItem, ConfigRevision, Health
    from .errors import (
        AuthenticationError,
        ChangeFeedUnavailableError,
        ConcurrentModificationError,
        ConfigurationAccessError,
        ConflictError,
        DatabaseConnectionError,
        DatabaseTimeoutError,
        InvalidConfigurationError,
        MigrationError,
        OutcomeUnknownError,
        PermissionDeniedError,
        ReadOnlyServerError,
        SchemaNotReadyError,
        SecretUnavailableError,
        UnexpectedCountError,
        UnreadableValueError,
    )
    from .feed.cache import CachedConfigDAL
    from .feed.cache_async import AsyncCachedConfigDAL
    from .feed.streams import AsyncChangeStream, ChangeStream, Subscription
    from .flags import FlagEvaluation
    from .live import LiveSettings
    from .live_async import AsyncLiveSettings
    from .live_model import SettingsValidationError, validate_or_exit
    from .logging import configure_logging
    from .memory import InMemoryConfigStore, InMemoryTransaction
    from .memory_async import AsyncInMemoryConfigStore, AsyncInMemoryTransaction

    # JSON Schemas, typed reads (issue 16)
    from .schemas import SchemaEntry, SchemaViolation, SchemaViolationError
    from .secrets import Keyring, SealedSecret, rotate_secrets
    from .settings import DatabaseSettings
    from .store import ConfigOperations, ConfigStore
    from .store_async import AsyncConfigOperations, AsyncConfigStore
    from .typed import MissingConfigurationError, WrongTypeError

# Which module each public name lives in.
_EXPORTS: dict[str, str] = {
    "AsyncCachedConfigDAL": ".feed.cache_async",
    "AsyncChangeStream": ".feed.streams",
    "AsyncConfigDAL": ".dal_async",
    "AsyncConfigOperations": ".store_async",
    "AsyncConfigStore": ".store_async",
    "AsyncConfigTransaction": ".dal_async",
    "AsyncInMemoryConfigStore": ".memory_async",
    "AsyncInMemoryTransaction": ".memory_async",
    "AuthenticationError": ".errors",
    "CachedConfigDAL": ".feed.cache",
    "ChangeStream": ".feed.streams",
    "ChangeFeedUnavailableError": ".errors",
    "ReadOnlyServerError": ".errors",
    "ConcurrentModificationError": ".errors",
    "ConfigChange": ".entries",
    "ConfigDAL": ".dal",
    "ConfigEntry": ".entries",
    "ConfigItem": ".entries",
    "ConfigOperations": ".store",
    "ConfigRevision": ".entries",
    "ConfigStore": ".store",
    "ConfigTransaction": ".dal",
    "ConfigurationAccessError": ".errors",
    "ConflictError": ".errors",
    "DATA_TYPES": ".codec",
    "DataType": ".codec",
    "DatabaseConnectionError": ".errors",
    "DatabaseSettings": ".settings",
    "DatabaseTimeoutError": ".errors",
    "FlagEvaluation": ".flags",
    "Health": ".entries",
    "InMemoryConfigStore": ".memory",
    "InMemoryTransaction": ".memory",
    "InvalidConfigurationError": ".errors",
    "MemoryDatabase": ".backends.memory_sql",
    "MigrationError": ".errors",
    "OutcomeUnknownError": ".errors",
    "PermissionDeniedError": ".errors",
    "RetryPolicy": ".core.retry",
    "SchemaNotReadyError": ".errors",
    "Subscription": ".feed.streams",
    "Timeouts": ".backends.postgres",
    "UnexpectedCountError": ".errors",
    "UnreadableValueError": ".errors",
    "ValueLimits": ".codec",
    "configure_logging": ".logging",
    # secrets (data_type "secret"): the keyring, the sealed value, rotation, the error
    "Keyring": ".secrets",
    "SealedSecret": ".secrets",
    "SecretUnavailableError": ".errors",
    "rotate_secrets": ".secrets",
    # JSON Schemas, typed reads (issue 16)
    "MissingConfigurationError": ".typed",
    "SchemaEntry": ".schemas",
    "SchemaViolation": ".schemas",
    "SchemaViolationError": ".schemas",
    "WrongTypeError": ".typed",
    "AsyncLiveSettings": ".live_async",
    "LiveSettings": ".live",
    "SettingsValidationError": ".live_model",
    "validate_or_exit": ".live_model",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(module, __name__), name)
    globals()[name] = value  # the next access is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


# The stores (sync and async: the DAL, the cached DAL, the in-memory fake for unit
# tests), their transactions and the Protocols they satisfy; what they return; the
# value types and limits; the errors (all subclasses of ConfigurationAccessError); setup
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
    "ChangeFeedUnavailableError",
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
    "FlagEvaluation",
    "Health",
    "InMemoryConfigStore",
    "InMemoryTransaction",
    "InvalidConfigurationError",
    "Keyring",
    "MemoryDatabase",
    "MigrationError",
    "OutcomeUnknownError",
    "PermissionDeniedError",
    "ReadOnlyServerError",
    "RetryPolicy",
    "SchemaNotReadyError",
    "SealedSecret",
    "SecretUnavailableError",
    "Subscription",
    "Timeouts",
    "UnexpectedCountError",
    "UnreadableValueError",
    "ValueLimits",
    "configure_logging",
    "rotate_secrets",
]
# JSON Schemas, typed reads (issue 16)
__all__ += [
    "AsyncLiveSettings",
    "LiveSettings",
    "MissingConfigurationError",
    "SchemaEntry",
    "SchemaViolation",
    "SchemaViolationError",
    "SettingsValidationError",
    "WrongTypeError",
    "validate_or_exit",
]

__version__ = "0.1.0"
