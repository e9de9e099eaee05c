-- Named queries of the change feed (amira_data_access.watch).

-- name: listen_for_changes#
-- Subscribe this session to the change announcements of migrations/0003.
LISTEN amira_config_changes;

-- name: current_snapshot()$
-- Which transactions have committed, as seen now (a pg_snapshot, as text).
SELECT pg_current_snapshot()::text;

-- name: list_changes_between(since, until)
-- Changes committed after snapshot :since was taken and before :until was: what a
-- listener that was away between the two may have missed. Visibility, not revision
-- order: a transaction can take a lower revision and commit later.
SELECT key, version, operation, changed_by, revision
  FROM amira_config.configuration_history
 WHERE txid >= pg_snapshot_xmin(:since::pg_snapshot)
   AND pg_visible_in_snapshot(txid, :until::pg_snapshot)
   AND NOT pg_visible_in_snapshot(txid, :since::pg_snapshot)
 ORDER BY revision, key, version;

-- name: server_health()^
-- Server version and whether the configuration tables exist.
SELECT current_setting('server_version'),
       to_regclass('amira_config.configurations') IS NOT NULL;
