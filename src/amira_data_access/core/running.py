"""How an operation runs, without doing any I/O itself.

An operation (see :mod:`.operations`) is a generator: it validates its
arguments, ``yield``\\ s a :class:`~.statements.Statement` whenever it needs the
database and receives the statement's rows back, and returns its result. The
stores drive it (see ``_Operations._run`` in ``dal_async.py``): they run each
statement on a connection or on the in-memory twin, sleep when asked
(:class:`Sleep`), and throw a failed statement's error back in.

Everything around the I/O lives here once, for every store:

* :class:`Operation` (``with ctx.operation(...) as op:``) times the call, logs
  its one event (``outcome``, ``duration_ms``, fields), and turns a failure into
  our hierarchy through :func:`~amira_data_access.errors.translate`, the only
  translation there is;
* :meth:`Operation.sql` sends a statement and retries it as the
  :class:`~.retry.RetryPolicy` allows (logging ``outcome="retry"``), asking the
  store to :class:`Sleep` between attempts.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Concatenate, Final, ParamSpec, Protocol, TypeVar

import psycopg_pool

from ..codec import DEFAULT_LIMITS, ValueLimits
from ..entries import ConfigEntry
from ..errors import (
    BACKEND_ERRORS,
    ConfigurationAccessError,
    ConflictError,
    DatabaseConnectionError,
    DatabaseUnreachable,
    InvalidConfigurationError,
    OutcomeUnknownError,
    SecretUnavailableError,
    first_line,
    scrub,
    translate,
)
from ..logging import get_logger, is_enabled
from ..schemas import SchemaRegistry
from ..secrets import Keyring, SealedSecret
from .retry import NO_RETRY, RetryPolicy
from .statements import Statement, Statements, statement

__all__ = [
    "UNSET",
    "Context",
    "Operation",
    "Sleep",
    "Step",
    "Steps",
    "WriteObserver",
    "mark_logged",
]

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


class _Unset:
    """The type of :data:`UNSET`."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final[Any] = _Unset()  # "the caller passed no default" (None is a valid default)


@dataclass(frozen=True, slots=True)
class Sleep:
    """A step: wait this long before the operation goes on (backoff between attempts)."""

    seconds: float


Step = Statement[Any] | Sleep
# What an operation is to the store driving it: it yields steps, is sent their
# results, and returns its answer.
Steps = Generator[Step, Any, T]


class WriteObserver(Protocol):
    """Told of every change an operation made (the caches: read-your-writes)."""

    def written(self, entry: ConfigEntry) -> None:
        """``entry`` is what the key holds now."""

    def removed(self, key: str) -> None:
        """``key`` was deleted (or changed in a way this process does not hold)."""


@dataclass(slots=True)
class Context:
    """What an operation may rely on from the store running it."""

    retry: RetryPolicy = NO_RETRY
    secrets: tuple[str, ...] = ()  # scrubbed from every message and log line
    defaults: Mapping[str, Any] = field(default_factory=dict)  # register_defaults()
    observer: WriteObserver | None = None
    limits: ValueLimits = DEFAULT_LIMITS  # how large and deep a value written may be
    keyring: Keyring | None = None  # seals and opens data_type "secret" (None: cannot)
    # The JSON Schemas writes are checked against; shared with derived contexts.
    schemas: SchemaRegistry = field(default_factory=SchemaRegistry)

    def operation(self, name: str, key: str | None = None, *, level: str = "debug") -> Operation:
        """The one log event (and error translation) of a call: ``with ctx.operation(…) as op``."""
        return Operation(self, name, key, level)

    def reveal(self, key: str, value: Any) -> Any:
        """``value`` (read for ``key``) as ``get`` returns it: a secret opened with the keyring.

        Raises :class:`~amira_data_access.errors.SecretUnavailableError` for a secret
        without a keyring, or that does not open with it.
        """
        if value.__class__ is not SealedSecret:
            return value
        if self.keyring is None:
            raise SecretUnavailableError(
                f"{key!r} is a secret and this store was given no keyring "
                "(keyring=Keyring(...), or AMIRA_CONFIG_SECRET_KEYS in the environment)"
            )
        return self.keyring.open(key, value)

    def derive(self, **changes: Any) -> Context:
        """This context with some fields replaced (a transaction's: no retries, its observer)."""
        return dataclasses.replace(self, **changes)


