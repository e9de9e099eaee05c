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

-- name: set_migration_history_success(version, execution_ms)!
-- Mark a no-transaction migration as done, once its statement has succeeded.
UPDATE amira_config.schema_migrations
   SET success = true, execution_ms = :execution_ms, applied_at = now()
 WHERE version = :version
   AND NOT success;

-- name: delete_failed_migration(version)!
-- Forget a failed migration (repair), so that its file is applied again; never a successful one.
DELETE FROM amira_config.schema_migrations
 WHERE version = :version
   AND NOT success;

-- name: count_migration_history()$
-- How many rows the history holds (baseline only writes into an empty one).
SELECT count(*) FROM amira_config.schema_migrations;

-- name: list_invalid_indexes()
-- Indexes left INVALID (a failed or interrupted CREATE INDEX CONCURRENTLY), schema-qualified.
SELECT quote_ident(ns.nspname) || '.' || quote_ident(ix.relname) AS index_name
  FROM pg_index AS i
  JOIN pg_class AS ix ON ix.oid = i.indexrelid
  JOIN pg_namespace AS ns ON ns.oid = ix.relnamespace
 WHERE NOT i.indisvalid
 ORDER BY 1;

-- name: set_local_migration_timeouts(lock_timeout, statement_timeout)$
-- SET LOCAL lock_timeout and statement_timeout for the current migration transaction;
-- NULL keeps the server's setting.
SELECT set_config('lock_timeout', coalesce(:lock_timeout, current_setting('lock_timeout')), true),
       set_config('statement_timeout',
                  coalesce(:statement_timeout, current_setting('statement_timeout')), true);

-- name: set_session_statement_timeout(statement_timeout)$
-- statement_timeout for this session (a no-transaction migration runs outside any transaction).
SELECT set_config('statement_timeout', :statement_timeout, false);

-- name: reset_session_statement_timeout#
-- Back to the server's statement_timeout once the no-transaction migration is done.
RESET statement_timeout;

-- name: drop_config_schema#
-- reset(): drop the schema and everything in it, history included. Tests only.
DROP SCHEMA IF EXISTS amira_config CASCADE;
