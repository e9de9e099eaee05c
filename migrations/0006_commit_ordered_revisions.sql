-- Revisions in commit order and without gaps, stamped when the transaction commits.
--
-- Until now a transaction drew its revision from a sequence at its first change
-- and its history rows said changed_at = now(), the instant the transaction
-- BEGAN: a transaction that worked a while before committing made get_at()
-- answer its value for instants at which every reader still saw the old one, a
-- transaction that began first and committed last carried the lower revision
-- and the earlier instant, and a rolled-back transaction left a gap.
--
-- Now the row triggers record each change with a placeholder (revision 0,
-- changed_at = now()), and a constraint trigger deferred to COMMIT gives every
-- history row of the transaction, in one UPDATE, the next revision and the
-- instant of its commit. The revision is taken under the row lock of a one-row
-- counter, held until the transaction has committed and become visible: commits
-- that change configuration take their revisions one after the other, so
-- revision order is commit order and visibility order (whoever sees revision N
-- sees every revision below it), and a transaction that rolls back, before or
-- at COMMIT, gives its number back with everything else. The lock is taken
-- last, at pre-commit, so it serialises only the commit itself (its WAL flush
-- included), and a holder waits for nothing else: configuration writers cannot
-- deadlock on it. A caller cannot choose its revision: no setting is read, and a
-- history row gets the stamp whatever revision it was inserted with.
--
-- Inside a transaction its own history rows read revision 0 and changed_at of
-- its start until it commits. Under REPEATABLE READ or SERIALIZABLE a writer
-- that commits after another configuration change committed since its snapshot
-- fails at COMMIT with 40001 (it updates the counter row the other updated):
-- run it again. SET CONSTRAINTS ALL IMMEDIATE moves the stamping to the end of
-- each statement: the lock is then held from the first one (like a row lock),
-- revisions stay in commit order and one per transaction, changed_at is earlier.
--
-- The change feed's announcement becomes one doorbell per transaction (the
-- payload is the revision, for people; listeners read what changed from the
-- history, revision > the last one they delivered, and trust no payload).

-- Taken first: the trigger's lock waits for every transaction still writing
-- history under the old functions, so the counter below starts above all of them.
-- (No client calls these functions or the sequence: only the old triggers did.)
DROP TRIGGER configuration_history_notify ON amira_config.configuration_history;
-- squawk-ignore ban-drop-function
DROP FUNCTION amira_config.configuration_history_notify();

-- After a row is written or deleted: append its history row, revision and instant
-- to be stamped at commit (see configuration_history_commit below).
CREATE OR REPLACE FUNCTION amira_config.configurations_record_history() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        INSERT INTO amira_config.configuration_history
               (revision, key, version, operation, value, data_type, description,
                changed_by, changed_at, change_reason)
        VALUES (0, OLD.key, OLD.version + 1, 'delete',
                OLD.value, OLD.data_type, OLD.description,
                amira_config.current_actor(NULL), now(),
                nullif(current_setting('amira_config.reason', true), ''));
        RETURN OLD;
    END IF;
    IF TG_OP = 'INSERT' THEN
        BEGIN
            INSERT INTO amira_config.configuration_history
                   (revision, key, version, operation, value, data_type, description,
                    changed_by, changed_at, change_reason)
            VALUES (0, NEW.key, NEW.version, 'insert',
                    NEW.value, NEW.data_type, NEW.description, NEW.updated_by,
                    now(), nullif(current_setting('amira_config.reason', true), ''));
        EXCEPTION WHEN unique_violation THEN
            RAISE EXCEPTION 'key % was deleted and re-created concurrently', NEW.key
                USING ERRCODE = 'serialization_failure',
                      HINT = 'run the statement again';
        END;
        RETURN NEW;
    END IF;
    INSERT INTO amira_config.configuration_history
           (revision, key, version, operation, value, data_type, description,
            changed_by, changed_at, change_reason)
    VALUES (0, NEW.key, NEW.version, 'update',
            NEW.value, NEW.data_type, NEW.description, NEW.updated_by, now(),
            nullif(current_setting('amira_config.reason', true), ''));
    RETURN NEW;
END
$$;

-- A revision is no longer drawn during the transaction, nor kept in a setting.
-- squawk-ignore ban-drop-function
DROP FUNCTION amira_config.current_revision();
-- squawk-ignore ban-drop-sequence
DROP SEQUENCE amira_config.revision_seq;

CREATE TABLE amira_config.revision_counter (
    singleton       boolean     PRIMARY KEY DEFAULT true,
    -- The revision of the last commit that changed configuration, and its instant.
    last_revision   bigint      NOT NULL,
    last_changed_at timestamptz NOT NULL,
    -- The transaction that took last_revision: a second stamping in the same
    -- transaction (SET CONSTRAINTS ALL IMMEDIATE) keeps its revision.
    last_txid       xid8,
    CONSTRAINT revision_counter_one_row CHECK (singleton)
);

COMMENT ON TABLE amira_config.revision_counter IS
    'One row: the last revision given to a commit; its row lock orders commits (migration 0006).';

INSERT INTO amira_config.revision_counter (last_revision, last_changed_at)
SELECT coalesce(max(revision), 0), coalesce(max(changed_at), '-infinity')
  FROM amira_config.configuration_history;

-- At commit (deferred), for the transaction's first history row: take the next
-- revision and the commit's instant, give both to every history row of the
-- transaction, and ring the doorbell once. The transaction's other rows find
-- theirs stamped by this transaction already and stop after two index probes.
CREATE FUNCTION amira_config.configuration_history_commit() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    this_txid xid8 := pg_current_xact_id();
    counter   amira_config.revision_counter%ROWTYPE;
    stamp     timestamptz;
BEGIN
    SELECT * INTO STRICT counter FROM amira_config.revision_counter;
    IF counter.last_txid = this_txid
       AND EXISTS (SELECT FROM amira_config.configuration_history AS h
                    WHERE h.key = NEW.key AND h.version = NEW.version
                      AND h.revision = counter.last_revision) THEN
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
    UPDATE amira_config.revision_counter
       SET last_revision = counter.last_revision, last_changed_at = stamp, last_txid = this_txid;
    UPDATE amira_config.configuration_history AS h
       SET revision = counter.last_revision, changed_at = stamp
     WHERE h.txid = this_txid;
    PERFORM pg_notify('amira_config_changes', counter.last_revision::text);
    RETURN NULL;
END
$$;

CREATE CONSTRAINT TRIGGER configuration_history_commit
    AFTER INSERT ON amira_config.configuration_history
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION amira_config.configuration_history_commit();
