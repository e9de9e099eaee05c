"""``python -m amira_data_access.migrations ARGS``: amira-config's schema commands.

Not a second command line: this runs :func:`amira_data_access.cli.main` with
only the schema topic (``migrate``, ``status``, ``verify``, ``baseline``,
``repair``, ``reset``, ``check``), so the options (``--dsn``, ``--directory``,
``--json``…), the output and the exit codes are those of ``amira-config``, as
dbmate and golang-migrate have one CLI over their verbs.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["main"]

DESCRIPTION = (
    "Apply and inspect amira-data-access migrations: amira-config's schema commands, "
    "with the same options, output and exit codes."
)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one schema command of amira-config; return its exit code."""
    # Imported here, not above: the CLI imports the DAL (and the pool), which import
    # this package lazily themselves; importing the migrations needs neither.
    from .. import cli

    return cli.main(argv, topics=(cli.schema.add_commands,), description=DESCRIPTION)
