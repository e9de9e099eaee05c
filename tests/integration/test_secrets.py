"""Secrets on a real PostgreSQL: what a DBA can see, and what raw SQL cannot do.

A DBA here is the test server's admin login (a superuser: it can read every
table, LISTEN on every channel and pg_dump the database), and still sees no
plaintext of a secret anywhere: the table, its history, the change
notifications, a dump.
"""

from __future__ import annotations

import base64
import importlib.util
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from amira_data_access import CachedConfigDAL, ConfigDAL
from amira_data_access.errors import InvalidConfigurationError, SecretUnavailableError
from amira_data_access.secrets import Keyring, SealedSecret
from conftest import TestServer

# Plaintexts chosen to be found by a substring search, in any of the places looked at.
PLAINTEXTS = ("sk-live-PLAINTEXT-one-4242", "sk-live-PLAINTEXT-two-4343", "sk-live-PLAINTEXT-3")
KEY1 = bytes(range(32))
KEY2 = bytes(range(64, 96))


@pytest.fixture
def keyring() -> Keyring:
    return Keyring({"k1": KEY1, "k2": KEY2}, active="k1")


@pytest.fixture
def secret_dal(dsn: str, keyring: Keyring) -> Iterator[ConfigDAL]:
    with ConfigDAL(dsn, max_size=4, keyring=keyring) as store:
        yield store


