"""The OpenFeature provider, through the SDK's public API, on a real PostgreSQL.

``api.set_provider`` with the provider over a cached DAL; flags written by another
client (and by another process, for the change event); details read with
``get_client().get_*_details``.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("openfeature")

from openfeature import api
from openfeature.evaluation_context import EvaluationContext
from openfeature.event import EventDetails, ProviderEvent
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import Reason

from amira_data_access import AsyncCachedConfigDAL, CachedConfigDAL, ConfigDAL
from amira_data_access.openfeature import AmiraFlagProvider
from conftest import TestServer

pytestmark = pytest.mark.integration

CHECKOUT: dict[str, Any] = {
    "enabled": True,
    "variants": {"on": True, "off": False},
    "defaultVariant": "off",
    "rules": [{"if": [{"attribute": "plan", "op": "equals", "value": "pro"}], "variant": "on"}],
    "rollout": [{"variant": "on", "weight": 1}, {"variant": "off", "weight": 3}],
}
TONE: dict[str, Any] = {
    "enabled": True,
    "variants": {"a": "friendly", "b": "formal"},
    "defaultVariant": "b",
}
LIMIT: dict[str, Any] = {
    "enabled": True,
    "variants": {"low": 10, "high": 2.5},
    "defaultVariant": "low",
}
LAYOUT: dict[str, Any] = {"enabled": True, "variants": {"x": {"cols": 2}}, "defaultVariant": "x"}
WAIT = 30.0  # seconds: a bound for a broken test, not a measurement


@pytest.fixture
def writer(dsn: str) -> Iterator[ConfigDAL]:
    with ConfigDAL(dsn, max_size=2) as dal:
        for key, doc in (
            ("checkout", CHECKOUT),
            ("tone", TONE),
            ("limit", LIMIT),
            ("layout", LAYOUT),
        ):
            dal.set(key, doc, data_type="flag", updated_by="ops")
        dal.set("plain", 1, updated_by="ops")
        yield dal


@pytest.fixture
def provider(dsn: str, writer: ConfigDAL) -> Iterator[AmiraFlagProvider]:
    ready = threading.Event()

    def on_ready(details: EventDetails) -> None:
        ready.set()

    api.add_handler(ProviderEvent.PROVIDER_READY, on_ready)
    provider = AmiraFlagProvider(CachedConfigDAL(dsn, max_size=2), owns_store=True)
    try:
        api.set_provider_and_wait(provider)
        assert ready.wait(WAIT), "no PROVIDER_READY event"
        yield provider
    finally:
        api.remove_handler(ProviderEvent.PROVIDER_READY, on_ready)
        api.clear_providers()
        api.shutdown()


def test_boolean_details_carry_reason_variant_and_metadata(
    provider: AmiraFlagProvider, writer: ConfigDAL
) -> None:
    client = api.get_client()
    pro = client.get_boolean_details("checkout", False, EvaluationContext("u1", {"plan": "pro"}))
    assert (pro.value, pro.variant, pro.reason, pro.error_code) == (
        True,
        "on",
        Reason.TARGETING_MATCH,
        None,
    )
    newest = writer.history("checkout", limit=1)[0]
    assert pro.flag_metadata == {"version": 1, "revision": newest.revision}
    split = client.get_boolean_details("checkout", False, EvaluationContext("u1"))
    assert split.reason == Reason.SPLIT
    nobody = client.get_boolean_details("checkout", True, EvaluationContext())
    assert (nobody.value, nobody.reason) == (False, Reason.DEFAULT)
    assert api.get_provider_metadata().name == "amira-data-access"


def test_every_type_and_the_errors(provider: AmiraFlagProvider) -> None:
    client = api.get_client()
    assert client.get_string_details("tone", "x").value == "formal"
    assert client.get_integer_details("limit", 0).value == 10
    assert client.get_float_details("limit", 0.0).value == 10.0
    assert client.get_object_details("layout", {}).value == {"cols": 2}
    mismatch = client.get_boolean_details("tone", True)
    assert (mismatch.value, mismatch.reason, mismatch.error_code) == (
        True,
        Reason.ERROR,
        ErrorCode.TYPE_MISMATCH,
    )
    assert client.get_string_details("limit", "d").error_code == ErrorCode.TYPE_MISMATCH
    assert client.get_boolean_details("plain", False).error_code == ErrorCode.TYPE_MISMATCH
    missing = client.get_boolean_details("nope", True)
    assert (missing.value, missing.error_code) == (True, ErrorCode.FLAG_NOT_FOUND)


def test_a_non_integer_number_is_no_integer(provider: AmiraFlagProvider, writer: ConfigDAL) -> None:
    writer.set("limit", {**LIMIT, "defaultVariant": "high"}, data_type="flag", updated_by="ops")
    client = api.get_client()
    details = client.get_integer_details("limit", 7)
    assert (details.value, details.error_code) == (7, ErrorCode.TYPE_MISMATCH)
    assert client.get_float_details("limit", 0.0).value == 2.5


def test_a_change_in_another_process_is_an_event_and_the_new_answer(
    dsn: str, provider: AmiraFlagProvider
) -> None:
    changed: list[EventDetails] = []
    arrived = threading.Event()

    def on_change(details: EventDetails) -> None:
        changed.append(details)
        arrived.set()

    client = api.get_client()
    client.add_handler(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED, on_change)
    assert client.get_boolean_value("checkout", True, EvaluationContext("u1", {"plan": "pro"}))
    script = (
        "import json, sys\n"
        "from amira_data_access import ConfigDAL\n"
        "with ConfigDAL(sys.argv[1]) as dal:\n"
        "    dal.set('checkout', json.loads(sys.argv[2]), data_type='flag', updated_by='other')\n"
    )
    import json

    off = {**CHECKOUT, "enabled": False}
    subprocess.run([sys.executable, "-c", script, dsn, json.dumps(off)], check=True, timeout=60)
    assert arrived.wait(WAIT), "no PROVIDER_CONFIGURATION_CHANGED event"
    assert changed[0].flags_changed == ["checkout"]
    assert changed[0].metadata["version"] == 2
    after = client.get_boolean_details("checkout", False, EvaluationContext("u1", {"plan": "pro"}))
    assert (after.value, after.reason, after.flag_metadata["version"]) == (
        False,
        Reason.DISABLED,
        2,
    )
    assert after.flag_metadata["revision"] == changed[0].metadata["revision"]


def test_the_async_forms_on_an_async_cached_dal(dsn: str, writer: ConfigDAL) -> None:
    async def scenario() -> None:
        async with AsyncCachedConfigDAL(dsn, max_size=2) as store:
            api.set_provider_and_wait(AmiraFlagProvider(store), domain="async")
            client = api.get_client("async")
            details = await client.get_boolean_details_async(
                "checkout", False, EvaluationContext("u1", {"plan": "pro"})
            )
            assert (details.value, details.reason) == (True, Reason.TARGETING_MATCH)
            mismatch = await client.get_integer_details_async("tone", 3)
            assert mismatch.error_code == ErrorCode.TYPE_MISMATCH
            # The sync forms cannot drive an async store: the default, with why.
            refused = client.get_boolean_details("checkout", False)
            assert (refused.value, refused.error_code) == (False, ErrorCode.GENERAL)

    try:
        asyncio.run(scenario())
    finally:
        api.clear_providers()


def test_stale_while_the_server_is_down_ready_when_back(
    restartable: TestServer, dsn: str, writer: ConfigDAL
) -> None:
    """Feed down: PROVIDER_STALE, answers from the cache; back: PROVIDER_READY."""
    local = restartable.local
    assert local is not None
    seen: list[str | None] = []

    def record(details: EventDetails) -> None:
        seen.append(details.message)

    down = "the change feed is down: answers come from the cache"
    back = "the change feed is back"
    # check_interval: the test checks the feed itself, at the moments it chooses.
    provider = AmiraFlagProvider(
        CachedConfigDAL(dsn, max_size=2, connect_timeout=2), owns_store=True, check_interval=3600
    )
    api.set_provider_and_wait(provider, domain="outage")
    client = api.get_client("outage")
    pro = EvaluationContext("u1", {"plan": "pro"})
    assert client.get_boolean_value("checkout", False, pro) is True  # cached now
    client.add_handler(ProviderEvent.PROVIDER_STALE, record)
    client.add_handler(ProviderEvent.PROVIDER_READY, record)
    # A READY handler added to a ready provider runs at once, on the SDK's own schedule
    # (late under load): wait for it, then forget it.
    _until(lambda: bool(seen))
    seen.clear()
    try:
        local.stop()
        try:
            _until(lambda: (provider.check_feed(), down in seen)[1])
            during = client.get_boolean_details("checkout", False, pro)
            assert (during.value, during.reason) == (True, Reason.TARGETING_MATCH)
        finally:
            local.start()
        _until(lambda: (provider.check_feed(), back in seen)[1])
    finally:
        api.clear_providers()
    assert seen == [down, back]


def _until(check: Any) -> None:
    import time

    deadline = time.monotonic() + WAIT
    while not check():
        if time.monotonic() > deadline:
            pytest.fail("timed out waiting for the provider's event")
        time.sleep(0.05)
