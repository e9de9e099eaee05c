-- Named queries of the audit trail (amira_data_access.audit): the hash chain, its
-- stubs and head, and the checks `amira-config audit verify` makes (migrations/0008).
--
-- The verify queries use built-in SQL only, never amira_config's functions: whoever
-- could rewrite the rows could also have redefined those.

-- name: list_chained_history(after, limit)
-- Committed history rows after chain position :after, in chain order, each field as
-- the chain hashes it (value as jsonb's text, changed_at in microseconds since the epoch).
SELECT chain_position, revision, key, version, operation, value::text, data_type, description,
       changed_by, login, (extract(epoch FROM changed_at) * 1000000)::bigint::text,
       change_reason, digest, changed_at
  FROM amira_config.configuration_history
 WHERE chain_position > :after
 ORDER BY chain_position
 LIMIT :limit;

-- name: list_pruned_stubs(after, limit)
-- Stubs of pruned rows after chain position :after, in chain order.
SELECT chain_position, key, version, revision, content_hash, pruned_at, pruned_by
  FROM amira_config.configuration_history_pruned
 WHERE chain_position > :after
 ORDER BY chain_position
 LIMIT :limit;

-- name: list_unchained_history()
-- Committed history rows outside the chain: written with the triggers disabled.
SELECT key, version, revision
  FROM amira_config.configuration_history
 WHERE chain_position IS NULL OR digest IS NULL
 ORDER BY key, version;

-- name: get_chain_head()^
-- The chain's head as the commit trigger left it: (last position, last digest, last revision).
SELECT last_position, last_digest, last_revision
  FROM amira_config.revision_counter;

-- name: list_table_history_disagreements()
-- Keys whose live row is not what their newest history row says, and keys the
-- history says exist but the table lacks: (key, live version, history's version, operation).
SELECT coalesce(c.key, h.key), c.version, h.version, h.operation
  FROM amira_config.configurations AS c
  FULL JOIN (SELECT DISTINCT ON (key) key, version, operation, value, data_type, description
               FROM amira_config.configuration_history
              ORDER BY key, version DESC) AS h
    ON h.key = c.key
 WHERE (c.key IS NULL AND h.operation <> 'delete')
    OR (c.key IS NOT NULL
        AND (h.key IS NULL OR h.operation = 'delete' OR h.version <> c.version
             OR h.value <> c.value OR h.data_type <> c.data_type
             OR h.description IS DISTINCT FROM c.description))
 ORDER BY 1;

-- name: list_suspect_triggers()
-- Triggers on amira_config's tables that are disabled, or run a function outside the
-- schema or owned by another role than the table (someone with the TRIGGER privilege).
SELECT c.relname, t.tgname, t.tgenabled::text, fn.nspname, p.proname
  FROM pg_catalog.pg_trigger AS t
  JOIN pg_catalog.pg_class AS c ON c.oid = t.tgrelid
  JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
  JOIN pg_catalog.pg_proc AS p ON p.oid = t.tgfoid
  JOIN pg_catalog.pg_namespace AS fn ON fn.oid = p.pronamespace
 WHERE n.nspname = 'amira_config'
   AND NOT t.tgisinternal
   AND (t.tgenabled <> 'O' OR fn.nspname <> 'amira_config' OR p.proowner <> c.relowner)
 ORDER BY 1, 2;

-- name: prune_history(older_than, keep_last, key, versions)$
-- Remove history rows (retention, or a purge of some versions of one key), leaving stubs
-- for the chain; how many were removed. Admins only (migrations/0008).
SELECT amira_config.prune_history(:older_than::interval, :keep_last::integer, :key::text,
                                  :versions::bigint[]);

-- name: list_write_scopes()
-- Every write scope: (role, prefix, granted_by, granted_at), by role and prefix.
SELECT role, prefix, granted_by, granted_at
  FROM amira_config.write_scopes
 ORDER BY role, prefix;

-- name: grant_write_scope(role, prefix)!
-- Let :role write keys starting with :prefix (nothing happens if it already may).
INSERT INTO amira_config.write_scopes (role, prefix)
VALUES (:role, :prefix)
    ON CONFLICT (role, prefix) DO NOTHING;

-- name: revoke_write_scope(role, prefix)!
-- Take a prefix back from :role; the row count says whether it had it.
DELETE FROM amira_config.write_scopes
 WHERE role = :role
   AND prefix = :prefix;
