"""One store under test per parameter: the same contract tests drive every implementation.

The six stores: the DAL, the cached DAL (its change feed live, so reads are
answered from memory) and the in-memory fake, each sync and async.
``subject`` is a :class:`Subject`: a store seen through the sync
:class:`~amira_data_access.ConfigStore` interface (async stores are driven by
:class:`Synced`, which runs each coroutine on one event loop kept for the
test), another client of the same data (to commit while the store's own
transaction is open), and the clock that store writes into its history, so
point-in-time tests take "now" from the store under test. Database-backed stores get a
fresh migrated database per test (the ``dsn`` fixture of tests/conftest.py);
the in-memory ones need no server and use a clock that ticks on every reading.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import psycopg
import pytest

from amira_data_access import (
    AsyncCachedConfigDAL,
    AsyncConfigDAL,
    AsyncInMemoryConfigStore,
    CachedConfigDAL,
    ConfigDAL,
    ConfigStore,
    InMemoryConfigStore,
)

STORES = ["sync_dal", "async_dal", "cached_dal", "async_cached_dal", "memory", "async_memory"]
CACHED = {"cached_dal", "async_cached_dal"}
FEED_DEADLINE = 30.0  # seconds a cached store's feed may take to listen on a loaded machine


class Synced:
    """An async store (or transaction) driven from sync code, each call on ``runner``'s loop."""

    def __init__(self, target: Any, runner: asyncio.Runner) -> None:
        self._target = target
        self._runner = runner

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._target, name)
        if not inspect.iscoroutinefunction(attribute):
            return attribute

        def run(*args: Any, **kwargs: Any) -> Any:
            return self._runner.run(attribute(*args, **kwargs))

        return run

    def watch(self, prefix: str = "", *, since_revision: int | None = None) -> SyncedStream:
        """An async store's change stream, driven from sync code."""
        return SyncedStream(self._target.watch(prefix, since_revision=since_revision), self._runner)

    @contextmanager
    def transaction(self) -> Iterator[Synced]:
        """``async with target.transaction()``, entered and left on the same loop."""
        manager = self._target.transaction()
        tx = self._runner.run(manager.__aenter__())
        try:
            yield Synced(tx, self._runner)
        except BaseException as exc:
            if not self._runner.run(manager.__aexit__(type(exc), exc, exc.__traceback__)):
                raise
        else:
            self._runner.run(manager.__aexit__(None, None, None))


class SyncedStream:
    """An :class:`~amira_data_access.AsyncChangeStream` seen as a ChangeStream."""

    def __init__(self, stream: Any, runner: asyncio.Runner) -> None:
        self._stream = stream
        self._runner = runner

    def next(self, timeout: float | None = None) -> Any:
        return self._runner.run(self._stream.next(timeout))

    def __enter__(self) -> SyncedStream:
        self._runner.run(self._stream.start())
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._runner.run(self._stream.aclose())


class TickingClock:
    """A clock that moves one millisecond at every reading: instants never collide."""

    def __init__(self) -> None:
        self._now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        self._now += timedelta(milliseconds=1)
        return self._now


@dataclass
class Subject:
    """A store under test, seen through the sync interface, and how to read its clock."""

    name: str
    store: ConfigStore
    transaction: Callable[[], AbstractContextManager[ConfigStore]]
    close: Callable[[], None]
    other: ConfigStore  # another client of the same data: a second DAL, or store on the database
    _now: Callable[[], datetime]
    _settle: float  # seconds to wait around a reading of a real server's clock

    def instant(self) -> datetime:
        """An instant strictly between the changes made before and after this call."""
        time.sleep(self._settle)
        now = self._now()
        time.sleep(self._settle)
        return now


def _server_clock(dsn: str) -> Callable[[], datetime]:
    def now() -> datetime:
        # The server's clock is the one changed_at is written with.
        with psycopg.connect(dsn) as conn:
            row = conn.execute("SELECT clock_timestamp()").fetchone()
            assert row is not None
            return row[0]  # type: ignore[no-any-return]

    return now


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "store_options(**options): constructor options of every store under test"
    )


@pytest.fixture(params=STORES)
def subject(request: pytest.FixtureRequest) -> Iterator[Subject]:
    """Each store implementation in turn, empty, behind the same interface.

    ``@pytest.mark.store_options(limits=…)`` passes options to every store's constructor.
    """
    name: str = request.param
    marker = request.node.get_closest_marker("store_options")
    options: dict[str, Any] = dict(marker.kwargs) if marker is not None else {}
    if name in ("memory", "async_memory"):
        clock = TickingClock()
        memory = InMemoryConfigStore(clock=clock, **options)
        # A store of its own on the same database: its writers do not wait for the
        # subject's transaction (as another process would not, on other keys).
        other = InMemoryConfigStore(memory.database)
        if name == "memory":
            yield Subject(name, memory, memory.transaction, memory.close, other, clock, 0.0)
            return
        with asyncio.Runner() as runner:
            synced = Synced(AsyncInMemoryConfigStore(memory.database, **options), runner)
            store = cast(ConfigStore, synced)
            yield Subject(name, store, synced.transaction, synced.close, other, clock, 0.0)
        return
    dsn: str = request.getfixturevalue("dsn")  # only database stores need a server
    # Opened on first use (few tests use it), closed with the subject.
    with closing(ConfigDAL(dsn, max_size=2)) as second:
        if name in ("sync_dal", "cached_dal"):
            cls = CachedConfigDAL if name == "cached_dal" else ConfigDAL
            with cls(dsn, max_size=4, **options) as dal:
                if name in CACHED:
                    # open() waits only so long: on a loaded machine the feed can be later.
                    assert dal._change_feed().wait_connected(FEED_DEADLINE), "no live feed"
                clock = _server_clock(dsn)
                yield Subject(name, dal, dal.transaction, dal.close, second, clock, 0.01)
            return
        with asyncio.Runner() as runner:
            async_cls = AsyncCachedConfigDAL if name == "async_cached_dal" else AsyncConfigDAL
            async_dal = async_cls(dsn, max_size=4, **options)
            runner.run(async_dal.open())
            try:
                if name in CACHED:
                    assert async_dal._change_feed().wait_connected(FEED_DEADLINE), "no live feed"
                synced = Synced(async_dal, runner)
                store = cast(ConfigStore, synced)
                clock = _server_clock(dsn)
                yield Subject(name, store, synced.transaction, synced.close, second, clock, 0.01)
            finally:
                runner.run(async_dal.close())
