-- Heartbeats (relay.heartbeat): when each last arrived (a replica's clock; NULL: never), since when relay watches
-- for it, and since when it is missing (NULL: it is not). Replicas share one row per heartbeat: the conditional
-- update that marks it missing (or back) succeeds for one of them, and only that one enqueues the notice.
CREATE TABLE heartbeats (
    name          TEXT PRIMARY KEY,
    last_seen     DOUBLE PRECISION,
    watched_since DOUBLE PRECISION NOT NULL,
    missing_since DOUBLE PRECISION
);
