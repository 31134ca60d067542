-- delivered_since --
-- Deliveries finished since $1, for the receivers view (last success, count, p95, chart): the delivered index
SELECT receiver, finished_at, finished_at - received_at AS latency FROM notifications
WHERE state = 'delivered' AND finished_at >= $1 ORDER BY finished_at

-- last_delivered --
-- When receiver $1 last delivered (the delivered index, newest first, stops at the first of this receiver)
SELECT finished_at FROM notifications WHERE state = 'delivered' AND receiver = $1 AND finished_at IS NOT NULL
ORDER BY finished_at DESC LIMIT 1

-- failures_since --
-- Failed attempts (retried or dead-lettered) since $1, newest first, with their receiver (attempts are small rows)
SELECT n.receiver, a.notification_id, a.started_at, a.outcome, a.reason, a.detail
FROM attempts a JOIN notifications n ON n.id = a.notification_id
WHERE a.outcome IN ('retry', 'dead') AND a.started_at >= $1 ORDER BY a.started_at DESC

-- rate_limited --
-- Pending notifications that wait out a provider's rate limit now, per receiver
SELECT receiver, count(*) AS waiting FROM notifications WHERE state = 'pending' AND rate_limited = $1
GROUP BY receiver

-- storms_recent --
-- The newest storms, open or ended
SELECT id, receiver, started_at, folded_at, ended_at, folded, ref FROM storms ORDER BY id DESC LIMIT $1

-- storm_summaries --
-- The summary notifications of one storm (its own lane, on the storm-lane index), oldest first
SELECT id, state, received_at, finished_at FROM notifications WHERE lane = $1 AND {storm_lane} ORDER BY id

-- summary_storm --
-- The lane of a summary notification (its storm is in the lane's name)
SELECT lane, receiver FROM notifications WHERE id = $1

-- folded_into --
-- The notifications folded into one summary, with their payloads (to list each alert)
SELECT id, receiver, received_at, payload FROM notifications WHERE summary_id = $1 ORDER BY id

-- marks_of --
-- Where receiver $1 has notified alert $2, the newest $3 (each episode and status, and when: dedup's primary key)
SELECT starts_at, status, notified_at FROM dedup WHERE receiver = $1 AND fingerprint = $2
ORDER BY notified_at DESC LIMIT $3

-- notified_by_delivered --
-- The delivered notification that wrote a dedup mark: the receiver's, received at that instant ($2). It finished
-- then or after by the clock that received it; a storm fold's time is taken before its transaction and another
-- replica's clock may be behind, so the delivered index is read from ten minutes earlier, up to the first found
-- (`|| ''` keeps the planners off the (state, receiver) index, which would read every delivery of the receiver;
-- the CAST keeps PostgreSQL from taking $2 for an integer because of `- 600`)
SELECT id, receiver, integration, status, state, received_at, finished_at, attempts, last_error, summary_id, payload
FROM notifications WHERE state = 'delivered' AND finished_at >= CAST($2 AS DOUBLE PRECISION) - 600
AND receiver || '' = $1 AND received_at = $2 ORDER BY finished_at LIMIT 1

-- notified_by_other --
-- The same for a notification not delivered (dead, pending, cancelled: few, on the state index)
SELECT id, receiver, integration, status, state, received_at, finished_at, attempts, last_error, summary_id, payload
FROM notifications WHERE state IN ('dead', 'pending', 'cancelled') AND receiver = $1 AND received_at = $2
ORDER BY id DESC LIMIT 1

-- attempts_of --
-- Every attempt of one notification, in order
SELECT started_at, duration, outcome, reason, detail FROM attempts WHERE notification_id = $1 ORDER BY started_at

-- notification_row --
-- One notification with what rebuilding its message needs (lane, payload, escalation)
SELECT id, receiver, integration, lane, received_at, attempts, escalation, payload FROM notifications WHERE id = $1

-- refs_of --
-- The message references a receiver keeps for these alert keys (where their Slack message or email thread is)
SELECT alert_key, ref FROM message_refs WHERE receiver = $1 AND alert_key = $2

-- watches_all --
-- Silences relay created from Slack that it still watches (a small table)
SELECT receiver, silence_id, payload, ends_at FROM silence_watches
