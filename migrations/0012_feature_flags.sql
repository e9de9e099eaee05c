-- Feature flags (issue 17): data_type 'flag', a JSON document the library checks
-- against its JSON Schema (amira_data_access/flags/_schema.py) before writing.
--
-- The table keeps what SQL can check cheaply on every row: a flag is an object with
-- a boolean "enabled", a non-empty "variants" object, a "defaultVariant" naming one
-- of them, and "rules"/"rollout" lists and a "segments" object when present. So raw
-- SQL cannot store a flag that is not even shaped like one; what only the full schema
-- can tell (an unknown operator, a variant a rule names but nobody defined) a store
-- reading such a row evaluates to the caller's default with reason ERROR.
--
-- configurations_data_type_known is redefined with 'flag' in its list: a migration
-- adding another data type must list 'flag' too (and this one, the types before it:
-- 'secret' from 0009).
-- Both are NOT VALID, as in 0007, so the migration does not scan the table under its
-- lock: every existing row already passed the old, narrower type list, and no row
-- had the type 'flag' before this migration; every write from now on is checked.
-- The dropped constraint is re-added in the same transaction (the runner's), wider,
-- so no guarantee is lost.

-- squawk-ignore ban-drop-constraint
ALTER TABLE amira_config.configurations DROP CONSTRAINT configurations_data_type_known;

ALTER TABLE amira_config.configurations
    ADD CONSTRAINT configurations_data_type_known
        CHECK (data_type IN ('str', 'int', 'float', 'bool', 'json', 'secret', 'flag')) NOT VALID,
    -- COALESCE: a member missing makes its test NULL, and a CHECK lets NULL through.
    ADD CONSTRAINT configurations_flag_document CHECK (
        data_type <> 'flag' OR COALESCE(
                jsonb_typeof(value) = 'object'
            AND jsonb_typeof(value -> 'enabled') = 'boolean'
            AND jsonb_typeof(value -> 'variants') = 'object'
            AND value -> 'variants' <> '{}'::jsonb
            AND jsonb_typeof(value -> 'defaultVariant') = 'string'
            AND jsonb_exists(value -> 'variants', value ->> 'defaultVariant')
            AND jsonb_typeof(COALESCE(value -> 'rules', '[]'::jsonb)) = 'array'
            AND jsonb_typeof(COALESCE(value -> 'rollout', '[]'::jsonb)) = 'array'
            AND jsonb_typeof(COALESCE(value -> 'segments', '{}'::jsonb)) = 'object',
            false
        )
    ) NOT VALID;

