-- Slack actions (relay.actions): the mark of each signed request (a replay finds its own and is refused) and of
-- each click on a rendering of a message (a double click acts once). Pruned by age like dedup marks.
CREATE TABLE action_marks (
    key        TEXT PRIMARY KEY,
    created_at REAL NOT NULL
) WITHOUT ROWID;
-- Silences relay created from Slack, watched for their alert's resolve until they end (Alertmanager sends no
-- resolve for a silenced alert): the alert's group as a payload, the silence's end and the next time to ask.
CREATE TABLE silence_watches (
    receiver   TEXT NOT NULL,
    silence_id TEXT NOT NULL,
    payload    TEXT NOT NULL,
    ends_at    REAL NOT NULL,
    next_check REAL NOT NULL,
    PRIMARY KEY (receiver, silence_id)
) WITHOUT ROWID;
CREATE INDEX silence_watches_due ON silence_watches (next_check);
