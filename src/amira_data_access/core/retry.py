"""When a failed statement may be run again, and how long to wait first.

Pure policy, shared by the sync and async DALs. A statement is retried only
when running it again cannot change the outcome twice:

* serialization failure (40001) and deadlock (40P01): the server rolled the
  statement back, so any single-statement operation, read or write, may run again;
* a lost connection (no SQLSTATE, class 08, or the server ending the session,
  57P01-57P03): a read may run again; a write
  may already have committed, so it is *not* retried and the caller decides.

Inside a caller's transaction nothing is retried: the transaction is the unit.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import psycopg
import psycopg_pool

__all__ = ["RetryPolicy"]

_ROLLED_BACK = frozenset({"40001", "40P01"})
# The server ended the session: admin/crash shutdown, or not accepting connections yet.
_SESSION_ENDED = frozenset({"57P01", "57P02", "57P03"})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Capped exponential backoff with full jitter; ``attempts`` counts the first try."""

    attempts: int = 3
    base_delay: float = 0.02
    max_delay: float = 0.5

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.base_delay < 0 or self.max_delay < self.base_delay:
            raise ValueError("need attempts >= 1 and 0 <= base_delay <= max_delay")

    def should_retry(self, exc: BaseException, *, attempt: int, idempotent: bool) -> bool:
        """Whether attempt number ``attempt`` (1-based), which raised ``exc``, may be repeated."""
        if attempt >= self.attempts or not isinstance(exc, psycopg.Error):
            return False
        if isinstance(exc, psycopg_pool.PoolTimeout | psycopg_pool.PoolClosed):
            return False  # we already waited the whole timeout, or the DAL is closed
        sqlstate = exc.sqlstate
        if sqlstate in _ROLLED_BACK:
            return True
        connection_lost = isinstance(exc, psycopg.OperationalError) and (
            sqlstate is None or sqlstate.startswith("08") or sqlstate in _SESSION_ENDED
        )
        return connection_lost and idempotent

    def delay(self, attempt: int) -> float:
        """Seconds to sleep before attempt ``attempt + 1``: random in [0, capped backoff]."""
        ceiling = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return random.uniform(0, ceiling)  # noqa: S311  # jitter, not cryptography


NO_RETRY = RetryPolicy(attempts=1)
