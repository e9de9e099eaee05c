"""Least privilege (migrations/0008): what each group role may do, logged in as real roles.

Every test logs in as a LOGIN role made for it (a member of amira_config_reader,
_writer or _admin) and dropped afterwards: roles are cluster-wide, the
template-database-per-test copies only the grants.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from amira_data_access import ConfigDAL, PermissionDeniedError, audit
from conftest import TestServer

PASSWORD = "role-pass-4-tests"  # throwaway roles'
READER, WRITER, ADMIN = "amira_config_reader", "amira_config_writer", "amira_config_admin"

Login = Callable[..., str]


@pytest.fixture
def login(pg_server: TestServer, dsn: str) -> Iterator[Login]:
    """``login(*groups, grant_all=False)``: the DSN of a new LOGIN role in ``groups``
    (``grant_all``: also the common ``GRANT ALL`` on every table of the schema)."""
    made: list[str] = []
    dbname = str(conninfo_to_dict(dsn)["dbname"])

    def make(*groups: str, grant_all: bool = False) -> str:
        role = f"t_{uuid.uuid4().hex[:10]}"
        ident = sql.Identifier(role)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(ident, sql.Literal(PASSWORD))
            )
            made.append(role)
            for group in groups:
                conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(group), ident))
            if grant_all:
                conn.execute(sql.SQL("GRANT USAGE ON SCHEMA amira_config TO {}").format(ident))
                conn.execute(
                    sql.SQL("GRANT ALL ON ALL TABLES IN SCHEMA amira_config TO {}").format(ident)
                )
        return pg_server.dsn(dbname, user=role, password=PASSWORD)

    yield make
    with psycopg.connect(dsn, autocommit=True) as conn:
        for role in made:
            conn.execute(sql.SQL("DROP OWNED BY {} CASCADE").format(sql.Identifier(role)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def role_of(dsn: str) -> str:
    """The login role of a DSN."""
    return str(conninfo_to_dict(dsn)["user"])


def _seed(dsn: str) -> None:
    with ConfigDAL(dsn) as owner:
        owner.set("p.a", 1, updated_by="owner")
        owner.set("p.a", 2, updated_by="owner")
        owner.set("p.b", 1, updated_by="owner")
        owner.set("p.c", 1, updated_by="owner")


# Each operation, run by a DAL logged in as the role; the key it is about (None: several).
OPERATIONS: dict[str, tuple[Callable[[ConfigDAL, str], Any], str | None]] = {
    "get": (lambda dal, dsn: dal.get("p.a"), "p.a"),
    "list": (lambda dal, dsn: dal.list("p."), None),
    "history": (lambda dal, dsn: dal.history("p.a"), "p.a"),
    "set": (lambda dal, dsn: dal.set("p.a", 3, updated_by="svc"), "p.a"),
    "set_many": (lambda dal, dsn: dal.set_many({"p.x": 1, "p.y": 2}, updated_by="svc"), None),
    "delete one key": (lambda dal, dsn: dal.delete("p.c", deleted_by="svc"), "p.c"),
    "delete_many": (lambda dal, dsn: dal.delete_many(["p.b", "p.c"], deleted_by="svc"), None),
    "delete_prefix": (lambda dal, dsn: dal.delete_prefix("p.", deleted_by="svc"), None),
    "rollback": (lambda dal, dsn: dal.rollback("p.a", to_version=1, updated_by="svc"), "p.a"),
    "prune history": (
        lambda dal, dsn: audit.prune_history(dsn, key="p.a", versions=[1]),
        "p.a",
    ),
    "grant a write scope": (
        lambda dal, dsn: audit.grant_write_scope(dsn, "someone", "p."),
        None,
    ),
}

# What each group may do (the rest is refused): the README's "Granting access" table.
ALLOWED = {
    READER: {"get", "list", "history"},
    WRITER: {"get", "list", "history", "set", "set_many", "delete one key"},
    ADMIN: set(OPERATIONS),
}


@pytest.mark.parametrize("group", [READER, WRITER, ADMIN])
@pytest.mark.parametrize("operation", list(OPERATIONS))
def test_each_group_may_do_what_it_needs_and_nothing_more(
    dsn: str, login: Login, group: str, operation: str
) -> None:
    """Allowed operations work; the others fail with PermissionDeniedError naming the
    login role (and the key, when the operation is about one)."""
    _seed(dsn)
    as_role = login(group)
    run, key = OPERATIONS[operation]
    with ConfigDAL(as_role) as dal:
        if operation in ALLOWED[group]:
            run(dal, as_role)
            return
        with pytest.raises(PermissionDeniedError) as info:
            run(dal, as_role)
    message = str(info.value)
    assert role_of(as_role) in message
    if key is not None and operation != "grant a write scope":
        assert key in message
    assert PASSWORD not in message


def test_a_refusal_carries_the_key_and_the_role(dsn: str, login: Login) -> None:
    """PermissionDeniedError.key and .role, for code that reacts to them."""
    _seed(dsn)
    as_reader = login(READER)
    with ConfigDAL(as_reader) as dal, pytest.raises(PermissionDeniedError) as info:
        dal.set("p.a", 5, updated_by="svc")
    assert (info.value.key, info.value.role) == ("p.a", role_of(as_reader))


def test_a_writers_bulk_delete_names_a_key_and_the_role(dsn: str, login: Login) -> None:
    """More than one key in one statement needs an admin; nothing is deleted."""
    _seed(dsn)
    as_writer = login(WRITER)
    with ConfigDAL(as_writer) as dal:
        with pytest.raises(PermissionDeniedError) as info:
            dal.delete_many(["p.b", "p.c"], deleted_by="svc")
        assert dal.get_many(["p.b", "p.c"]) == {"p.b": 1, "p.c": 1}
    message = str(info.value)
    assert "'p.b'" in message or "p.b" in message
    assert role_of(as_writer) in message
    assert "amira_config_admin" in message


def test_a_login_in_no_group_reads_nothing(dsn: str, login: Login) -> None:
    """No default access: PUBLIC has none of the schema."""
    _seed(dsn)
    with ConfigDAL(login()) as dal, pytest.raises(PermissionDeniedError):
        dal.get("p.a")


def test_set_role_does_not_lend_admin_rights(dsn: str, login: Login) -> None:
    """Admin checks read session_user: a writer cannot pass as another role."""
    _seed(dsn)
    as_writer = login(WRITER)
    with psycopg.connect(as_writer, autocommit=True) as conn:
        conn.execute("SET ROLE amira_config_writer")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM amira_config.configurations WHERE key IN ('p.b', 'p.c')")


def test_the_history_records_the_login_next_to_the_claimed_actor(dsn: str, login: Login) -> None:
    """changed_by is what the caller claims; login is session_user, which it cannot choose."""
    as_writer = login(WRITER)
    with ConfigDAL(as_writer) as dal:
        dal.set("p.who", 1, updated_by="alice")
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT changed_by, login FROM amira_config.configuration_history WHERE key = 'p.who'"
        ).fetchone()
    assert row == ("alice", role_of(as_writer))
    with ConfigDAL(as_writer) as dal:
        latest = dal.history("p.who")[0]
    assert (latest.changed_by, latest.login) == ("alice", role_of(as_writer))


def test_prune_removes_old_rows_but_keeps_the_newest(dsn: str, login: Login) -> None:
    """Retention as an admin: every row but each key's newest goes; the chain still verifies."""
    _seed(dsn)
    as_admin = login(ADMIN)
    removed = audit.prune_history(as_admin, older_than=timedelta(0), keep_last=1)
    assert removed == 1  # p.a version 1
    with ConfigDAL(dsn) as dal:
        assert [r.version for r in dal.history("p.a")] == [2]
    assert audit.verify_history(dsn).ok


