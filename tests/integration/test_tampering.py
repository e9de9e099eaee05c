"""The 16 tamperings of issue 13, by roles that are not the tables' owner, and what the
owner can do with the triggers off: each is refused, or found by ``audit verify``.

Before migrations/0008, 9 of the 16 succeeded. Each test names its tampering; the
README's "Granting access" section and the audit note tally them.
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from test_access import WRITER, Login, login, role_of

from amira_data_access import ConfigDAL, audit

__all__ = ["login"]  # the fixture, used by the tests below

# 42501 (insufficient_privilege) for all but TRUNCATE of the table, refused since 0002.
REFUSED = psycopg.Error


def _history(dsn: str, key: str) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT version, revision, changed_by, login, changed_at"
            " FROM amira_config.configuration_history WHERE key = %s ORDER BY version",
            (key,),
        ).fetchall()


@pytest.fixture
def seeded(dsn: str) -> str:
    with ConfigDAL(dsn) as owner:
        owner.set("t.a", 1, updated_by="owner")
        owner.set("t.b", 1, updated_by="owner")
        owner.set("t.a", 2, updated_by="owner")
    return dsn


@pytest.fixture
def writer(seeded: str, login: Login) -> str:
    """Write rights on the table, SELECT only on the history (the writer group)."""
    return login(WRITER)


@pytest.fixture
def grant_all(seeded: str, login: Login) -> str:
    """The common ``GRANT ALL ON ALL TABLES IN SCHEMA amira_config`` (and the writer group)."""
    return login(WRITER, grant_all=True)


def _run(dsn: str, *statements: str) -> None:
    with psycopg.connect(dsn) as conn:
        for statement in statements:
            conn.execute(statement)


# -- 1-3, 9: who and which revision ---------------------------------------------------------


def test_01_a_forged_updated_by_is_attributed_to_the_login(writer: str, seeded: str) -> None:
    """UPDATE … SET updated_by='someone-else': the history keeps that claim, and the login."""
    _run(writer, "UPDATE amira_config.configurations SET value = '3', updated_by = 'x' "
                 "WHERE key = 't.a'")  # fmt: skip
    version, _, changed_by, login_role, _ = _history(seeded, "t.a")[-1]
    assert (version, changed_by, login_role) == (3, "x", role_of(writer))


def test_02_a_forged_actor_setting_is_attributed_to_the_login(writer: str, seeded: str) -> None:
    """set_config('amira_config.actor', …): the same, the login is recorded beside it."""
    _run(
        writer,
        "SELECT set_config('amira_config.actor', 'someone-else', true)",
        "UPDATE amira_config.configurations SET value = '3' WHERE key = 't.a'",
    )
    _, _, changed_by, login_role, _ = _history(seeded, "t.a")[-1]
    assert (changed_by, login_role) == ("someone-else", role_of(writer))


def test_03_a_chosen_revision_is_ignored(writer: str, seeded: str) -> None:
    """set_config('amira_config.revision', '1') does not merge a change into revision 1."""
    _run(
        writer,
        "SELECT set_config('amira_config.revision', '1', true)",
        "UPDATE amira_config.configurations SET value = '3' WHERE key = 't.a'",
    )
    revisions = [row[1] for row in _history(seeded, "t.a")]
    assert revisions == sorted(set(revisions))
    assert revisions[-1] == 4


def test_09_set_role_does_not_hide_the_login(writer: str, seeded: str) -> None:
    """SET ROLE to a group: the history still records the session's login."""
    _run(
        writer,
        "SET ROLE amira_config_writer",
        "UPDATE amira_config.configurations SET value = '3' WHERE key = 't.a'",
    )
    assert _history(seeded, "t.a")[-1][3] == role_of(writer)


# -- 4-8, 13-15: the history and its machinery, under GRANT ALL ----------------------------


