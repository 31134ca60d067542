-- Escalation timers (relay.escalation): one row per (alert episode, step), armed when relay first receives the
-- firing alert, due `after` later. pending -> sent (enqueued to its receivers, `notifications` lists the ids) or
-- cancelled (acknowledged, silenced, resolved, or its route no longer escalates: `reason`). `payload` is the
-- alert's group narrowed to that alert: what the step sends. Replicas share the rows: the step is sent by the
-- one whose locking read still finds it pending.
CREATE TABLE escalations (
    id            BIGSERIAL PRIMARY KEY,
    fingerprint   TEXT             NOT NULL,
    starts_at     TEXT             NOT NULL,
    step          INTEGER          NOT NULL,
    steps         INTEGER          NOT NULL,
    after_seconds DOUBLE PRECISION NOT NULL,
    receivers     TEXT             NOT NULL,
    group_key     TEXT             NOT NULL,
    payload       TEXT             NOT NULL,
    armed_at      DOUBLE PRECISION NOT NULL,
    due_at        DOUBLE PRECISION NOT NULL,
    state         TEXT             NOT NULL DEFAULT 'pending',
    ended_at      DOUBLE PRECISION,
    reason        TEXT             NOT NULL DEFAULT '',
    notifications TEXT             NOT NULL DEFAULT '[]',
    UNIQUE (fingerprint, starts_at, step)
);
CREATE INDEX escalations_due ON escalations (due_at) WHERE state = 'pending';
CREATE INDEX escalations_ended ON escalations (ended_at) WHERE state <> 'pending';

-- A notification an escalation step sent: {"step", "steps", "after"} (JSON; NULL for every other notification).
ALTER TABLE notifications ADD COLUMN escalation TEXT;
