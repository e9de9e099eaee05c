-- Least privilege, and an audit trail nobody can rewrite unnoticed.
--
-- ROLES. Three NOLOGIN group roles, granted to the login roles of services and
-- people (README "Granting access"). Roles belong to the whole cluster, not to
-- one database: they are created only when missing (another database of the
-- cluster, or a DBA, may have made them), and the rights below are per database.
-- * amira_config_reader: read the configuration and its history;
-- * amira_config_writer: the reader's rights, and write keys through the DAL
--   (INSERT, UPDATE, DELETE on configurations; the history is written by the
--   SECURITY DEFINER triggers, never by the writer itself);
-- * amira_config_admin: the writer's rights, and rollback, bulk deletes (more
--   than one key per statement), history retention (prune_history) and write
--   scopes (who may write which key prefixes).
-- Migrations need the schema owner (the role that ran 0001).
--
-- HISTORY. Append-only for every role (configuration_history_guard): a row is
-- inserted only by the triggers of 0002, stamped once at commit by the trigger
-- of 0006, and deleted only by prune_history(); TRUNCATE never. Each row also
-- records `login`, the session_user that made the change, which no caller can
-- choose (changed_by stays the actor the caller claims). revision_counter is
-- guarded the same way: rewinding it would hand out revisions again.
--
-- TAMPER EVIDENCE. Each committed history row gets a chain_position (1, 2, …
-- in the order the rows were stamped) and a digest:
--     digest = sha256(previous row's digest || sha256(history_row_bytes(row)))
-- (the first row's previous digest is 32 zero bytes). revision_counter keeps the
-- head. A row pruned by prune_history leaves a stub (position, key, version and
-- its content hash) in configuration_history_pruned, so the chain still
-- verifies through it. `amira-config audit verify` recomputes everything in
-- Python from the rows (using only built-in SQL to read them), so a row
-- rewritten, inserted or deleted even by the owner with triggers disabled is
-- found. sha256() is built into PostgreSQL 11 and later (no pgcrypto).
--
-- WRITE SCOPES. Optional: an admin grants a role the key prefixes it may write
-- (amira_config.write_scopes). A login that is, or is a member of, a role with
-- scopes may write only keys under one of its prefixes; a login with none is not
-- restricted. Enforced per row by a trigger, for raw SQL too (see
-- configurations_write_scope for why a trigger rather than a policy).

-- -- roles ---------------------------------------------------------------------

DO $$
DECLARE
    wanted text;
BEGIN
    FOREACH wanted IN ARRAY ARRAY['amira_config_reader', 'amira_config_writer',
                                  'amira_config_admin'] LOOP
        IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = wanted) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN', wanted);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;  -- created meanwhile by a migration of another database
            END;
        END IF;
    END LOOP;
    -- Writers read, admins write: each group has the rights of the one below.
    -- (Granting a membership that exists already is a no-op.)
    IF NOT pg_has_role('amira_config_writer', 'amira_config_reader', 'MEMBER') THEN
        GRANT amira_config_reader TO amira_config_writer;
    END IF;
    IF NOT pg_has_role('amira_config_admin', 'amira_config_writer', 'MEMBER') THEN
        GRANT amira_config_writer TO amira_config_admin;
    END IF;
END
$$;

-- Whether the login of this session may do what needs amira_config_admin: a
-- member of it, or of the role owning the tables (the migrating role), or a
-- superuser (pg_has_role is true for them). session_user: SET ROLE cannot lend it.
CREATE FUNCTION amira_config.login_is_admin() RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT pg_has_role(session_user, 'amira_config_admin', 'MEMBER')
        OR pg_has_role(session_user,
                       (SELECT relowner FROM pg_class
                         WHERE oid = 'amira_config.configurations'::regclass), 'MEMBER')
$$;

-- Refuse (42501, naming the operation, the key and the login) unless the login is an admin.
-- Returns true, so a query can call it in its select list.
CREATE FUNCTION amira_config.require_admin(operation text, key text) RETURNS boolean
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NOT amira_config.login_is_admin() THEN
        RAISE EXCEPTION '% (key %) needs amira_config_admin, which role % is not a member of',
                        operation, coalesce(key, 'any'), session_user
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'GRANT amira_config_admin TO the login role, or ask an admin';
    END IF;
    RETURN true;
END
$$;

-- -- history: who, and the chain ------------------------------------------------

ALTER TABLE amira_config.configuration_history
    -- The database login that made the change (session_user); NULL: before 0008.
    ADD COLUMN login text,
    -- Order in the hash chain, and the chain's digest up to this row; NULL only
    -- until the writing transaction commits.
    ADD COLUMN chain_position bigint,
    ADD COLUMN digest bytea;

ALTER TABLE amira_config.revision_counter
    ADD COLUMN last_position bigint NOT NULL DEFAULT 0,
    -- One row: no rewrite worth avoiding.
    -- squawk-ignore adding-field-with-default
    ADD COLUMN last_digest bytea NOT NULL DEFAULT decode(repeat('00', 32), 'hex');

-- What the chain hashes of a row: each field as text, prefixed by its length in
-- bytes ("~" for NULL), so no two rows encode alike; changed_at in microseconds
-- since the epoch (no time zone or format involved). value::text is jsonb's own
-- canonical text. amira_data_access.audit recomputes exactly this in Python.
CREATE FUNCTION amira_config.history_row_bytes(
    chain_position bigint, revision bigint, key text, version bigint, operation text,
    value jsonb, data_type text, description text, changed_by text, login text,
    changed_at timestamptz, change_reason text
) RETURNS bytea
-- plpgsql, not sql: called from plpgsql a sql function is planned again at every
-- call (measured: it doubled the cost of a one-key write).
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    micros text := (extract(epoch FROM changed_at) * 1000000)::bigint::text;
BEGIN
    -- coalesce: a NULL field makes its length-prefixed text NULL, and it becomes "~".
    RETURN convert_to(
           coalesce(octet_length(chain_position::text) || ':' || chain_position::text, '~')
        || coalesce(octet_length(revision::text) || ':' || revision::text, '~')
        || coalesce(octet_length(key) || ':' || key, '~')
        || coalesce(octet_length(version::text) || ':' || version::text, '~')
        || coalesce(octet_length(operation) || ':' || operation, '~')
        || coalesce(octet_length(value::text) || ':' || value::text, '~')
        || coalesce(octet_length(data_type) || ':' || data_type, '~')
        || coalesce(octet_length(description) || ':' || description, '~')
        || coalesce(octet_length(changed_by) || ':' || changed_by, '~')
        || coalesce(octet_length(login) || ':' || login, '~')
        || coalesce(octet_length(micros) || ':' || micros, '~')
        || coalesce(octet_length(change_reason) || ':' || change_reason, '~'),
        'UTF8');
END
$$;

-- Rows pruned by prune_history(): what the chain needs of them, nothing of their content.
CREATE TABLE amira_config.configuration_history_pruned (
    chain_position bigint PRIMARY KEY,
    key            text COLLATE "C" NOT NULL,
    version        bigint NOT NULL,
    revision       bigint NOT NULL,
    content_hash   bytea  NOT NULL,
    pruned_at      timestamptz NOT NULL DEFAULT now(),
    pruned_by      text   NOT NULL DEFAULT session_user,
    CONSTRAINT configuration_history_pruned_key_version UNIQUE (key, version)
);

COMMENT ON TABLE amira_config.configuration_history_pruned IS
    'Stubs of history rows removed by prune_history(): the hash chain verifies through them.';

-- The chain over the history written before 0008, in (revision, key, version) order.
DO $$
DECLARE
    head      bytea := decode(repeat('00', 32), 'hex');
    position  bigint := 0;
    r         record;
    keys      text[] := '{}';
    versions  bigint[] := '{}';
    digests   bytea[] := '{}';
BEGIN
    FOR r IN SELECT * FROM amira_config.configuration_history
              ORDER BY revision, key, version LOOP
        position := position + 1;
        head := sha256(head || sha256(amira_config.history_row_bytes(
                    position, r.revision, r.key, r.version, r.operation, r.value, r.data_type,
                    r.description, r.changed_by, NULL, r.changed_at, r.change_reason)));
        keys[position] := r.key;  -- by subscript: in place (|| copies the array)
        versions[position] := r.version;
        digests[position] := head;
    END LOOP;
    UPDATE amira_config.configuration_history AS h
       SET chain_position = d.position, digest = d.digest
      FROM unnest(keys, versions, digests) WITH ORDINALITY AS d(key, version, digest, position)
     WHERE h.key = d.key AND h.version = d.version;
    UPDATE amira_config.revision_counter SET last_position = position, last_digest = head;
END
$$;

-- The backfill above has just updated every history row under this transaction's
-- lock, so building the index now blocks nothing that was not blocked already.
ALTER TABLE amira_config.configuration_history
    -- squawk-ignore constraint-missing-not-valid, disallowed-unique-constraint
    ADD CONSTRAINT configuration_history_chain_position UNIQUE (chain_position);

-- At commit (deferred), for the transaction's first history row: as in 0006, the
-- next revision and the commit's instant, now also the chain. Rows are chained in
-- (key, version) order; with SET CONSTRAINTS ALL IMMEDIATE a transaction stamps
-- at the end of each statement, and each statement's rows continue the chain.
-- Cost: one sha256 pair per row (set_many of 1000 keys: see the audit note).
CREATE OR REPLACE FUNCTION amira_config.configuration_history_commit() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    this_txid xid8 := pg_current_xact_id();
    counter   amira_config.revision_counter%ROWTYPE;
    stamp     timestamptz;
    pending   record;
    keys      text[] := '{}';
    versions  bigint[] := '{}';
    positions bigint[] := '{}';
    digests   bytea[] := '{}';
    stamped   integer := 0;
BEGIN
    SELECT * INTO STRICT counter FROM amira_config.revision_counter;
    IF counter.last_txid = this_txid
       AND EXISTS (SELECT FROM amira_config.configuration_history AS h
                    WHERE h.key = NEW.key AND h.version = NEW.version
                      AND h.digest IS NOT NULL) THEN
        RETURN NULL;
    END IF;
    -- Waits for the commit holding it, then reads the revision that commit took.
    SELECT * INTO STRICT counter FROM amira_config.revision_counter FOR UPDATE;
    IF counter.last_txid IS DISTINCT FROM this_txid THEN
        counter.last_revision := counter.last_revision + 1;
    END IF;
    -- clock_timestamp(): this instant, after the lock (now() is when the transaction
    -- began); never before the previous commit's, should the system clock step back.
    stamp := greatest(clock_timestamp(), counter.last_changed_at);
    FOR pending IN SELECT * FROM amira_config.configuration_history AS r
              WHERE r.txid = this_txid AND r.digest IS NULL
              ORDER BY r.key, r.version LOOP
        counter.last_position := counter.last_position + 1;
        counter.last_digest := sha256(counter.last_digest || sha256(
            amira_config.history_row_bytes(
                counter.last_position, counter.last_revision, pending.key, pending.version,
                pending.operation, pending.value, pending.data_type, pending.description,
                pending.changed_by, pending.login, stamp, pending.change_reason)));
        -- Subscripts, not ||: assigned by subscript a plpgsql array grows in place
        -- (|| copied it every time: 8 s for 11,111 rows).
        stamped := stamped + 1;
        keys[stamped] := pending.key;
        versions[stamped] := pending.version;
        positions[stamped] := counter.last_position;
        digests[stamped] := counter.last_digest;
    END LOOP;
    UPDATE amira_config.revision_counter
       SET last_revision = counter.last_revision, last_changed_at = stamp, last_txid = this_txid,
           last_position = counter.last_position, last_digest = counter.last_digest;
    UPDATE amira_config.configuration_history AS h
       SET revision = counter.last_revision, changed_at = stamp,
           chain_position = d.position, digest = d.digest
      FROM unnest(keys, versions, positions, digests) AS d(key, version, position, digest)
     -- txid first: its index finds this transaction's rows (the join alone made the
     -- planner scan the whole history).
     WHERE h.txid = this_txid AND h.key = d.key AND h.version = d.version;
    PERFORM pg_notify('amira_config_changes', counter.last_revision::text);
    RETURN NULL;
