-- Named queries on amira_config.schemas, the JSON Schemas values must satisfy
-- (migrations/0010). The library validates against them before every write.

-- name: get_schema_revision()$
-- The revision of the last schema change (0: none): what a writer compares with its copy.
SELECT revision FROM amira_config.schema_revision WHERE id;

-- name: list_schemas()
-- Every schema, with the revision it was read at: (revision, target, kind, schema, description, version, updated_by, updated_at).
SELECT r.revision, s.target, s.kind, s.schema, s.description, s.version, s.updated_by, s.updated_at
  FROM amira_config.schema_revision AS r
  LEFT JOIN amira_config.schemas AS s ON true
 WHERE r.id
 ORDER BY s.target, s.kind;

-- name: upsert_schema(target, kind, schema, description, updated_by)^
-- Attach a schema to a key or prefix, or replace it (the trigger bumps version and revision).
WITH context AS (
    SELECT set_config('amira_config.actor', :updated_by, true)
)
INSERT INTO amira_config.schemas AS s (target, kind, schema, description, updated_by)
SELECT :target, :kind, :schema, :description, :updated_by
  FROM context
    ON CONFLICT (target, kind) DO UPDATE
   SET schema      = EXCLUDED.schema,
       description = COALESCE(:description, s.description),
       updated_by  = EXCLUDED.updated_by
RETURNING target, kind, schema, description, version, updated_by, updated_at;

-- name: delete_schema(target, kind, deleted_by)
-- Detach the schema of a key or prefix; the targets deleted (none: there was none).
WITH context AS (
    SELECT set_config('amira_config.actor', :deleted_by, true)
)
DELETE FROM amira_config.schemas AS s
 USING context
 WHERE s.target = :target
   AND s.kind = :kind
RETURNING s.target;

-- name: list_schema_history(target, kind)
-- A schema's changes, newest first: (version, operation, schema, changed_by, changed_at, revision).
SELECT version, operation, schema, changed_by, changed_at, revision
  FROM amira_config.schema_history
 WHERE target = :target
   AND kind = :kind
 ORDER BY version DESC;
