"""What ``watch`` shows of a change, and what it says when the feed drops and comes back.

A change from the feed names the key, version, operation, who and the revision,
not the value: :func:`describe_change` reads that version's history row for the
value (through :func:`~.output.visible_value`, where secrets will be masked),
its type and when it was made.

The feed reconnects by itself; :func:`feed_notices` tells the person watching,
on stderr, when it lost the connection and when it is back (and how many changes
it re-read from the history meanwhile). The library offers no callback for
that: this listens to its documented ``config.watch`` log events
(``outcome="disconnected"`` / ``"connected"``) through a structlog processor,
and keeps every other event as silent (or, with ``--debug``, as shown) as before.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .output import visible_value

if TYPE_CHECKING:
    from ..dal import ConfigDAL
    from ..entries import ConfigChange

__all__ = ["ShownChange", "describe_change", "feed_notices"]


@dataclass(frozen=True, slots=True)
class ShownChange:
    """A change as ``watch`` prints it: the feed's fields, then what the history adds."""

    key: str
    version: int
    operation: str
    changed_by: str
    revision: int
    changed_at: datetime | None = None
    data_type: str | None = None
    value: Any = None  # None for a deletion (and when the history could not be read)


def describe_change(dal: ConfigDAL, change: ConfigChange) -> ShownChange:
    """The change with its value, type and time from its history row."""
    from ..errors import ConfigurationAccessError

    shown = {f.name for f in dataclasses.fields(ShownChange)}
    base = ShownChange(
        **{f.name: getattr(change, f.name) for f in dataclasses.fields(change) if f.name in shown}
    )
    try:
        rows = dal.history(change.key, limit=1, before_version=change.version + 1)
    except ConfigurationAccessError:
        return base  # shown without its value rather than not at all
    if not rows or rows[0].version != change.version:
        return base
    row = rows[0]
    value = None
    if row.operation != "delete":
        value = visible_value(row.key, row.value, row.data_type)
    return dataclasses.replace(
        base, changed_at=row.changed_at, data_type=row.data_type, value=value
    )


def _drop(*_: Any) -> Any:
    import structlog

    raise structlog.DropEvent


@contextlib.contextmanager
def feed_notices(notice: Callable[[str], None]) -> Iterator[None]:
    """Call ``notice`` with a line when the change feed loses its connection (once per
    outage, however many attempts it makes) and when it is back."""
    import structlog

    was_configured = structlog.is_configured()
    previous = structlog.get_config()
    state = {"connected": False, "lost": False}

    def hook(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> Any:
        if event.get("event") == "config.watch":
            outcome = event.get("outcome")
            if outcome == "disconnected" and not state["lost"]:
                state["lost"] = True
                why = event.get("error") or "lost"
                notice(f"watch: connection lost ({why}); reconnecting…")
            elif outcome == "connected":
                if state["lost"]:
                    missed = event.get("resynced")
                    again = f"; {missed} change(s) made meanwhile re-read" if missed else ""
                    notice(f"watch: reconnected{again}")
                state["connected"], state["lost"] = True, False
        return event

    if was_configured:  # --debug: the events are shown as before, after the hook
        structlog.configure(processors=[hook, *previous["processors"]])
    else:  # otherwise silent, as the CLI keeps the library (only the hook sees them)
        structlog.configure(
            processors=[hook, _drop],
            wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
            cache_logger_on_first_use=False,
        )
    try:
        yield
    finally:
        if was_configured:
            structlog.configure(**previous)
        else:
            structlog.reset_defaults()