END
$$;

-- Versions continue across delete and re-create, also past pruned rows: a
-- (key, version) is never given twice. Otherwise as in 0002.
CREATE OR REPLACE FUNCTION amira_config.configurations_before_write() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        NEW.version := greatest(
            (SELECT max(h.version) FROM amira_config.configuration_history AS h
              WHERE h.key = NEW.key),
            (SELECT max(p.version) FROM amira_config.configuration_history_pruned AS p
              WHERE p.key = NEW.key), 0) + 1;
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

-- -- immutability ---------------------------------------------------------------

-- Whether this runs as the owner of the table: as whoever is inside our SECURITY
-- DEFINER functions (or the owner itself, who can disable triggers anyway: the
-- chain catches that). pg_get_userbyid: a cache lookup (pg_roles, a view, cost
-- ~100 µs a call, a third of a one-key write).
CREATE FUNCTION amira_config.running_as_owner(relation regclass) RETURNS boolean
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN (SELECT pg_get_userbyid(c.relowner) FROM pg_class AS c WHERE c.oid = relation)
         = current_user;
END
$$;

-- NOT SECURITY DEFINER: current_user must be the caller's, to tell our triggers
-- (running as the owner) from anyone else.
CREATE FUNCTION amira_config.configuration_history_guard() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    -- (running_as_owner, inlined: this runs twice per history row)
    owner boolean := (SELECT pg_get_userbyid(c.relowner) FROM pg_class AS c
                       WHERE c.oid = TG_RELID) = current_user;
    ours  boolean := owner AND pg_trigger_depth() > 1;
