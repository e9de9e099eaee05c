"""``amira-config flag``: create, enable, disable, rollout, evaluate, show (in process)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from amira_data_access import ConfigDAL
from amira_data_access.cli import main
from amira_data_access.cli.flags import rollout_weights
from amira_data_access.cli.values import UsageError

pytestmark = pytest.mark.integration


@pytest.fixture
def flag_cli(dsn: str, capsys: pytest.CaptureFixture[str]) -> Any:
    def call(*args: str) -> tuple[int, str, str]:
        code = main(["--dsn", dsn, "flag", *args, "--by", "tester"])
        out, err = capsys.readouterr()
        return code, out, err

    return call


def test_create_enable_rollout_evaluate(flag_cli: Any, dsn: str) -> None:
    assert flag_cli("create", "checkout.new-flow")[0] == 0
    code, out, _ = flag_cli("evaluate", "checkout.new-flow", "--context", '{"targetingKey": "u1"}')
    assert (code, out.strip()) == (
        0,
        "checkout.new-flow = null (variant None, DISABLED, version 1)",
    )
    assert flag_cli("enable", "checkout.new-flow")[0] == 0
    assert flag_cli("rollout", "checkout.new-flow", "25%")[0] == 0
    with ConfigDAL(dsn) as dal:
        entry = dal.get_entry("checkout.new-flow")
        assert entry is not None
        assert (entry.data_type, entry.version, entry.updated_by) == ("flag", 3, "tester")
        assert entry.value["enabled"] is True
        assert entry.value["rollout"] == [
            {"variant": "on", "weight": 25},
            {"variant": "off", "weight": 75},
        ]
        expected = dal.evaluate("checkout.new-flow", {"targetingKey": "u7"})
    code, out, _ = flag_cli(
        "evaluate", "checkout.new-flow", "--context", '{"targetingKey": "u7"}', "-o", "json"
    )
    document = json.loads(out)
    assert code == 0
    assert (document["value"], document["variant"], document["reason"], document["version"]) == (
        expected.value,
        expected.variant,
        "SPLIT",
        3,
    )
    assert flag_cli("disable", "checkout.new-flow", "--reason", "incident 7")[0] == 0
    with ConfigDAL(dsn) as dal:
        assert dal.is_enabled("checkout.new-flow", {"targetingKey": "u7"}) is False
        assert dal.history("checkout.new-flow", limit=1)[0].change_reason == "incident 7"
    code, out, _ = flag_cli("show", "checkout.new-flow", "-o", "json")
    assert json.loads(out)["value"]["enabled"] is False


def test_create_from_a_file_and_refusals(flag_cli: Any, tmp_path: Path) -> None:
    good = tmp_path / "tone.json"
    good.write_text(
        json.dumps(
            {"enabled": True, "variants": {"a": "friendly", "b": "formal"}, "defaultVariant": "a"}
        )
    )
    assert flag_cli("create", "chat.tone", "--file", str(good))[0] == 0
    code, _, err = flag_cli("create", "chat.tone", "--file", str(good))
    assert code == 3, err  # exists already: create is insert-only
    code, _, err = flag_cli("rollout", "chat.tone", "10%")
    assert (code, "--variant" in err) == (2, True)  # no single true variant
    assert flag_cli("rollout", "chat.tone", "10%", "--variant", "b")[0] == 0
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"enabled": True}))
    code, _, err = flag_cli("create", "bad.flag", "--file", str(bad))
    assert code == 2
    assert "flag schema" in err
    assert flag_cli("enable", "missing.flag")[0] == 1
    code, _, err = flag_cli("evaluate", "missing.flag")
    assert code == 1
    assert flag_cli("evaluate", "chat.tone", "--context", "[1]")[0] == 2


def test_a_non_flag_key_is_not_enabled(flag_cli: Any, dsn: str) -> None:
    with ConfigDAL(dsn) as dal:
        dal.set("legacy.toggle", True, updated_by="ops")
    code, _, err = flag_cli("enable", "legacy.toggle")
    assert code == 2
    assert "not a flag" in err


@pytest.mark.parametrize(
    ("percent", "weights"),
    [
        ("25%", (25, 75)),
        ("25", (25, 75)),
        ("0%", (0, 100)),
        ("100%", (100, 0)),
        ("12.5%", (125, 875)),
        ("0.01%", (1, 9999)),
    ],
)
def test_rollout_weights(percent: str, weights: tuple[int, int]) -> None:
    got = rollout_weights(percent, "on", "off")
    assert (got[0]["weight"], got[1]["weight"]) == weights


@pytest.mark.parametrize("percent", ["101%", "-1%", "abc", "25%%", "1.23456%"])
def test_rollout_weights_refused(percent: str) -> None:
    with pytest.raises(UsageError):
        rollout_weights(percent, "on", "off")
