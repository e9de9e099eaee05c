"""DatabaseSettings: the environment's database settings as a pydantic-settings model.

Imported by :mod:`.settings` on first use of ``DatabaseSettings`` (pydantic is
slow to import, and nothing on the library's own paths needs it): the reading
rules are :class:`~.settings.DatabaseVariables`'s, so the two cannot disagree.
"""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from .settings import DEFAULT_PORT, DatabaseVariables, build_conninfo

__all__ = ["DatabaseSettings"]


class DatabaseSettings(BaseSettings):
    """Connection settings from the environment (see :mod:`amira_data_access.settings`)."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    dsn: SecretStr | None = Field(default=None, validation_alias="AMIRA_CONFIG_DSN")
    host: str | None = Field(default=None, validation_alias="DB_HOST")
    port: int = Field(default=DEFAULT_PORT, validation_alias="DB_PORT", ge=1, le=65535)
    name: str | None = Field(default=None, validation_alias="DB_NAME")
    user: str | None = Field(default=None, validation_alias="DB_USER")
    password: SecretStr | None = Field(default=None, validation_alias="DB_PASSWORD")

    def conninfo(self) -> str:
        """The connection string to use; raises when the settings name no database."""
        if self.dsn is not None and self.dsn.get_secret_value().strip():
            return self.dsn.get_secret_value()
        if self.host and self.name and self.user:
            password = self.password.get_secret_value() if self.password else None
            return build_conninfo(self.host, self.port, self.name, self.user, password)
        # Not all of host, name and user: the same message the environment reading gives.
        return self._variables().conninfo()

    def _variables(self) -> DatabaseVariables:
        """These settings as the environment variables they stand for (for the message)."""
        values: dict[str, tuple[str, str]] = {}
        for name, value in (
            ("DB_HOST", self.host),
            ("DB_PORT", str(self.port) if self.port != DEFAULT_PORT else None),
            ("DB_NAME", self.name),
            ("DB_USER", self.user),
            ("DB_PASSWORD", self.password.get_secret_value() if self.password else None),
        ):
            if value:
                values[name] = (name, value)
        return DatabaseVariables(values)