BEGIN
    IF TG_OP = 'INSERT' AND ours AND NEW.digest IS NULL AND NEW.chain_position IS NULL THEN
        -- Recorded here, not taken from the statement: nobody chooses these.
        NEW.login := session_user;
        NEW.txid := pg_current_xact_id();
        NEW.revision := 0;
        RETURN NEW;
    ELSIF TG_OP = 'UPDATE' AND ours AND OLD.digest IS NULL
          AND OLD.txid = pg_current_xact_id() AND NEW.digest IS NOT NULL
          AND (NEW.key, NEW.version, NEW.operation, NEW.value, NEW.data_type, NEW.description,
               NEW.changed_by, NEW.change_reason, NEW.login, NEW.txid)
              IS NOT DISTINCT FROM
              (OLD.key, OLD.version, OLD.operation, OLD.value, OLD.data_type, OLD.description,
               OLD.changed_by, OLD.change_reason, OLD.login, OLD.txid) THEN
        RETURN NEW;  -- stamped once, at its own commit (configuration_history_commit)
    ELSIF TG_OP = 'DELETE' AND owner
          AND current_setting('amira_config.pruning', true) = 'on' THEN
        RETURN OLD;  -- prune_history(), which leaves a stub for the chain
    END IF;
    RAISE EXCEPTION 'the configuration history is append-only: % refused for role %',
                    TG_OP, session_user
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'retention and purges go through amira_config.prune_history() (admins)';
END
$$;