@pytest.mark.parametrize(
    "statement",
    [
        pytest.param(
            "UPDATE amira_config.configuration_history SET changed_by = 'x'", id="04-update"
        ),
        pytest.param("DELETE FROM amira_config.configuration_history", id="05-delete"),
        pytest.param(
            "INSERT INTO amira_config.configuration_history (revision, key, version, operation,"
            " value, data_type, changed_by, changed_at) VALUES (1, 't.z', 1, 'insert', '1',"
            " 'int', 'x', now())",
            id="06-insert",
        ),
        pytest.param("TRUNCATE amira_config.configuration_history", id="07-truncate"),
        pytest.param(
            "INSERT INTO amira_config.configuration_history (revision, key, version, operation,"
            " value, data_type, changed_by, changed_at) VALUES (9, 't.b', 2, 'update', '5',"
            " 'int', 'x', now())",
            id="08-reuse-key-version",
        ),
        pytest.param("TRUNCATE amira_config.configurations", id="12-truncate-table"),
        pytest.param(
            "UPDATE amira_config.revision_counter SET last_revision = 0", id="13-rewind-counter"
        ),
        pytest.param(
            "INSERT INTO amira_config.configuration_history_pruned"
            " (chain_position, key, version, revision, content_hash)"
            " VALUES (99, 't.a', 99, 1, '\\x00')",
            id="14-forge-pruned-stub",
        ),
        pytest.param(
            "ALTER TABLE amira_config.configuration_history DISABLE TRIGGER USER",
            id="15-disable-triggers",
        ),
    ],
)
def test_the_history_refuses_a_non_owner_with_grant_all(
    grant_all: str, seeded: str, statement: str
) -> None:
    """Refused with 42501 whatever the table privileges, and nothing changed."""
    before = audit.verify_history(seeded)
    with pytest.raises(REFUSED):
        _run(grant_all, statement)
    after = audit.verify_history(seeded)
    assert after.ok
    assert (after.head, after.rows) == (before.head, before.rows)


def test_08_a_key_version_is_never_given_twice(grant_all: str, seeded: str) -> None:
    """Delete and re-create naming version 1: the version continues from the history."""
    _run(
        grant_all,
        "DELETE FROM amira_config.configurations WHERE key = 't.b'",
        "INSERT INTO amira_config.configurations (key, value, data_type, version, updated_by)"
        " VALUES ('t.b', '7', 'int', 1, 'x')",
    )
    assert [row[0] for row in _history(seeded, "t.b")] == [1, 2, 3]


# -- 10-11: the table's own audit columns --------------------------------------------------


def test_10_a_version_cannot_be_rewound(writer: str, seeded: str) -> None:
    """UPDATE … SET version = 1 gives the next version instead."""
    _run(writer, "UPDATE amira_config.configurations SET version = 1, value = '9' "
                 "WHERE key = 't.a'")  # fmt: skip
    assert [row[0] for row in _history(seeded, "t.a")] == [1, 2, 3]


def test_11_a_change_cannot_be_backdated(writer: str, seeded: str) -> None:
    """updated_at/created_at written by the caller are replaced; the history's instant is
    the commit's."""
    _run(
        writer,
        "UPDATE amira_config.configurations SET value = '9', updated_at = '2000-01-01',"
        " created_at = '2000-01-01' WHERE key = 't.a'",
    )
    with psycopg.connect(seeded) as conn:
        row = conn.execute(
            "SELECT updated_at > '2001-01-01', created_at > '2001-01-01'"
            " FROM amira_config.configurations WHERE key = 't.a'"
        ).fetchone()
    assert row == (True, True)
    assert str(_history(seeded, "t.a")[-1][4]) > "2001"


# -- 16: a trigger of someone holding the TRIGGER privilege --------------------------------


def test_16_a_foreign_trigger_on_the_history_is_found(grant_all: str, seeded: str) -> None:
    """GRANT ALL includes TRIGGER: a trigger that rewrites what the history records (and
    runs as the owner, inside the history triggers). audit verify names it, and the key
    whose history no longer matches the table."""
    with psycopg.connect(seeded, autocommit=True) as conn:  # somewhere to put its function
        conn.execute(f'GRANT CREATE ON SCHEMA public TO "{role_of(grant_all)}"')
    _run(
        grant_all,
        "CREATE FUNCTION public.lie() RETURNS trigger LANGUAGE plpgsql AS"
        " $$ BEGIN NEW.value := '0'; RETURN NEW; END $$",
        "CREATE TRIGGER a_lie BEFORE INSERT ON amira_config.configuration_history"
        " FOR EACH ROW EXECUTE FUNCTION public.lie()",
    )
    with ConfigDAL(seeded) as dal:
        dal.set("t.a", 5, updated_by="owner")
    report = audit.verify_history(seeded)
    kinds = {problem.kind for problem in report.problems}
    assert kinds == {"trigger", "disagrees"}
    assert any("a_lie" in problem.detail for problem in report.problems)


# -- the owner, with the triggers off: detected --------------------------------------------


