-- Attempts get the insertion order SQLite's rowid gives them, so both stores list attempts made at one instant in
-- the order they were recorded (ORDER BY started_at, id). Existing rows are numbered as the table rewrite reads them.
ALTER TABLE attempts ADD COLUMN id BIGSERIAL;
