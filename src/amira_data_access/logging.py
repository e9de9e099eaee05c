"""Structured logging: one event per operation, and an opt-in setup for applications.

The library configures nothing globally. Until the application configures
structlog (itself, or with :func:`configure_logging`), events go to the standard
``logging`` logger ``amira_data_access``, where debug events cost a level check
and warnings reach stderr through logging's last-resort handler. Once structlog
is configured, events flow through the application's structlog processors.
"""

from __future__ import annotations

import logging
import sys
from functools import cache
from typing import Any, TextIO

__all__ = ["LOGGER_NAME", "configure_logging", "get_logger"]

LOGGER_NAME = "amira_data_access"

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}
_stdlib = logging.getLogger(LOGGER_NAME)


# structlog is imported only when an event is emitted, or when the application
# imported it: until then it cannot have been configured, and a process that
# logs nothing (amira-config get, a quiet service) does not pay its 37 ms import.
def _configured_structlog() -> Any | None:
    structlog = sys.modules.get("structlog")
    # While another thread is importing it, the module is in sys.modules half made
    # (no is_configured yet): a cache's listener thread logging "connected" as the
    # main thread emits its first event raised AttributeError there (issue 19 fleet).
    is_configured = getattr(structlog, "is_configured", None)
    return structlog if is_configured is not None and is_configured() else None


@cache
def _stdlib_logger() -> Any:
    import structlog

    return structlog.wrap_logger(
        _stdlib,
        wrapper_class=structlog.stdlib.BoundLogger,
        processors=[
            structlog.stdlib.filter_by_level,  # drop below-level events before any formatting
            structlog.processors.KeyValueRenderer(key_order=["event"], sort_keys=True),
        ],
    )


def is_enabled(level: str) -> bool:
    """Whether an event at ``level`` could be emitted at all (cheap: for the hot path).

    Without structlog configured, this is the stdlib logger's own level check,
    and a filtered event then costs nothing more. With structlog configured, a
    filtering bound logger (``make_filtering_bound_logger``, as
    :func:`configure_logging` sets) says what it drops; any other wrapper may
    still emit the event, so say yes. A ``get`` with no event to emit takes the
    DAL's fast path (``AsyncConfigDAL.get``).
    """
    numeric = _LEVELS.get(level, logging.WARNING)
    structlog = _configured_structlog()
    if structlog is not None:
        least = _least_level(structlog.get_config().get("wrapper_class"))
        return least is None or numeric >= least
    return _stdlib.isEnabledFor(numeric)


@cache
def _least_level(wrapper: Any) -> int | None:
    """The level below which structlog's ``wrapper`` drops events, or None if it may not."""
    try:
        return int(wrapper(None, processors=[], context={}).get_effective_level())
    except Exception:  # not a filtering bound logger (stdlib's BoundLogger, a custom one)
        return None


def get_logger() -> Any:
    """The logger library code emits to (structlog's if configured, else stdlib's)."""
    if _configured_structlog() is not None:
        return _structlog_logger()
    return _stdlib_logger()


@cache
def _structlog_logger() -> Any:
    import structlog

    # A lazy proxy: it follows whatever structlog configuration is current when used.
    return structlog.get_logger(LOGGER_NAME)


def configure_logging(
    *, level: int | str = "INFO", json: bool | None = None, stream: TextIO | None = None
) -> None:
    """Configure structlog for an application: JSON lines in production, colours on a terminal.

    ``json=None`` picks JSON unless ``stream`` (default stderr) is a terminal.
    Events below ``level`` are dropped before any work is done on them.
    """
    import structlog

    out = stream if stream is not None else sys.stderr
    numeric_level = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    if not isinstance(numeric_level, int):
        raise ValueError(f"unknown log level {level!r}")
    use_json = not out.isatty() if json is None else json
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=out.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=True,
    )
