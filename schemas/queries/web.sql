-- The web process: API keys, webhook endpoints / secrets / receipts, readiness and the
-- scrape-time gauges of /metrics. Tables: schemas/sql/0080_api_keys.sql, 0081_webhooks.sql.
-- Everything here runs as the owner (engine.db.system_transaction): a key or a token is
-- what selects the tenant, so these statements run before a tenant is known.

-- name: api_key_insert
INSERT INTO api_keys (workspace_id, name, prefix, key_hash, created_by_name, expires_at)
VALUES (%(workspace_id)s, %(name)s, %(prefix)s, %(key_hash)s, %(created_by_name)s,
        %(expires_at)s)
RETURNING id, workspace_id, name, prefix, created_at, expires_at;

-- name: api_key_authenticate
-- The workspace of a live key; last_used_at is refreshed at most once a minute, so a busy
-- key costs no write per request.
WITH k AS (
    SELECT k.id, k.workspace_id, k.name, k.last_used_at
    FROM api_keys k
    JOIN workspaces w ON w.id = k.workspace_id AND w.deleted_at IS NULL
    WHERE k.key_hash = %(key_hash)s
      AND k.revoked_at IS NULL
      AND (k.expires_at IS NULL OR k.expires_at > NOW())
), touched AS (
    UPDATE api_keys SET last_used_at = NOW()
    FROM k
    WHERE api_keys.id = k.id
      AND (k.last_used_at IS NULL OR k.last_used_at < NOW() - INTERVAL '1 minute')
)
SELECT k.id, k.name, w.id AS workspace_id, w.slug, w.name AS workspace_name, w.settings
FROM k JOIN workspaces w ON w.id = k.workspace_id;

-- name: api_key_list
SELECT id, name, prefix, created_at, created_by_name, last_used_at, expires_at, revoked_at
FROM api_keys
WHERE workspace_id = %(workspace_id)s
ORDER BY created_at;

-- name: api_key_revoke
UPDATE api_keys SET revoked_at = NOW()
WHERE workspace_id = %(workspace_id)s
  AND (id::text = %(ref)s OR prefix = %(ref)s)
  AND revoked_at IS NULL
RETURNING id, name, prefix;

-- name: webhook_endpoint_intake
-- Everything the intake needs, in one round trip: the endpoint, its automation's state and
-- trigger config, and the secrets valid now (newest first: the likeliest to match).
SELECT e.id, e.workspace_id, e.automation_id, a.enabled, a.trigger_type,
       a.deleted_at IS NOT NULL AS deleted,
       coalesce(a.document -> 'trigger_config', a.trigger_config, '{}'::jsonb) AS trigger_config,
       a.current_version, a.updated_at,
       ARRAY(SELECT s.secret FROM webhook_secrets s
             WHERE s.endpoint_id = e.id AND (s.expires_at IS NULL OR s.expires_at > NOW())
             ORDER BY s.created_at DESC) AS secrets
FROM webhook_endpoints e
JOIN automations a ON a.id = e.automation_id
WHERE e.token = %(token)s;

-- name: webhook_endpoint_of_automation
SELECT e.id, e.token, e.created_at
FROM webhook_endpoints e
WHERE e.automation_id = %(automation_id)s;

-- name: webhook_endpoint_insert
-- Concurrent creators: one INSERT wins, the other gets no row and reads the winner's.
INSERT INTO webhook_endpoints (workspace_id, automation_id, token)
VALUES (%(workspace_id)s, %(automation_id)s, %(token)s)
ON CONFLICT (automation_id) DO NOTHING
RETURNING id, token, created_at;

-- name: webhook_secret_expire_current
-- Rotation: the secrets valid now stay valid until the end of the overlap.
UPDATE webhook_secrets
SET expires_at = LEAST(coalesce(expires_at, 'infinity'), NOW() + make_interval(secs => %(overlap)s))
WHERE endpoint_id = %(endpoint_id)s AND (expires_at IS NULL OR expires_at > NOW())
RETURNING id, expires_at;

-- name: webhook_secret_insert
INSERT INTO webhook_secrets (endpoint_id, workspace_id, secret)
VALUES (%(endpoint_id)s, %(workspace_id)s, %(secret)s)
RETURNING id, created_at;

-- name: webhook_secret_list
SELECT id, created_at, expires_at, (expires_at IS NULL OR expires_at > NOW()) AS valid,
       left(secret, 10) || '…' AS preview
FROM webhook_secrets
WHERE endpoint_id = %(endpoint_id)s
ORDER BY created_at;