_LOGGED: Final = "_amira_logged"  # set on an exception once an Operation logged it


def mark_logged(error: BaseException) -> BaseException:
    """Say ``error`` needs no log event of its own (e.g. its cause's change of state was logged)."""
    setattr(error, _LOGGED, True)
    return error


class Operation:
    """One call on a store: its log event, its retries, and its failure, translated once.

    Use it as a context manager around the whole operation; inside, set
    :attr:`outcome` and :meth:`note` fields for the event, and send statements
    with :meth:`sql`. Leaving the block logs one event: ``done`` at the
    operation's level, refused input at warning (``outcome="invalid"``), a
    conflict at info, any other failure at error. A backend error that leaves
    the block is translated and raised ``from`` the original.
    """

    __slots__ = (
        "_context",
        "_fields",
        "_sent",
        "_started",
        "_write_in_flight",
        "key",
        "level",
        "name",
        "outcome",
    )

    def __init__(self, context: Context, name: str, key: str | None, level: str) -> None:
        self._context = context
        self.name = name
        self.key = key
        self.level = level
        self.outcome = "ok"
        self._fields: dict[str, Any] | None = None
        self._sent = False  # a statement went out: a refusal is the server's, not validation
        self._write_in_flight = False  # a write was handed over and no answer came back yet
        self._started = time.perf_counter()

    # -- what the operation tells us -----------------------------------------------------

    def note(self, **fields: Any) -> None:
        """Add fields to the operation's log event."""
        if self._fields is None:
            self._fields = fields
        else:
            self._fields.update(fields)

    def wrote(self, entry: ConfigEntry) -> None:
        """A change went through: ``entry`` is what the key holds now (read-your-writes)."""
        observer = self._context.observer
        if observer is not None:
            observer.written(entry)

    def removed(self, key: str) -> None:
        """A key was deleted, or changed to something this process does not hold."""
        observer = self._context.observer
        if observer is not None:
            observer.removed(key)

    # -- statements -------------------------------------------------------------------

    def sql(
        self,
        query: Callable[Concatenate[Statements, Any, P], R],
        /,
        *args: P.args,
        **params: P.kwargs,
    ) -> Generator[Step, Any, R]:
        """Send ``query`` with ``params``; return its rows. Retried per the store's policy."""
        return self._send(statement(query, *args, **params))

    def sql_resend_safe(
        self,
        query: Callable[Concatenate[Statements, Any, P], R],
        /,
        *args: P.args,
        **params: P.kwargs,
    ) -> Generator[Step, Any, R]:
        """:meth:`sql` for a write this operation can safely send again after a lost
        connection, because its result reads the same whether or not the first try committed."""
        return self._send(statement(query, *args, **params)._replace(resend_safe=True))

    def _send(self, sent: Statement[R]) -> Generator[Step, Any, R]:
        policy = self._context.retry
        attempt = 1
        self._sent = True
        while True:
            try:
                self._write_in_flight = not sent.read_only
                result: R = yield sent
            except BACKEND_ERRORS as exc:
                if not policy.should_retry(exc, attempt=attempt, idempotent=sent.resend_safe):
                    raise
                self._log_retry(exc, attempt)
                self._write_in_flight = False  # retried: only ever for a write that did not commit
                yield Sleep(policy.delay(attempt))
                attempt += 1
            else:
                self._write_in_flight = False
                return result

    # -- the event ---------------------------------------------------------------------

    def __enter__(self) -> Operation:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc is None:
            if is_enabled(self.level):
                self._log(self.level, self.outcome, self._fields or {})
            return
        if not isinstance(exc, Exception) or getattr(exc, _LOGGED, False):
            return  # GeneratorExit, cancellation, or logged by the operation that raised it
        if isinstance(exc, BACKEND_ERRORS):
            error = translate(exc, operation=self.name, key=self.key, secrets=self._context.secrets)
            if isinstance(exc, DatabaseUnreachable):
                # Known down: that was logged when it went down; each refused call is not.
                self._log("debug", "unreachable", {"error": str(error)})
                raise mark_logged(error) from exc
            if self._write_in_flight and _lost_after_sending(exc, error):
                error = OutcomeUnknownError(
                    f"{self.name} {self.key!r}: the connection was lost while the write was in "
                    "flight, so it may or may not have been applied (outcome unknown): read it "
                    f"back before writing again ({scrub(first_line(exc), self._context.secrets)})"
                )
            self._log_error(error)
            raise error from exc
        if isinstance(exc, ConfigurationAccessError):
            self._log_failure(exc)
        elif self._sent and isinstance(exc, _SHAPE_ERRORS):
            # Rows not shaped as the query's SQL says: seen through a transaction-mode
            # pooler with prepared statements on (another statement's rows under our
            # name). Never let the raw ValueError out of the hierarchy.
            detail = scrub(first_line(exc), self._context.secrets)
            subject = self.name if self.key is None else f"{self.name} {self.key!r}"
            error = ConfigurationAccessError(
                f"{subject}: the database answered with rows not shaped like "
                f"this query's ({type(exc).__name__}: {detail}); "
                "behind a pooler in transaction mode, turn prepared statements off "
                "(prepared_statements=False)"
            )
            self._log_error(error)
            raise error from exc

    def _log_failure(self, error: ConfigurationAccessError) -> None:
        fields = self._fields or {}
        if isinstance(error, InvalidConfigurationError) and not self._sent:
            self._log("warning", "invalid", {"error": str(error)})
        elif isinstance(error, ConflictError):
            self._log("info", "conflict", {**fields, "error": str(error)})
        elif isinstance(error, InvalidConfigurationError) and self.outcome != "ok":
            # Refused by the operation after reading (e.g. no such version): an answer,
            # not a failure of the store.
            self._log("info", self.outcome, {**fields, "error": str(error)})
        else:
            self._log_error(error)
        setattr(error, _LOGGED, True)

    def _log_error(self, error: ConfigurationAccessError) -> None:
        self._log("error", "error", {"error_type": type(error).__name__, "error": str(error)})
        setattr(error, _LOGGED, True)

    def _log(self, level: str, outcome: str, fields: Mapping[str, Any]) -> None:
        duration_ms = round((time.perf_counter() - self._started) * 1000, 3)
        getattr(get_logger(), level)(
            self.name, key=self.key, outcome=outcome, duration_ms=duration_ms, **fields
        )

    def _log_retry(self, exc: BaseException, attempt: int) -> None:
        get_logger().warning(
            self.name,
            key=self.key,
            outcome="retry",
            attempt=attempt,
            sqlstate=getattr(exc, "sqlstate", None),
            error=scrub(first_line(exc), self._context.secrets),
        )


# What decoding rows of an unexpected shape raises (unpacking, indexing, converting).
_SHAPE_ERRORS: Final = (ValueError, TypeError, IndexError, KeyError, AttributeError)


def _lost_after_sending(exc: BaseException, error: ConfigurationAccessError) -> bool:
    """Whether ``exc`` (translated as ``error``) may have struck after the server got the write.

    A pool timeout or a closed pool mean no connection was ever had: nothing was sent.
    """
    if isinstance(exc, psycopg_pool.PoolTimeout | psycopg_pool.PoolClosed):
        return False
    return type(error) is DatabaseConnectionError