CREATE FUNCTION amira_config.refuse_truncate() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'TRUNCATE of % refused for role %: it is part of the audit trail',
                    TG_TABLE_NAME, session_user
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'retention goes through amira_config.prune_history() (admins)';
END
$$;

CREATE TRIGGER configuration_history_guard
    BEFORE INSERT OR UPDATE OR DELETE ON amira_config.configuration_history
    FOR EACH ROW EXECUTE FUNCTION amira_config.configuration_history_guard();

CREATE TRIGGER configuration_history_refuse_truncate
    BEFORE TRUNCATE ON amira_config.configuration_history
    FOR EACH STATEMENT EXECUTE FUNCTION amira_config.refuse_truncate();

-- The counter and the stubs: written only by our SECURITY DEFINER functions.
CREATE FUNCTION amira_config.internal_table_guard() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF amira_config.running_as_owner(TG_RELID) AND pg_trigger_depth() > 1 THEN
        RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
    END IF;
    IF TG_TABLE_NAME = 'configuration_history_pruned' AND TG_OP = 'INSERT'
       AND amira_config.running_as_owner(TG_RELID)
       AND current_setting('amira_config.pruning', true) = 'on' THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION '% of % refused for role %: only the history triggers write it',
                    TG_OP, TG_TABLE_NAME, session_user
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER revision_counter_guard
    BEFORE INSERT OR UPDATE OR DELETE ON amira_config.revision_counter
    FOR EACH ROW EXECUTE FUNCTION amira_config.internal_table_guard();

