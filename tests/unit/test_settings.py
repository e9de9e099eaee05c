"""Unit tests for amira_data_access.settings: environment settings and DSN handling."""

from __future__ import annotations

import pytest
from psycopg.conninfo import conninfo_to_dict

from amira_data_access.errors import DatabaseConnectionError
from amira_data_access.settings import DatabaseSettings, describe_dsn, parse_dsn

ENV_NAMES = ("AMIRA_CONFIG_DSN", "DB_HOST", "DB_PORT", "DB_NAME", "DB_USER", "DB_PASSWORD")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Remove every variable DatabaseSettings reads, so each test sets its own."""
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    return monkeypatch


def set_db_env(env: pytest.MonkeyPatch, password: str | None = "hunter2") -> None:  # noqa: S107
    """Set the DB_* variables for a database called appdb."""
    env.setenv("DB_HOST", "db.example")
    env.setenv("DB_PORT", "6543")
    env.setenv("DB_NAME", "appdb")
    env.setenv("DB_USER", "alice")
    if password is not None:
        env.setenv("DB_PASSWORD", password)


def test_dsn_variable_wins_over_db_variables(clean_env: pytest.MonkeyPatch) -> None:
    """AMIRA_CONFIG_DSN is used as is even when DB_* are also set."""
    set_db_env(clean_env)
    clean_env.setenv("AMIRA_CONFIG_DSN", "postgresql://bob:pw@other:5432/otherdb")
    assert DatabaseSettings().conninfo() == "postgresql://bob:pw@other:5432/otherdb"


def test_db_variables_build_a_conninfo(clean_env: pytest.MonkeyPatch) -> None:
    """The DB_* set builds a conninfo with host, port, dbname, user and password."""
    set_db_env(clean_env)
    parts = conninfo_to_dict(DatabaseSettings().conninfo())
    assert parts == {
        "host": "db.example",
        "port": "6543",
        "dbname": "appdb",
        "user": "alice",
        "password": "hunter2",
    }


def test_db_variables_without_password_or_port(clean_env: pytest.MonkeyPatch) -> None:
    """Without DB_PASSWORD no password is set, and the port defaults to 5432."""
    clean_env.setenv("DB_HOST", "db.example")
    clean_env.setenv("DB_NAME", "appdb")
    clean_env.setenv("DB_USER", "alice")
    parts = conninfo_to_dict(DatabaseSettings().conninfo())
    assert parts == {"host": "db.example", "port": "5432", "dbname": "appdb", "user": "alice"}


def test_db_password_with_special_characters_is_quoted(clean_env: pytest.MonkeyPatch) -> None:
    """A password with spaces and quotes survives the conninfo encoding."""
    set_db_env(clean_env, password="it's a \\ secret")
    assert conninfo_to_dict(DatabaseSettings().conninfo())["password"] == "it's a \\ secret"


def test_blank_dsn_falls_back_to_db_variables(clean_env: pytest.MonkeyPatch) -> None:
    """A whitespace-only AMIRA_CONFIG_DSN is ignored in favour of DB_*."""
    set_db_env(clean_env)
    clean_env.setenv("AMIRA_CONFIG_DSN", "   ")
    assert conninfo_to_dict(DatabaseSettings().conninfo())["host"] == "db.example"


def test_missing_configuration_raises_a_helpful_error(clean_env: pytest.MonkeyPatch) -> None:
    """With nothing set, conninfo() raises DatabaseConnectionError naming the variables."""
    with pytest.raises(DatabaseConnectionError) as info:
        DatabaseSettings().conninfo()
    message = str(info.value)
    for name in ("AMIRA_CONFIG_DSN", "DB_HOST", "DB_NAME", "DB_USER"):
        assert name in message


@pytest.mark.parametrize("missing", ["DB_HOST", "DB_NAME", "DB_USER"])
def test_incomplete_db_variables_raise(clean_env: pytest.MonkeyPatch, missing: str) -> None:
    """DB_HOST, DB_NAME and DB_USER are all required when no DSN is set."""
    set_db_env(clean_env)
    clean_env.delenv(missing)
    with pytest.raises(DatabaseConnectionError, match="no database configured"):
        DatabaseSettings().conninfo()


def test_repr_hides_passwords(clean_env: pytest.MonkeyPatch) -> None:
    """Neither repr() nor str() of the settings shows the password or the DSN's password."""
    set_db_env(clean_env, password="hunter2")
    clean_env.setenv("AMIRA_CONFIG_DSN", "postgresql://bob:tops3cret@other/otherdb")
    settings = DatabaseSettings()
    for text in (repr(settings), str(settings)):
        assert "hunter2" not in text
        assert "tops3cret" not in text
    assert "db.example" in repr(settings)


