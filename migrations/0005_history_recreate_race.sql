-- A key deleted by one transaction while another re-creates it: the re-create
-- numbers its version from the history it can see, which does not include the
-- uncommitted delete, so both claim the same (key, version) and the second
-- fails on the history's primary key (23505, which callers read as bad input).
-- Report it instead as a serialization failure (40001): the statement is
-- rolled back, and the library's retry policy runs it again, now seeing the
-- committed delete. Only inserts number from the history, so only the insert
-- path pays for the exception block (a subtransaction).
CREATE OR REPLACE FUNCTION amira_config.configurations_record_history() RETURNS trigger
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
    IF TG_OP = 'INSERT' THEN
        BEGIN
            INSERT INTO amira_config.configuration_history
                   (revision, key, version, operation, value, data_type, description,
                    changed_by, changed_at, change_reason)
            VALUES (amira_config.current_revision(), NEW.key, NEW.version, 'insert',
                    NEW.value, NEW.data_type, NEW.description, NEW.updated_by,
                    NEW.updated_at, nullif(current_setting('amira_config.reason', true), ''));
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
    VALUES (amira_config.current_revision(), NEW.key, NEW.version, 'update',
            NEW.value, NEW.data_type, NEW.description, NEW.updated_by, NEW.updated_at,
            nullif(current_setting('amira_config.reason', true), ''));
    RETURN NEW;
END
$$;
