-- enqueue --
-- A whole enqueue in one statement (hot path; see PostgresStore.enqueue for its parameters)
WITH mark AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::float8[])
        WITH ORDINALITY AS m (receiver, fingerprint, starts_at, status, interval_seconds, k)
),
won AS (
    INSERT INTO dedup AS d (receiver, fingerprint, starts_at, status, notified_at, interval_seconds)
    -- never at or before the other status's mark: webhooks commit in another order than they arrive (rows.shown_at)
    SELECT receiver, fingerprint, starts_at, status,
           GREATEST($6, (SELECT max(o.notified_at) + 0.000001 FROM dedup o
                         WHERE o.receiver = mark.receiver AND o.fingerprint = mark.fingerprint
                           AND o.starts_at = mark.starts_at AND o.status <> mark.status)),
           interval_seconds
    FROM mark ORDER BY k
    ON CONFLICT (receiver, fingerprint, starts_at, status) DO UPDATE
        SET notified_at = excluded.notified_at, interval_seconds = excluded.interval_seconds
        -- again after the other status was shown (rows.dedup_passes), or a firing after its repeat interval
        WHERE (excluded.status = 'firing' AND excluded.notified_at - d.notified_at >= excluded.interval_seconds)
           OR EXISTS (SELECT 1 FROM dedup o WHERE o.receiver = d.receiver AND o.fingerprint = d.fingerprint
                      AND o.starts_at = d.starts_at AND o.status <> d.status AND o.notified_at > d.notified_at)
    RETURNING receiver, fingerprint, starts_at, status
),
kept AS (  -- an alert twice in one enqueue is notified once, in its first place
    SELECT DISTINCT ON (mark.k) a.*
    FROM won JOIN mark USING (receiver, fingerprint, starts_at, status)
    JOIN unnest($7::int[], $8::int[], $9::int[], $10::text[], $11::bool[], $22::int[])
        AS a (cand, pos, k, name, firing, priority)
        ON a.k = mark.k
    ORDER BY mark.k, a.cand, a.pos
),
notice AS (
    SELECT c.*, nextval('notifications_id_seq') AS id, s.positions, s.firing, s.names, s.priority
    FROM unnest($12::int[], $13::text[], $14::text[], $15::text[], $16::text[], $17::int[], $18::float8[],
                $19::bool[]) AS c (cand, receiver, integration, lane, payload, total, give_up_at, offered)
    JOIN (SELECT cand, array_agg(pos ORDER BY pos) AS positions, bool_or(firing) AS firing, min(priority) AS priority,
                 string_agg(DISTINCT name COLLATE "C", ',' ORDER BY name COLLATE "C") AS names
          FROM kept GROUP BY cand) s USING (cand)
),
written AS (
    INSERT INTO notifications (id, receiver, integration, lane, status, alertnames, payload, received_at, give_up_at,
                               next_attempt_at, lease_until, lease_owner, priority)
    SELECT id, receiver, integration, lane, CASE WHEN firing THEN 'firing' ELSE 'resolved' END, names,
           CASE WHEN cardinality(positions) = total THEN payload ELSE (payload::jsonb || jsonb_build_object(
               'status', CASE WHEN firing THEN 'firing' ELSE 'resolved' END,
               'alerts', (SELECT jsonb_agg(e ORDER BY i) FROM jsonb_array_elements(payload::jsonb -> 'alerts')
                              WITH ORDINALITY AS x (e, i) WHERE i - 1 = ANY(positions))))::text END,
           $6, give_up_at, $6, CASE WHEN head THEN $20::float8 ELSE 0 END, CASE WHEN head THEN $21::text END,
           priority
    FROM (SELECT *, offered AND NOT EXISTS (SELECT 1 FROM notifications p WHERE p.lane = notice.lane
                                                                           AND p.state = 'pending') AS head
          FROM notice) AS heads
    RETURNING id, lease_owner IS NOT NULL AS leased
)
SELECT notice.cand, notice.id, notice.positions, written.leased FROM notice JOIN written USING (id)

