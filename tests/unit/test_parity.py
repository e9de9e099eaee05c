"""Every store answers the same API: the same public methods, with the same signatures.

The six stores (the DAL, the cached DAL and the in-memory fake, each sync and
async) and their transactions are compared with the store Protocols, and each
sync class with its async twin, names mapped the way ``tools/async_to_sync.py``
maps them. A method added to one store and not the others fails here.
"""

from __future__ import annotations

import importlib.util
import inspect
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

from amira_data_access import (
    AsyncCachedConfigDAL,
    AsyncConfigDAL,
    AsyncConfigOperations,
    AsyncConfigStore,
    AsyncConfigTransaction,
    AsyncInMemoryConfigStore,
    AsyncInMemoryTransaction,
    CachedConfigDAL,
    ConfigDAL,
    ConfigOperations,
    ConfigStore,
    ConfigTransaction,
    InMemoryConfigStore,
    InMemoryTransaction,
)

ROOT = Path(__file__).resolve().parents[2]

SYNC_STORES = [ConfigDAL, CachedConfigDAL, InMemoryConfigStore]
ASYNC_STORES = [AsyncConfigDAL, AsyncCachedConfigDAL, AsyncInMemoryConfigStore]
SYNC_TRANSACTIONS = [ConfigTransaction, InMemoryTransaction]
ASYNC_TRANSACTIONS = [AsyncConfigTransaction, AsyncInMemoryTransaction]

# Public members that only some stores have, each for a reason: a DAL talks to a
# server (bind your connection, its pool, the environment's DSN); a transaction
# exposes its connection; the in-memory store exposes the data it holds.
EXTRAS: dict[str, set[str]] = {
    "DAL": {
        "bind",
        "from_env",
        "pool",
        "behind_pooler",
        "read_after",
        "replica_fallbacks",
        "write_token",
    },
    "InMemoryConfigStore": {"database"},
    "ConfigTransaction": {"connection"},
    "InMemoryTransaction": set(),
}


def _tool() -> ModuleType:
    # tools/ is no package: load the script by path, registered in sys.modules first, as
    # its dataclasses need (this test failed when run alone, before test_async_to_sync).
    spec = importlib.util.spec_from_file_location("async_to_sync", ROOT / "tools/async_to_sync.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


NAMES: dict[str, str] = _tool().NAMES
_WORD = re.compile(r"\w+")
_TRANSACTION_CLASS = re.compile(r"\b(InMemoryTransaction|ConfigTransaction)\b")


def _synced(text: str) -> str:
    """``text`` with async names replaced by their sync twins (as the generator does)."""
    return _WORD.sub(lambda match: NAMES.get(match.group(), match.group()), text)


_CONTEXT_METHODS = {"__enter__", "__exit__", "__aenter__", "__aexit__"}


def _public(cls: type) -> set[str]:
    names = {name for name in dir(cls) if not name.startswith("_")}
    return names | {name for name in _CONTEXT_METHODS if hasattr(cls, name)}


def _extras(cls: type) -> set[str]:
    name = _synced(cls.__name__)
    if name.endswith("ConfigDAL"):
        return EXTRAS["DAL"]
    return EXTRAS[name]


def _protocol_members(protocol: type) -> set[str]:
    """The methods and properties the Protocol (and the Protocols it extends) declares."""
    return {
        name
        for klass in protocol.__mro__
        if getattr(klass, "_is_protocol", False) and klass is not object
        for name, member in vars(klass).items()
        if (callable(member) or isinstance(member, property))
        and (not name.startswith("_") or name in _CONTEXT_METHODS)
    }


def _signature(cls: type, name: str) -> str:
    """The member's signature as text, async names mapped to sync, defaults included."""
    member = inspect.getattr_static(cls, name)
    if isinstance(member, property):
        return "property -> " + _synced(str(member.fget.__annotations__.get("return")))
    text = _synced(str(inspect.signature(getattr(cls, name))))
    # transaction() returns the store's own transaction class (each satisfies ConfigOperations).
    return _TRANSACTION_CLASS.sub("<its transaction>", text)


def _is_coroutine(cls: type, name: str) -> bool:
    member = inspect.getattr_static(cls, name)
    return not isinstance(member, property) and inspect.iscoroutinefunction(getattr(cls, name))


@pytest.mark.parametrize(
    ("stores", "protocol"),
    [
        (SYNC_STORES, ConfigStore),
        (ASYNC_STORES, AsyncConfigStore),
        (SYNC_TRANSACTIONS, ConfigOperations),
        (ASYNC_TRANSACTIONS, AsyncConfigOperations),
    ],
    ids=["sync stores", "async stores", "sync transactions", "async transactions"],
)
def test_each_class_has_exactly_the_protocol_and_its_listed_extras(
    stores: list[type], protocol: type
) -> None:
    """No public method exists on one store only, unless listed (with its reason) above."""
    wanted = _protocol_members(protocol)
    for cls in stores:
        assert _public(cls) - _extras(cls) == wanted, cls.__name__


@pytest.mark.parametrize(
    ("stores", "protocol"),
    [
        (SYNC_STORES, ConfigStore),
        (ASYNC_STORES, AsyncConfigStore),
        (SYNC_TRANSACTIONS, ConfigOperations),
        (ASYNC_TRANSACTIONS, AsyncConfigOperations),
    ],
    ids=["sync stores", "async stores", "sync transactions", "async transactions"],
)
def test_every_member_has_the_same_signature_in_every_class(
    stores: list[type], protocol: type
) -> None:
    """Parameters, their kinds, annotations and defaults, and the return type, agree."""
    reference = stores[0]
    for name in _protocol_members(protocol):
        expected = _signature(reference, name)
        for cls in stores[1:]:
            assert _signature(cls, name) == expected, f"{cls.__name__}.{name}"
        assert _is_coroutine(reference, name) == all(_is_coroutine(cls, name) for cls in stores)


@pytest.mark.parametrize(
    ("sync", "async_"),
    list(zip(SYNC_STORES + SYNC_TRANSACTIONS, ASYNC_STORES + ASYNC_TRANSACTIONS, strict=True)),
    ids=lambda cls: cls.__name__,
)
def test_sync_twins_match_their_async_source(sync: type, async_: type) -> None:
    """Each sync class has the async class's members, signatures mapped; none is a coroutine."""
    assert {_synced(name) for name in _public(async_)} == _public(sync)
    for name in _public(async_):
        assert _signature(sync, _synced(name)) == _signature(async_, name), name
        assert not _is_coroutine(sync, _synced(name)), name


def test_the_async_protocol_awaits_what_does_io() -> None:
    """The async stores' I/O methods are coroutines; the few that return at once are not."""
    not_awaited = {"transaction", "watch", "register_defaults", "target"}
    for name in _protocol_members(AsyncConfigStore) - {"__aenter__", "__aexit__"}:
        assert _is_coroutine(AsyncConfigDAL, name) == (name not in not_awaited), name
