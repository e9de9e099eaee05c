-- Named queries on amira_config.configurations. Loaded by aiosql; the line after
-- each name is the query's documentation. Every value is a bound parameter.
--
-- Every write is ONE statement (run in autocommit: one round trip). Its
-- "context" CTE sets, for this transaction only, who acts and why; the triggers
-- of migrations/0002 read them to keep version, updated_by and the history.
-- The column list is the same everywhere, so a row always maps to ConfigEntry.

-- name: get_configuration(key)^
-- Fetch one key's stored row, or nothing when the key is absent.
SELECT key, value, data_type, description, version, created_at, updated_at, updated_by
  FROM amira_config.configurations
 WHERE key = :key;

-- name: get_configuration_value(key)^
-- Fetch one key's value and type only: the hot path of ConfigDAL.get().
SELECT value, data_type
  FROM amira_config.configurations
 WHERE key = :key;

-- name: get_configuration_values(keys)
-- Fetch the values of many keys in one round trip; absent keys give no row.
SELECT key, value, data_type
  FROM amira_config.configurations
 WHERE key = ANY(:keys);

-- name: get_configurations(keys)
-- Fetch the stored rows of many keys in one round trip (the cache fills from these).
SELECT key, value, data_type, description, version, created_at, updated_at, updated_by
  FROM amira_config.configurations
 WHERE key = ANY(:keys);

-- name: list_configurations(prefix, prefix_end, after, limit)
-- Keys starting with :prefix, after the key :after (keyset pagination), in key order.
-- :prefix_end is the first string after every key with the prefix: with both
-- bounds the index range is bounded under a generic plan too (psycopg prepares a
-- statement after 5 runs, and a generic plan cannot read the prefix's end out of
-- starts_with(): it scanned from the prefix to the end of the table).
SELECT key, value, data_type, description, version, created_at, updated_at, updated_by
  FROM amira_config.configurations
 WHERE key >= :prefix
   AND key < :prefix_end
   AND starts_with(key, :prefix)
   AND key > COALESCE(:after, '')
 ORDER BY key
 LIMIT :limit;

-- name: upsert_configuration(key, value, data_type, inferred_type, description, updated_by, reason)^
-- Insert a key, or replace its value (the trigger bumps its version); return the stored row.
-- An omitted type (:data_type null) keeps the stored one on update and is inferred on insert.
WITH context AS (
    SELECT set_config('amira_config.actor', :updated_by, true),
           set_config('amira_config.reason', COALESCE(:reason, ''), true)
)
INSERT INTO amira_config.configurations AS c
       (key, value, data_type, description, updated_by)
SELECT :key, :value, COALESCE(:data_type, :inferred_type), :description, :updated_by
  FROM context
    ON CONFLICT (key) DO UPDATE
   SET value       = EXCLUDED.value,
       data_type   = COALESCE(:data_type, c.data_type),
       description = COALESCE(:description, c.description),
       updated_by  = EXCLUDED.updated_by
RETURNING key, value, data_type, description, version, created_at, updated_at, updated_by;

-- name: upsert_configurations(keys, values, data_types, inferred_types, descriptions, updated_by, reason)
-- Insert or replace many keys in one statement: all or nothing, one revision.
-- An omitted type keeps the stored one, else is inferred; an omitted description is kept.
WITH context AS (
    SELECT set_config('amira_config.actor', :updated_by, true),
           set_config('amira_config.reason', COALESCE(:reason, ''), true)
), given AS MATERIALIZED (
    -- The explicit types by key, one jsonb object built once (MATERIALIZED: inlined, it
    -- was rebuilt per row) and looked up per updated row below in O(log n); a subquery
    -- over the unnest there was O(n) per row: 54 of 77 ms for 1000 keys.
    SELECT jsonb_object_agg(key, data_type) AS types
      FROM unnest(:keys::text[], :data_types::text[]) AS typed(key, data_type)
)
INSERT INTO amira_config.configurations AS c
       (key, value, data_type, description, updated_by)
