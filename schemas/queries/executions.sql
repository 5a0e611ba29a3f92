-- Queries of engine/executions.py and workers/: the execution state machine and the step
-- records. Every state transition is one statement guarded by the state it leaves (and,
-- for a worker, by the claim it holds: `attempt`), so an illegal or stale transition
-- updates 0 rows and the caller can tell. Batch-first: ids come as arrays.
--
-- A statement that names its rows by id tests their state as `status IS NOT DISTINCT FROM
-- '<state>'`, never `status = '<state>'`: the two mean the same for a NOT NULL column, but
-- only the second can use an index on status, and a prepared statement's generic plan
-- then scans every row in that state (every running row for a finish or a step record)
-- whenever the statistics were taken while few rows were in it, which is the usual case.
-- tests/test_executor_batches.py checks that these plans use the primary key.
--
--   queued --claim--> running --finish--> completed | failed
--   running --requeue_with_backoff / reaper--> queued      (resume_at = when)
--   running --wait--> waiting --wake--> queued
--   queued | running | waiting --cancel--> cancelled
--   failed | cancelled | completed --rerun--> queued

-- name: execution_claim
-- The claim of one execution (a lone message): `id = $1` lets a prepared statement keep
-- one generic plan, where `id = ANY($1)` was planned again on every call (~80 us of
-- PostgreSQL CPU per claim).
UPDATE automation_executions e SET
    status = 'running',
    claimed_by = %(worker)s,
    heartbeat_at = now(),
    attempt = e.attempt + 1,
    started_at = CASE WHEN e.attempt = 0 OR e.started_at IS NULL THEN now() ELSE e.started_at END,
    resume_at = NULL,
    updated_at = now()
WHERE e.id = %(id)s::uuid
  AND e.status IS NOT DISTINCT FROM 'queued'
  AND (e.resume_at IS NULL OR e.resume_at <= now())
RETURNING e.id, e.automation_id, e.workspace_id, e.automation_version, e.depth, e.context,
          e.trigger_entity_type, e.trigger_entity_id, e.triggered_by, e.attempt, e.reruns,
          e.started_at;

-- name: execution_claim_many
-- The claim of the executions of one batch message, in one statement.
UPDATE automation_executions e SET
    status = 'running',
    claimed_by = %(worker)s,
    heartbeat_at = now(),
    attempt = e.attempt + 1,
    started_at = CASE WHEN e.attempt = 0 OR e.started_at IS NULL THEN now() ELSE e.started_at END,
    resume_at = NULL,
    updated_at = now()
FROM unnest(%(ids)s::uuid[]) AS c(id)
WHERE e.id = c.id
  AND e.status IS NOT DISTINCT FROM 'queued'
  AND (e.resume_at IS NULL OR e.resume_at <= now())
RETURNING e.id, e.automation_id, e.workspace_id, e.automation_version, e.depth, e.context,
          e.trigger_entity_type, e.trigger_entity_id, e.triggered_by, e.attempt, e.reruns,
          e.started_at;

-- name: execution_state
SELECT id, status, resume_at, extract(epoch FROM resume_at - now())::float8 AS due_in
FROM automation_executions
WHERE id = %(id)s;

-- name: execution_heartbeat_many
UPDATE automation_executions e SET heartbeat_at = now()
FROM unnest(%(ids)s::uuid[], %(attempts)s::int[]) AS h(id, attempt)
WHERE e.id = h.id AND e.attempt = h.attempt AND e.status IS NOT DISTINCT FROM 'running'
RETURNING e.id;

-- name: execution_requeue_with_backoff
UPDATE automation_executions SET
    status = 'queued',
    resume_at = now() + make_interval(secs => %(delay)s),
    enqueued_at = now(),
    claimed_by = NULL,
    heartbeat_at = NULL,
    updated_at = now()
WHERE id = %(id)s AND status IS NOT DISTINCT FROM 'running' AND attempt = %(attempt)s
RETURNING id, resume_at;

-- name: execution_wait
UPDATE automation_executions SET
    status = 'waiting',
    resume_at = %(resume_at)s,
    claimed_by = NULL,
    heartbeat_at = NULL,
    updated_at = now()
WHERE id = %(id)s AND status IS NOT DISTINCT FROM 'running' AND attempt = %(attempt)s
RETURNING id;

