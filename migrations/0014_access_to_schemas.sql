-- The roles of 0008 on the JSON Schemas of 0010 (created after 0008, so not covered
-- by its grants): readers and writers read them (a writer's values are checked
-- against them), admins attach and remove them. Their history is append-only like
-- the configuration's: only the triggers of 0010, running as the owner, write it
-- and the schema revision (amira_config.internal_table_guard of 0008).
GRANT SELECT ON amira_config.schemas, amira_config.schema_history,
                amira_config.schema_revision
    TO amira_config_reader;
GRANT INSERT, UPDATE, DELETE ON amira_config.schemas TO amira_config_admin;

CREATE TRIGGER schema_history_guard
    BEFORE INSERT OR UPDATE OR DELETE ON amira_config.schema_history
    FOR EACH ROW EXECUTE FUNCTION amira_config.internal_table_guard();

CREATE TRIGGER schema_history_refuse_truncate
    BEFORE TRUNCATE ON amira_config.schema_history
    FOR EACH STATEMENT EXECUTE FUNCTION amira_config.refuse_truncate();

CREATE TRIGGER schema_revision_guard
    BEFORE INSERT OR UPDATE OR DELETE ON amira_config.schema_revision
    FOR EACH ROW EXECUTE FUNCTION amira_config.internal_table_guard();

CREATE TRIGGER schema_revision_refuse_truncate
    BEFORE TRUNCATE ON amira_config.schema_revision
    FOR EACH STATEMENT EXECUTE FUNCTION amira_config.refuse_truncate();
