-- migrate:no-transaction
-- Point-in-time reads (get_at, snapshot_at) look for a key's last change at or
-- before an instant. On the primary key (key, version) that meant walking the
-- key's versions backwards from the newest, filtering on changed_at: every
-- change after the instant was read (124 ms for an instant 99,000 versions
-- back). On (key, changed_at, version) the answer is the first entry below the
-- instant. Reading by changed_at answers the same as reading by version because
-- since migrations/0006 changed_at is stamped at commit and, for a key, never
-- decreases with its version (see queries/history.sql); version breaks the tie
-- of one transaction changing a key more than once.
-- Built CONCURRENTLY so writes to the history are not blocked while it builds.
CREATE INDEX CONCURRENTLY configuration_history_key_changed_at
    ON amira_config.configuration_history (key, changed_at, version);
