-- Named queries on amira_config.configurations. Loaded by aiosql; the line after
-- each name is the query's documentation. Every value is a bound parameter.
-- The column list is the same everywhere so a row always maps to ConfigEntry.

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

-- name: upsert_configuration(key, value, data_type, inferred_type, description, updated_by)^
-- Insert a key at version 1, or replace its value and bump its version; return the stored row.
-- An omitted type (:data_type null) keeps the stored one on update and is inferred on insert.
INSERT INTO amira_config.configurations AS c
       (key, value, data_type, description, updated_by)
VALUES (:key, :value, COALESCE(:data_type, :inferred_type), :description, :updated_by)
ON CONFLICT (key) DO UPDATE
   SET value       = EXCLUDED.value,
       data_type   = COALESCE(:data_type, c.data_type),
       description = COALESCE(:description, c.description),
       version     = c.version + 1,
       updated_at  = now(),
       updated_by  = EXCLUDED.updated_by
RETURNING key, value, data_type, description, version, created_at, updated_at, updated_by;

-- name: delete_configuration(key)!
-- Remove one key; the affected row count says whether it existed.
DELETE FROM amira_config.configurations
 WHERE key = :key;

-- name: list_configurations(prefix, after, limit)
-- Keys starting with :prefix, after the key :after (keyset pagination), in key order.
SELECT key, value, data_type, description, version, created_at, updated_at, updated_by
  FROM amira_config.configurations
 WHERE key >= :prefix
   AND starts_with(key, :prefix)
   AND key > COALESCE(:after, '')
 ORDER BY key
 LIMIT :limit;
