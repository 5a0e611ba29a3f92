-- Queries of triggers/listener.py (run as the owner: the outbox spans workspaces).

-- name: event_claim_batch
-- Oldest unprocessed events, skipping rows another replica holds; an event whose record
-- still has an older unprocessed event outside this batch waits for the next round, so
-- one record's events are never processed out of order.
WITH claimed AS (
    SELECT id, entity_type, entity_id
    FROM automation_events
    WHERE processed_at IS NULL
    ORDER BY id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE automation_events e
SET claimed_by = %(claimed_by)s, claimed_at = NOW(),
    -- An UPDATE's values arrive as text forms (0031): typed once, here, off the writer's path.
    old_values = CASE WHEN e.values_raw THEN haste_capture_typed(e.entity_type, e.old_values)
                      ELSE e.old_values END,
    new_values = CASE WHEN e.values_raw THEN haste_capture_typed(e.entity_type, e.new_values)
                      ELSE e.new_values END,
    values_raw = false
FROM claimed c
WHERE e.id = c.id
  AND NOT EXISTS (
      SELECT 1 FROM automation_events p
      WHERE p.processed_at IS NULL
        AND c.entity_id IS NOT NULL
        AND p.entity_id = c.entity_id
        AND p.entity_type = c.entity_type
        AND p.id < c.id
        AND p.id NOT IN (SELECT id FROM claimed)
  )
RETURNING e.*;

-- name: event_mark_processed
UPDATE automation_events SET processed_at = NOW(), error = NULL WHERE id = ANY(%(ids)s);

-- name: event_record_failure
-- A failed event is retried; after %(max)s attempts it is parked (processed, with its error
-- kept) so one poison event cannot block its record forever. Nothing is dropped silently.
UPDATE automation_events
SET attempts = attempts + 1,
    error = %(error)s,
    processed_at = CASE WHEN attempts + 1 >= %(max)s THEN NOW() END
WHERE id = %(id)s
RETURNING processed_at IS NOT NULL AS parked;

-- name: workspace_by_id
SELECT id, slug, name, settings FROM workspaces WHERE id = %(id)s;

-- name: listener_lag
SELECT count(*) AS backlog, EXTRACT(EPOCH FROM NOW() - min(created_at)) AS oldest_s
FROM automation_events WHERE processed_at IS NULL;

-- name: event_emit
WITH inserted AS (
    INSERT INTO automation_events (workspace_id, event_type, automation_id, entity_type, entity_id, payload)
    VALUES (%(workspace_id)s, %(event_type)s, %(automation_id)s, %(entity_type)s, %(entity_id)s, %(payload)s)
    RETURNING id
), wake AS (
    SELECT pg_notify('haste_events', '')
    WHERE COALESCE(pg_sequence_last_value('public.automation_listener_idle'::regclass), 1) = 1
)
SELECT id, (SELECT count(*) FROM wake) AS notified FROM inserted;