-- claim --
-- Due lane heads, most severe first then oldest, at most $4's share per receiver $3 and $2 in all, skipping rows
-- another replica is claiming (hot path)
WITH RECURSIVE receivers (name) AS (
    SELECT min(receiver) FROM notifications WHERE state = 'pending'
    UNION ALL
    SELECT (SELECT min(receiver) FROM notifications WHERE state = 'pending' AND receiver > r.name)
    FROM receivers r WHERE r.name IS NOT NULL
),
due AS (
    SELECT h.id FROM receivers r
    LEFT JOIN unnest($3::text[], $4::int[]) AS room (receiver, share) ON room.receiver = r.name,
    LATERAL (
        SELECT n.id, n.priority FROM notifications n
        WHERE n.state = 'pending' AND n.receiver = r.name AND n.next_attempt_at <= $1 AND n.lease_until <= $1
          AND NOT EXISTS (SELECT 1 FROM notifications p WHERE p.state = 'pending' AND p.lane = n.lane AND p.id < n.id)
        ORDER BY n.priority, n.id
        LIMIT least($2, coalesce(room.share, $2))
    ) h
    WHERE r.name IS NOT NULL
    ORDER BY h.priority, h.id
    LIMIT $2 * 4
)
SELECT n.id, n.receiver, n.integration, n.lane, n.payload, n.received_at, n.give_up_at, n.attempts, n.priority,
       n.escalation
FROM notifications n
WHERE n.id IN (SELECT id FROM due) AND n.state = 'pending' AND n.lease_until <= $1
ORDER BY n.priority, n.id
LIMIT $2
FOR UPDATE OF n SKIP LOCKED

-- bucket_peek --
-- The tokens destinations $1 (rates $2, bursts $3) hold now at the server's clock, taking none; a bucket never used
-- is full (hot path: claim)
SELECT w.destination, coalesce(least(w.burst, b.tokens
           + greatest(0, extract(epoch FROM clock_timestamp()) - b.updated) * w.rate), w.burst)::float8 AS tokens
FROM unnest($1::text[], $2::float8[], $3::int[]) AS w (destination, rate, burst)
LEFT JOIN rate_buckets b USING (destination)

-- bucket_take --
-- Take up to $4 whole tokens from each destination's bucket $1 (rates $2, bursts $3; sorted by the caller: one lock
-- order) at the server's clock; the row lock makes it one budget for every replica; a first use starts full
INSERT INTO rate_buckets AS b (destination, rate, burst, tokens, updated, granted)
SELECT w.destination, w.rate, w.burst, w.burst - least(w.n, w.burst), c.t, least(w.n, w.burst)
FROM unnest($1::text[], $2::float8[], $3::int[], $4::int[]) WITH ORDINALITY AS w (destination, rate, burst, n, k),
     (SELECT extract(epoch FROM clock_timestamp())::float8 AS t) AS c
ORDER BY w.k
ON CONFLICT (destination) DO UPDATE SET
    tokens = least(excluded.burst, b.tokens + greatest(0, excluded.updated - b.updated) * excluded.rate)
             - least(excluded.granted, floor(least(excluded.burst,
                   b.tokens + greatest(0, excluded.updated - b.updated) * excluded.rate))),
    granted = least(excluded.granted, floor(least(excluded.burst,
                  b.tokens + greatest(0, excluded.updated - b.updated) * excluded.rate)))::int,
    updated = excluded.updated, rate = excluded.rate, burst = excluded.burst
RETURNING destination, granted, tokens, rate

-- release --
-- Give leased notifications $2 back to their lanes untouched, if owner $1 still holds them
UPDATE notifications SET lease_until = 0, lease_owner = NULL
WHERE id = ANY($2::bigint[]) AND state = 'pending' AND lease_owner = $1

-- next_due --
-- When the next not-yet-due unleased notification becomes due (hot path: claim)
SELECT min(next_attempt_at) FROM notifications WHERE state = 'pending' AND next_attempt_at > $1 AND lease_until <= $1

-- lease --
-- Lease the claimed ids $1 to $3 until $2, re-checking in the UPDATE that nobody else holds them (hot path: claim)
UPDATE notifications SET lease_until = $2, lease_owner = $3
WHERE id = ANY($1::bigint[]) AND state = 'pending' AND lease_until <= $4 AND next_attempt_at <= $4
RETURNING id

-- unreadable --
-- Set aside notification $1, whose payload cannot be read back, so it blocks no lane
UPDATE notifications SET state = 'dead', finished_at = $2, last_error = 'unreadable' WHERE id = $1