CREATE TRIGGER revision_counter_refuse_truncate
    BEFORE TRUNCATE ON amira_config.revision_counter
    FOR EACH STATEMENT EXECUTE FUNCTION amira_config.refuse_truncate();

CREATE TRIGGER configuration_history_pruned_guard
    BEFORE INSERT OR UPDATE OR DELETE ON amira_config.configuration_history_pruned
    FOR EACH ROW EXECUTE FUNCTION amira_config.internal_table_guard();

CREATE TRIGGER configuration_history_pruned_refuse_truncate
    BEFORE TRUNCATE ON amira_config.configuration_history_pruned
    FOR EACH STATEMENT EXECUTE FUNCTION amira_config.refuse_truncate();

-- -- retention and purges ------------------------------------------------------

-- Remove history rows, each leaving a stub so the chain still verifies:
-- * retention: rows committed before now() - older_than, except each key's
--   keep_last newest (prune_history('400 days', 20));
-- * a purge of a leaked value: the given versions of one key, however recent
--   (prune_history(NULL, 0, 'amira.chat.api_key', '{3,4}')).
-- A key's live version is never removed. 
-- Returns how many rows were removed. Admins only (require_admin).
CREATE FUNCTION amira_config.prune_history(
    older_than interval, keep_last integer, only_key text DEFAULT NULL,
    only_versions bigint[] DEFAULT NULL
) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    removed bigint;
BEGIN
    PERFORM amira_config.require_admin('pruning the history', only_key);
    IF keep_last IS NULL OR keep_last < 0 THEN
        RAISE EXCEPTION 'keep_last must be 0 or more' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF older_than IS NULL AND (only_key IS NULL OR only_versions IS NULL) THEN
        RAISE EXCEPTION 'give older_than, or a key and its versions'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM set_config('amira_config.pruning', 'on', true);
    WITH ranked AS (
        SELECT h.key, h.version,
               row_number() OVER (PARTITION BY h.key ORDER BY h.version DESC) AS newest
          FROM amira_config.configuration_history AS h
         WHERE (only_key IS NULL OR h.key = only_key)
    ), doomed AS (
        SELECT h.chain_position, h.key, h.version, h.revision,
               sha256(amira_config.history_row_bytes(
                   h.chain_position, h.revision, h.key, h.version, h.operation, h.value,
                   h.data_type, h.description, h.changed_by, h.login, h.changed_at,
                   h.change_reason)) AS content_hash
          FROM amira_config.configuration_history AS h
          JOIN ranked USING (key, version)
         WHERE h.digest IS NOT NULL  -- committed
           AND ranked.newest > keep_last
           AND (older_than IS NULL OR h.changed_at < now() - older_than)
           AND (only_versions IS NULL OR h.version = ANY(only_versions))
           -- A key's live version stays: the table holds that value anyway, and
           -- audit verify compares the two.
           AND NOT EXISTS (SELECT FROM amira_config.configurations AS c
                            WHERE c.key = h.key AND c.version = h.version)
    ), stubs AS (
        INSERT INTO amira_config.configuration_history_pruned
               (chain_position, key, version, revision, content_hash)
        SELECT chain_position, key, version, revision, content_hash FROM doomed
        RETURNING key, version
    )
    DELETE FROM amira_config.configuration_history AS h
     USING stubs
     WHERE h.key = stubs.key AND h.version = stubs.version;
    GET DIAGNOSTICS removed = ROW_COUNT;
    PERFORM set_config('amira_config.pruning', '', true);
    RETURN removed;
