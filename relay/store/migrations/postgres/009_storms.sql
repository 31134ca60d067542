-- Storms (relay.storm): a receiver's backlog folded into summaries. A receiver has at most one open storm (ended_at
-- NULL: the unique index makes one replica's open win); folded_at is when it last folded (the condition a replica's
-- next fold or end must still see); ref is where its summary message is (a Slack channel and ts), so later summaries
-- update it in place.
CREATE TABLE storms (
    id         BIGSERIAL PRIMARY KEY,
    receiver   TEXT             NOT NULL,
    started_at DOUBLE PRECISION NOT NULL,
    folded_at  DOUBLE PRECISION NOT NULL,
    ended_at   DOUBLE PRECISION,
    folded     INTEGER          NOT NULL DEFAULT 0,
    ref        TEXT
);
CREATE UNIQUE INDEX storms_open ON storms (receiver) WHERE ended_at IS NULL;
-- The summary notification a folded notification was delivered in (NULL: it was sent on its own).
ALTER TABLE notifications ADD COLUMN summary_id BIGINT;
CREATE INDEX notifications_summary ON notifications (summary_id) WHERE summary_id IS NOT NULL;
-- A storm's summaries (their lanes hold char 30, relay.fold), read in order when its message is updated.
CREATE INDEX notifications_storm_lane ON notifications (lane, id) WHERE strpos(lane, chr(30)) > 0;
