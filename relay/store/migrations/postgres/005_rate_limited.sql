-- Whether a pending retry waits out a rate limit (its Retry-After or a token), which retry_now must leave alone.
-- It was read from last_error's text ('rate_limited...'); the rows waiting so today keep waiting.
ALTER TABLE notifications ADD COLUMN rate_limited BOOLEAN NOT NULL DEFAULT false;
UPDATE notifications SET rate_limited = true WHERE state = 'pending' AND last_error LIKE 'rate_limited%';
