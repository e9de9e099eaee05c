-- migrate:no-transaction
-- The change feed reads the history by revision, and within a revision by key
-- and version (queries/changes.sql list_changes_after, queries/scale.sql
-- list_changes_with_values_after): on the index of revision alone every page
-- was sorted first, 125-230 ms for one revision of 100 k changes, before its
-- first row left the server. On (revision, key, version) the pages stream in
-- order from the index. The columns the feed reads besides are included: the
-- planner estimates a page's rows from the revision index's statistics (a
-- few hundred, where one transaction may hold 100 k), and with them it costed
-- that narrower index plus an incremental sort below a plain index scan of this
-- one; an index-only scan it does choose.
-- Built CONCURRENTLY so writes to the history are not blocked while it builds.
CREATE INDEX CONCURRENTLY configuration_history_revision_key_version
    ON amira_config.configuration_history (revision, key, version)
    INCLUDE (operation, changed_by);