-- release_orphans --
-- Free the leases of dispatchers whose advisory lock (class $1) died with their connection
UPDATE notifications SET lease_until = 0, lease_owner = NULL
WHERE state = 'pending' AND lease_owner IS NOT NULL AND NOT EXISTS (
    SELECT 1 FROM pg_locks l
    WHERE l.locktype = 'advisory' AND l.classid = $1::oid AND l.objid = hashtext(lease_owner)::oid
      AND l.objsubid = 2 AND l.granted)

-- done --
-- Finish a leased notification (delivered or dead) and record its attempt ($6-$10), if the lease held (hot path)
WITH finished AS (
    UPDATE notifications SET state = $1, attempts = attempts + 1, finished_at = $2, last_error = $3,
           lease_until = 0, lease_owner = NULL
    WHERE id = $4 AND state = 'pending' AND lease_owner = $5
    RETURNING id)
INSERT INTO attempts (notification_id, started_at, duration, outcome, reason, detail)
SELECT id, $6::double precision, $7::double precision, $8::text, $9::text, $10::text FROM finished

-- retry --
-- Schedule a leased notification's next attempt and record this one ($7-$11), if the lease held (hot path)
WITH finished AS (
    UPDATE notifications SET attempts = attempts + $1, next_attempt_at = $2, last_error = $3, rate_limited = $4,
           lease_until = 0, lease_owner = NULL
    WHERE id = $5 AND state = 'pending' AND lease_owner = $6
    RETURNING id)
INSERT INTO attempts (notification_id, started_at, duration, outcome, reason, detail)
SELECT id, $7::double precision, $8::double precision, $9::text, $10::text, $11::text FROM finished

-- record_attempt --
-- One attempt's record: notification, started_at, duration, outcome, reason, detail
INSERT INTO attempts (notification_id, started_at, duration, outcome, reason, detail) VALUES ($1, $2, $3, $4, $5, $6)

-- retry_now --
-- Make receiver $2's backed-off retries due at $1, except those waiting out a rate limit (rate_limited, set by retry)
UPDATE notifications SET next_attempt_at = $1
WHERE state = 'pending' AND receiver = $2 AND attempts > 0 AND next_attempt_at > $1 AND lease_until <= $1
  AND NOT rate_limited

-- dead_row --
-- Dead letter $1's receiver, lane, payload and age, locked for its replay
SELECT receiver, lane, payload, received_at FROM notifications WHERE id = $1 AND state = 'dead' FOR UPDATE

-- dead_after --
-- The dead letters of lane $1 after notification $2: a resolve among them was never sent
SELECT payload FROM notifications WHERE lane = $1 AND id > $2 AND state = 'dead' ORDER BY id

-- resolved_keys --
-- Which of these alert fingerprints ($2) already had their resolve notified to receiver $1
SELECT fingerprint, starts_at FROM dedup
WHERE receiver = $1 AND status = 'resolved' AND fingerprint = ANY($2::text[])

-- replay --
-- Put dead letter $2 back in its lane, due at $1, with its give-up time moved along and payload $3 if given
UPDATE notifications SET state = 'pending', next_attempt_at = $1, give_up_at = $1 + (give_up_at - received_at),
       finished_at = NULL, lease_until = 0, lease_owner = NULL, payload = coalesce($3, payload)
WHERE id = $2 AND state = 'dead'

-- pending_by_receiver --
-- Pending notifications per receiver, and the oldest one's arrival
SELECT receiver, count(*), min(received_at) FROM notifications WHERE state = 'pending' GROUP BY receiver

-- dead_by_receiver --
-- Dead letters per receiver
SELECT receiver, count(*) FROM notifications WHERE state = 'dead' GROUP BY receiver

-- attempts_of --
-- Every attempt of notification $1, in the order they were made (id: the order they were recorded)
SELECT started_at, duration, outcome, reason, detail FROM attempts WHERE notification_id = $1
ORDER BY started_at, id

-- dead_exists --
-- Whether $1 is a dead letter, locked before purging it
SELECT 1 FROM notifications WHERE id = $1 AND state = 'dead' FOR UPDATE

-- purge_attempts --
-- Forget notification $1's attempts
DELETE FROM attempts WHERE notification_id = $1

-- purge_notification --
-- Forget notification $1
DELETE FROM notifications WHERE id = $1

-- cancel --
-- Take pending notification $3 out of its lane at $1 with error $2, unless it is being sent right now
UPDATE notifications SET state = 'cancelled', finished_at = $1, last_error = $2, lease_until = 0, lease_owner = NULL
WHERE id = $3 AND state = 'pending' AND lease_until <= $1

