-- Where the first message about an alert episode went (Slack ts, email Message-ID), so its resolve can thread.
CREATE TABLE message_refs (
    receiver   TEXT NOT NULL,
    alert_key  TEXT NOT NULL,
    ref        TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (receiver, alert_key)
) WITHOUT ROWID;
