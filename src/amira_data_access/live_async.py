"""Typed, live settings: a pydantic model bound to a key prefix, kept current by the change feed.

Written once, as async code; ``tools/async_to_sync.py`` generates the sync
form (whose first line says so).

``await store.bind_settings(ChatSettings, prefix="amira.chat.")`` returns an
:class:`AsyncLiveSettings` whose :attr:`~AsyncLiveSettings.current` is a
validated, frozen ``ChatSettings`` (mypy sees the model's type). Each key under
the prefix is a field: ``amira.chat.max_turns`` fills ``max_turns`` (or the
field whose alias is ``max_turns``); a dotted rest (``amira.chat.limits.tokens``)
or a ``json`` value fills a nested model; an absent key takes the model's
default. On every committed change under the prefix the handle re-reads the
prefix (one statement: one consistent snapshot), validates, swaps the model in
one assignment (a reader holds the old model or the new one, never a mix), and
then calls the ``on_change`` callbacks with ``(old, new)``. A change that does not
validate, or that stored a value its JSON Schema refuses (raw SQL can), keeps the
last good model; it is logged once and shown on
:attr:`~AsyncLiveSettings.error` and in the store's ``health()`` until a valid
change arrives.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar

from ._acompat import Lock, call_soon, current_loop
from .entries import ConfigChange
from .errors import ConfigurationAccessError, DatabaseConnectionError
from .live_model import SettingsValidationError, frozen_model, problems_of, settings_input
from .logging import get_logger
from .schemas import SchemaRegistry
from .secrets import SealedSecret

if TYPE_CHECKING:
    from pydantic import BaseModel

    from .dal_async import _Store
    from .feed.streams import Subscription

__all__ = ["AsyncLiveSettings"]

M = TypeVar("M", bound="BaseModel")

_PAGE: Final = 1000


class _SchemaRefusal(Exception):  # noqa: N818  # internal: never leaves _apply
    def __init__(self, problems: list[str]) -> None:
        self.problems = problems


class AsyncLiveSettings(Generic[M]):
    """A live, validated model of the settings under a key prefix (see the module docstring).

    Made by ``bind_settings()``; :meth:`close` (or closing the store) stops the updates.
    """

    def __init__(self, store: _Store, model: type[M], prefix: str) -> None:
        self._store = store
        self._model = frozen_model(model)
        self.prefix = prefix
        self._current: M | None = None
        self._error: str | None = None
        self.problems: list[str] = []
        self._callbacks: list[Callable[[M, M], None]] = []
        self._invalid_callbacks: list[Callable[[str], None]] = []
        self._subscription: Subscription | None = None
        self._handled_revision = -1
        # One reload at a time, in order: each reads after the previous one applied, so
        # the last to run read the latest state (a slow early read cannot win).
        self._reloading = Lock()
        self._loop: Any = None  # where the feed's thread sends reloads (async only)

    @property
    def current(self) -> M:
        """The last valid model (SettingsValidationError if there never was one)."""
        current = self._current
        if current is None:
            raise SettingsValidationError(
                f"settings {self._model.__name__} under {self.prefix!r} never validated: "
                + "; ".join(self.problems),
                list(self.problems),
            )
        return current

    @property
    def error(self) -> str | None:
        """Why the latest settings did not validate (the last good model is kept), or None."""
        return self._error

    def on_change(self, callback: Callable[[M, M], None]) -> Callable[[M, M], None]:
        """Call ``callback(old, new)`` after each swap (also usable as a decorator)."""
        self._callbacks.append(callback)
        return callback

    def on_invalid(self, callback: Callable[[str], None]) -> Callable[[str], None]:
        """Call ``callback(error)`` when the settings stop validating, or fail differently
        (the last good model stays current); not again for each further change that fails alike."""
        self._invalid_callbacks.append(callback)
        return callback

    async def reload(self) -> bool:
        """Re-read the prefix, validate, swap: True if a new valid model is current."""
        async with self._reloading:
            values: dict[str, Any] = {}
            after: str | None = None
            while True:
                page = await self._store.list(self.prefix, after=after, limit=_PAGE)
                values.update((entry.key, entry.value) for entry in page)
                if len(page) < _PAGE:
                    break
                after = page[-1].key
            # Entries carry a secret sealed; the model gets its plaintext, opened by
            # get_many with the store's keyring (JSON Schemas see it as the table does).
            sealed = [key for key, value in values.items() if isinstance(value, SealedSecret)]
            problems = await self._schema_problems(
                {key: value for key, value in values.items() if key not in sealed}
            )
            if sealed:
                values.update(await self._store.get_many(sealed))
            return self._apply(values, problems)

    async def _schema_problems(self, values: dict[str, Any]) -> list[str]:
        """Values that break their JSON Schemas (raw SQL can store them): not applied."""
        try:
            schemas = await self._store.list_schemas()
        except DatabaseConnectionError:
            return []  # answered from a snapshot: the schemas cannot be read now
        if not schemas:
            return []
        registry = SchemaRegistry()
        registry.load(0, schemas)
        return [
            str(v)
            for key, value in values.items()
            if not isinstance(value, SealedSecret)  # sealed: no schema can judge it here
            for v in registry.violations(key, value)
        ]

    def _apply(self, values: dict[str, Any], refused: list[str]) -> bool:
        from pydantic import ValidationError

        try:
            new = self._model.model_validate(settings_input(self.prefix, values))
            if refused:
                raise _SchemaRefusal(refused)
        except (ValidationError, _SchemaRefusal) as exc:
            problems = (
                exc.problems if isinstance(exc, _SchemaRefusal) else problems_of(self.prefix, exc)
            )
            message = f"{self._model.__name__} under {self.prefix!r}: " + "; ".join(problems)
            if message != self._error:  # said once per distinct failure, not per change
                get_logger().warning(
                    "config.settings", prefix=self.prefix, outcome="invalid", error=message
                )
                self._error, self.problems = message, problems
                self._call(self._invalid_callbacks, message)
            return False
        old, self._current = self._current, new  # one assignment: the swap
        if self._error is not None:
            get_logger().info("config.settings", prefix=self.prefix, outcome="valid_again")
        self._error, self.problems = None, []
        if old is not None and old != new:
            self._call(self._callbacks, old, new)
        return True

    def _call(self, callbacks: list[Callable[..., None]], *args: Any) -> None:
        for callback in list(callbacks):
            try:
                callback(*args)
            except Exception as exc:  # one callback's bug must not stop the others
                get_logger().error(
                    "config.settings",
                    prefix=self.prefix,
                    outcome="callback_failed",
                    error=f"{type(exc).__name__}: {exc}",
                )

    # -- the change feed ---------------------------------------------------------------

    async def _start(self) -> None:
        self._loop = current_loop()
        self._subscription = await self._store.subscribe(self._changed, self.prefix)

    def _changed(self, change: ConfigChange) -> None:
        """On the feed's thread: one reload per revision (a batch is one revision)."""
        if change.revision == self._handled_revision:
            return
        self._handled_revision = change.revision
        call_soon(self._loop, self._reload_logged)

    async def _reload_logged(self) -> bool:
        try:
            return await self.reload()
        except ConfigurationAccessError as exc:
            # The database went away between the change and the read: the feed's
            # resync on reconnect announces the change again.
            get_logger().warning(
                "config.settings", prefix=self.prefix, outcome="reload_failed", error=str(exc)
            )
            return False

    def close(self) -> None:
        """Stop following changes (``current`` stays the last model)."""
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            subscription.close()