-- name: execution_wake_many
UPDATE automation_executions SET
    status = 'queued', resume_at = NULL, enqueued_at = now(), updated_at = now()
WHERE id = ANY(%(ids)s::uuid[]) AND status IS NOT DISTINCT FROM 'waiting'
RETURNING id;

-- name: execution_due_waiting_many
SELECT id FROM automation_executions
WHERE status = 'waiting' AND resume_at <= now()
ORDER BY resume_at
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED;

-- name: execution_finish
-- Ends a run the worker holds and counts it on its automation, in one statement.
WITH finished AS (
    UPDATE automation_executions SET
        status = %(status)s,
        completed_at = now(),
        duration_ms = GREATEST(0, (extract(epoch FROM now() - started_at) * 1000)::int),
        actions_executed = %(actions_executed)s,
        error_message = %(error_message)s,
        error_details = %(error_details)s,
        claimed_by = NULL,
        heartbeat_at = NULL,
        resume_at = NULL,
        updated_at = now()
    WHERE id = %(id)s AND status IS NOT DISTINCT FROM 'running' AND attempt = %(attempt)s
    RETURNING id, automation_id, status, duration_ms
), counted AS (
    UPDATE automations a SET
        run_count = coalesce(a.run_count, 0) + 1,
        success_count = coalesce(a.success_count, 0) + (f.status = 'completed')::int,
        error_count = coalesce(a.error_count, 0) + (f.status = 'failed')::int,
        last_run_at = now()
    FROM finished f
    WHERE a.id = f.automation_id
)
SELECT id, status, duration_ms FROM finished;

