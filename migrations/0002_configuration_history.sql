-- Every change to a configuration key is kept, written by the database itself.
--
-- Triggers on amira_config.configurations maintain version, updated_at and
-- updated_by, and append one row per inserted, updated or deleted key to
-- amira_config.configuration_history in the same transaction. No code path,
-- not even a DBA's raw UPDATE in psql, changes a key without a history row.
--
-- Who and why come from transaction-local settings the library sets
-- (set_config('amira_config.actor' / 'amira_config.reason', …, true)); raw SQL
-- without them is attributed to the updated_by it wrote, else session_user.
--
-- The trigger functions are SECURITY DEFINER (owned by the migrating role), so a
-- service role needs no right to write the history or use its sequence: it can
-- be granted SELECT only on the history, which then stays append-only for it.

CREATE SEQUENCE amira_config.revision_seq AS bigint;

CREATE TABLE amira_config.configuration_history (
    -- One revision per transaction: every change of a change set shares it.
    revision      bigint      NOT NULL,
    key           text COLLATE "C" NOT NULL,
    version       bigint      NOT NULL CHECK (version >= 1),
    operation     text        NOT NULL CHECK (operation IN ('insert', 'update', 'delete')),
    -- For a delete: the value, type and description the key had when deleted.
    value         jsonb       NOT NULL,
    data_type     text        NOT NULL,
    description   text,
    changed_by    text        NOT NULL,
    changed_at    timestamptz NOT NULL,
    change_reason text,
    -- The writing transaction's id: lets a change feed tell what had committed.
    txid          xid8        NOT NULL DEFAULT pg_current_xact_id(),
    PRIMARY KEY (key, version)
);

CREATE INDEX configuration_history_revision ON amira_config.configuration_history (revision);
CREATE INDEX configuration_history_changed_at ON amira_config.configuration_history (changed_at);

COMMENT ON TABLE amira_config.configuration_history IS
    'Append-only history of amira_config.configurations, one row per change, written by triggers.';

-- The actor of the current change: the library's setting, else what the statement wrote.
-- (session_user, the login role: inside the SECURITY DEFINER triggers below
-- current_user would name the function's owner.)
CREATE FUNCTION amira_config.current_actor(written text) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT coalesce(nullif(current_setting('amira_config.actor', true), ''),
                    nullif(btrim(written), ''),
                    session_user::text)
$$;

-- The revision of the current transaction, drawn from the sequence on its first change.
CREATE FUNCTION amira_config.current_revision() RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    revision bigint := nullif(current_setting('amira_config.revision', true), '')::bigint;
BEGIN
    IF revision IS NULL THEN
        revision := nextval('amira_config.revision_seq');
        PERFORM set_config('amira_config.revision', revision::text, true);
    END IF;
    RETURN revision;
END
$$;

-- Before a row is written: versions continue across delete and re-create, the
-- version always moves by one, and the audit fields say who and when.
CREATE FUNCTION amira_config.configurations_before_write() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        NEW.version := coalesce(
            (SELECT max(h.version) FROM amira_config.configuration_history AS h
              WHERE h.key = NEW.key), 0) + 1;
        NEW.created_at := now();
        NEW.updated_by := amira_config.current_actor(NEW.updated_by);
    ELSE
        IF NEW.key IS DISTINCT FROM OLD.key THEN
            RAISE EXCEPTION 'configuration keys cannot be renamed (% -> %)', OLD.key, NEW.key
                USING ERRCODE = 'check_violation',
                      HINT = 'insert the new key and delete the old one, so both keep their history';
        END IF;
        NEW.version := OLD.version + 1;
        NEW.created_at := OLD.created_at;
        NEW.updated_by := amira_config.current_actor(
            CASE WHEN NEW.updated_by IS DISTINCT FROM OLD.updated_by THEN NEW.updated_by END);
    END IF;
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

-- After a row is written or deleted: append its history row.
CREATE FUNCTION amira_config.configurations_record_history() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        INSERT INTO amira_config.configuration_history
               (revision, key, version, operation, value, data_type, description,
                changed_by, changed_at, change_reason)
        VALUES (amira_config.current_revision(), OLD.key, OLD.version + 1, 'delete',
                OLD.value, OLD.data_type, OLD.description,
                amira_config.current_actor(NULL), now(),
                nullif(current_setting('amira_config.reason', true), ''));
        RETURN OLD;
    END IF;
    INSERT INTO amira_config.configuration_history
           (revision, key, version, operation, value, data_type, description,
            changed_by, changed_at, change_reason)
    VALUES (amira_config.current_revision(), NEW.key, NEW.version, lower(TG_OP),
            NEW.value, NEW.data_type, NEW.description, NEW.updated_by, NEW.updated_at,
            nullif(current_setting('amira_config.reason', true), ''));
    RETURN NEW;
END
$$;

-- TRUNCATE fires no row triggers, so it would remove keys without history rows.
CREATE FUNCTION amira_config.configurations_refuse_truncate() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'TRUNCATE of amira_config.configurations would bypass its history'
        USING HINT = 'DELETE the keys instead, so each deletion is recorded';
END
$$;

CREATE TRIGGER configurations_refuse_truncate
    BEFORE TRUNCATE ON amira_config.configurations
    FOR EACH STATEMENT EXECUTE FUNCTION amira_config.configurations_refuse_truncate();

CREATE TRIGGER configurations_before_write
    BEFORE INSERT OR UPDATE ON amira_config.configurations
    FOR EACH ROW EXECUTE FUNCTION amira_config.configurations_before_write();

CREATE TRIGGER configurations_record_history
    AFTER INSERT OR UPDATE OR DELETE ON amira_config.configurations
    FOR EACH ROW EXECUTE FUNCTION amira_config.configurations_record_history();

-- Keys that existed before history was kept get their current state recorded,
-- so point-in-time reads and rollbacks see them.
INSERT INTO amira_config.configuration_history
       (revision, key, version, operation, value, data_type, description,
        changed_by, changed_at, change_reason)
SELECT amira_config.current_revision(), key, version, 'insert', value, data_type,
       description, updated_by, updated_at, 'history started'
  FROM amira_config.configurations;
