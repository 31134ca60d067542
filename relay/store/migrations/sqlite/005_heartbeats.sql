-- Heartbeats (relay.heartbeat): when each last arrived (relay's clock; NULL: never), since when relay watches for
-- it, and since when it is missing (NULL: it is not). Its notices are ordinary notifications in the outbox.
CREATE TABLE heartbeats (
    name          TEXT PRIMARY KEY,
    last_seen     REAL,
    watched_since REAL NOT NULL,
    missing_since REAL
) WITHOUT ROWID;
