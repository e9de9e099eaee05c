-- Named queries for replicas, poolers and the feed's liveness (issue 19).
--
-- What a DAL asks a server about itself: which server process serves this session (a
-- pooler in between announces another one at connect), whether it is a standby, and
-- how far its WAL has gone (read-your-writes on a replica).

-- name: session_identity()^
-- The backend pid serving this statement, whether the server is a standby (in recovery), and
-- the session's statement_timeout in ms (a pooler may have dropped the one we asked for).
SELECT pg_backend_pid(), pg_is_in_recovery(),
       (SELECT setting::bigint FROM pg_settings WHERE name = 'statement_timeout');

-- name: current_wal_lsn()$
-- The primary's WAL insert position, as text: past the commit record of every write made so far.
-- (pg_current_wal_lsn is the *write* position: with synchronous_commit off it can be short
-- of a commit just made, and a replica "at" it still lacks that write: 191 stale in 200.)
SELECT pg_current_wal_insert_lsn()::text;

-- name: replayed_wal_lsn()$
-- How far a standby has replayed the WAL, as text (NULL on a primary).
SELECT pg_last_wal_replay_lsn()::text;

-- name: listen_for_heartbeats#
-- Subscribe this session to the feed's heartbeat channel (each listener rings itself there).
LISTEN amira_config_heartbeat;

-- name: send_heartbeat(token)!
-- Ring the heartbeat channel with this listener's token: hearing it back proves notifications arrive.
SELECT pg_notify('amira_config_heartbeat', :token);

-- name: list_changes_with_values_after(after, until, limit, carried_types, max_bytes)
-- list_changes_after (queries/changes.sql) plus, per change, the stored entry when it is still the current version, of a type in :carried_types and at most :max_bytes of JSON text: a cache keeps it instead of re-reading the key.
SELECT h.key, h.version, h.operation, h.changed_by, h.revision,
       c.key, c.value, c.data_type, c.description, c.version, c.created_at, c.updated_at,
       c.updated_by
  FROM amira_config.configuration_history AS h
  LEFT JOIN amira_config.configurations AS c
         ON c.key = h.key
        AND c.version = h.version
        AND c.data_type = ANY(:carried_types)
        AND octet_length(c.value::text) <= :max_bytes
 WHERE h.revision > :after
   AND h.revision <= (SELECT max(page.revision)
                        FROM (SELECT revision
                                FROM amira_config.configuration_history
                               WHERE revision > :after
                                 AND revision <= coalesce(:until::bigint, 9223372036854775807)
                               ORDER BY revision
                               LIMIT :limit) AS page)
 ORDER BY h.revision, h.key, h.version;