-- name: webhook_receipt_insert
-- The first answer of a webhook-id; no row back means another request stored one first.
INSERT INTO webhook_receipts (endpoint_id, webhook_id, workspace_id, event_id, status_code,
                              response)
VALUES (%(endpoint_id)s, %(webhook_id)s, %(workspace_id)s, %(event_id)s, %(status_code)s,
        %(response)s)
ON CONFLICT (endpoint_id, webhook_id) DO NOTHING
RETURNING event_id;

-- name: webhook_receipt_get
SELECT event_id, status_code, response, received_at
FROM webhook_receipts
WHERE endpoint_id = %(endpoint_id)s AND webhook_id = %(webhook_id)s;

-- name: webhook_receipt_prune_batch
-- Bounded batches, so pruning never holds many locks or one long transaction.
DELETE FROM webhook_receipts
WHERE ctid = ANY(ARRAY(
    SELECT ctid FROM webhook_receipts
    WHERE received_at < NOW() - make_interval(days => %(days)s)
    LIMIT %(limit)s
));

-- name: record_ids_visible
-- Which of these ids name a live record of the current tenant (run under RLS); the table
-- name is spliced in by the caller from the fixed entity → table map.
SELECT id FROM {table} WHERE id = ANY(%(ids)s::uuid[]) {live};

-- name: event_visible
-- Run under RLS: does the tenant see this outbox event?
SELECT id FROM automation_events WHERE id = %(id)s;

-- name: ready_probe
SELECT 1;

-- name: metrics_executions_live
-- Live executions only: the partial index idx_automation_executions_live covers it, so a
-- scrape costs the same however many finished executions the table holds.
SELECT status, count(*) AS n, extract(epoch FROM NOW() - min(queued_at)) AS oldest_s
FROM automation_executions
WHERE status IN ('queued', 'running', 'waiting')
GROUP BY status;

-- name: metrics_outbox
-- Backlog and lag of the listener (partial index idx_automation_events_unprocessed), and
-- the outbox identity: every event ever captured has taken one value of it.
SELECT (SELECT count(*) FROM automation_events WHERE processed_at IS NULL) AS backlog,
       (SELECT extract(epoch FROM NOW() - min(created_at)) FROM automation_events
        WHERE processed_at IS NULL) AS oldest_s,
       coalesce(pg_sequence_last_value(pg_get_serial_sequence('automation_events', 'id')::regclass), 0)
           AS captured;

-- name: status_connections
-- Who is connected to this database, by application_name (haste processes name theirs).
SELECT coalesce(nullif(application_name, ''), '(unnamed)') AS application, count(*) AS n,
       count(*) FILTER (WHERE state = 'active') AS active
FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid()
GROUP BY 1
ORDER BY 1;

-- name: metrics_capture_slot
-- WAL retained by the logical capture slot (no row in trigger mode once the slot is gone).
SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), r.restart_lsn)::bigint
FROM automation_capture_state s
JOIN pg_replication_slots r ON r.slot_name = s.slot_name;

-- name: status_listener_idle
SELECT idle FROM automation_listener_state;

-- name: status_failing_automations
-- Automations with failed executions in the last day, most failures first.
SELECT w.slug AS workspace, a.name AS automation, a.enabled,
       count(*) AS failed, max(e.completed_at) AS last_failed_at,
       (array_agg(e.error_message ORDER BY e.completed_at DESC NULLS LAST))[1] AS last_error
FROM automation_executions e
JOIN automations a ON a.id = e.automation_id
JOIN workspaces w ON w.id = e.workspace_id
WHERE e.status = 'failed' AND e.completed_at > NOW() - INTERVAL '1 day'
GROUP BY w.slug, a.name, a.enabled
ORDER BY failed DESC, last_failed_at DESC
LIMIT %(limit)s;

-- name: status_next_schedules
-- The next fires of time-based automations, and of the maintenance jobs.
(SELECT 'automation' AS kind, w.slug || '/' || a.name AS name, a.next_run_at AS next_at
 FROM automations a JOIN workspaces w ON w.id = a.workspace_id
 WHERE a.enabled AND a.deleted_at IS NULL AND a.next_run_at IS NOT NULL
 ORDER BY a.next_run_at LIMIT %(limit)s)
UNION ALL
(SELECT 'job', name, next_run_at FROM scheduler_jobs WHERE next_run_at IS NOT NULL
 ORDER BY next_run_at LIMIT %(limit)s)
ORDER BY next_at
LIMIT %(limit)s;
