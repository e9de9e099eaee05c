-- Announce every committed change on the channel amira_config_changes.
--
-- A trigger on the history table sends NOTIFY for each history row, so changes
-- made by raw SQL are announced too. PostgreSQL delivers a NOTIFY only when its
-- transaction commits, and never one from a rolled-back transaction. The payload
-- names the change (key, version, operation, who, revision, transaction id) but
-- not the value: payloads are limited to 8000 bytes, and listeners read the
-- value from the table when they need it.

CREATE FUNCTION amira_config.configuration_history_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(
        'amira_config_changes',
        json_build_object(
            'key', NEW.key,
            'version', NEW.version,
            'operation', NEW.operation,
            'changed_by', left(NEW.changed_by, 255),
            'revision', NEW.revision,
            'txid', NEW.txid::text
        )::text
    );
    RETURN NULL;
END
$$;

CREATE TRIGGER configuration_history_notify
    AFTER INSERT ON amira_config.configuration_history
    FOR EACH ROW EXECUTE FUNCTION amira_config.configuration_history_notify();
