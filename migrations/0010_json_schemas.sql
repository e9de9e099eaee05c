-- JSON Schemas (Draft 2020-12) that the values of a key, or of every key under a
-- prefix, must satisfy.
--
-- PostgreSQL cannot validate JSON Schema, so the library does, before each write
-- (amira_data_access.schemas); raw SQL can still store a value a schema refuses,
-- which `amira-config schema check` lists. What the database CAN hold to is kept
-- here as constraints: a schema is a JSON object or boolean, a target is a key or
-- a prefix, and every change is kept in schema_history (by trigger, like values).
--
-- Writers learn that the schemas changed from one cheap read: the one-row
-- schema_revision, set by every change of the schemas table to the next value of a
-- sequence (in the same transaction, under its row lock: schema writers commit one
-- after the other). A sequence, not a counter: its values are never given back, so
-- a rolled-back change's revision (which a writer inside that transaction may have
-- read) can never be the revision of a later committed one.

CREATE TABLE amira_config.schemas (
    -- A key ('amira.chat.max_turns') or a prefix ('amira.chat.'): the same string can
    -- be both, so the kind is part of the primary key. COLLATE "C" like the keys.
    target      text COLLATE "C" NOT NULL,
    kind        text        NOT NULL,
    schema      jsonb       NOT NULL,
    description text,
    version     bigint      NOT NULL DEFAULT 1,
    updated_by  text        NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT schemas_pkey PRIMARY KEY (target, kind),
    CONSTRAINT schemas_kind CHECK (kind IN ('key', 'prefix')),
    -- A key schema needs a key; a prefix may be '' (every key).
    CONSTRAINT schemas_key_not_empty CHECK (kind = 'prefix' OR target <> ''),
    -- Draft 2020-12: a schema is an object or a boolean (true: anything, false: nothing).
    CONSTRAINT schemas_schema_is_schema CHECK (jsonb_typeof(schema) IN ('object', 'boolean')),
    CONSTRAINT schemas_version_positive CHECK (version >= 1),
    CONSTRAINT schemas_updated_by_not_blank CHECK (btrim(updated_by) <> '')
);

COMMENT ON TABLE amira_config.schemas IS
    'JSON Schemas the values of a key, or of every key under a prefix, must satisfy.';

CREATE TABLE amira_config.schema_history (
    target     text COLLATE "C" NOT NULL,
    kind       text        NOT NULL,
    version    bigint      NOT NULL,
    operation  text        NOT NULL,
    -- For a delete: the schema as it was when deleted.
    schema     jsonb       NOT NULL,
    description text,
    changed_by text        NOT NULL,
    changed_at timestamptz NOT NULL DEFAULT now(),
    revision   bigint      NOT NULL,
    CONSTRAINT schema_history_pkey PRIMARY KEY (target, kind, version),
    CONSTRAINT schema_history_operation CHECK (operation IN ('insert', 'update', 'delete'))
);

COMMENT ON TABLE amira_config.schema_history IS
    'Append-only history of amira_config.schemas, one row per change, written by triggers.';

CREATE SEQUENCE amira_config.schema_revision_seq AS bigint;

-- One row: the revision of the last schema change (0: none yet).
CREATE TABLE amira_config.schema_revision (
    id       boolean PRIMARY KEY DEFAULT true,
    revision bigint  NOT NULL DEFAULT 0,
    CONSTRAINT schema_revision_one_row CHECK (id),
    CONSTRAINT schema_revision_not_negative CHECK (revision >= 0)
);

INSERT INTO amira_config.schema_revision (id, revision) VALUES (true, 0);

COMMENT ON TABLE amira_config.schema_revision IS
    'The revision of the last change of amira_config.schemas: what writers compare with.';

-- Versions continue across delete and re-create; who and when as for values.
CREATE FUNCTION amira_config.schemas_before_write() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        NEW.version := coalesce(
            (SELECT max(h.version) FROM amira_config.schema_history AS h
              WHERE h.target = NEW.target AND h.kind = NEW.kind), 0) + 1;
    ELSE
        IF NEW.target IS DISTINCT FROM OLD.target OR NEW.kind IS DISTINCT FROM OLD.kind THEN
            RAISE EXCEPTION 'schema targets cannot be renamed (% -> %)', OLD.target, NEW.target
                USING ERRCODE = 'check_violation',
                      HINT = 'set the schema on the new target and delete the old one';
        END IF;
        NEW.version := OLD.version + 1;
    END IF;
    NEW.updated_by := amira_config.current_actor(NEW.updated_by);
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

-- After a change: bump the revision (its row lock orders schema writers), then
-- append the history row with it.
CREATE FUNCTION amira_config.schemas_record_history() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    bumped bigint;
BEGIN
    UPDATE amira_config.schema_revision
       SET revision = nextval('amira_config.schema_revision_seq')
     WHERE id
    RETURNING revision INTO bumped;
    IF TG_OP = 'DELETE' THEN
        INSERT INTO amira_config.schema_history
               (target, kind, version, operation, schema, description, changed_by, revision)
        VALUES (OLD.target, OLD.kind, OLD.version + 1, 'delete', OLD.schema, OLD.description,
                amira_config.current_actor(NULL), bumped);
        RETURN OLD;
    END IF;
    INSERT INTO amira_config.schema_history
           (target, kind, version, operation, schema, description, changed_by, revision)
    VALUES (NEW.target, NEW.kind, NEW.version, lower(TG_OP), NEW.schema, NEW.description,
            NEW.updated_by, bumped);
    RETURN NEW;
END
$$;

CREATE TRIGGER schemas_before_write
    BEFORE INSERT OR UPDATE ON amira_config.schemas
    FOR EACH ROW EXECUTE FUNCTION amira_config.schemas_before_write();

CREATE TRIGGER schemas_record_history
    AFTER INSERT OR UPDATE OR DELETE ON amira_config.schemas
    FOR EACH ROW EXECUTE FUNCTION amira_config.schemas_record_history();

-- TRUNCATE fires no row triggers: it would skip the history and the revision.
CREATE FUNCTION amira_config.schemas_refuse_truncate() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'TRUNCATE of amira_config.schemas would bypass its history'
        USING HINT = 'DELETE the schemas instead, so each deletion is recorded';
END
$$;

CREATE TRIGGER schemas_refuse_truncate
    BEFORE TRUNCATE ON amira_config.schemas
    FOR EACH STATEMENT EXECUTE FUNCTION amira_config.schemas_refuse_truncate();

-- Rights (the groups of migrations/0008): every group reads the schemas (readers by
-- 0008's default privileges; a writer's every write reads schema_revision). Attaching
-- or changing a schema constrains every writer, so it is the admins' alone; the
-- history and the revision are written by the SECURITY DEFINER triggers above.
GRANT INSERT, UPDATE, DELETE ON amira_config.schemas TO amira_config_admin;