-- is_pending --
-- Whether $1 is pending (a cancel that did not take: in flight, or missing)
SELECT 1 FROM notifications WHERE id = $1 AND state = 'pending'

-- prune_cancelled_attempts --
-- Attempts of notifications cancelled before $1
DELETE FROM attempts WHERE notification_id IN
    (SELECT id FROM notifications WHERE state = 'cancelled' AND finished_at < $1)

-- prune_cancelled --
-- Notifications cancelled before $1
DELETE FROM notifications WHERE state = 'cancelled' AND finished_at < $1

-- prune_delivered_attempts --
-- Attempts of notifications delivered before $1
DELETE FROM attempts WHERE notification_id IN
    (SELECT id FROM notifications WHERE state = 'delivered' AND finished_at < $1)

-- prune_delivered --
-- Notifications delivered before $1
DELETE FROM notifications WHERE state = 'delivered' AND finished_at < $1

-- prune_dedup --
-- Dedup marks older than $1
DELETE FROM dedup WHERE notified_at < $1

-- prune_refs --
-- Message references older than $1
DELETE FROM message_refs WHERE created_at < $1

-- refs_get --
-- The message references of receiver $1 for the alert keys in $2
SELECT alert_key, ref FROM message_refs WHERE receiver = $1 AND alert_key = ANY($2::text[])

-- refs_put --
-- Remember message reference $3 for each alert key in $2 (a later one replaces it)
INSERT INTO message_refs (receiver, alert_key, ref, created_at)
SELECT $1, k, $3, $4 FROM unnest($2::text[]) AS k
ON CONFLICT (receiver, alert_key) DO UPDATE SET ref = excluded.ref, created_at = excluded.created_at

-- probe_write --
-- Readiness after a failed write: a write of about a large webhook's size (probe_undo undoes it in its transaction)
INSERT INTO message_refs (receiver, alert_key, ref, created_at) VALUES ('', 'relay:probe', $1, 0)
ON CONFLICT (receiver, alert_key) DO UPDATE SET ref = excluded.ref

-- probe_undo --
-- Undo probe_write
DELETE FROM message_refs WHERE receiver = '' AND alert_key = 'relay:probe'

-- heartbeat_seen --
-- Heartbeats $1 (sorted by the caller: one lock order) arrived at $2; GREATEST ignores NULL (never seen)
INSERT INTO heartbeats (name, last_seen, watched_since, checked_at) SELECT n, $2, $2, $2 FROM unnest($1::text[]) AS n
ON CONFLICT (name) DO UPDATE SET last_seen = GREATEST(heartbeats.last_seen, excluded.last_seen)

-- heartbeat_watch --
-- Watch heartbeats $1 (sorted) from $2 unless stored
INSERT INTO heartbeats (name, watched_since, checked_at) SELECT n, $2, $2 FROM unnest($1::text[]) AS n
ON CONFLICT (name) DO NOTHING

-- heartbeat_listen --
-- Heartbeats $1 (sorted), each with its max_silence $3 (seconds), are checked at $2: one that no relay checked for
-- longer than its max_silence (none was running, so none could hear it) is watched again from $2
UPDATE heartbeats h SET checked_at = GREATEST(h.checked_at, $2),
    watched_since = CASE WHEN h.checked_at IS NULL OR h.checked_at < $2 - w.tolerance THEN $2 ELSE h.watched_since END
FROM unnest($1::text[], $3::float8[]) AS w (name, tolerance) WHERE h.name = w.name

-- heartbeats --
-- Every stored heartbeat
SELECT name, last_seen, watched_since, missing_since, heard_at FROM heartbeats ORDER BY name

-- heartbeat_missing --
-- Mark heartbeat $1 missing since $3 if it is not and was last heard of (arrived, or relay began watching) before $2
-- (the row lock serialises replicas); heard_at keeps when it last arrived (or was watched from, if never)
UPDATE heartbeats SET missing_since = $3, heard_at = coalesce(last_seen, watched_since)
WHERE name = $1 AND missing_since IS NULL AND GREATEST(last_seen, watched_since) < $2
RETURNING name

-- heartbeat_back --
-- Mark heartbeat $1, missing since $2, back if it arrived after that
UPDATE heartbeats SET missing_since = NULL, heard_at = NULL WHERE name = $1 AND missing_since = $2 AND last_seen > $2
RETURNING name

