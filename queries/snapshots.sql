-- Named queries of the last-known-good snapshot (amira_data_access.feed.snapshot).

-- name: list_snapshot_rows()
-- Every stored row with the last committed revision, in one statement (one consistent view): (revision, key, value, ...).
SELECT h.revision, c.key, c.value, c.data_type, c.description, c.version,
       c.created_at, c.updated_at, c.updated_by
  FROM (SELECT coalesce(max(revision), 0) AS revision
          FROM amira_config.configuration_history) AS h
  LEFT JOIN amira_config.configurations AS c ON true
 ORDER BY c.key;
