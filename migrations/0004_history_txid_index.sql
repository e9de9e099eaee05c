-- migrate:no-transaction
-- The change feed re-reads what it missed while disconnected by transaction id
-- (see amira_data_access.watch); this index keeps that read small. Built
-- CONCURRENTLY so writes to the history are not blocked while it builds.
CREATE INDEX CONCURRENTLY configuration_history_txid
    ON amira_config.configuration_history (txid);