def _malformed() -> list[object]:
    """The documents tests/unit/test_secret_envelope.py shows are not envelopes."""
    path = Path(__file__).parents[1] / "unit" / "test_secret_envelope.py"
    spec = importlib.util.spec_from_file_location("_secret_envelope_cases", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return list(module.MALFORMED)


def _found(text: str) -> list[str]:
    return [plaintext for plaintext in PLAINTEXTS if plaintext in text]


def _client(pg_server: TestServer, name: str, *args: str) -> str:
    """What a PostgreSQL client program (``pg_dump``, ``psql``) prints, preferring the
    server's own binaries (pg_dump refuses a server newer than itself)."""
    program: Any = None
    if pg_server.local is not None:
        program = pg_server.local.binaries.program(name)
    if program is None or not os.path.exists(program):
        program = shutil.which(name)
    if program is None:
        pytest.fail(f"no {name} to look at the database with")
    done = subprocess.run(
        [str(program), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_dba_sees_no_plaintext_anywhere(
    pg_server: TestServer, dsn: str, secret_dal: ConfigDAL
) -> None:
    """Table, history, NOTIFY payloads and pg_dump hold envelopes; the DAL reads plaintext."""
    with psycopg.connect(dsn, autocommit=True) as listener:
        listener.execute("LISTEN amira_config_changes")
        secret_dal.set("svc.api_key", PLAINTEXTS[0], data_type="secret", updated_by="ops")
        secret_dal.set("svc.api_key", PLAINTEXTS[1], data_type="secret", updated_by="ops")
        secret_dal.set("svc.third_key", PLAINTEXTS[2], data_type="secret", updated_by="ops")
        secret_dal.rollback("svc.api_key", to_version=1, updated_by="ops")
        secret_dal.delete("svc.third_key", deleted_by="ops")
        payloads = [note.payload for note in listener.notifies(timeout=2.0, stop_after=5)]
    assert secret_dal.get("svc.api_key") == PLAINTEXTS[0]
    assert len(payloads) == 5

    with psycopg.connect(dsn) as dba:
        table = dba.execute(
            "SELECT string_agg(row_to_json(c)::text, E'\\n') FROM amira_config.configurations c"
        ).fetchone()
        history = dba.execute(
            "SELECT string_agg(row_to_json(h)::text, E'\\n')"
            " FROM amira_config.configuration_history h"
        ).fetchone()
    assert table is not None
    assert history is not None
    dump = _client(pg_server, "pg_dump", "--dbname", dsn, "--no-owner")
    psql = _client(
        pg_server,
        "psql",
        "--dbname", dsn, "--no-psqlrc", "--no-align", "--tuples-only",
        "--command", "TABLE amira_config.configurations",
        "--command", "TABLE amira_config.configuration_history",
    )  # fmt: skip
    outputs = {"table": table[0], "history": history[0], "notify": "\n".join(payloads),
               "pg_dump": dump, "psql": psql}  # fmt: skip
    assert {name: _found(text) for name, text in outputs.items()} == {name: [] for name in outputs}
    # What is there is the envelope, under its key id.
    assert '"kid": "k1"' in table[0] or '"kid":"k1"' in table[0]
    assert "svc.api_key" in dump
    assert psql.count("svc.api_key") == 4  # the entry and its 3 history rows, sealed


def test_raw_sql_cannot_store_a_plaintext_secret(dsn: str) -> None:
    """The table's constraint: a secret's value is an envelope, whatever the client."""
    with psycopg.connect(dsn, autocommit=True) as dba:
        dba.execute(
            "INSERT INTO amira_config.configurations (key, value, data_type, updated_by)"
            " VALUES ('svc.typed', '\"x\"', 'str', 'dba')"
        )
        for value in (PLAINTEXTS[0], {"v": 1, "kid": "k1", "ct": PLAINTEXTS[0]}):
            with pytest.raises(psycopg.errors.CheckViolation, match="secret_sealed") as info:
                dba.execute(
                    "INSERT INTO amira_config.configurations (key, value, data_type, updated_by)"
                    " VALUES ('svc.raw', %s, 'secret', 'dba')",
                    [Jsonb(value)],
                )
            # Refused before the row is formed: no "Failing row contains" with the value.
            assert info.value.diag.message_detail is None
            assert _found(str(info.value)) == []
            with pytest.raises(psycopg.errors.CheckViolation) as info:
                dba.execute(
                    "UPDATE amira_config.configurations SET value = %s, data_type = 'secret'"
                    " WHERE key = 'svc.typed'",
                    [Jsonb(value)],
                )
            assert info.value.diag.message_detail is None


def test_the_table_and_the_fake_agree_on_the_envelope(dsn: str, keyring: Keyring) -> None:
    """Every document the in-memory twin refuses, the table refuses; a real envelope passes."""
    from amira_data_access.secrets import is_envelope_document

    good = keyring.seal("svc.raw", "x").document()
    documents = [(document, False) for document in _malformed()] + [(good, True)]
    with psycopg.connect(dsn, autocommit=True) as dba:
        for document, accepted in documents:
            assert is_envelope_document(document) is accepted
            try:
                dba.execute(
                    "INSERT INTO amira_config.configurations (key, value, data_type, updated_by)"
                    " VALUES ('svc.raw', %s, 'secret', 'dba')",
                    [Jsonb(document)],
                )
            except psycopg.errors.CheckViolation:
                assert not accepted, document
            else:
                assert accepted, document
                dba.execute("DELETE FROM amira_config.configurations WHERE key = 'svc.raw'")


def test_an_envelope_moved_to_another_key_does_not_open(dsn: str, secret_dal: ConfigDAL) -> None:
    """A DBA copying one key's ciphertext over another's makes a read fail, not leak."""
    secret_dal.set("svc.api_key", PLAINTEXTS[0], data_type="secret", updated_by="ops")
    secret_dal.set("svc.low_key", PLAINTEXTS[1], data_type="secret", updated_by="ops")
    with psycopg.connect(dsn, autocommit=True) as dba:
        dba.execute(
            "UPDATE amira_config.configurations SET value = (SELECT value FROM"
            " amira_config.configurations WHERE key = 'svc.api_key') WHERE key = 'svc.low_key'"
        )
    with pytest.raises(SecretUnavailableError, match=r"'svc\.low_key' does not open") as info:
        secret_dal.get("svc.low_key")
    assert _found(str(info.value)) == []
    assert secret_dal.get("svc.api_key") == PLAINTEXTS[0]


def test_without_the_key_a_secret_is_unavailable(dsn: str, secret_dal: ConfigDAL) -> None:
    """A store without a keyring, or with other key material, cannot read a secret."""
    secret_dal.set("svc.api_key", PLAINTEXTS[0], data_type="secret", updated_by="ops")
    with ConfigDAL(dsn, max_size=2) as keyless:
        with pytest.raises(SecretUnavailableError, match="no keyring"):
            keyless.get("svc.api_key")
        with pytest.raises(SecretUnavailableError, match="needs a store given a keyring"):
            keyless.set("svc.api_key", "new", data_type="secret", updated_by="ops")
        entry = keyless.get_entry("svc.api_key")  # the envelope can still be listed
        assert entry is not None
        assert isinstance(entry.value, SealedSecret)
    with (
        ConfigDAL(dsn, max_size=2, keyring=Keyring({"k1": KEY2})) as wrong,
        pytest.raises(SecretUnavailableError, match="does not open"),
    ):
        wrong.get("svc.api_key")


def test_a_plaintext_for_a_secret_key_without_its_type_is_refused(
    secret_dal: ConfigDAL,
) -> None:
    """set() without data_type keeps the stored type: a plaintext never becomes the value."""
    secret_dal.set("svc.api_key", PLAINTEXTS[0], data_type="secret", updated_by="ops")
    with pytest.raises(InvalidConfigurationError, match="sealed envelope") as info:
        secret_dal.set("svc.api_key", PLAINTEXTS[1], updated_by="ops")
    assert _found(str(info.value)) == []
    assert secret_dal.get("svc.api_key") == PLAINTEXTS[0]


def test_the_cached_dal_opens_what_it_holds_sealed(dsn: str, keyring: Keyring) -> None:
    """The cache holds the envelope; get() opens it; the entry stays sealed."""
    with CachedConfigDAL(dsn, max_size=4, keyring=keyring) as cached:
        cached.set("svc.api_key", PLAINTEXTS[0], data_type="secret", updated_by="ops")
        assert cached.get("svc.api_key") == PLAINTEXTS[0]
        assert cached.get("svc.api_key") == PLAINTEXTS[0]  # from the cache
        assert cached.get_many(["svc.api_key"]) == {"svc.api_key": PLAINTEXTS[0]}
        entry = cached.get_entry("svc.api_key")
        assert entry is not None
        assert isinstance(entry.value, SealedSecret)
        assert _found(repr(entry)) == []


def test_key_material_is_not_in_the_environment_keyring_repr() -> None:
    encoded = base64.b64encode(KEY1).decode()
    ring = Keyring.from_env({"AMIRA_CONFIG_SECRET_KEYS": f"k1:{encoded}"})
    assert encoded not in repr(ring)


def test_the_last_known_good_snapshot_holds_the_envelope_only(
    dsn: str, keyring: Keyring, tmp_path: Path
) -> None:
    """The cached DAL's snapshot file (on disk): ciphertext; served from it, get opens it."""
    import threading

    from psycopg.conninfo import make_conninfo

    path = tmp_path / "config.snapshot"
    with CachedConfigDAL(dsn, snapshot=path, keyring=keyring) as service:
        written = threading.Event()
        subscription = service.subscribe(lambda change: written.set())
        service.set("svc.api_key", PLAINTEXTS[0], data_type="secret", updated_by="ops")
        assert written.wait(30)
        subscription.close()
    text = path.read_text()
    assert "svc.api_key" in text
    assert _found(text) == []
    down = make_conninfo(dsn, host="127.0.0.1", port="1", connect_timeout="2")
    with CachedConfigDAL(down, snapshot=path, keyring=keyring) as service:
        assert service.get("svc.api_key") == PLAINTEXTS[0]
        entry = service.get_entry("svc.api_key")
        assert entry is not None
        assert isinstance(entry.value, SealedSecret)


@pytest.fixture
def role_dsn(pg_server: TestServer, dsn: str) -> Iterator[Any]:
    """``role_dsn(group)``: the DSN of a new non-superuser LOGIN role in ``group`` (0008)."""
    import uuid

    from psycopg import sql
    from psycopg.conninfo import conninfo_to_dict

    made: list[str] = []
    dbname = str(conninfo_to_dict(dsn)["dbname"])

    def make(group: str) -> str:
        role = f"t_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'role-pass-4-tests'").format(
                    sql.Identifier(role)
                )
            )
            made.append(role)
            conn.execute(
                sql.SQL("GRANT {} TO {}").format(sql.Identifier(group), sql.Identifier(role))
            )
        return pg_server.dsn(dbname, user=role, password="role-pass-4-tests")

    yield make
    with psycopg.connect(dsn, autocommit=True) as conn:
        for role in made:
            conn.execute(sql.SQL("DROP OWNED BY {} CASCADE").format(sql.Identifier(role)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_service_roles_seal_and_open_a_reader_sees_envelopes(
    role_dsn: Any, keyring: Keyring
) -> None:
    """Logged in as real roles: a writer service seals and opens (the trigger and the check
    run for it); a reader login without the keyring lists envelopes and cannot open them."""
    writer, reader = role_dsn("amira_config_writer"), role_dsn("amira_config_reader")
    with ConfigDAL(writer, max_size=2, keyring=keyring) as service:
        service.set("svc.api_key", PLAINTEXTS[0], data_type="secret", updated_by="svc")
        assert service.get("svc.api_key") == PLAINTEXTS[0]
        with pytest.raises(InvalidConfigurationError, match="sealed envelope"):
            service.set("svc.api_key", PLAINTEXTS[1], updated_by="svc")
    with ConfigDAL(reader, max_size=2) as looker:
        entry = looker.get_entry("svc.api_key")
        assert entry is not None
        assert isinstance(entry.value, SealedSecret)
        with pytest.raises(SecretUnavailableError):
            looker.get("svc.api_key")
    with psycopg.connect(reader) as conn:
        rows = conn.execute("SELECT value::text FROM amira_config.configurations").fetchall()
        history = conn.execute(
            "SELECT value::text FROM amira_config.configuration_history"
        ).fetchall()
    assert _found(repr(rows) + repr(history)) == []
