-- dedup_get --
-- When this alert episode was last notified to the receiver, per status (firing, resolved) (hot path: enqueue)
SELECT status, notified_at FROM dedup WHERE receiver=? AND fingerprint=? AND starts_at=?

-- dedup_put --
-- Mark the alert episode notified now (hot path: enqueue)
INSERT INTO dedup (receiver, fingerprint, starts_at, status, notified_at) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (receiver, fingerprint, starts_at, status) DO UPDATE SET notified_at = excluded.notified_at

-- insert --
-- Write one notification, due now, with its priority (hot path: enqueue)
INSERT INTO notifications (receiver, integration, lane, status, alertnames, payload, received_at, give_up_at,
                           next_attempt_at, priority)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)

-- lane_head --
-- The first pending notification of a lane (hot path: enqueue's handoff)
SELECT min(id) FROM notifications WHERE lane = ? AND state = 'pending'

-- next_receiver --
-- The next receiver after ? with pending rows: one index probe (hot path: claim)
SELECT min(receiver) FROM notifications WHERE state = 'pending' AND receiver > ?

-- receiver_heads --
-- Up to ?3 of receiver ?1's unleased lane heads due at ?2, most severe first, then oldest (hot path: claim)
SELECT n.id, n.receiver, n.integration, n.lane, n.payload, n.received_at, n.give_up_at, n.attempts, n.priority,
       n.escalation
FROM notifications n INDEXED BY notifications_receiver_priority
WHERE n.state = 'pending' AND n.receiver = ?1 AND n.next_attempt_at <= ?2 AND n.lease_until <= ?2
  AND NOT EXISTS (SELECT 1 FROM notifications p WHERE p.state = 'pending' AND p.lane = n.lane AND p.id < n.id)
ORDER BY n.priority, n.id
LIMIT ?3

-- receiver_next_due --
-- When receiver ?1's next unleased notification not due at ?2 becomes due: one index probe (hot path: claim)
SELECT min(next_attempt_at) FROM notifications INDEXED BY notifications_receiver_due
WHERE state = 'pending' AND receiver = ?1 AND next_attempt_at > ?2 AND lease_until <= ?2

-- lease --
-- Lease a notification to its sender until ? (hot path: claim and handoff)
UPDATE notifications SET lease_until = ?, lease_owner = ? WHERE id = ?

-- release --
-- Give leased notifications ?2 (a JSON array) back to their lanes untouched, if owner ?1 still holds them
UPDATE notifications SET lease_until = 0, lease_owner = NULL
WHERE id IN (SELECT value FROM json_each(?2)) AND state = 'pending' AND lease_owner = ?1

-- unreadable --
-- Set aside a notification whose payload cannot be read back, so it blocks no lane
UPDATE notifications SET state = 'dead', finished_at = ?, last_error = 'unreadable' WHERE id = ?

-- release_all --
-- Free every lease: at start, the one process serving this file knows its previous self is gone
UPDATE notifications SET lease_until = 0, lease_owner = NULL WHERE state = 'pending'

-- done --
-- Finish a leased notification (delivered or dead) if the lease is still ours (hot path: outcome)
UPDATE notifications SET state = ?, attempts = attempts + 1, finished_at = ?, last_error = ?,
       lease_until = 0, lease_owner = NULL
WHERE id = ? AND state = 'pending' AND lease_owner = ?

-- retry --
-- Schedule a leased notification's next attempt if the lease is still ours (hot path: outcome)
UPDATE notifications SET attempts = attempts + ?, next_attempt_at = ?, last_error = ?, rate_limited = ?,
       lease_until = 0, lease_owner = NULL
WHERE id = ? AND state = 'pending' AND lease_owner = ?

-- record_attempt --
-- One attempt's record: notification, started_at, duration, outcome, reason, detail (hot path: outcome)
INSERT INTO attempts (notification_id, started_at, duration, outcome, reason, detail) VALUES (?, ?, ?, ?, ?, ?)

-- retry_now --
-- Make a receiver's backed-off retries due now, except those waiting out a rate limit (rate_limited, set by retry)
UPDATE notifications SET next_attempt_at = ?
WHERE state = 'pending' AND receiver = ? AND attempts > 0 AND next_attempt_at > ? AND lease_until <= ?
  AND NOT rate_limited

-- dead_row --
-- A dead letter's receiver, lane, payload and age, for replay: ?1 id
SELECT receiver, lane, payload, received_at FROM notifications WHERE id = ?1 AND state = 'dead'

-- dead_after --
-- The dead letters of lane ?1 after notification ?2: a resolve among them was never sent
SELECT payload FROM notifications WHERE lane = ?1 AND id > ?2 AND state = 'dead' ORDER BY id

-- resolved_keys --
-- Which of these alert fingerprints (?2, a JSON array) already had their resolve notified to receiver ?1
SELECT fingerprint, starts_at FROM dedup
WHERE receiver = ?1 AND status = 'resolved' AND fingerprint IN (SELECT value FROM json_each(?2))

-- replay --
-- Put dead letter ?2 back in its lane, due at ?1, with its give-up time moved along and payload ?3 if given
UPDATE notifications SET state = 'pending', next_attempt_at = ?1, give_up_at = ?1 + (give_up_at - received_at),
       finished_at = NULL, lease_until = 0, lease_owner = NULL, payload = coalesce(?3, payload)
WHERE id = ?2 AND state = 'dead'

-- pending_by_receiver --
-- Pending notifications per receiver, and the oldest one's arrival
SELECT receiver, count(*), min(received_at) FROM notifications WHERE state = 'pending' GROUP BY receiver

-- dead_by_receiver --
-- Dead letters per receiver
SELECT receiver, count(*) FROM notifications WHERE state = 'dead' GROUP BY receiver

-- attempts_of --
-- Every attempt of notification ?1, in the order they were made (rowid: the order they were recorded)
SELECT started_at, duration, outcome, reason, detail FROM attempts WHERE notification_id = ?1
ORDER BY started_at, rowid

-- dead_exists --
-- Whether ?1 is a dead letter (before purging it)
SELECT 1 FROM notifications WHERE id = ?1 AND state = 'dead'

-- purge_attempts --
-- Forget notification ?1's attempts
DELETE FROM attempts WHERE notification_id = ?1

-- purge_notification --
-- Forget notification ?1
DELETE FROM notifications WHERE id = ?1

-- cancel --
-- Take pending notification ?3 out of its lane at ?1 with error ?2, unless it is being sent right now
UPDATE notifications SET state = 'cancelled', finished_at = ?1, last_error = ?2, lease_until = 0, lease_owner = NULL
WHERE id = ?3 AND state = 'pending' AND lease_until <= ?1

-- is_pending --
-- Whether ?1 is pending (a cancel that did not take: in flight, or missing)
SELECT 1 FROM notifications WHERE id = ?1 AND state = 'pending'

-- prune_cancelled_attempts --
-- Attempts of notifications cancelled before ?1 (few: an operator's hand; found through the state index)
DELETE FROM attempts WHERE notification_id IN
    (SELECT id FROM notifications WHERE state = 'cancelled' AND finished_at < ?1)

-- prune_cancelled --
-- Notifications cancelled before ?1
DELETE FROM notifications WHERE state = 'cancelled' AND finished_at < ?1

-- prune_delivered_attempts --
-- Attempts of notifications delivered before ?1, found through the delivered index
DELETE FROM attempts WHERE notification_id IN (SELECT id FROM notifications
    INDEXED BY notifications_delivered_at WHERE state = 'delivered' AND finished_at < ?1)

-- prune_delivered --
-- Notifications delivered before ?1, found through the delivered index
DELETE FROM notifications INDEXED BY notifications_delivered_at WHERE state = 'delivered' AND finished_at < ?1

-- prune_dedup --
-- Dedup marks older than ?1
DELETE FROM dedup WHERE notified_at < ?1

-- prune_refs --
-- Message references older than ?1
DELETE FROM message_refs WHERE created_at < ?1

-- refs_get --
-- The message references of receiver ?1 for the alert keys in ?2 (a JSON array)
SELECT alert_key, ref FROM message_refs WHERE receiver = ?1 AND alert_key IN (SELECT value FROM json_each(?2))

-- refs_put --
-- Remember one alert key's message reference (a later one replaces it)
INSERT INTO message_refs (receiver, alert_key, ref, created_at) VALUES (?, ?, ?, ?)
ON CONFLICT (receiver, alert_key) DO UPDATE SET ref = excluded.ref, created_at = excluded.created_at

-- probe_write --
-- Readiness after a failed write: a write of about a large webhook's size (probe_undo undoes it in its transaction)
INSERT OR REPLACE INTO message_refs (receiver, alert_key, ref, created_at) VALUES ('', 'relay:probe', ?, 0)

-- probe_undo --
-- Undo probe_write
DELETE FROM message_refs WHERE receiver = '' AND alert_key = 'relay:probe'

-- heartbeat_seen --
-- A heartbeat arrived at ?: its last-seen time moves forward, never back
INSERT INTO heartbeats (name, last_seen, watched_since, checked_at) VALUES (?1, ?2, ?2, ?2)
ON CONFLICT (name) DO UPDATE SET last_seen = max(coalesce(last_seen, excluded.last_seen), excluded.last_seen)

-- heartbeat_watch --
-- Watch a heartbeat from ? on, unless it is stored already
INSERT INTO heartbeats (name, watched_since, checked_at) VALUES (?1, ?2, ?2) ON CONFLICT (name) DO NOTHING

-- heartbeat_listen --
-- Heartbeat ?1, whose max_silence is ?3 seconds, is checked at ?2: if no relay checked it for longer than that (none
-- was running, so none could hear it), it is watched again from ?2
UPDATE heartbeats SET checked_at = max(coalesce(checked_at, ?2), ?2),
    watched_since = CASE WHEN checked_at IS NULL OR checked_at < ?2 - ?3 THEN ?2 ELSE watched_since END
WHERE name = ?1

-- heartbeats --
-- Every stored heartbeat
SELECT name, last_seen, watched_since, missing_since, heard_at FROM heartbeats ORDER BY name

-- heartbeat_missing --
-- Mark a heartbeat missing since ?1 if it is not and was last heard of (arrived, or relay began watching) before ?3;
-- heard_at keeps when it last arrived (or was watched from, if never)
UPDATE heartbeats SET missing_since = ?1, heard_at = coalesce(last_seen, watched_since)
WHERE name = ?2 AND missing_since IS NULL AND max(coalesce(last_seen, watched_since), watched_since) < ?3

-- heartbeat_back --
-- Mark a heartbeat missing since ? back if it arrived after that
UPDATE heartbeats SET missing_since = NULL, heard_at = NULL WHERE name = ? AND missing_since = ? AND last_seen > ?

-- action_mark --
-- Write mark ?1 at ?2 unless it exists: no row back means a replayed request or a second click (relay.actions)
INSERT INTO action_marks (key, created_at) VALUES (?1, ?2) ON CONFLICT (key) DO NOTHING RETURNING key

-- action_insert --
-- Write one action row (integration 'action', its own lane, priority -1: a person's click goes ahead of every
-- alert for its destination), due now, leased to ?11 until ?10 when handed off
INSERT INTO notifications (receiver, integration, lane, status, alertnames, payload, received_at, give_up_at,
                           next_attempt_at, lease_until, lease_owner, priority)
VALUES (?1, 'action', ?2, ?3, ?4, ?5, ?6, ?7, ?6, ?8, ?9, -1)
RETURNING id

-- prune_action_marks --
-- Action marks older than ?1
DELETE FROM action_marks WHERE created_at < ?1

-- watch_put --
-- Watch silence ?2 of receiver ?1 (alert group ?3) until ?4, first asked at ?5
INSERT INTO silence_watches (receiver, silence_id, payload, ends_at, next_check) VALUES (?1, ?2, ?3, ?4, ?5)
ON CONFLICT (receiver, silence_id) DO UPDATE SET payload = excluded.payload, ends_at = excluded.ends_at,
                                                 next_check = excluded.next_check, absent_since = NULL

-- watch_drop --
-- Stop watching silence ?2 of receiver ?1
DELETE FROM silence_watches WHERE receiver = ?1 AND silence_id = ?2

-- watch_absent --
-- Since when silence ?2's alert (receiver ?1) has been absent from an Alertmanager up for the grace period: ?3
-- (NULL: seen firing again, or the absence does not count)
UPDATE silence_watches SET absent_since = ?3 WHERE receiver = ?1 AND silence_id = ?2

-- watch_ended --
-- Forget watches whose silence ended before ?1 (Alertmanager notifies for the alert again by itself)
DELETE FROM silence_watches WHERE ends_at <= ?1

-- watch_due --
-- Take up to ?3 watches due at ?1: the next ask moves to ?2, so no other check takes them meanwhile
UPDATE silence_watches SET next_check = ?2
WHERE (receiver, silence_id) IN (SELECT receiver, silence_id FROM silence_watches WHERE next_check <= ?1
                                 ORDER BY next_check LIMIT ?3)
RETURNING receiver, silence_id, payload, ends_at, absent_since

-- escalation_arm --
-- Arm the timers of ?1 (a JSON array of objects) at ?2, each unless armed already: a re-sent alert keeps its clock
-- (one that fires again after its episode's resolve is armed anew)
INSERT INTO escalations (fingerprint, starts_at, step, steps, after_seconds, receivers, group_key, payload,
                         armed_at, due_at)
SELECT json_extract(value, '$.fingerprint'), json_extract(value, '$.starts_at'), json_extract(value, '$.step'),
       json_extract(value, '$.steps'), json_extract(value, '$.after'), json_extract(value, '$.receivers'),
       json_extract(value, '$.group_key'), json_extract(value, '$.payload'), ?2, json_extract(value, '$.due_at')
FROM json_each(?1) WHERE true
ON CONFLICT (fingerprint, starts_at, step) DO UPDATE
    SET steps = excluded.steps, after_seconds = excluded.after_seconds, receivers = excluded.receivers,
        group_key = excluded.group_key, payload = excluded.payload, armed_at = excluded.armed_at,
        due_at = excluded.due_at, state = 'pending', ended_at = NULL, reason = '', notifications = '[]',
        resolved_at = NULL
    WHERE escalations.resolved_at IS NOT NULL  -- fired again after its resolve: a new page, a new escalation

-- escalation_resolve --
-- The episodes of ?2 (a JSON array of [fingerprint, starts_at]) resolved at ?1: what is left of their escalation ends
UPDATE escalations SET state = 'cancelled', ended_at = ?1, reason = 'resolved'
WHERE state = 'pending' AND (fingerprint, starts_at) IN
    (SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(?2))

-- escalation_held --
-- The pending holds of a mute (relay.stages.mute: step < 0) of the episodes of ?1 (a JSON array of [fingerprint,
-- starts_at]), read before their resolve cancels them: whom the firing was held from
SELECT fingerprint, starts_at, receivers FROM escalations
WHERE state = 'pending' AND step < 0 AND (fingerprint, starts_at) IN
    (SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(?1))

-- dedup_told --
-- Which of ?1 (a JSON array of [receiver, fingerprint, starts_at]) were told the episode fired
SELECT receiver, fingerprint, starts_at FROM dedup
WHERE status = 'firing' AND (receiver, fingerprint, starts_at) IN
    (SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]') FROM json_each(?1))

-- escalation_resolved_at --
-- The episodes of ?2 (a JSON array of [fingerprint, starts_at]) resolved at ?1, whatever their steps' state: a firing
-- after this arms them again
UPDATE escalations SET resolved_at = ?1
WHERE (fingerprint, starts_at) IN (SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(?2))

-- escalation_sent_to --
-- The steps already sent for the episodes of ?1 (a JSON array of [fingerprint, starts_at]): their resolve goes there
SELECT fingerprint, starts_at, receivers FROM escalations
WHERE state = 'sent' AND (fingerprint, starts_at) IN
    (SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(?1))

-- escalation_cancel --
-- Cancel at ?1, for reason ?2, every pending step of the alerts whose fingerprints are in ?3 (a JSON array)
UPDATE escalations SET state = 'cancelled', ended_at = ?1, reason = ?2
WHERE state = 'pending' AND fingerprint IN (SELECT value FROM json_each(?3))

-- escalations_due --
-- Pending steps due at ?1, the earliest first, at most ?2
SELECT id, fingerprint, starts_at, step, steps, after_seconds, receivers, group_key, payload, armed_at, due_at
FROM escalations WHERE state = 'pending' AND due_at <= ?1 ORDER BY due_at, id LIMIT ?2

-- escalation_lock --
-- Which of the steps ?1 (a JSON array of ids) are still pending (one writer: nobody can take them meanwhile)
SELECT id FROM escalations WHERE id IN (SELECT value FROM json_each(?1)) AND state = 'pending'

-- escalation_sent --
-- Steps ?3 (a JSON array of ids) were sent at ?1 as notifications ?2 (a JSON array)
UPDATE escalations SET state = 'sent', ended_at = ?1, notifications = ?2 WHERE id IN (SELECT value FROM json_each(?3))

-- notification_escalation --
-- Notifications ?2 (a JSON array of ids) are escalation step ?1 (JSON: step, steps, after)
UPDATE notifications SET escalation = ?1 WHERE id IN (SELECT value FROM json_each(?2))

-- escalations_of --
-- Every step of the alerts whose fingerprints are in ?1 (a JSON array), in the order they were armed
SELECT id, fingerprint, starts_at, step, steps, after_seconds, receivers, armed_at, due_at, state, ended_at, reason,
       notifications
FROM escalations WHERE fingerprint IN (SELECT value FROM json_each(?1)) ORDER BY armed_at, starts_at, step

-- prune_escalations --
-- Steps sent or cancelled before ?1 (a resolve no longer needs to know where they went)
DELETE FROM escalations WHERE state <> 'pending' AND ended_at < ?1
-- storm_backlog --
-- Per receiver, the pending notifications due by ?1 that are neither a storm's summaries nor clicks' rows
SELECT receiver, count(*) FROM notifications
WHERE state = 'pending' AND next_attempt_at <= ?1 AND instr(lane, char(30)) = 0
  AND integration <> 'action' GROUP BY receiver

-- storms_open --
-- Every open storm
SELECT id, receiver, started_at, folded_at, ended_at, folded, ref FROM storms WHERE ended_at IS NULL ORDER BY receiver

-- storm_waiting --
-- Receiver ?1's pending notifications (not summaries nor clicks), lane by lane, with lease and priority (what may fold)
SELECT id, lane, payload, lease_until, priority FROM notifications
WHERE state = 'pending' AND receiver = ?1 AND instr(lane, char(30)) = 0 AND integration <> 'action'
ORDER BY lane, id

-- storm_open --
-- Open a storm for receiver ?1 at ?2, unless it has one open (another replica's): then no row
INSERT INTO storms (receiver, started_at, folded_at) VALUES (?1, ?2, ?2) ON CONFLICT DO NOTHING RETURNING id

-- storm_continue --
-- Fold again into open storm ?1 at ?3 if its last fold is still ?2 (else another replica folded or ended it)
UPDATE storms SET folded_at = ?3 WHERE id = ?1 AND folded_at = ?2 AND ended_at IS NULL

-- storm_summary --
-- Write a summary: receiver ?1, integration ?2, lane ?3, status ?4, alertnames ?5, payload ?6, due now ?7, give up ?8,
-- priority ?9 (its most severe folded notification's)
INSERT INTO notifications (receiver, integration, lane, status, alertnames, payload, received_at, give_up_at,
                           next_attempt_at, priority)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?7, ?9) RETURNING id

-- storm_fold --
-- Record notifications ?3 (a JSON array) delivered at ?2 in summary ?1, if still pending and not being sent
UPDATE notifications SET state = 'delivered', finished_at = ?2, summary_id = ?1, last_error = NULL, lease_until = 0,
       lease_owner = NULL
WHERE id IN (SELECT value FROM json_each(?3)) AND state = 'pending' AND lease_until <= ?2

-- storm_fold_attempts --
-- The attempt of each notification folded into summary ?1 at ?2: delivered in that summary
INSERT INTO attempts (notification_id, started_at, duration, outcome, reason, detail)
SELECT id, ?2, 0, 'delivered', 'folded', 'in summary ' || summary_id FROM notifications WHERE summary_id = ?1

-- storm_count --
-- Storm ?1 folded ?2 more notifications
UPDATE storms SET folded = folded + ?2 WHERE id = ?1

-- storm_end --
-- End open storm ?1 at ?3 if its last fold is still ?2
UPDATE storms SET ended_at = ?3 WHERE id = ?1 AND folded_at = ?2 AND ended_at IS NULL

-- storm_get --
-- Storm ?1
SELECT id, receiver, started_at, folded_at, ended_at, folded, ref FROM storms WHERE id = ?1

-- storm_summaries --
-- The summaries of storm lane ?1 up to notification ?2, in order (what the storm's message shows so far)
SELECT id, payload FROM notifications WHERE instr(lane, char(30)) > 0 AND lane = ?1 AND id <= ?2 ORDER BY id

-- storm_last --
-- The last summary in storm lane ?1 (what the storm's message showed last)
SELECT id, integration, lane, payload, received_at, give_up_at, priority FROM notifications
WHERE instr(lane, char(30)) > 0 AND lane = ?1 ORDER BY id DESC LIMIT 1

-- storm_ref --
-- Remember where storm ?1's summary message is (?2)
UPDATE storms SET ref = ?2 WHERE id = ?1

-- folded_count --
-- How many notifications were folded into summary ?1
SELECT count(*) FROM notifications WHERE summary_id = ?1

-- prune_storms --
-- Storms that ended before ?1
DELETE FROM storms WHERE ended_at < ?1

-- maintenance_add --
-- A maintenance window: ?1 matchers (a JSON array), from ?2 until ?3, ?4 comment, ?5 by whom, made at ?6,
-- muting only while routes.yaml's time interval ?7 holds ('': throughout)
INSERT INTO maintenance (matchers, starts_at, ends_at, comment, created_by, created_at, time_interval)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
RETURNING id, matchers, starts_at, ends_at, comment, created_by, created_at, ended_at, time_interval

-- maintenance_list --
-- Maintenance windows not over at ?1 (all of them when ?2), by start
SELECT id, matchers, starts_at, ends_at, comment, created_by, created_at, ended_at, time_interval FROM maintenance
WHERE ends_at > ?1 OR ?2 ORDER BY starts_at, id

-- maintenance_end --
-- End window ?2 at ?1 if it is not over: from now on it mutes nothing
UPDATE maintenance SET ended_at = ?1, ends_at = min(ends_at, ?1)
WHERE id = ?2 AND ends_at > ?1
RETURNING id, matchers, starts_at, ends_at, comment, created_by, created_at, ended_at, time_interval

-- maintenance_holds_due --
-- The pending holds of window ?2 (step ?2) are due at ?1: the window ended early
UPDATE escalations SET due_at = min(due_at, ?1) WHERE state = 'pending' AND step = ?2

-- escalation_postpone --
-- Pending steps ?2 (a JSON array of ids) are looked at again at ?1: still muted when due (relay.stages.mute)
UPDATE escalations SET due_at = ?1 WHERE state = 'pending' AND id IN (SELECT value FROM json_each(?2))