# -- write scopes -----------------------------------------------------------------------------


def test_a_scoped_role_writes_only_under_its_prefixes(dsn: str, login: Login) -> None:
    """An admin grants svc 'p.chat.': svc writes there, and is refused elsewhere with the
    key and the role named; raw SQL obeys it too, deletes included."""
    _seed(dsn)
    as_admin, as_svc = login(ADMIN), login(WRITER)
    audit.grant_write_scope(as_admin, role_of(as_svc), "p.chat.")
    with ConfigDAL(as_svc) as dal:
        dal.set("p.chat.tone", "warm", updated_by="svc")
        with pytest.raises(PermissionDeniedError) as info:
            dal.set("p.a", 9, updated_by="svc")
        with pytest.raises(PermissionDeniedError):
            dal.delete("p.c", deleted_by="svc")
    message = str(info.value)
    assert "p.a" in message
    assert role_of(as_svc) in message
    assert "p.chat." in message  # what it may write
    with psycopg.connect(as_svc) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("UPDATE amira_config.configurations SET value = '5' WHERE key = 'p.b'")
    with ConfigDAL(dsn) as owner:
        assert owner.get_many(["p.a", "p.c"]) == {"p.a": 2, "p.c": 1}


def test_a_scope_granted_to_a_group_binds_its_members(dsn: str, login: Login) -> None:
    """Scopes of a role apply to every login that is a member of it (SET ROLE or not)."""
    _seed(dsn)
    team = f"team_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(team)))
    try:
        as_member = login(WRITER, team)
        audit.grant_write_scope(dsn, team, "p.team.")
        with ConfigDAL(as_member) as dal:
            dal.set("p.team.x", 1, updated_by="svc")
            with pytest.raises(PermissionDeniedError):
                dal.set("p.a", 1, updated_by="svc")
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("DELETE FROM amira_config.write_scopes WHERE role = %s", (team,))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(team)))


