-- When an episode's resolve was seen (relay.escalation): a firing of the same episode after it is a new page (the
-- store's dedup delivers it), so its steps are armed again instead of staying cancelled or sent from before.
ALTER TABLE escalations ADD COLUMN resolved_at REAL;
