"""Where the database is: settings read from the environment, secrets kept out of sight.

Credentials come only from the environment: ``AMIRA_CONFIG_DSN`` (a libpq
connection string or URI), else the ``DB_HOST``/``DB_PORT``/``DB_NAME``/
``DB_USER``/``DB_PASSWORD`` set. The password is a ``SecretStr``: it is not in
``repr()``, and :func:`describe_dsn` gives the text that logs and errors use.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from .errors import DatabaseConnectionError

__all__ = ["DatabaseSettings", "ParsedDsn", "conninfo_from_env", "describe_dsn", "parse_dsn"]


class DatabaseSettings(BaseSettings):
    """Connection settings from the environment (see the module docstring)."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    dsn: SecretStr | None = Field(default=None, validation_alias="AMIRA_CONFIG_DSN")
    host: str | None = Field(default=None, validation_alias="DB_HOST")
    port: int = Field(default=5432, validation_alias="DB_PORT", ge=1, le=65535)
    name: str | None = Field(default=None, validation_alias="DB_NAME")
    user: str | None = Field(default=None, validation_alias="DB_USER")
    password: SecretStr | None = Field(default=None, validation_alias="DB_PASSWORD")

    def conninfo(self) -> str:
        """The connection string to use; raises when the environment names no database."""
        if self.dsn is not None and self.dsn.get_secret_value().strip():
            return self.dsn.get_secret_value()
        if self.host and self.name and self.user:
            password = self.password.get_secret_value() if self.password else None
            return make_conninfo(
                host=self.host, port=self.port, dbname=self.name, user=self.user, password=password
            )
        raise DatabaseConnectionError(
            "no database configured: set AMIRA_CONFIG_DSN, or DB_HOST, DB_NAME and DB_USER "
            "(with DB_PORT and DB_PASSWORD as needed)"
        )


def conninfo_from_env() -> str:
    """The connection string the environment names; DatabaseConnectionError if none or bad."""
    try:
        settings = DatabaseSettings()
    except ValidationError as exc:
        # Name the variables only: pydantic's message would echo their values.
        names = sorted({str(error["loc"][0]) for error in exc.errors() if error["loc"]})
        raise DatabaseConnectionError(
            f"invalid database settings in the environment: {', '.join(names)}"
        ) from None
    return settings.conninfo()


@dataclass(frozen=True, slots=True)
class ParsedDsn:
    """A checked connection string, what may be shown of it, and what must never be."""

    conninfo: str
    description: str
    secrets: tuple[str, ...]


def parse_dsn(dsn: str) -> ParsedDsn:
    """Check a connection string without connecting; raise a clear, secret-free error if bad."""
    reason: str | None = None
    try:
        parts = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        # libpq quotes fragments of the string in its message, and a fragment may be
        # the password (which may itself contain quotes): blank out everything from
        # the first quote to the last.
        first_line = (str(exc).strip().splitlines() or [""])[0]
        start, end = first_line.find('"'), first_line.rfind('"')
        reason = first_line if start < 0 else first_line[:start] + "…" + first_line[end + 1 :]
    if reason is not None:
        # Raised outside the except block so the original (with its fragments of
        # the string) is not even kept as __context__.
        raise DatabaseConnectionError(f"invalid connection string: {reason}")
    password = parts.get("password")
    secrets: tuple[str, ...] = ()
    if password:
        text = str(password)
        secrets = tuple({text, quote(text, safe=""), quote(text)})
    return ParsedDsn(conninfo=dsn, description=_describe(parts), secrets=secrets)


def describe_dsn(dsn: str) -> str:
    """``host=… port=… dbname=… user=…`` for logs and messages; never the password."""
    try:
        return _describe(conninfo_to_dict(dsn))
    except psycopg.ProgrammingError:
        return "<invalid connection string>"


def _describe(parts: Mapping[str, object]) -> str:
    shown = [
        f"{name}={parts[name]}" for name in ("host", "port", "dbname", "user") if parts.get(name)
    ]
    return " ".join(shown) or "<libpq defaults>"
