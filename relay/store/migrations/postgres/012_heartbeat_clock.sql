-- Heartbeat deadlines from the store, not a process's start (relay.deadman, issue 20 #9): checked_at is when a relay
-- last checked the heartbeat (relay was listening until then; NULL: not known), so a restart, or a crash loop, keeps
-- the clock, and only a gap longer than max_silence (no relay ran) watches it again from the next check. heard_at is
-- when it was last heard of before it went missing (its last arrival, or when relay began watching): what the return's
-- "none arrived for" says.
ALTER TABLE heartbeats ADD COLUMN checked_at DOUBLE PRECISION;
ALTER TABLE heartbeats ADD COLUMN heard_at DOUBLE PRECISION;