def test_parse_dsn_uri() -> None:
    """A URI is described without its password, and both password spellings are secrets."""
    parsed = parse_dsn("postgresql://u:s3cr%3Ft@h:5433/db")
    assert parsed.conninfo == "postgresql://u:s3cr%3Ft@h:5433/db"
    assert parsed.description == "host=h port=5433 dbname=db user=u"
    assert "s3cr?t" in parsed.secrets
    assert "s3cr%3Ft" in parsed.secrets
    assert all(secret not in parsed.description for secret in parsed.secrets)


def test_parse_dsn_key_value_without_password() -> None:
    """A key/value DSN without a password has no secrets."""
    parsed = parse_dsn("host=localhost dbname=app")
    assert parsed.description == "host=localhost dbname=app"
    assert parsed.secrets == ()


def test_parse_dsn_empty_string_uses_libpq_defaults() -> None:
    """An empty DSN is valid and described as libpq defaults."""
    parsed = parse_dsn("")
    assert parsed.description == "<libpq defaults>"
    assert parsed.secrets == ()


def test_parse_dsn_invalid_hides_password_and_chain() -> None:
    """An invalid DSN raises a secret-free error that does not chain libpq's message."""
    with pytest.raises(DatabaseConnectionError) as info:
        parse_dsn("host=h password=hunter2 port=notaport garbage")
    error = info.value
    assert str(error).startswith("invalid connection string:")
    assert "hunter2" not in str(error)
    assert error.__cause__ is None
    assert error.__context__ is None


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://u:hunter2%zz@h/db",
        "postgresql://u:hunter2@h/db?bogus=1",
        "postgresql://u:hunter2@[::1/db",
        "host=h password='hunter2",
        "password=hunter2 =x",
        "hunter2",
    ],
)
def test_parse_dsn_invalid_forms_never_show_the_password(dsn: str) -> None:
    """Whatever libpq complains about, the password text is not in the message."""
    with pytest.raises(DatabaseConnectionError) as info:
        parse_dsn(dsn)
    assert "hunter2" not in str(info.value)


def test_parse_dsn_password_with_double_quote_is_not_shown() -> None:
    """A password containing a double quote does not leak when percent-decoding fails."""
    with pytest.raises(DatabaseConnectionError) as info:
        parse_dsn('postgresql://u:a"b%zzhunter2@h/db')
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize(
    ("dsn", "expected"),
    [
        ("postgresql://u:hunter2@h:5433/db", "host=h port=5433 dbname=db user=u"),
        ("host=h user=u password=hunter2 dbname=db", "host=h dbname=db user=u"),
        ("password=hunter2", "<libpq defaults>"),
        ("host=h password=hunter2 garbage", "<invalid connection string>"),
    ],
)
def test_describe_dsn_never_shows_the_password(dsn: str, expected: str) -> None:
    """describe_dsn shows host, port, dbname and user only, never the password."""
    description = describe_dsn(dsn)
    assert description == expected
    assert "hunter2" not in description


def test_parse_dsn_keeps_libpq_reason_without_the_fragment() -> None:
    """'garbage' says what libpq found wrong (missing "=") without echoing the string."""
    with pytest.raises(DatabaseConnectionError) as info:
        parse_dsn("garbage-hunter2")
    message = str(info.value)
    assert 'missing "=" after "…"' in message
    assert "hunter2" not in message


def test_parse_dsn_names_a_uri_of_another_database() -> None:
    """A mysql:// URI is refused with the hint that this store needs PostgreSQL."""
    with pytest.raises(DatabaseConnectionError) as info:
        parse_dsn("mysql://app:hunter2@db.internal/app")
    message = str(info.value)
    assert "mysql://" in message
    assert "PostgreSQL" in message
    assert "hunter2" not in message
    assert "db.internal" not in message


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://svc:hunt@er2@db.internal:5432/amira",
        "postgresql://svc:hunt/er2@db.internal:5432/amira",
        "postgres://svc:hu?nter2@db.internal/amira",
    ],
)
def test_parse_dsn_refuses_unencoded_reserved_characters_in_the_password(dsn: str) -> None:
    """libpq would read part of the password as the host: refused, echoing no part of it."""
    with pytest.raises(DatabaseConnectionError) as info:
        parse_dsn(dsn)
    message = str(info.value)
    assert "percent-encode" in message
    for fragment in ("hunt", "er2", "nter2", "db.internal"):
        assert fragment not in message


def test_parse_dsn_accepts_a_percent_encoded_password() -> None:
    """The same password percent-encoded is fine, and only the host shows."""
    parsed = parse_dsn("postgresql://svc:hunt%40er2@db.internal:5432/amira")
    assert parsed.description == "host=db.internal port=5432 dbname=amira user=svc"
    assert "hunt@er2" in parsed.secrets
