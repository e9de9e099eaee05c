"""An OpenFeature provider backed by a configuration store (best: the cached DAL).

::

    from openfeature import api
    from amira_data_access import CachedConfigDAL
    from amira_data_access.openfeature import AmiraFlagProvider

    api.set_provider(AmiraFlagProvider(CachedConfigDAL.from_env(), owns_store=True))
    client = api.get_client()
    if client.get_boolean_value("checkout.new-flow", False, EvaluationContext("user-42")):
        ...

Every resolution is the store's :meth:`~amira_data_access.ConfigDAL.evaluate` (from
the cache: no round trip), with its reason, variant and ``flag_metadata``
(``version``, and ``revision``: the history revision of that version). Events:
``PROVIDER_READY`` after :meth:`initialize`; ``PROVIDER_CONFIGURATION_CHANGED`` for
each change the change feed delivers under ``prefix`` (``flags_changed`` names the
key), including changes made by other processes; ``PROVIDER_STALE`` when the store's
change feed is down (answers come from the cache, possibly out of date), then
``PROVIDER_READY`` when it is back; ``PROVIDER_ERROR`` when the store cannot be
checked at all. A flag of another type than asked gives ``TYPE_MISMATCH``, an absent
one ``FLAG_NOT_FOUND``, both with the caller's default.

Needs the ``openfeature`` extra (``openfeature-sdk``). Events need a sync store; an
async store (``AsyncCachedConfigDAL``) serves the ``*_async`` resolutions only.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, TypeVar

from openfeature.evaluation_context import EvaluationContext
from openfeature.event import ProviderEventDetails
from openfeature.exception import ErrorCode as OpenFeatureErrorCode
from openfeature.flag_evaluation import FlagResolutionDetails, FlagValueType
from openfeature.flag_evaluation import Reason as OpenFeatureReason
from openfeature.provider import AbstractProvider, Metadata

from .entries import ConfigChange
from .errors import ConfigurationAccessError, first_line
from .flags import FlagEvaluation, Reason

__all__ = ["AmiraFlagProvider"]

T = TypeVar("T")
PROVIDER_NAME: Final = "amira-data-access"


def context_of(evaluation_context: EvaluationContext | None) -> dict[str, Any]:
    """An OpenFeature evaluation context as the store's context mapping."""
    if evaluation_context is None:
        return {}
    context = dict(evaluation_context.attributes)
    if evaluation_context.targeting_key is not None:
        context["targetingKey"] = evaluation_context.targeting_key
    return context


