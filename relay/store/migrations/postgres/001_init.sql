-- The outbox and its history share one table; pending rows have a partial index for claims.
CREATE TABLE notifications (
    id              BIGSERIAL PRIMARY KEY,
    receiver        TEXT             NOT NULL,
    integration     TEXT             NOT NULL,
    lane            TEXT             NOT NULL,
    status          TEXT             NOT NULL,
    alertnames      TEXT             NOT NULL,
    payload         TEXT             NOT NULL,
    received_at     DOUBLE PRECISION NOT NULL,
    give_up_at      DOUBLE PRECISION NOT NULL,
    state           TEXT             NOT NULL DEFAULT 'pending',
    attempts        INTEGER          NOT NULL DEFAULT 0,
    next_attempt_at DOUBLE PRECISION NOT NULL,
    lease_until     DOUBLE PRECISION NOT NULL DEFAULT 0,
    lease_owner     TEXT,
    last_error      TEXT,
    finished_at     DOUBLE PRECISION
);
CREATE INDEX notifications_lane_pending ON notifications (lane, id) WHERE state = 'pending';
CREATE INDEX notifications_state_receiver ON notifications (state, receiver);
CREATE INDEX notifications_receiver ON notifications (receiver, id);

-- (receiver, fingerprint, starts_at, status) is notified once; notified_at drives repeat_interval.
-- interval_seconds is the repeat interval of the write, so one upsert can decide "notify again?" atomically.
CREATE TABLE dedup (
    receiver         TEXT             NOT NULL,
    fingerprint      TEXT             NOT NULL,
    starts_at        TEXT             NOT NULL,
    status           TEXT             NOT NULL,
    notified_at      DOUBLE PRECISION NOT NULL,
    interval_seconds DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (receiver, fingerprint, starts_at, status)
);

CREATE TABLE attempts (
    notification_id BIGINT           NOT NULL REFERENCES notifications (id),
    started_at      DOUBLE PRECISION NOT NULL,
    duration        DOUBLE PRECISION NOT NULL,
    outcome         TEXT             NOT NULL,
    reason          TEXT             NOT NULL DEFAULT '',
    detail          TEXT             NOT NULL DEFAULT ''
);
CREATE INDEX attempts_notification ON attempts (notification_id);

-- Where the first message about an alert episode went (Slack ts, email Message-ID), so its resolve can thread.
CREATE TABLE message_refs (
    receiver   TEXT             NOT NULL,
    alert_key  TEXT             NOT NULL,
    ref        TEXT             NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (receiver, alert_key)
);
