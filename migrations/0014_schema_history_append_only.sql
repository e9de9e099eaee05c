-- The history of the JSON Schemas (0010) append-only like the configuration's
-- (0008): only the SECURITY DEFINER triggers of 0010, running as the owner, write
-- schema_history and schema_revision (amira_config.internal_table_guard of 0008);
-- every other role, GRANT ALL or not, is refused, and TRUNCATE always. (The rights
-- on the schemas themselves are 0010's: admins change them, every group reads.)
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
