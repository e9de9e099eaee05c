"""``python -m amira_data_access.cli``: the same as the ``amira-config`` script."""

import sys

from amira_data_access.cli import main

sys.exit(main())
