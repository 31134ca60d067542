-- Claims read each receiver's pending rows in due order and stop once they have its share,
-- instead of grouping every pending lane on every claim.
CREATE INDEX notifications_receiver_due ON notifications (receiver, next_attempt_at, id) WHERE state = 'pending';
