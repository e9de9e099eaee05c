"""Locate the SQL that ships with the package (queries/ and migrations/)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["sql_dir"]

_PACKAGE = Path(__file__).resolve().parent


def sql_dir(name: str) -> Path:
    """The ``queries`` or ``migrations`` folder: inside an installed wheel, else the source tree."""
    installed = _PACKAGE / "_sql" / name
    if installed.is_dir():
        return installed
    # Editable install / source checkout: src/amira_data_access -> repository root.
    source = _PACKAGE.parent.parent / name
    if source.is_dir():
        return source
    raise FileNotFoundError(f"cannot find the {name}/ folder of amira-data-access near {_PACKAGE}")
