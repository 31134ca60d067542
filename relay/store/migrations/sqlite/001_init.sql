-- The outbox and its history share one table; pending rows have a partial index for claims.
CREATE TABLE notifications (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    receiver        TEXT    NOT NULL,
    integration     TEXT    NOT NULL,
    lane            TEXT    NOT NULL,
    status          TEXT    NOT NULL,
    alertnames      TEXT    NOT NULL,
    payload         TEXT    NOT NULL,
    received_at     REAL    NOT NULL,
    give_up_at      REAL    NOT NULL,
    state           TEXT    NOT NULL DEFAULT 'pending',
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL    NOT NULL,
    lease_until     REAL    NOT NULL DEFAULT 0,
    lease_owner     TEXT,
    last_error      TEXT,
    finished_at     REAL
);
CREATE INDEX notifications_lane_pending ON notifications (lane, id) WHERE state = 'pending';
CREATE INDEX notifications_state_receiver ON notifications (state, receiver);
CREATE INDEX notifications_receiver ON notifications (receiver, id);

-- (receiver, fingerprint, starts_at, status) is notified once; notified_at drives repeat_interval.
CREATE TABLE dedup (
    receiver    TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    starts_at   TEXT NOT NULL,
    status      TEXT NOT NULL,
    notified_at REAL NOT NULL,
    PRIMARY KEY (receiver, fingerprint, starts_at, status)
) WITHOUT ROWID;

CREATE TABLE attempts (
    notification_id INTEGER NOT NULL REFERENCES notifications (id),
    started_at      REAL    NOT NULL,
    duration        REAL    NOT NULL,
    outcome         TEXT    NOT NULL,
    reason          TEXT    NOT NULL DEFAULT '',
    detail          TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX attempts_notification ON attempts (notification_id);
