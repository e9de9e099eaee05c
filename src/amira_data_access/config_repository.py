"""The seed's module-level API, on one lazily created, process-wide :class:`ConfigDAL`.

Existing AMIRA code keeps working unchanged::

    from amira_data_access.config_repository import set_configuration, get_configuration
    set_configuration(key='default_language', value='en-US', data_type='str',
                      description='Default language for user interface',
                      updated_by='developer-john-doe')
    assert get_configuration(key='default_language') == 'en-US'

The database comes from the environment (``AMIRA_CONFIG_DSN`` or ``DB_*``).
Failures raise :class:`DatabaseConnectionError` (server unreachable, bad
credentials) or another :class:`ConfigurationAccessError`, as the seed describes.
"""

from __future__ import annotations

import atexit
import threading
from typing import Any

from .dal import ConfigDAL
from .entries import ConfigEntry
from .errors import ConfigurationAccessError, DatabaseConnectionError

__all__ = [
    "ConfigurationAccessError",
    "DatabaseConnectionError",
    "delete_configuration",
    "get_configuration",
    "reset_default_dal",
    "set_configuration",
]

_lock = threading.Lock()
_dal: ConfigDAL | None = None


def _default_dal() -> ConfigDAL:
    global _dal  # one pool per process, created on first use
    with _lock:
        if _dal is None:
            _dal = ConfigDAL.from_env()
            atexit.register(_dal.close)
        return _dal


def get_configuration(key: str) -> Any:
    """The value stored under ``key``, or None if there is none."""
    return _default_dal().get(key)


def set_configuration(
    key: str, value: Any, data_type: str, description: str | None, updated_by: str
) -> ConfigEntry:
    """Insert or update ``key`` with its value, data type, description and author."""
    return _default_dal().set(
        key, value, data_type=data_type, description=description, updated_by=updated_by
    )


def delete_configuration(key: str, deleted_by: str = "config_repository") -> bool:
    """Delete ``key``; True if it existed. ``deleted_by`` is recorded as the actor."""
    return _default_dal().delete(key, deleted_by=deleted_by)


def reset_default_dal() -> None:
    """Close the process-wide DAL so the next call reads the environment again (tests, forks)."""
    global _dal
    with _lock:
        if _dal is not None:
            _dal.close()
            atexit.unregister(_dal.close)
            _dal = None
