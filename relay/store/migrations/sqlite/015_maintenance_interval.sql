-- A recurring maintenance window (relay maintenance add --interval NAME): between starts_at and ends_at it mutes
-- only while routes.yaml's time interval of that name holds ('' for a window that mutes throughout).
ALTER TABLE maintenance ADD COLUMN time_interval TEXT NOT NULL DEFAULT '';