-- action_mark --
-- Write mark $1 at $2 unless it exists: no row back means a replayed request or a second click (relay.actions)
INSERT INTO action_marks (key, created_at) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING RETURNING key

-- action_insert --
-- Write one action row (integration 'action', its own lane, priority -1: a person's click goes ahead of every
-- alert for its destination), due now, leased to $9 until $8 when handed off
INSERT INTO notifications (receiver, integration, lane, status, alertnames, payload, received_at, give_up_at,
                           next_attempt_at, lease_until, lease_owner, priority)
VALUES ($1, 'action', $2, $3, $4, $5, $6, $7, $6, $8, $9, -1)
RETURNING id

-- prune_action_marks --
-- Action marks older than $1
DELETE FROM action_marks WHERE created_at < $1

-- watch_put --
-- Watch silence $2 of receiver $1 (alert group $3) until $4, first asked at $5
INSERT INTO silence_watches (receiver, silence_id, payload, ends_at, next_check) VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (receiver, silence_id) DO UPDATE SET payload = excluded.payload, ends_at = excluded.ends_at,
                                                 next_check = excluded.next_check, absent_since = NULL

-- watch_drop --
-- Stop watching silence $2 of receiver $1
DELETE FROM silence_watches WHERE receiver = $1 AND silence_id = $2

-- watch_absent --
-- Since when silence $2's alert (receiver $1) has been absent from an Alertmanager up for the grace period: $3
-- (NULL: seen firing again, or the absence does not count)
UPDATE silence_watches SET absent_since = $3 WHERE receiver = $1 AND silence_id = $2

-- watch_ended --
-- Forget watches whose silence ended before $1 (Alertmanager notifies for the alert again by itself)
DELETE FROM silence_watches WHERE ends_at <= $1

-- watch_due --
-- Take up to $3 watches due at $1: the next ask moves to $2; a replica's locked rows are skipped by the others
UPDATE silence_watches SET next_check = $2
WHERE (receiver, silence_id) IN (SELECT receiver, silence_id FROM silence_watches WHERE next_check <= $1
                                 ORDER BY next_check LIMIT $3 FOR UPDATE SKIP LOCKED)
RETURNING receiver, silence_id, payload, ends_at, absent_since

