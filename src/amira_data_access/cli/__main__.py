"""``python -m amira_data_access.cli``: the same as the ``amira-config`` script."""

from amira_data_access.cli import run

run()