SELECT item.key, item.value, COALESCE(item.data_type, item.inferred_type),
       item.description, :updated_by
  FROM context,
       unnest(:keys::text[], :values::jsonb[], :data_types::text[], :inferred_types::text[],
              :descriptions::text[]) AS item(key, value, data_type, inferred_type, description)
 -- Key order: concurrent batches then lock rows in the same order, so they cannot
 -- deadlock, and the history and its announcements list the changes in key order.
 ORDER BY item.key
    ON CONFLICT (key) DO UPDATE
   SET value       = EXCLUDED.value,
       -- The explicit type, else the type of the row actually updated (not the one
       -- the statement's snapshot saw: a concurrent type change is kept).
       data_type   = COALESCE((SELECT given.types ->> EXCLUDED.key FROM given), c.data_type),
       description = COALESCE(EXCLUDED.description, c.description),
       updated_by  = EXCLUDED.updated_by
RETURNING key, value, data_type, description, version, created_at, updated_at, updated_by;

-- name: replace_configuration_if_version(key, value, data_type, description, updated_by, reason, expected_version)^
-- Replace a key only if its version is :expected_version; else return its current row unchanged.
-- First column: whether the change was applied. No row: the key does not exist.
WITH context AS (
    SELECT set_config('amira_config.actor', :updated_by, true),
           set_config('amira_config.reason', COALESCE(:reason, ''), true)
), changed AS (
    UPDATE amira_config.configurations AS c
       SET value       = :value,
           data_type   = COALESCE(:data_type, c.data_type),
           description = COALESCE(:description, c.description),
           updated_by  = :updated_by
      FROM context
     WHERE c.key = :key
       AND c.version = :expected_version
    RETURNING c.key, c.value, c.data_type, c.description, c.version, c.created_at,
              c.updated_at, c.updated_by
)
SELECT true, * FROM changed
UNION ALL
SELECT false, key, value, data_type, description, version, created_at, updated_at, updated_by
  FROM amira_config.configurations
 WHERE key = :key
   AND NOT EXISTS (SELECT FROM changed);

-- name: insert_configuration_if_absent(key, value, data_type, description, updated_by, reason)^
-- Insert a key only if it does not exist; else return the existing row unchanged.
-- First column: whether the row was inserted. No row: a concurrent insert is not visible yet.
WITH context AS (
    SELECT set_config('amira_config.actor', :updated_by, true),
           set_config('amira_config.reason', COALESCE(:reason, ''), true)
), inserted AS (
    INSERT INTO amira_config.configurations (key, value, data_type, description, updated_by)
    SELECT :key, :value, :data_type, :description, :updated_by
      FROM context
        ON CONFLICT (key) DO NOTHING
    RETURNING key, value, data_type, description, version, created_at, updated_at, updated_by
)
SELECT true, * FROM inserted
UNION ALL
SELECT false, key, value, data_type, description, version, created_at, updated_at, updated_by
  FROM amira_config.configurations
 WHERE key = :key
   AND NOT EXISTS (SELECT FROM inserted);

-- name: delete_configuration(key, deleted_by, reason)!
-- Remove one key (its history stays); the affected row count says whether it existed.
WITH context AS (
    SELECT set_config('amira_config.actor', :deleted_by, true),
           set_config('amira_config.reason', COALESCE(:reason, ''), true)
)
DELETE FROM amira_config.configurations AS c
 USING context
 WHERE c.key = :key;

-- name: delete_configuration_if_version(key, deleted_by, reason, expected_version)^
-- Remove a key only if its version is :expected_version.
-- Returns (deleted, version): the deleted or the current version. No row: the key does not exist.
WITH context AS (
    SELECT set_config('amira_config.actor', :deleted_by, true),
           set_config('amira_config.reason', COALESCE(:reason, ''), true)
), deleted AS (
    DELETE FROM amira_config.configurations AS c
     USING context
     WHERE c.key = :key
       AND c.version = :expected_version
    RETURNING c.version
)
SELECT true, version FROM deleted
UNION ALL
SELECT false, version
  FROM amira_config.configurations
 WHERE key = :key
   AND NOT EXISTS (SELECT FROM deleted);

-- name: delete_configurations(keys, deleted_by, reason, expected_count)
-- Remove the existing keys among :keys in one statement (all or nothing, one revision),
-- only if :expected_count is null or exactly that many exist: one (key, deleted) row per
-- existing key, in key order; deleted is false for every row when the count differs.
WITH context AS (
    SELECT set_config('amira_config.actor', :deleted_by, true),
           set_config('amira_config.reason', COALESCE(:reason, ''), true)
), existing AS (
    -- Locked in key order, so concurrent bulk changes cannot deadlock, and counted
    -- before anything is deleted.
    SELECT key
      FROM amira_config.configurations
     WHERE key = ANY(:keys)
     ORDER BY key
       FOR UPDATE
), deleted AS (
    DELETE FROM amira_config.configurations AS c
     USING context
     WHERE c.key IN (SELECT key FROM existing)
       AND (:expected_count::bigint IS NULL
            OR (SELECT count(*) FROM existing) = :expected_count::bigint)
    RETURNING c.key
)
SELECT existing.key, deleted.key IS NOT NULL
  FROM existing
  LEFT JOIN deleted ON deleted.key = existing.key
 ORDER BY existing.key;

-- name: delete_configurations_by_prefix(prefix, prefix_end, deleted_by, reason, expected_count)
-- Remove every key starting with :prefix, as delete_configurations does for a list
-- (:prefix_end bounds the index range, as in list_configurations).
WITH context AS (
    SELECT set_config('amira_config.actor', :deleted_by, true),
           set_config('amira_config.reason', COALESCE(:reason, ''), true)
), existing AS (
    SELECT key
      FROM amira_config.configurations
     WHERE key >= :prefix
       AND key < :prefix_end
       AND starts_with(key, :prefix)
     ORDER BY key
       FOR UPDATE
), deleted AS (
    DELETE FROM amira_config.configurations AS c
     USING context
     WHERE c.key IN (SELECT key FROM existing)
       AND (:expected_count::bigint IS NULL
            OR (SELECT count(*) FROM existing) = :expected_count::bigint)
    RETURNING c.key
)
SELECT existing.key, deleted.key IS NOT NULL
  FROM existing
  LEFT JOIN deleted ON deleted.key = existing.key
 ORDER BY existing.key;
