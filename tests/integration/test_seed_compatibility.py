"""The seed's module-level API works exactly as the seed's own examples use it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from psycopg.conninfo import conninfo_to_dict

SEED_HAPPY_PATH = textwrap.dedent(
    """
    from amira_data_access.config_repository import set_configuration

    try:
        set_configuration(
            key='default_language',
            value='en-US',
            data_type='str',
            description='Default language for user interface',
            updated_by='developer-john-doe'
        )
        print("Default language set successfully!")
    except Exception as e:
        print(f"Error setting configuration: {e}")

    from amira_data_access.config_repository import get_configuration

    try:
        current_default_language = get_configuration(key='default_language')
        print(f"Current default language: {current_default_language}")
    except Exception as e:
        print(f"Error getting configuration: {e}")

    from amira_data_access.config_repository import delete_configuration
    assert get_configuration(key='default_language') == 'en-US'
    assert delete_configuration(key='default_language') is True
    assert get_configuration(key='default_language') is None
    """
)

SEED_FAILURE_PATH = textwrap.dedent(
    """
    from amira_data_access.config_repository import (
        ConfigurationAccessError, DatabaseConnectionError, get_configuration,
    )
    try:
        get_configuration(key='some_key')
    except DatabaseConnectionError as e:
        print(f"fallback used: {e}")
    """
)


def _run(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v for k, v in os.environ.items() if k != "AMIRA_CONFIG_DSN" and not k.startswith("DB_")
    }
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_seed_example_runs_unchanged_with_amira_config_dsn(dsn: str) -> None:
    """The seed's happy path, verbatim, against AMIRA_CONFIG_DSN."""
    result = _run(SEED_HAPPY_PATH, {"AMIRA_CONFIG_DSN": dsn})
    assert result.returncode == 0, result.stderr
    assert "Default language set successfully!" in result.stdout
    assert "Current default language: en-US" in result.stdout


def test_seed_example_runs_with_db_variables(dsn: str) -> None:
    """The same code with DB_HOST/DB_PORT/DB_NAME/DB_USER/DB_PASSWORD instead of a DSN."""
    parts = conninfo_to_dict(dsn)
    env = {
        "DB_HOST": str(parts["host"]),
        "DB_PORT": str(parts["port"]),
        "DB_NAME": str(parts["dbname"]),
        "DB_USER": str(parts["user"]),
        "DB_PASSWORD": str(parts.get("password") or ""),
    }
    result = _run(SEED_HAPPY_PATH, env)
    assert result.returncode == 0, result.stderr
    assert "Current default language: en-US" in result.stdout


def test_seed_failure_scenario_raises_database_connection_error() -> None:
    """With the database unreachable, get_configuration raises DatabaseConnectionError."""
    env = {"AMIRA_CONFIG_DSN": "host=127.0.0.1 port=1 dbname=x user=u password=hunter2"}
    result = _run(SEED_FAILURE_PATH, env)
    assert result.returncode == 0, result.stderr
    assert "fallback used:" in result.stdout
    assert "hunter2" not in result.stdout + result.stderr


def test_no_configuration_at_all_is_a_clear_error() -> None:
    """Without AMIRA_CONFIG_DSN or DB_* the error says what to set."""
    result = _run(SEED_FAILURE_PATH, {})
    assert result.returncode == 0, result.stderr
    assert "set AMIRA_CONFIG_DSN" in result.stdout


@pytest.mark.parametrize(
    "entry", ["get_configuration", "set_configuration", "delete_configuration"]
)
def test_module_functions_have_docstrings(entry: str) -> None:
    """The seed functions are documented."""
    from amira_data_access import config_repository

    assert getattr(config_repository, entry).__doc__
