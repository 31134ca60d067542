-- A notification's priority (relay.priority: the rank of its most severe alert, 0 first) for claims that read lane
-- heads most severe first, then oldest. Pending rows get the default order's rank from their alerts' severity.
ALTER TABLE notifications ADD COLUMN priority INTEGER NOT NULL DEFAULT 3;
UPDATE notifications SET priority = coalesce((
    SELECT min(CASE json_extract(a.value, '$.labels.severity')
               WHEN 'critical' THEN 0 WHEN 'warning' THEN 1 WHEN 'info' THEN 2 ELSE 3 END)
    FROM json_each(notifications.payload, '$.alerts') AS a), 3)
WHERE state = 'pending';
CREATE INDEX notifications_receiver_priority ON notifications (receiver, priority, id) WHERE state = 'pending';
