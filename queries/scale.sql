-- Named queries for replicas, poolers and the feed's liveness (issue 19).
--
-- What a DAL asks a server about itself: which server process serves this session (a
-- pooler in between announces another one at connect), whether it is a standby, and
-- how far its WAL has gone (read-your-writes on a replica).

-- name: session_identity()^
-- The backend pid serving this statement, and whether the server is a standby (in recovery).
SELECT pg_backend_pid(), pg_is_in_recovery();

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
