-- Named queries of the change feed (amira_data_access.feed.listener).
--
-- A notification on amira_config_changes is only a doorbell (migrations/0006 rings
-- it once per committed transaction; so may anyone who can connect): what changed
-- is always read from the history, whose revisions are given in commit order.

-- name: listen_for_changes#
-- Subscribe this session to the doorbell of migrations/0006.
LISTEN amira_config_changes;

-- name: last_revision()$
-- The revision of the last committed change (0 when there is none): where a new feed starts.
SELECT coalesce(max(revision), 0) FROM amira_config.configuration_history;

-- name: list_changes_after(after, until, limit)
-- Committed changes with a revision above :after (and at most :until, when given), in
-- revision order: about :limit of them, always whole revisions (the next page starts
-- after the last revision returned). Whoever sees a revision sees every lower one, so
-- nothing below what this returns can still appear later.
SELECT key, version, operation, changed_by, revision
  FROM amira_config.configuration_history
 WHERE revision > :after
   AND revision <= (SELECT max(page.revision)
                      FROM (SELECT revision
                              FROM amira_config.configuration_history
                             WHERE revision > :after
                               AND revision <= coalesce(:until::bigint, 9223372036854775807)
                             ORDER BY revision
                             LIMIT :limit) AS page)
 ORDER BY revision, key, version;

-- name: server_health()^
-- Server version and whether the configuration tables exist.
SELECT current_setting('server_version'),
       to_regclass('amira_config.configurations') IS NOT NULL;