-- name: execution_finish_many
-- execution_finish for the runs of one batch message that belong to one automation (so
-- that the statement locks one counters row, as execution_finish does, and two batches
-- cannot deadlock on two): one statement, one counters update for all of them.
-- completed_at is when each run ended (the worker's clock, as step records are), not when
-- its batch was written.
WITH f AS (
    SELECT *
    FROM unnest(%(ids)s::uuid[], %(attempts)s::int[], %(statuses)s::text[],
                %(ended)s::timestamptz[], %(actions)s::jsonb[], %(messages)s::text[],
                %(details)s::jsonb[])
         AS f(id, attempt, status, ended, actions_executed, error_message, error_details)
), finished AS (
    UPDATE automation_executions e SET
        status = f.status,
        completed_at = f.ended,
        duration_ms = GREATEST(0, (extract(epoch FROM f.ended - e.started_at) * 1000)::int),
        actions_executed = f.actions_executed,
        error_message = f.error_message,
        error_details = f.error_details,
        claimed_by = NULL,
        heartbeat_at = NULL,
        resume_at = NULL,
        updated_at = now()
    FROM f
    WHERE e.id = f.id
      AND e.automation_id IS NOT DISTINCT FROM %(automation_id)s
      AND e.status IS NOT DISTINCT FROM 'running'
      AND e.attempt = f.attempt
      AND f.status IN ('completed', 'failed')
    RETURNING e.id, e.status
), counted AS (
    UPDATE automations a SET
        run_count = coalesce(a.run_count, 0) + c.n,
        success_count = coalesce(a.success_count, 0) + c.ok,
        error_count = coalesce(a.error_count, 0) + c.n - c.ok,
        last_run_at = now()
    FROM (
        SELECT count(*)::int AS n, (count(*) FILTER (WHERE status = 'completed'))::int AS ok
        FROM finished
    ) c
    WHERE a.id = %(automation_id)s AND c.n > 0
)
SELECT id, status FROM finished;

-- name: execution_cancel_many
WITH cancelled AS (
    UPDATE automation_executions SET
        status = 'cancelled',
        completed_at = now(),
        duration_ms = GREATEST(0, (extract(epoch FROM now() - started_at) * 1000)::int),
        error_message = %(reason)s,
        claimed_by = NULL,
        heartbeat_at = NULL,
        resume_at = NULL,
        updated_at = now()
    WHERE id = ANY(%(ids)s::uuid[]) AND status IN ('queued', 'running', 'waiting')
    RETURNING id
), ai AS (
    UPDATE ai_tasks SET status = 'cancelled', completed_at = now()
    WHERE status = 'pending' AND input->>'execution_id' IN (SELECT id::text FROM cancelled)
)
SELECT id FROM cancelled;

-- name: execution_rerun_many
UPDATE automation_executions SET
    status = 'queued',
    reruns = reruns + 1,
    recoveries = 0,
    queued_at = now(),
    enqueued_at = now(),
    started_at = NULL,
    completed_at = NULL,
    duration_ms = NULL,
    resume_at = NULL,
    error_message = NULL,
    error_details = NULL,
    claimed_by = NULL,
    heartbeat_at = NULL,
    updated_at = now()
WHERE id = ANY(%(ids)s::uuid[]) AND status IN ('failed', 'cancelled', 'completed')
RETURNING id, reruns;

-- name: execution_redrive_candidates
SELECT e.id
FROM automation_executions e
JOIN automations a ON a.id = e.automation_id
WHERE (e.automation_id::text = %(automation)s OR a.name = %(automation)s)
  AND e.status = %(status)s
  AND e.queued_at >= %(since)s
ORDER BY e.queued_at;

-- name: execution_reap_unsent_many
-- Queued rows whose message is overdue (never sent, lost, or dropped): send another.
UPDATE automation_executions e SET enqueued_at = now(), updated_at = now()
WHERE e.id IN (
    SELECT id FROM automation_executions
    WHERE status = 'queued'
      AND GREATEST(coalesce(enqueued_at, queued_at), coalesce(resume_at, '-infinity'))
          < now() - make_interval(secs => %(grace)s)
    ORDER BY queued_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
RETURNING e.id;

-- name: execution_recover_lost_many
-- Running rows whose worker stopped heart-beating: back to queued, one more recovery.
UPDATE automation_executions e SET
    status = 'queued',
    recoveries = e.recoveries + 1,
    claimed_by = NULL,
    heartbeat_at = NULL,
    resume_at = NULL,
    enqueued_at = now(),
    updated_at = now()
WHERE e.id IN (
    SELECT id FROM automation_executions
    WHERE status = 'running'
      AND heartbeat_at < now() - make_interval(secs => %(timeout)s)
      AND recoveries < %(max_recoveries)s
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
RETURNING e.id;

-- name: execution_fail_lost_many
-- Running rows lost once too often: failed, with the reason, and counted.
WITH failed AS (
    UPDATE automation_executions e SET
        status = 'failed',
        completed_at = now(),
        duration_ms = GREATEST(0, (extract(epoch FROM now() - e.started_at) * 1000)::int),
        error_message = format(
            'worker lost: no heartbeat from %%s for %%s s, after %%s recoveries (limit %%s)',
            e.claimed_by, %(timeout)s, e.recoveries, %(max_recoveries)s),
        error_details = jsonb_build_object(
            'class', 'worker_lost', 'worker', e.claimed_by, 'heartbeat_at', e.heartbeat_at,
            'recoveries', e.recoveries),
        claimed_by = NULL,
        heartbeat_at = NULL,
        updated_at = now()
    WHERE e.id IN (
        SELECT id FROM automation_executions
        WHERE status = 'running'
          AND heartbeat_at < now() - make_interval(secs => %(timeout)s)
          AND recoveries >= %(max_recoveries)s
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED
    )
    RETURNING e.id, e.automation_id
), counted AS (
    UPDATE automations a SET
        run_count = coalesce(a.run_count, 0) + c.n,
        error_count = coalesce(a.error_count, 0) + c.n,
        last_run_at = now()
    FROM (SELECT automation_id, count(*)::int AS n FROM failed GROUP BY automation_id) c
    WHERE a.id = c.automation_id
)
SELECT id FROM failed;

-- name: execution_list
SELECT e.id, e.status, e.automation_id, a.name AS automation, w.slug AS workspace,
       e.trigger_entity_type, e.trigger_entity_id, e.queued_at, e.started_at,
       e.completed_at, e.duration_ms, e.attempt, e.recoveries, e.reruns, e.error_message
FROM automation_executions e
JOIN automations a ON a.id = e.automation_id
JOIN workspaces w ON w.id = e.workspace_id
WHERE (%(workspace_id)s::uuid IS NULL OR e.workspace_id = %(workspace_id)s::uuid)
  AND (%(automation)s::text IS NULL OR e.automation_id::text = %(automation)s
       OR a.name = %(automation)s)
  AND (%(status)s::text IS NULL OR e.status = %(status)s)
  AND (%(since)s::timestamptz IS NULL OR e.queued_at >= %(since)s::timestamptz)
  -- Keyset page: strictly older than the last row of the previous page (queued_at, id).
  AND (%(before_at)s::timestamptz IS NULL
       OR (e.queued_at, e.id) < (%(before_at)s::timestamptz, %(before_id)s::uuid))
ORDER BY e.queued_at DESC, e.id DESC
LIMIT %(limit)s;

-- name: execution_get
SELECT e.id, e.status, e.automation_id, a.name AS automation, e.automation_version,
       e.workspace_id, e.event_id, e.depth, e.triggered_by, e.trigger_entity_type,
       e.trigger_entity_id, e.queued_at, e.enqueued_at, e.started_at, e.completed_at,
       e.resume_at, e.heartbeat_at, e.claimed_by, e.attempt, e.recoveries, e.reruns,
       e.duration_ms, e.actions_executed, e.error_message, e.error_details, e.context
FROM automation_executions e
JOIN automations a ON a.id = e.automation_id
WHERE e.id = %(id)s;

-- name: execution_document
-- The document the execution runs: its pinned version, else the automation's current one
-- (rows written by other clients may have neither, then the spec's columns make one).
SELECT a.id, a.workspace_id, a.max_retries, a.on_error,
       coalesce(v.document, a.document, jsonb_build_object(
           'name', a.name, 'trigger_type', a.trigger_type, 'trigger_config', a.trigger_config,
           'actions', a.actions, 'on_error', a.on_error, 'max_retries', a.max_retries
       )) AS document
FROM automations a
LEFT JOIN automation_versions v ON v.automation_id = a.id AND v.version = %(version)s
WHERE a.id = %(automation_id)s;

-- name: execution_workspace
SELECT id, slug, name, settings FROM workspaces WHERE id = %(id)s;

-- name: step_list
SELECT step_id, pointer, type, status, attempts, idempotency_key, input, output, error,
       attempt_history, started_at, finished_at, duration_ms
FROM automation_execution_steps
WHERE execution_id = %(execution_id)s;

-- name: step_record
-- Writes a step's record, fenced by the claim: a worker that lost its execution (reaped,
-- cancelled) writes nothing, and raises so that its step's writes roll back with it. A
-- completed / skipped / failed record is final; only running (attempts so far) and
-- waiting records are updated.
INSERT INTO automation_execution_steps AS s (
    execution_id, workspace_id, step_id, pointer, type, status, attempts, idempotency_key,
    input, output, error, attempt_history, started_at, finished_at, duration_ms
)
SELECT %(execution_id)s, %(workspace_id)s, %(step_id)s, %(pointer)s, %(type)s, %(status)s,
       %(attempts)s, %(idempotency_key)s, %(input)s, %(output)s, %(error)s,
       %(attempt_history)s, %(started_at)s, %(finished_at)s, %(duration_ms)s
WHERE EXISTS (
    SELECT 1 FROM automation_executions e
    WHERE e.id = %(execution_id)s AND e.status IS NOT DISTINCT FROM 'running' AND e.attempt = %(claim)s
)
ON CONFLICT (execution_id, step_id) DO UPDATE SET
    status = EXCLUDED.status,
    attempts = EXCLUDED.attempts,
    idempotency_key = EXCLUDED.idempotency_key,
    input = coalesce(EXCLUDED.input, s.input),
    output = EXCLUDED.output,
    error = EXCLUDED.error,
    attempt_history = s.attempt_history || EXCLUDED.attempt_history,
    started_at = coalesce(s.started_at, EXCLUDED.started_at),
    finished_at = EXCLUDED.finished_at,
    duration_ms = EXCLUDED.duration_ms
WHERE s.status IN ('running', 'waiting')
RETURNING s.id;

-- name: step_delete_many
DELETE FROM automation_execution_steps
WHERE execution_id = %(execution_id)s AND step_id = ANY(%(step_ids)s::text[]);

-- name: ai_task_create
INSERT INTO ai_tasks (id, workspace_id, type, status, input, model_provider, model_name)
VALUES (%(id)s, %(workspace_id)s, %(type)s, 'pending', %(input)s, %(provider)s, %(model)s)
ON CONFLICT (id) DO NOTHING;

-- name: ai_task_get
SELECT id, status, output, error_message FROM ai_tasks WHERE id = %(id)s;

-- name: user_timezone
SELECT timezone FROM users WHERE id = %(id)s;
