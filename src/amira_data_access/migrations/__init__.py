"""Plain SQL migrations: applied in order, recorded with checksums, one run at a time.

Files are ``migrations/NNNN_slug.sql``. :func:`migrate` takes a session-level
advisory lock by *polling* ``pg_try_advisory_lock``: a session blocked inside
``pg_advisory_lock()`` would hold a snapshot that a ``CREATE INDEX
CONCURRENTLY`` in the running migration must wait for, and the two would wait
on each other forever. Each file runs in its own transaction together with its
row in ``amira_config.schema_migrations``, so a file is either applied and
recorded, or neither. A file edited after it was applied is refused by name.

A file whose first non-blank line is ``-- migrate:no-transaction`` holds exactly
one statement (``CREATE INDEX CONCURRENTLY``…) that cannot run in a transaction.
Its history row is written ``success=false`` first and flipped to ``true`` once
the statement succeeded, so a failure (or a crash) leaves a visible failed row:
every later run refuses, naming any INVALID index, until :func:`repair`.

Every run validates first (failed rows, edited, missing, out-of-order and
duplicate files, and the content of pending files) and applies nothing when
anything is wrong.

Split by job, like dbmate and golang-migrate:

- :mod:`.files`: the files (naming, checksum, directives, content checks);
- :mod:`.lexer`: the statement splitter those checks use;
- :mod:`.history`: the history table and its comparison with the files;
- :mod:`.runner`: connection, advisory lock, applying one file;
- :mod:`.verbs`: :func:`migrate`, :func:`status`, :func:`verify`,
  :func:`baseline`, :func:`repair`, :func:`reset`;
- :mod:`.command`: ``python -m amira_data_access.migrations``, which is
  amira-config's schema commands (one command line, one set of exit codes).
"""

from .command import main
from .files import Migration, checksum, discover
from .history import AppliedMigration, MigrationStatus
from .runner import APPLICATION_NAME, LOCK_KEY
from .verbs import baseline, migrate, repair, reset, status, verify

# The verbs; what they return and read (files, history rows, the status); the
# checksum as recorded; the advisory lock's key and the application_name of the
# runner's sessions (for DBAs looking at pg_locks / pg_stat_activity); the
# command line's entry point.
__all__ = [
    "APPLICATION_NAME",
    "LOCK_KEY",
    "AppliedMigration",
    "Migration",
    "MigrationStatus",
    "baseline",
    "checksum",
    "discover",
    "main",
    "migrate",
    "repair",
    "reset",
    "status",
    "verify",
]
