"""Where the database is: settings read from the environment, secrets kept out of sight.

Credentials come only from the environment: ``AMIRA_CONFIG_DSN`` (a libpq
connection string or URI), else the ``DB_HOST``/``DB_PORT``/``DB_NAME``/
``DB_USER``/``DB_PASSWORD`` set (names matched case-insensitively, as
pydantic-settings does). The password is never shown: :func:`describe_dsn` and
:meth:`DatabaseVariables.described` give the text that logs and errors use.

``DB_*`` are common names, so a variable meant for another application (a
MySQL ``DB_PORT=3306``) may be what this library picks up: every error about
the environment names the variables it read, with their values (passwords
shown as ``***``), so that is seen at once.

:class:`DatabaseSettings` (pydantic-settings) is the same reading as a settings
model; it is defined on first use, so that reading the environment here
(:func:`conninfo_from_env`, which every ``from_env()`` uses) does not import
pydantic: that import alone costs more than a command-line call may take.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote

from .errors import DatabaseConnectionError

if TYPE_CHECKING:
    from ._settings_model import DatabaseSettings

__all__ = [
    "DATABASE_VARIABLES",
    "DatabaseSettings",
    "DatabaseVariables",
    "ParsedDsn",
    "build_conninfo",
    "conninfo_from_env",
    "database_variables",
    "describe_dsn",
    "parse_dsn",
]

DSN_VARIABLE: Final = "AMIRA_CONFIG_DSN"
# Every variable that names the database, in the order messages list them.
DATABASE_VARIABLES: Final = (
    DSN_VARIABLE,
    "DB_HOST",
    "DB_PORT",
    "DB_NAME",
    "DB_USER",
    "DB_PASSWORD",
)
_SECRET_VARIABLES: Final = frozenset({"DB_PASSWORD"})
DEFAULT_PORT: Final = 5432


def __getattr__(name: str) -> Any:
    # PEP 562: the pydantic model is built (and pydantic imported) on first use only.
    if name == "DatabaseSettings":
        from ._settings_model import DatabaseSettings

        return DatabaseSettings
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass(frozen=True, slots=True)
class DatabaseVariables:
    """The database variables set (not blank) in an environment, as they were spelled."""

    values: Mapping[str, tuple[str, str]]  # canonical name -> (name as set, value)

    def __bool__(self) -> bool:
        return bool(self.values)

    def get(self, name: str) -> str | None:
        """The value of a canonical name (``DB_PORT``), None if not set."""
        found = self.values.get(name)
        return found[1] if found is not None else None

    def described(self) -> list[str]:
        """``NAME=value`` for each, passwords as ``***`` and a DSN by its host and database."""
        shown: list[str] = []
        for name in DATABASE_VARIABLES:
            if name not in self.values:
                continue
            spelled, value = self.values[name]
            if name == DSN_VARIABLE:
                shown.append(f"{spelled} ({describe_dsn(value)})")
            elif name in _SECRET_VARIABLES:
                shown.append(f"{spelled}=***")
            else:
                shown.append(f"{spelled}={value}")
        return shown

    def conninfo(self) -> str:
        """The connection string these variables name; a clear error naming them if they
        do not name one."""
        dsn = self.get(DSN_VARIABLE)
        if dsn is not None:
            return dsn
        port_text = self.get("DB_PORT")
        port = DEFAULT_PORT
        if port_text is not None:
            port = _port(port_text, self.values["DB_PORT"][0])
        host, name, user = self.get("DB_HOST"), self.get("DB_NAME"), self.get("DB_USER")
        if host and name and user:
            return build_conninfo(host, port, name, user, self.get("DB_PASSWORD"))
        raise DatabaseConnectionError(_incomplete(self))


def _port(text: str, spelled: str) -> int:
    try:
        port = int(text.strip())
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise DatabaseConnectionError(
            f"invalid database settings in the environment: {spelled}={text!r} is not a "
            "port number (1-65535)"
        )
    return port


def _incomplete(variables: DatabaseVariables) -> str:
    base = (
        "no database configured: set AMIRA_CONFIG_DSN, or DB_HOST, DB_NAME and DB_USER "
        "(with DB_PORT and DB_PASSWORD as needed)"
    )
    if not variables:
        return base
    missing = [name for name in ("DB_HOST", "DB_NAME", "DB_USER") if not variables.get(name)]
    return (
        f"{base}; the environment has {', '.join(variables.described())} but not "
        f"{', '.join(missing)} (if those are another application's, unset them)"
    )


def database_variables(environ: Mapping[str, str] | None = None) -> DatabaseVariables:
    """The database variables set in ``environ`` (default: ``os.environ``), blank ones ignored.

    Names are matched case-insensitively (``db_host`` counts), an exact spelling first.
    """
    env = os.environ if environ is None else environ
    found: dict[str, tuple[str, str]] = {}
    for spelled, value in env.items():
        canonical = spelled.upper()
        if canonical not in DATABASE_VARIABLES or not value.strip():
            continue
        if canonical in found and found[canonical][0] == canonical:
            continue  # DB_HOST wins over db_host
        found[canonical] = (spelled, value)
    return DatabaseVariables(found)


def conninfo_from_env(environ: Mapping[str, str] | None = None) -> str:
    """The connection string the environment names; DatabaseConnectionError if none or bad."""
    return database_variables(environ).conninfo()


def build_conninfo(host: str, port: int, name: str, user: str, password: str | None) -> str:
    """A libpq connection string from the ``DB_*`` parts (values quoted as libpq needs)."""
    from psycopg.conninfo import make_conninfo

    return make_conninfo(host=host, port=port, dbname=name, user=user, password=password)


@dataclass(frozen=True, slots=True)
class ParsedDsn:
    """A checked connection string, what may be shown of it, and what must never be."""

    conninfo: str
    description: str
    secrets: tuple[str, ...]


def parse_dsn(dsn: str) -> ParsedDsn:
    """Check a connection string without connecting; raise a clear, secret-free error if bad."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

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
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    try:
        return _describe(conninfo_to_dict(dsn))
    except psycopg.ProgrammingError:
        return "<invalid connection string>"


def _describe(parts: Mapping[str, object]) -> str:
    shown = [
        f"{name}={parts[name]}" for name in ("host", "port", "dbname", "user") if parts.get(name)
    ]
    return " ".join(shown) or "<libpq defaults>"
