-- Slack actions (relay.actions): the mark of each signed request (a replay finds its own and is refused) and of
-- each click on a rendering of a message (a double click acts once), shared by replicas. Pruned by age.
CREATE TABLE action_marks (
    key        TEXT PRIMARY KEY,
    created_at DOUBLE PRECISION NOT NULL
);
-- Silences relay created from Slack, watched for their alert's resolve until they end (Alertmanager sends no
-- resolve for a silenced alert). One replica takes a due watch by moving next_check (FOR UPDATE SKIP LOCKED).
CREATE TABLE silence_watches (
    receiver   TEXT             NOT NULL,
    silence_id TEXT             NOT NULL,
    payload    TEXT             NOT NULL,
    ends_at    DOUBLE PRECISION NOT NULL,
    next_check DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (receiver, silence_id)
);
CREATE INDEX silence_watches_due ON silence_watches (next_check);