-- escalation_arm --
-- Arm the timers of $1 (a JSON array of objects, in one order: no deadlock) at $2, each unless armed already
-- (one that fires again after its episode's resolve is armed anew)
INSERT INTO escalations (fingerprint, starts_at, step, steps, after_seconds, receivers, group_key, payload,
                         armed_at, due_at)
SELECT t.fingerprint, t.starts_at, t.step, t.steps, t.after, t.receivers, t.group_key, t.payload, $2, t.due_at
FROM jsonb_to_recordset($1::jsonb) AS t (fingerprint text, starts_at text, step int, steps int, after float8,
                                         receivers text, group_key text, payload text, due_at float8)
ON CONFLICT (fingerprint, starts_at, step) DO UPDATE
    SET steps = excluded.steps, after_seconds = excluded.after_seconds, receivers = excluded.receivers,
        group_key = excluded.group_key, payload = excluded.payload, armed_at = excluded.armed_at,
        due_at = excluded.due_at, state = 'pending', ended_at = NULL, reason = '', notifications = '[]',
        resolved_at = NULL
    WHERE escalations.resolved_at IS NOT NULL  -- fired again after its resolve: a new page, a new escalation

-- escalation_resolve --
-- The episodes of $2 (a JSON array of [fingerprint, starts_at]) resolved at $1: what is left of their escalation
-- ends (rows locked in id order, as escalation_lock takes them: a checker sending them meanwhile cannot deadlock)
UPDATE escalations SET state = 'cancelled', ended_at = $1, reason = 'resolved'
WHERE id IN (SELECT id FROM escalations WHERE state = 'pending' AND (fingerprint, starts_at) IN
                 (SELECT e ->> 0, e ->> 1 FROM jsonb_array_elements($2::jsonb) AS e)
             ORDER BY id FOR UPDATE)

-- escalation_resolved_at --
-- The episodes of $2 (a JSON array of [fingerprint, starts_at]) resolved at $1, whatever their steps' state: a firing
-- after this arms them again (rows locked in id order)
UPDATE escalations SET resolved_at = $1
WHERE id IN (SELECT id FROM escalations WHERE (fingerprint, starts_at) IN
                 (SELECT e ->> 0, e ->> 1 FROM jsonb_array_elements($2::jsonb) AS e)
             ORDER BY id FOR UPDATE)

-- escalation_held --
-- The pending holds of a mute (relay.stages.mute: step < 0) of the episodes of $1 (a JSON array of [fingerprint,
-- starts_at]), read before their resolve cancels them: whom the firing was held from
SELECT fingerprint, starts_at, receivers FROM escalations
WHERE state = 'pending' AND step < 0
  AND (fingerprint, starts_at) IN (SELECT e ->> 0, e ->> 1 FROM jsonb_array_elements($1::jsonb) AS e)

-- dedup_told --
-- Which of $1 (a JSON array of [receiver, fingerprint, starts_at]) were told the episode fired
SELECT receiver, fingerprint, starts_at FROM dedup
WHERE status = 'firing'
  AND (receiver, fingerprint, starts_at) IN (SELECT e ->> 0, e ->> 1, e ->> 2 FROM jsonb_array_elements($1::jsonb) AS e)

-- escalation_sent_to --
-- The steps already sent for the episodes of $1 (a JSON array of [fingerprint, starts_at]): their resolve goes there
SELECT fingerprint, starts_at, receivers FROM escalations
WHERE state = 'sent' AND (fingerprint, starts_at) IN (SELECT e ->> 0, e ->> 1 FROM jsonb_array_elements($1::jsonb) AS e)

-- escalation_cancel --
-- Cancel at $1, for reason $2, every pending step of the alerts whose fingerprints are in $3 (locked in id order)
UPDATE escalations SET state = 'cancelled', ended_at = $1, reason = $2
WHERE id IN (SELECT id FROM escalations WHERE state = 'pending' AND fingerprint = ANY($3::text[])
             ORDER BY id FOR UPDATE)

-- escalations_due --
-- Pending steps due at $1, the earliest first, at most $2
SELECT id, fingerprint, starts_at, step, steps, after_seconds, receivers, group_key, payload, armed_at, due_at
FROM escalations WHERE state = 'pending' AND due_at <= $1 ORDER BY due_at, id LIMIT $2

-- escalation_lock --
-- Lock those of the steps $1 that are still pending: a replica sending them meanwhile makes this wait, then skip them
SELECT id FROM escalations WHERE id = ANY($1::bigint[]) AND state = 'pending' ORDER BY id FOR UPDATE

-- escalation_sent --
-- Steps $3 were sent at $1 as notifications $2 (a JSON array)
UPDATE escalations SET state = 'sent', ended_at = $1, notifications = $2 WHERE id = ANY($3::bigint[])

-- notification_escalation --
-- Notifications $2 are escalation step $1 (JSON: step, steps, after)
UPDATE notifications SET escalation = $1 WHERE id = ANY($2::bigint[])

-- escalations_of --
-- Every step of the alerts whose fingerprints are in $1, in the order they were armed
SELECT id, fingerprint, starts_at, step, steps, after_seconds, receivers, armed_at, due_at, state, ended_at, reason,
       notifications
FROM escalations WHERE fingerprint = ANY($1::text[]) ORDER BY armed_at, starts_at, step

-- prune_escalations --
-- Steps sent or cancelled before $1 (a resolve no longer needs to know where they went)
DELETE FROM escalations WHERE state <> 'pending' AND ended_at < $1
-- storm_backlog --
-- Per receiver, the pending notifications due by $1 that are neither a storm's summaries nor clicks' rows
SELECT receiver, count(*) FROM notifications
WHERE state = 'pending' AND next_attempt_at <= $1 AND strpos(lane, chr(30)) = 0
  AND integration <> 'action' GROUP BY receiver

-- storms_open --
-- Every open storm
SELECT id, receiver, started_at, folded_at, ended_at, folded, ref FROM storms WHERE ended_at IS NULL ORDER BY receiver

-- storm_waiting --
-- Receiver $1's pending notifications (not summaries nor clicks), lane by lane, locked: no claim takes them now
SELECT id, lane, payload, lease_until, priority FROM notifications
WHERE state = 'pending' AND receiver = $1 AND strpos(lane, chr(30)) = 0 AND integration <> 'action'
ORDER BY lane, id FOR UPDATE

-- storm_open --
-- Open a storm for receiver $1 at $2, unless it has one open (another replica's): then no row
INSERT INTO storms (receiver, started_at, folded_at) VALUES ($1, $2, $2) ON CONFLICT DO NOTHING RETURNING id

-- storm_continue --
-- Fold again into open storm $1 at $3 if its last fold is still $2 (else another replica folded or ended it)
UPDATE storms SET folded_at = $3 WHERE id = $1 AND folded_at = $2 AND ended_at IS NULL

-- storm_summary --
-- Write a summary: receiver $1, integration $2, lane $3, status $4, alertnames $5, payload $6, due now $7, give up $8,
-- priority $9 (its most severe folded notification's)
INSERT INTO notifications (receiver, integration, lane, status, alertnames, payload, received_at, give_up_at,
                           next_attempt_at, priority)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $7, $9) RETURNING id

-- storm_fold --
-- Record notifications $3 delivered at $2 in summary $1, if still pending and not being sent
UPDATE notifications SET state = 'delivered', finished_at = $2, summary_id = $1, last_error = NULL, lease_until = 0,
       lease_owner = NULL
WHERE id = ANY($3::bigint[]) AND state = 'pending' AND lease_until <= $2

-- storm_fold_attempts --
-- The attempt of each notification folded into summary $1 at $2: delivered in that summary
INSERT INTO attempts (notification_id, started_at, duration, outcome, reason, detail)
SELECT id, $2::double precision, 0, 'delivered', 'folded', 'in summary ' || summary_id
FROM notifications WHERE summary_id = $1

-- storm_count --
-- Storm $1 folded $2 more notifications
UPDATE storms SET folded = folded + $2 WHERE id = $1

-- storm_end --
-- End open storm $1 at $3 if its last fold is still $2
UPDATE storms SET ended_at = $3 WHERE id = $1 AND folded_at = $2 AND ended_at IS NULL

-- storm_get --
-- Storm $1
SELECT id, receiver, started_at, folded_at, ended_at, folded, ref FROM storms WHERE id = $1

-- storm_summaries --
-- The summaries of storm lane $1 up to notification $2, in order (what the storm's message shows so far)
SELECT id, payload FROM notifications WHERE strpos(lane, chr(30)) > 0 AND lane = $1 AND id <= $2 ORDER BY id

-- storm_last --
-- The last summary in storm lane $1 (what the storm's message showed last)
SELECT id, integration, lane, payload, received_at, give_up_at, priority FROM notifications
WHERE strpos(lane, chr(30)) > 0 AND lane = $1 ORDER BY id DESC LIMIT 1

-- storm_ref --
-- Remember where storm $1's summary message is ($2)
UPDATE storms SET ref = $2 WHERE id = $1

-- folded_count --
-- How many notifications were folded into summary $1
SELECT count(*) FROM notifications WHERE summary_id = $1

-- prune_storms --
-- Storms that ended before $1
DELETE FROM storms WHERE ended_at < $1

-- maintenance_add --
-- A maintenance window: $1 matchers (a JSON array), from $2 until $3, $4 comment, $5 by whom, made at $6,
-- muting only while routes.yaml's time interval $7 holds ('': throughout)
INSERT INTO maintenance (matchers, starts_at, ends_at, comment, created_by, created_at, time_interval)
VALUES ($1, $2, $3, $4, $5, $6, $7)
RETURNING id, matchers, starts_at, ends_at, comment, created_by, created_at, ended_at, time_interval

-- maintenance_list --
-- Maintenance windows not over at $1 (all of them when $2), by start
SELECT id, matchers, starts_at, ends_at, comment, created_by, created_at, ended_at, time_interval FROM maintenance
WHERE ends_at > $1 OR $2 ORDER BY starts_at, id

-- maintenance_end --
-- End window $2 at $1 if it is not over: from now on it mutes nothing
UPDATE maintenance SET ended_at = $1, ends_at = least(ends_at, $1)
WHERE id = $2 AND ends_at > $1
RETURNING id, matchers, starts_at, ends_at, comment, created_by, created_at, ended_at, time_interval

-- maintenance_holds_due --
-- The pending holds of window $2 (step $2) are due at $1: the window ended early
UPDATE escalations SET due_at = least(due_at, $1) WHERE state = 'pending' AND step = $2

-- escalation_postpone --
-- Pending steps $2 are looked at again at $1: still muted when due (relay.stages.mute)
UPDATE escalations SET due_at = $1 WHERE state = 'pending' AND id = ANY($2::bigint[])
