"""amira-config and secrets: masked in every output, plaintext only with --reveal, rotation.

In-process (``cli.main``), on a real database: each output of each command is
searched for the plaintext; the figure the note reports is how many were checked.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import psycopg
import pytest

from amira_data_access.cli import main
from amira_data_access.secrets import MASK, Keyring

PLAIN = "sk-live-CLI-PLAINTEXT-5150"
NEW_PLAIN = "sk-live-CLI-PLAINTEXT-NEW-77"
KEY1 = base64.b64encode(bytes(range(32))).decode()
KEY2 = base64.b64encode(bytes(range(7, 39))).decode()


class Runner:
    """amira-config in this process, its stdout and stderr captured."""

    def __init__(self, dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
        self.dsn = dsn
        self.capsys = capsys
        self.checked = 0  # outputs searched for a plaintext

    def __call__(self, *args: str, code: int = 0) -> str:
        self.capsys.readouterr()
        result = main(["--dsn", self.dsn, *args])
        out, err = self.capsys.readouterr()
        assert result == code, (args, out, err)
        return out + err

    def masked(self, *args: str) -> str:
        """Run, and check neither plaintext is in what was printed."""
        text = self(*args)
        self.checked += 1
        assert PLAIN not in text, args
        assert NEW_PLAIN not in text, args
        return text


@pytest.fixture
def run(dsn: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Runner:
    monkeypatch.setenv("AMIRA_CONFIG_SECRET_KEYS", f"k1:{KEY1},k2:{KEY2}")
    monkeypatch.setenv("AMIRA_CONFIG_SECRET_KEY_ID", "k1")
    monkeypatch.setenv("AMIRA_CONFIG_ACTOR", "tester")
    return Runner(dsn, capsys)


def test_every_output_masks_a_secret(run: Runner, tmp_path: Path) -> None:
    key = "svc.api_key"
    run.masked("set", key, PLAIN, "--type", "secret")
    run.masked("set", key, NEW_PLAIN, "--type", "secret", "--reason", "rotated by vendor")
    run.masked("set", "svc.plain", "visible", "--type", "str")
    for output in ("table", "json", "yaml", "value", "env"):
        shown = run.masked("get", key, "-o", output)
        assert MASK in shown
        run.masked("list", "svc.", "-o", output)
        if output != "env":  # history has no -o env
            run.masked("history", key, "-o", output)
    for output in ("table", "json", "yaml"):
        run.masked("get", key, "--version", "1", "-o", output)
    shown = run.masked("diff", key, "1", "2")
    assert MASK in shown  # the two envelopes differ: the diff says so, masked
    for file_format in ("json", "yaml"):
        exported = run.masked("export", "svc.", "--format", file_format)
        assert '"kid"' in exported or "kid:" in exported  # the envelope, importable
    run.masked("export", "svc.", "-o", "env")
    exported = run.masked("audit", "export")  # the history for a SIEM: envelopes
    assert '"kid"' in exported
    run.masked("audit", "verify")
    # watch streams until Ctrl-C: tests/unit/test_cli_secret_output.py checks its lines.

    # Export, then import onto the same key: the envelope goes back as it was.
    exported = run.masked("export", "svc.")
    path = tmp_path / "export.json"
    path.write_text(exported)
    run.masked("set", key, "something-else", "--type", "secret")
    run.masked("import", str(path), "--dry-run")
    run.masked("import", str(path))
    assert run("get", key, "-o", "value", "--reveal").strip() == NEW_PLAIN
    assert run.checked == 30  # the figure in the note: 30 outputs, no plaintext in any


def test_reveal_shows_the_plaintext_with_the_keyring(
    run: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    run("set", "svc.api_key", PLAIN, "--type", "secret")
    assert run("get", "svc.api_key", "-o", "value", "--reveal").strip() == PLAIN
    assert json.loads(run("get", "svc.api_key", "--json", "--reveal"))["value"] == PLAIN
    assert PLAIN in run("list", "svc.", "--reveal")
    assert PLAIN not in run("list", "svc.")  # --reveal was for that command only
    monkeypatch.delenv("AMIRA_CONFIG_SECRET_KEYS")
    shown = run("get", "svc.api_key", "--reveal", code=2)
    assert "--reveal needs the keyring" in shown
    assert MASK in run("get", "svc.api_key")  # without the keyring: still listed, masked
    shown = run("set", "svc.api_key", NEW_PLAIN, "--type", "secret", code=4)
    assert "needs a store given a keyring" in shown


def test_secrets_rotate(run: Runner, dsn: str) -> None:
    run("set", "svc.a", PLAIN, "--type", "secret")
    run("set", "svc.b", NEW_PLAIN, "--type", "secret")
    run("set", "svc.c", "plain", "--type", "str")
    out = run("secrets", "rotate", "--to", "k2", "--dry-run", "--json")
    assert json.loads(out) == {"to": "k2", "dry_run": True, "keys": ["svc.a", "svc.b"]}
    out = run("secrets", "rotate", "--to", "k2")
    assert "re-wrapped 2 secret(s) with key id k2" in out
    with psycopg.connect(dsn) as conn:
        rows: list[Any] = conn.execute(
            "SELECT key, value->>'kid' FROM amira_config.configurations"
            " WHERE data_type = 'secret' ORDER BY key"
        ).fetchall()
    assert rows == [("svc.a", "k2"), ("svc.b", "k2")]
    assert run("get", "svc.a", "-o", "value", "--reveal").strip() == PLAIN
    assert "re-wrapped 0" in run("secrets", "rotate", "--to", "k2")
    assert "'k9' is not in the keyring" in run("secrets", "rotate", "--to", "k9", code=4)


def test_new_key_makes_a_keyring_line(run: Runner) -> None:
    line = run("secrets", "new-key", "k3", "-o", "value").strip()
    ring = Keyring.parse(line)
    assert ring.key_ids == ("k3",)
