-- Claims walk receivers and read each one's pending rows in due order (see SQL_CLAIM), instead of working out the
-- head of every pending lane on every claim; the dispatcher's "when is the next one due" reads the second index.
CREATE INDEX notifications_receiver_due ON notifications (receiver, next_attempt_at, id) WHERE state = 'pending';
CREATE INDEX notifications_pending_due ON notifications (next_attempt_at) WHERE state = 'pending';
-- Retention prunes delivered history by when it finished.
CREATE INDEX notifications_delivered_finished ON notifications (finished_at) WHERE state = 'delivered';
