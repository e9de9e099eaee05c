"""Where the database is: settings read from the environment, secrets kept out of sight.

Credentials come only from the environment: ``AMIRA_CONFIG_DSN`` (a libpq
connection string or URI), else the ``DB_HOST``/``DB_PORT``/``DB_NAME``/
``DB_USER``/``DB_PASSWORD`` set. The password is a ``SecretStr``: it is not in
``repr()``, and :func:`describe_dsn` gives the text that logs and errors use.
"""

from __future__ import annotations

import re
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
    _refuse_ambiguous_uri(dsn)
    reason: str | None = None
    try:
        parts = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        reason = _without_fragments((str(exc).strip().splitlines() or [""])[0])
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


_URI = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<rest>.*)$", re.DOTALL)
_POSTGRES_SCHEMES = frozenset({"postgresql", "postgres"})
_HOST_AND_PATH = re.compile(r"[^:@/]*(:\d*)?(/.*)?", re.DOTALL)
# libpq quotes fragments of the string in its messages, and a fragment may be the
# password (which may itself hold quotes). Everything from the first quote to the
# last is hidden, except the shapes whose quoted parts are libpq's own words:
# missing "=" after "…", invalid … "…" for connection option "port".
_SAFE_QUOTED = (
    (re.compile(r'"([^\w\s])" after ".*"', re.DOTALL), '"{0}" after "…"'),
    (
        re.compile(r'".*" for connection option "(\w+)"', re.DOTALL),
        '"…" for connection option "{0}"',
    ),
)


def _without_fragments(message: str) -> str:
    start, end = message.find('"'), message.rfind('"')
    if start < 0:
        return message
    quoted = message[start : end + 1]
    shown = '"…"'
    for pattern, template in _SAFE_QUOTED:
        match = pattern.fullmatch(quoted)
        if match is not None:
            shown = template.format(match.group(1))
            break
    return message[:start] + shown + message[end + 1 :]


def _refuse_ambiguous_uri(dsn: str) -> None:
    """Refuse a URI that is not PostgreSQL's, or whose user or password needs percent-encoding.

    libpq splits ``postgresql://user:p@ss@host/db`` at the first ``@`` and reads
    ``ss@host`` as the host: the rest of the password would then appear in every
    message naming the server. Nothing of the string is echoed here.
    """
    match = _URI.match(dsn.strip())
    if match is None:
        return
    scheme = match.group("scheme").lower()
    if scheme not in _POSTGRES_SCHEMES:
        raise DatabaseConnectionError(
            f"invalid connection string: a {scheme}:// URI; this store needs PostgreSQL "
            "(postgresql://user@host:5432/dbname, or host=… dbname=… user=…)"
        )
    rest = match.group("rest")
    at = rest.rfind("@")
    if at < 0:
        return
    userinfo = rest[:at]
    if not any(character in userinfo for character in "@/?#"):
        return
    before_query = rest.split("?", 1)[0]
    if "@" not in before_query and _HOST_AND_PATH.fullmatch(before_query):
        return  # the "@" is in a query parameter (?user=me@corp), not in a password
    raise DatabaseConnectionError(
        "invalid connection string: the user name or password of the URI holds a reserved "
        "character (@ / ? #); percent-encode it (urllib.parse.quote(password, safe=''))"
    )


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
