-- Named queries of the migration runner (amira_data_access.migrations).
-- The history table is created by the runner, after it holds the lock, because
-- it must exist before the first migration file can be recorded.

-- name: create_migration_history#
-- Create the schema and the migration history table if they do not exist yet.
CREATE SCHEMA IF NOT EXISTS amira_config;
CREATE TABLE IF NOT EXISTS amira_config.schema_migrations (
    version       integer     PRIMARY KEY CHECK (version >= 0),
    name          text        NOT NULL,
    checksum      text        NOT NULL CHECK (checksum LIKE 'v1:sha256:%'),
    transactional boolean     NOT NULL DEFAULT true,
    success       boolean     NOT NULL DEFAULT true,
    kind          text        NOT NULL DEFAULT 'apply' CHECK (kind IN ('apply', 'baseline')),
    applied_at    timestamptz NOT NULL DEFAULT now(),
    applied_by    text        NOT NULL,
    execution_ms  integer     NOT NULL DEFAULT 0 CHECK (execution_ms >= 0)
);

-- name: migration_history_exists()$
-- Whether the migration history table exists (status must not create it).
SELECT to_regclass('amira_config.schema_migrations') IS NOT NULL;

-- name: list_applied_migrations()
-- Every recorded migration, oldest version first.
SELECT version, name, checksum, transactional, success, kind, applied_at, applied_by, execution_ms
  FROM amira_config.schema_migrations
 ORDER BY version;

-- name: record_migration(version, name, checksum, transactional, success, kind, applied_by, execution_ms)!
-- Record one applied migration; runs in the same transaction as the migration itself.
INSERT INTO amira_config.schema_migrations
       (version, name, checksum, transactional, success, kind, applied_by, execution_ms)
VALUES (:version, :name, :checksum, :transactional, :success, :kind, :applied_by, :execution_ms);

-- name: try_migration_lock(lock_key)$
-- Try to take the session-level advisory lock that serialises migration runs; never waits.
SELECT pg_try_advisory_lock(:lock_key);

-- name: release_migration_lock(lock_key)$
-- Release the migration lock taken by this session.
SELECT pg_advisory_unlock(:lock_key);

-- name: migration_lock_holder(lock_key)$
-- The pid of the session holding the migration lock, if any.
SELECT pid
  FROM pg_locks
 WHERE locktype = 'advisory'
   AND granted
   AND classid = ((:lock_key::bigint >> 32) & 4294967295)::oid
   AND objid = (:lock_key::bigint & 4294967295)::oid
   AND objsubid = 1
 LIMIT 1;
