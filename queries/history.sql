-- Named queries on amira_config.configuration_history, the append-only record of
-- every change (written by the triggers of migrations/0002, never by the library).
--
-- Since migrations/0006 each row's revision and changed_at are given when its
-- transaction commits, one commit after the other: revisions in commit order,
-- changed_at never decreasing with them. Per key, version order is commit order
-- too (a key's writers wait for each other's row lock), so a key's last commit
-- at or before :at is its entry just below :at on (key, changed_at, version), the
-- index of migrations/0013 (version breaks the tie between several changes of one
-- transaction); walking the primary key back from the newest version read every
-- change after :at. A snapshot at :at is the current row of each key with no
-- change after :at, and for the keys changed since, their last change at or
-- before it: it reads the changes after :at, not the whole history.

-- name: list_history(key, before_version, limit)
-- A key's changes, newest first, optionally only those older than :before_version.
-- login: the database login that made the change (migrations/0008).
SELECT revision, key, version, operation, value, data_type, description,
       changed_by, changed_at, change_reason, login
  FROM amira_config.configuration_history
 WHERE key = :key
   AND (:before_version::bigint IS NULL OR version < :before_version::bigint)
 ORDER BY version DESC
 LIMIT :limit;

-- name: get_value_at(key, at)^
-- The last change of a key committed at or before :at: (operation, value, data_type), or nothing.
SELECT operation, value, data_type
  FROM amira_config.configuration_history
 WHERE key = :key
   AND version = (SELECT version
                    FROM amira_config.configuration_history
                   WHERE key = :key
                     AND changed_at <= :at
                   ORDER BY changed_at DESC, version DESC
                   LIMIT 1);

-- name: get_snapshot_at(at, prefix, prefix_end)
-- Every key starting with :prefix as committed at :at: (key, value, data_type), in key order.
-- :prefix_end (core.arguments.prefix_end) bounds the key range under a generic plan too.
-- The row by row form of get_snapshot_chunks_at, read when a chunk is unreadable.
WITH changed AS MATERIALIZED (
    SELECT DISTINCT h.key
      FROM amira_config.configuration_history AS h
     WHERE h.changed_at > :at
       AND h.key >= :prefix
       AND h.key < :prefix_end
       AND starts_with(h.key, :prefix)
       AND :at < (SELECT max(newest.changed_at) FROM amira_config.configuration_history AS newest)
)
SELECT key, value, data_type
  FROM (SELECT c.key, c.value, c.data_type
          FROM amira_config.configurations AS c
         WHERE c.key >= :prefix
           AND c.key < :prefix_end
           AND starts_with(c.key, :prefix)
           AND c.key NOT IN (SELECT changed.key FROM changed)
        UNION ALL
        SELECT changed.key, last.value, last.data_type
          FROM changed
          JOIN amira_config.configuration_history AS last
            ON last.key = changed.key
           AND last.version = (SELECT h.version
                                 FROM amira_config.configuration_history AS h
                                WHERE h.key = changed.key
                                  AND h.changed_at <= :at
                                ORDER BY h.changed_at DESC, h.version DESC
                                LIMIT 1)
         WHERE last.operation <> 'delete') AS snapshot
 ORDER BY key;

-- name: get_snapshot_chunks_at(at, prefix, prefix_end)
-- get_snapshot_at's rows as JSON objects of 250 keys each, in key order: (values, typed).
-- values is {key: value}; typed is {key: data_type} of the keys whose data_type
-- codec.decode_value does not return unchanged (NULL: none). One JSON document per
-- 250 keys instead of a row per key: the client decodes 100 k keys in 400 json.loads
-- calls instead of 100 k rows of Python objects. A chunk stays far below the 1 GB a
-- text can hold: values written since migration 0007 are at most 1 MB (its NOT VALID
-- check), and 250 older ones would have to average 4 MB to reach it.
WITH changed AS MATERIALIZED (
    SELECT DISTINCT h.key
      FROM amira_config.configuration_history AS h
     WHERE h.changed_at > :at
       AND h.key >= :prefix
       AND h.key < :prefix_end
       AND starts_with(h.key, :prefix)
       AND :at < (SELECT max(newest.changed_at) FROM amira_config.configuration_history AS newest)
), snapshot AS (
    SELECT c.key, c.value, c.data_type
      FROM amira_config.configurations AS c
     WHERE c.key >= :prefix
       AND c.key < :prefix_end
       AND starts_with(c.key, :prefix)
       AND c.key NOT IN (SELECT changed.key FROM changed)
    UNION ALL
    SELECT changed.key, last.value, last.data_type
      FROM changed
      JOIN amira_config.configuration_history AS last
        ON last.key = changed.key
       AND last.version = (SELECT h.version
                             FROM amira_config.configuration_history AS h
                            WHERE h.key = changed.key
                              AND h.changed_at <= :at
                            ORDER BY h.changed_at DESC, h.version DESC
                            LIMIT 1)
     WHERE last.operation <> 'delete'
), numbered AS (
    SELECT key, value, data_type, (row_number() OVER (ORDER BY key) - 1) / 250 AS chunk
      FROM snapshot
)
SELECT json_object_agg(key, value ORDER BY key) AS "values",
       json_object_agg(key, data_type ORDER BY key)
           FILTER (WHERE data_type NOT IN ('str', 'int', 'bool', 'json', 'flag')) AS typed
  FROM numbered
 GROUP BY chunk
 ORDER BY chunk;

-- name: rollback_configuration(key, to_version, updated_by, reason)^
-- Write a new version of a key with the value, type and description of :to_version.
-- No row: the key never had that version (or that version is a deletion).
-- Admins only (amira_config.require_admin of migrations/0008: 42501 naming key and login).
WITH context AS (
    SELECT set_config('amira_config.actor', :updated_by, true),
           set_config('amira_config.reason', COALESCE(:reason, ''), true)
), target AS (
    SELECT value, data_type, description
      FROM amira_config.configuration_history
     WHERE key = :key
       AND version = :to_version
       AND operation <> 'delete'
       AND amira_config.require_admin('rollback', :key)
)
INSERT INTO amira_config.configurations AS c (key, value, data_type, description, updated_by)
SELECT :key, target.value, target.data_type, target.description, :updated_by
  FROM target, context
    ON CONFLICT (key) DO UPDATE
   SET value       = EXCLUDED.value,
       data_type   = EXCLUDED.data_type,
       description = EXCLUDED.description,
       updated_by  = EXCLUDED.updated_by
RETURNING key, value, data_type, description, version, created_at, updated_at, updated_by;