def test_a_role_without_scopes_is_not_restricted(dsn: str, login: Login) -> None:
    """Scopes are optional: someone else's scope does not bind a writer without one."""
    _seed(dsn)
    audit.grant_write_scope(dsn, "somebody_else", "p.chat.")
    with ConfigDAL(login(WRITER)) as dal:
        dal.set("p.a", 7, updated_by="svc")
    assert [(s.role, s.prefix) for s in audit.list_write_scopes(dsn)] == [
        ("somebody_else", "p.chat.")
    ]
    assert audit.revoke_write_scope(dsn, "somebody_else", "p.chat.")
    assert not audit.revoke_write_scope(dsn, "somebody_else", "p.chat.")


# -- what later migrations added (0009 secrets, 0010 schemas, 0012 flags) --------------------


def test_schemas_are_an_admins_and_bind_every_writer(dsn: str, login: Login) -> None:
    """An admin attaches a JSON Schema; a writer cannot, but its writes are checked by it
    (it reads the schemas); a reader reads them."""
    as_admin, as_writer, as_reader = login(ADMIN), login(WRITER), login(READER)
    with ConfigDAL(as_admin) as admin:
        admin.set_schema("p.n", {"type": "integer"}, updated_by="ops")
    with ConfigDAL(as_writer) as writer:
        writer.set("p.n", 3, updated_by="svc")
        with pytest.raises(ValueError, match=r"p\.n"):
            writer.set("p.n", "three", updated_by="svc")
        with pytest.raises(PermissionDeniedError) as info:
            writer.set_schema("p.m", {"type": "integer"}, updated_by="svc")
    assert role_of(as_writer) in str(info.value)
    with ConfigDAL(as_reader) as reader:
        assert [s.target for s in reader.list_schemas()] == ["p.n"]


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE amira_config.schema_history SET changed_by = 'x'",
        "DELETE FROM amira_config.schema_history",
        "TRUNCATE amira_config.schema_history",
        "UPDATE amira_config.schema_revision SET revision = 0",
    ],
)
def test_the_schema_history_is_append_only(dsn: str, login: Login, statement: str) -> None:
    """Under GRANT ALL too (0014_schema_history_append_only): only the triggers of 0010 write it."""
    with ConfigDAL(dsn) as owner:
        owner.set_schema("p.n", {"type": "integer"}, updated_by="ops")
    with psycopg.connect(login(grant_all=True)) as conn, pytest.raises(psycopg.Error):
        conn.execute(statement)
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT count(*) FROM amira_config.schema_history").fetchone() == (1,)
