"""``python -m amira_data_access.migrations ARGS``."""

import sys

from amira_data_access.migrations import main

sys.exit(main())