class AmiraFlagProvider(AbstractProvider):
    """OpenFeature provider over a store's ``evaluate`` (see the module docstring).

    ``owns_store``: the provider opens the store in :meth:`initialize` and closes it
    in :meth:`shutdown`. ``prefix``: only changes of keys under it are announced.
    ``check_interval``: seconds between checks of the change feed's state.
    """

    def __init__(
        self,
        store: Any,
        *,
        prefix: str = "",
        owns_store: bool = False,
        check_interval: float = 5.0,
    ) -> None:
        super().__init__()
        self._store = store
        self._is_async = inspect.iscoroutinefunction(getattr(store, "evaluate", None))
        self._prefix = prefix
        self._owns_store = owns_store
        self._check_interval = check_interval
        self._subscription: Any = None
        self._stop = threading.Event()
        self._monitor: threading.Thread | None = None
        self._stale = False
        self._revisions: dict[tuple[str, int], int] = {}  # (key, version) -> revision

    def get_metadata(self) -> Metadata:
        """The provider's name."""
        return Metadata(name=PROVIDER_NAME)

    # -- life cycle -----------------------------------------------------------------

    def initialize(self, evaluation_context: EvaluationContext) -> None:
        """Open the store if owned, subscribe to its changes, watch its feed."""
        if self._is_async:
            return  # an async store is opened (and watched) by its owner
        if self._owns_store:
            self._store.open()
        self._subscription = self._store.subscribe(self._changed, self._prefix)
        self._stop.clear()
        self._monitor = threading.Thread(
            target=self._watch_feed, name="amira-flag-provider", daemon=True
        )
        self._monitor.start()

    def shutdown(self) -> None:
        """Unsubscribe, stop watching, and close the store if owned."""
        self._stop.set()
        if self._monitor is not None:
            self._monitor.join()
            self._monitor = None
        if self._subscription is not None:
            self._subscription.close()
            self._subscription = None
        if self._owns_store and not self._is_async:
            self._store.close()

    def _changed(self, change: ConfigChange) -> None:
        # On the feed's thread, after the cache took the change in: an evaluation
        # made by an event handler already sees the new definition.
        self._revisions[(change.key, change.version)] = change.revision
        self.emit_provider_configuration_changed(
            ProviderEventDetails(
                flags_changed=[change.key],
                metadata={
                    "revision": change.revision,
                    "version": change.version,
                    "operation": change.operation,
                },
            )
        )

    def _watch_feed(self) -> None:
        while not self._stop.wait(self._check_interval):
            self.check_feed()

    def check_feed(self) -> None:
        """Look at the store's change feed once; emit STALE, READY or ERROR on a change."""
        try:
            health = self._store.health()
        except Exception as exc:  # the monitor must not die: report, try again later
            self.emit_provider_error(
                ProviderEventDetails(
                    message=first_line(exc), error_code=OpenFeatureErrorCode.GENERAL
                )
            )
            return
        stale = health.listener_connected is False
        if stale and not self._stale:
            message = "the change feed is down: answers come from the cache"
            self.emit_provider_stale(ProviderEventDetails(message=message))
        elif self._stale and not stale:
            self.emit_provider_ready(ProviderEventDetails(message="the change feed is back"))
        self._stale = stale

    # -- resolution -------------------------------------------------------------------

    def _details(
        self, result: FlagEvaluation, default: Any, want: Callable[[Any], Any] | None
    ) -> FlagResolutionDetails[Any]:
        metadata: dict[str, int | str] = {}
        if result.version is not None:
            metadata["version"] = result.version
            revision = self._revision(result.flag_key, result.version)
            if revision is not None:
                metadata["revision"] = revision
        if result.reason is Reason.ERROR:
            assert result.error_code is not None
            return FlagResolutionDetails(
                default,
                # The store's codes are spelt as OpenFeature's.
                error_code=OpenFeatureErrorCode(result.error_code.value),
                error_message=result.error_message,
                reason=OpenFeatureReason.ERROR,
                flag_metadata=metadata,
            )
        value = result.value
        if want is not None and result.variant is not None:
            converted = want(value)
            if converted is _MISMATCH:
                return FlagResolutionDetails(
                    default,
                    error_code=OpenFeatureErrorCode.TYPE_MISMATCH,
                    error_message=f"flag {result.flag_key!r} has the value {value!r}",
                    reason=OpenFeatureReason.ERROR,
                    flag_metadata=metadata,
                )
            value = converted
        return FlagResolutionDetails(
            value,
            reason=OpenFeatureReason(result.reason.value),
            variant=result.variant,
            flag_metadata=metadata,
        )

    def _revision(self, key: str, version: int) -> int | None:
        """The history revision of a flag's version: from the feed, else asked once."""
        found = self._revisions.get((key, version))
        if found is not None or self._is_async:
            return found
        try:
            newest = self._store.history(key, limit=1)
        except ConfigurationAccessError:
            return None  # unreachable: the revision is left out, the answer stands
        if not newest or newest[0].version != version:
            return None  # changed meanwhile: the feed will tell
        revision: int = newest[0].revision
        self._revisions[(key, version)] = revision
        return revision

    def _resolve(
        self,
        key: str,
        default: Any,
        evaluation_context: EvaluationContext | None,
        want: Callable[[Any], Any] | None = None,
    ) -> FlagResolutionDetails[Any]:
        if self._is_async:
            return _failure(default, "this provider's store is async: use the *_async methods")
        try:
            result = self._store.evaluate(key, context_of(evaluation_context), default)
        except ConfigurationAccessError as exc:
            return _failure(default, first_line(exc))
        return self._details(result, default, want)

    async def _resolve_async(
        self,
        key: str,
        default: Any,
        evaluation_context: EvaluationContext | None,
        want: Callable[[Any], Any] | None = None,
    ) -> FlagResolutionDetails[Any]:
        if not self._is_async:
            return self._resolve(key, default, evaluation_context, want)
        try:
            result = await self._store.evaluate(key, context_of(evaluation_context), default)
        except ConfigurationAccessError as exc:
            return _failure(default, first_line(exc))
        return self._details(result, default, want)

    def resolve_boolean_details(
        self,
        flag_key: str,
        default_value: bool,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[bool]:
        """A boolean flag's value for the context."""
        return self._resolve(flag_key, default_value, evaluation_context)

    def resolve_string_details(
        self, flag_key: str, default_value: str, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[str]:
        """A string flag's value for the context."""
        return self._resolve(flag_key, default_value, evaluation_context)

    def resolve_integer_details(
        self, flag_key: str, default_value: int, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[int]:
        """A number flag's value, which must be a whole number."""
        return self._resolve(flag_key, default_value, evaluation_context, _as_integer)

    def resolve_float_details(
        self,
        flag_key: str,
        default_value: float,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[float]:
        """A number flag's value, as a float."""
        return self._resolve(flag_key, default_value, evaluation_context, float)

    def resolve_object_details(
        self,
        flag_key: str,
        default_value: Sequence[FlagValueType] | Mapping[str, FlagValueType],
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[Sequence[FlagValueType] | Mapping[str, FlagValueType]]:
        """A JSON (object or array) flag's value."""
        return self._resolve(flag_key, default_value, evaluation_context)

    async def resolve_boolean_details_async(
        self,
        flag_key: str,
        default_value: bool,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[bool]:
        """:meth:`resolve_boolean_details`, awaiting an async store."""
        return await self._resolve_async(flag_key, default_value, evaluation_context)

    async def resolve_string_details_async(
        self, flag_key: str, default_value: str, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[str]:
        """:meth:`resolve_string_details`, awaiting an async store."""
        return await self._resolve_async(flag_key, default_value, evaluation_context)

    async def resolve_integer_details_async(
        self, flag_key: str, default_value: int, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[int]:
        """:meth:`resolve_integer_details`, awaiting an async store."""
        return await self._resolve_async(flag_key, default_value, evaluation_context, _as_integer)

    async def resolve_float_details_async(
        self,
        flag_key: str,
        default_value: float,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[float]:
        """:meth:`resolve_float_details`, awaiting an async store."""
        return await self._resolve_async(flag_key, default_value, evaluation_context, float)

    async def resolve_object_details_async(
        self,
        flag_key: str,
        default_value: Sequence[FlagValueType] | Mapping[str, FlagValueType],
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[Sequence[FlagValueType] | Mapping[str, FlagValueType]]:
        """:meth:`resolve_object_details`, awaiting an async store."""
        return await self._resolve_async(flag_key, default_value, evaluation_context)


_MISMATCH: Final = object()


def _as_integer(value: Any) -> Any:
    # A number flag asked as an integer: 3 and 3.0 are 3; 2.5 is not an integer.
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return _MISMATCH


def _failure(default: T, message: str) -> FlagResolutionDetails[T]:
    return FlagResolutionDetails(
        default,
        error_code=OpenFeatureErrorCode.GENERAL,
        error_message=message,
        reason=OpenFeatureReason.ERROR,
    )