@pytest.fixture
def owner(seeded: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """The owner (a superuser here) with every trigger off for its session."""
    with psycopg.connect(seeded, autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")
        yield conn


def test_a_clean_history_verifies(seeded: str) -> None:
    report = audit.verify_history(seeded)
    assert report.ok, report.problems
    assert (report.rows, report.head.position) == (3, 3)


def test_owner_rewriting_a_value_is_found(
    owner: psycopg.Connection[tuple[object, ...]], seeded: str
) -> None:
    owner.execute(
        "UPDATE amira_config.configuration_history SET value = '42' WHERE key = 't.a'"
        " AND version = 1"
    )
    problems = audit.verify_history(seeded).problems
    assert [(p.kind, p.key, p.version) for p in problems] == [("rewritten", "t.a", 1)]


def test_owner_rewriting_the_login_is_found(
    owner: psycopg.Connection[tuple[object, ...]], seeded: str
) -> None:
    owner.execute("UPDATE amira_config.configuration_history SET login = 'x' WHERE key = 't.b'")
    assert [p.kind for p in audit.verify_history(seeded).problems] == ["rewritten"]


def test_owner_deleting_a_row_is_found(
    owner: psycopg.Connection[tuple[object, ...]], seeded: str
) -> None:
    owner.execute(
        "DELETE FROM amira_config.configuration_history WHERE key = 't.b' AND version = 1"
    )
    kinds = [p.kind for p in audit.verify_history(seeded).problems]
    assert "missing" in kinds
    assert "disagrees" in kinds  # t.b is live, its history is gone


def test_owner_deleting_the_newest_row_is_found(
    owner: psycopg.Connection[tuple[object, ...]], seeded: str
) -> None:
    owner.execute(
        "DELETE FROM amira_config.configuration_history WHERE key = 't.a' AND version = 2"
    )
    kinds = {p.kind for p in audit.verify_history(seeded).problems}
    assert {"head", "disagrees"} <= kinds


def test_owner_inserting_a_row_is_found(
    owner: psycopg.Connection[tuple[object, ...]], seeded: str
) -> None:
    owner.execute(
        "INSERT INTO amira_config.configuration_history (revision, key, version, operation,"
        " value, data_type, changed_by, changed_at) VALUES (2, 't.c', 1, 'insert', '1', 'int',"
        " 'x', now())"
    )
    kinds = {p.kind for p in audit.verify_history(seeded).problems}
    assert "unchained" in kinds


def test_owner_inserting_a_row_into_the_chain_is_found(
    owner: psycopg.Connection[tuple[object, ...]], seeded: str
) -> None:
    """Even with a chain position and a copied digest: the next digest no longer follows."""
    owner.execute(
        "UPDATE amira_config.configuration_history SET chain_position = chain_position + 1"
        " WHERE chain_position >= 3"
    )
    owner.execute(
        "INSERT INTO amira_config.configuration_history (revision, key, version, operation,"
        " value, data_type, changed_by, changed_at, chain_position, digest)"
        " SELECT 2, 't.c', 1, 'insert', '1', 'int', 'x', now(), 3, digest"
        " FROM amira_config.configuration_history WHERE chain_position = 2"
    )
    kinds = {p.kind for p in audit.verify_history(seeded).problems}
    assert "rewritten" in kinds


def test_owner_rewriting_the_whole_chain_is_found_against_a_kept_head(
    owner: psycopg.Connection[tuple[object, ...]], seeded: str
) -> None:
    """Rewrite a row, then recompute every digest after it and the head, as only the owner
    can: the chain is consistent again, but no longer passes through the head kept earlier."""
    kept = audit.verify_history(seeded).head
    owner.execute(
        "UPDATE amira_config.configuration_history SET value = '42' WHERE key = 't.a'"
        " AND version = 1"
    )
    _rechain(owner)
    assert audit.verify_history(seeded).ok  # consistent: without a kept head, not detectable
    problems = audit.verify_history(seeded, expect=kept).problems
    assert [p.kind for p in problems] == ["expected"]


def test_a_disabled_trigger_is_reported(seeded: str) -> None:
    with psycopg.connect(seeded, autocommit=True) as conn:
        conn.execute(
            "ALTER TABLE amira_config.configuration_history"
            " DISABLE TRIGGER configuration_history_guard"
        )
    problems = audit.verify_history(seeded).problems
    assert [p.kind for p in problems] == ["trigger"]


def _rechain(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    """What a determined owner would run: the chain recomputed from the rows."""
    conn.execute(
        """
        DO $$
        DECLARE
            head bytea := decode(repeat('00', 32), 'hex');
            r record;
        BEGIN
            FOR r IN SELECT * FROM amira_config.configuration_history ORDER BY chain_position LOOP
                head := sha256(head || sha256(amira_config.history_row_bytes(
                    r.chain_position, r.revision, r.key, r.version, r.operation, r.value,
                    r.data_type, r.description, r.changed_by, r.login, r.changed_at,
                    r.change_reason)));
                UPDATE amira_config.configuration_history SET digest = head
                 WHERE key = r.key AND version = r.version;
            END LOOP;
            UPDATE amira_config.revision_counter SET last_digest = head;
        END
        $$
        """
    )
