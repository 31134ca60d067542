-- Maintenance windows made at run time (relay maintenance add, POST /api/v1/maintenance): alerts the matchers
-- (Alertmanager's syntax, a JSON array as written) match are muted from starts_at until ends_at (relay.stages.mute
-- holds what they would send). Ending one early sets ended_at and brings ends_at forward; rows are kept as history.
CREATE TABLE maintenance (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    matchers   TEXT NOT NULL,
    starts_at  REAL NOT NULL,
    ends_at    REAL NOT NULL,
    comment    TEXT NOT NULL,
    created_by TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    ended_at   REAL
);
CREATE INDEX maintenance_ends ON maintenance (ends_at);