END
$$;

REVOKE EXECUTE ON FUNCTION amira_config.prune_history(interval, integer, text, bigint[])
    FROM PUBLIC;

-- -- write scopes --------------------------------------------------------------

CREATE TABLE amira_config.write_scopes (
    role       text NOT NULL,
    prefix     text COLLATE "C" NOT NULL,
    granted_by text NOT NULL DEFAULT session_user,
    granted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (role, prefix),
    CONSTRAINT write_scopes_prefix_present CHECK (prefix <> ''),
    CONSTRAINT write_scopes_role_present CHECK (btrim(role) <> '')
);

COMMENT ON TABLE amira_config.write_scopes IS
    'Key prefixes a role may write; a login with no scope (its own or a group''s) may write any key.';

-- A trigger, not a row-level security policy: a policy hides the rows outside a
-- scope from UPDATE and DELETE (0 rows, which the library reads as "no such
-- key"), where this refuses with 42501 naming the key and the login. Like a
-- policy it binds raw SQL of every role but the owner (who can disable it).
CREATE FUNCTION amira_config.configurations_write_scope() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    written  text := CASE WHEN TG_OP = 'DELETE' THEN OLD.key ELSE NEW.key END;
    prefixes text[];
BEGIN
    IF NOT EXISTS (SELECT FROM amira_config.write_scopes) THEN
        RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;  -- nobody is scoped
    END IF;
    SELECT array_agg(DISTINCT s.prefix ORDER BY s.prefix) INTO prefixes
      FROM amira_config.write_scopes AS s
      JOIN pg_roles AS r ON r.rolname = s.role
     WHERE pg_has_role(session_user, r.oid, 'MEMBER');
    IF prefixes IS NOT NULL
       AND NOT EXISTS (SELECT FROM unnest(prefixes) AS p WHERE starts_with(written, p)) THEN
        RAISE EXCEPTION 'role % may not write key %: its write scopes are %',
                        session_user, written, array_to_string(prefixes, ', ')
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'an admin adds a scope: amira-config access grant-scope ROLE PREFIX';
    END IF;
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END
$$;

CREATE TRIGGER configurations_write_scope
    BEFORE INSERT OR UPDATE OR DELETE ON amira_config.configurations
    FOR EACH ROW EXECUTE FUNCTION amira_config.configurations_write_scope();

-- Bulk deletes (more than one key in one statement) need an admin.
CREATE FUNCTION amira_config.configurations_bulk_delete() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF (SELECT count(*) FROM removed) > 1 THEN
        PERFORM amira_config.require_admin('deleting several keys in one statement',
                                           (SELECT min(key) FROM removed));
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER configurations_bulk_delete
    AFTER DELETE ON amira_config.configurations
    REFERENCING OLD TABLE AS removed
    FOR EACH STATEMENT EXECUTE FUNCTION amira_config.configurations_bulk_delete();

-- -- grants --------------------------------------------------------------------

GRANT USAGE ON SCHEMA amira_config TO amira_config_reader;
GRANT SELECT ON amira_config.configurations, amira_config.configuration_history,
                amira_config.configuration_history_pruned, amira_config.write_scopes
    TO amira_config_reader;
GRANT INSERT, UPDATE, DELETE ON amira_config.configurations TO amira_config_writer;
GRANT INSERT, DELETE ON amira_config.write_scopes TO amira_config_admin;
GRANT EXECUTE ON FUNCTION amira_config.prune_history(interval, integer, text, bigint[])
    TO amira_config_admin;
-- Tables later migrations create are readable by readers; writes are granted by each.
ALTER DEFAULT PRIVILEGES IN SCHEMA amira_config GRANT SELECT ON TABLES TO amira_config_reader;
