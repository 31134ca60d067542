-- One token bucket per destination for every replica on this database (relay.ratelimit): a claim or a handed-off
-- send takes its token here, at the server's clock, under the row's lock. `destination` is a channel's secret-free
-- name (a digest of a webhook URL or routing key); `granted` is what the last take got (read back by RETURNING).
CREATE TABLE rate_buckets (
    destination TEXT PRIMARY KEY,
    rate        DOUBLE PRECISION NOT NULL,
    burst       INTEGER          NOT NULL,
    tokens      DOUBLE PRECISION NOT NULL,
    updated     DOUBLE PRECISION NOT NULL,
    granted     INTEGER          NOT NULL DEFAULT 0
);
