-- Queries of the scheduler (triggers/schedule.py, triggers/scheduler.py) and of the
-- maintenance jobs (workers/maintenance/). Cross-tenant claims run as the owner
-- (system_transaction); CRM writes of the jobs run under tenant_transaction.

-- ---------------------------------------------------------------------------------------
-- time_based automations: sync (deploy, enable, disable noticed by version / live state)
-- ---------------------------------------------------------------------------------------

-- name: schedule_sync_candidates
SELECT a.id, a.workspace_id, a.trigger_type, a.trigger_config, a.current_version,
       COALESCE(a.enabled AND a.deleted_at IS NULL AND a.trigger_type = 'time_based', false)
           AS live,
       s.automation_id IS NOT NULL AS known,
       s.version AS synced_version,
       s.live AS synced_live,
       COALESCE(NULLIF(w.settings->>'timezone', ''), 'UTC') AS workspace_timezone
FROM automations a
JOIN workspaces w ON w.id = a.workspace_id
LEFT JOIN automation_schedules s ON s.automation_id = a.id
WHERE (a.trigger_type = 'time_based' OR s.automation_id IS NOT NULL)
  AND (s.automation_id IS NULL
       OR s.version IS DISTINCT FROM a.current_version
       OR s.live IS DISTINCT FROM
          COALESCE(a.enabled AND a.deleted_at IS NULL AND a.trigger_type = 'time_based', false))
ORDER BY a.id
LIMIT %(limit)s
FOR UPDATE OF a SKIP LOCKED;

-- name: schedule_state_upsert
INSERT INTO automation_schedules (automation_id, workspace_id, version, live, mode, error)
VALUES (%(id)s, %(workspace_id)s, %(version)s, %(live)s, %(mode)s, %(error)s)
ON CONFLICT (automation_id) DO UPDATE SET
    version = EXCLUDED.version,
    live = EXCLUDED.live,
    mode = EXCLUDED.mode,
    error = EXCLUDED.error,
    buffered_for = CASE WHEN EXCLUDED.live THEN automation_schedules.buffered_for END,
    buffered_key = CASE WHEN EXCLUDED.live THEN automation_schedules.buffered_key END,
    synced_at = now();

-- name: schedule_state_delete
DELETE FROM automation_schedules WHERE automation_id = %(id)s;

-- name: schedule_set_next_run
UPDATE automations SET next_run_at = %(next_run_at)s WHERE id = %(id)s;

-- name: schedule_workspace_timezone
SELECT COALESCE(NULLIF(settings->>'timezone', ''), 'UTC') AS timezone
FROM workspaces WHERE id = %(id)s;

-- name: schedule_user_timezones
SELECT id, timezone FROM users WHERE id = ANY(%(ids)s::uuid[]);

-- ---------------------------------------------------------------------------------------
-- cron / at: claim the due ones, fire, advance next_run_at (one transaction)
-- ---------------------------------------------------------------------------------------

-- name: schedule_claim_due_many
SELECT a.id, a.workspace_id, a.trigger_config, a.next_run_at,
       COALESCE(NULLIF(w.settings->>'timezone', ''), 'UTC') AS workspace_timezone,
       COALESCE(s.buffered_for IS NOT NULL, false) AS buffered
FROM automations a
JOIN workspaces w ON w.id = a.workspace_id
LEFT JOIN automation_schedules s ON s.automation_id = a.id
WHERE a.trigger_type = 'time_based' AND a.enabled AND a.deleted_at IS NULL
  AND NOT (a.trigger_config ? 'date_field')
  AND a.next_run_at <= %(now)s
ORDER BY a.next_run_at
LIMIT %(limit)s
FOR UPDATE OF a SKIP LOCKED;

-- name: schedule_next_due
-- When the soonest cron/at schedule is due (the tick sleeps until then when it is close).
SELECT min(next_run_at) AS next_run_at FROM automations
WHERE trigger_type = 'time_based' AND enabled AND deleted_at IS NULL
  AND NOT (trigger_config ? 'date_field');

-- name: schedule_live_automations
-- "The previous run is still going": a live execution of the automation.
SELECT DISTINCT automation_id FROM automation_executions
WHERE automation_id = ANY(%(ids)s::uuid[]) AND status IN ('queued', 'running', 'waiting');

-- name: schedule_fire_existing
-- Keys of this batch already decided (their rows are locked by the caller).
SELECT f.automation_id, f.fire_key
FROM schedule_fires f
JOIN unnest(%(automation_ids)s::uuid[], %(keys)s::text[]) AS u(automation_id, fire_key)
  ON f.automation_id = u.automation_id AND f.fire_key = u.fire_key;

-- name: schedule_fire_insert_many
-- The ledger; a key recorded meanwhile is left out and the caller rolls back.
INSERT INTO schedule_fires (
    automation_id, workspace_id, fire_key, scheduled_for, entity_type, entity_id, outcome,
    event_id, fired_by
)
SELECT u.automation_id, u.workspace_id, u.fire_key, u.scheduled_for, u.entity_type,
       u.entity_id, u.outcome, u.event_id, %(fired_by)s
FROM unnest(
    %(automation_ids)s::uuid[], %(workspace_ids)s::uuid[], %(keys)s::text[],
    %(scheduled)s::timestamptz[], %(entity_types)s::text[], %(entity_ids)s::uuid[],
    %(outcomes)s::text[], %(event_ids)s::bigint[]
) AS u(automation_id, workspace_id, fire_key, scheduled_for, entity_type, entity_id, outcome,
       event_id)
ON CONFLICT (automation_id, fire_key) DO NOTHING;

-- name: schedule_advance_many
-- next_run_at moves on; last_run_at is the last fire (the worker moves it on again when
-- the run finishes).
UPDATE automations a SET
    next_run_at = u.next_run_at,
    last_run_at = CASE WHEN u.fired THEN GREATEST(a.last_run_at, %(now)s) ELSE a.last_run_at END
FROM unnest(%(ids)s::uuid[], %(next)s::timestamptz[], %(fired)s::bool[])
    AS u(id, next_run_at, fired)
WHERE a.id = u.id;

-- name: schedule_mark_fired_many
UPDATE automations SET last_run_at = GREATEST(last_run_at, %(now)s)
WHERE id = ANY(%(ids)s::uuid[]);

-- name: schedule_state_after_fire_many
UPDATE automation_schedules s SET
    last_fire_at = COALESCE(u.last_fire_at, s.last_fire_at),
    last_outcome = u.outcome,
    buffered_for = CASE WHEN u.buffer_for IS NOT NULL THEN u.buffer_for ELSE s.buffered_for END,
    buffered_key = CASE WHEN u.buffer_for IS NOT NULL THEN u.buffer_key ELSE s.buffered_key END
FROM unnest(
    %(ids)s::uuid[], %(last_fire_at)s::timestamptz[], %(outcomes)s::text[],
    %(buffer_for)s::timestamptz[], %(buffer_key)s::text[]
) AS u(id, last_fire_at, outcome, buffer_for, buffer_key)
WHERE s.automation_id = u.id;

-- name: schedule_claim_buffered_many
-- overlap = buffer_one: the held-back fire goes out once no run of the automation is live.
SELECT s.automation_id AS id, s.workspace_id, s.buffered_for, s.buffered_key
FROM automation_schedules s
JOIN automations a ON a.id = s.automation_id
WHERE s.buffered_for IS NOT NULL AND a.enabled AND a.deleted_at IS NULL
  AND NOT EXISTS (
      SELECT 1 FROM automation_executions e
      WHERE e.automation_id = s.automation_id AND e.status IN ('queued', 'running', 'waiting')
  )
ORDER BY s.buffered_for
LIMIT %(limit)s
FOR UPDATE OF a, s SKIP LOCKED;

-- name: schedule_clear_buffer_many
UPDATE automation_schedules SET
    buffered_for = NULL, buffered_key = NULL, last_fire_at = %(now)s, last_outcome = 'emitted'
WHERE automation_id = ANY(%(ids)s::uuid[]);

-- ---------------------------------------------------------------------------------------
-- date-field automations: per-record due times
-- ---------------------------------------------------------------------------------------

-- name: schedule_date_field_automations
-- Uses idx_automations_date_field: the listener asks this for every CRM event.
SELECT a.id, a.trigger_config
FROM automations a
WHERE a.workspace_id = %(workspace_id)s
  AND a.trigger_type = 'time_based' AND a.deleted_at IS NULL
  AND a.trigger_config ? 'date_field' AND a.enabled
  AND a.trigger_config->>'date_field' LIKE %(prefix)s;

-- name: schedule_record_due_upsert_many
-- A new date value makes the row pending again; the same value keeps a fired row fired.
INSERT INTO schedule_record_due (
    automation_id, entity_id, workspace_id, entity_type, date_value, due_at, status
)
SELECT * FROM unnest(
    %(automation_ids)s::uuid[], %(entity_ids)s::uuid[], %(workspace_ids)s::uuid[],
    %(entity_types)s::text[], %(date_values)s::text[], %(due_ats)s::timestamptz[],
    %(statuses)s::text[]
)
ON CONFLICT (automation_id, entity_id) DO UPDATE SET
    date_value = EXCLUDED.date_value,
    due_at = EXCLUDED.due_at,
    status = EXCLUDED.status,
    fired_at = NULL,
    updated_at = now()
WHERE schedule_record_due.date_value IS DISTINCT FROM EXCLUDED.date_value
   OR schedule_record_due.status = 'pending';

-- name: schedule_record_due_delete_many
DELETE FROM schedule_record_due d
USING unnest(%(automation_ids)s::uuid[], %(entity_ids)s::uuid[]) AS u(automation_id, entity_id)
WHERE d.automation_id = u.automation_id AND d.entity_id = u.entity_id;

-- name: schedule_record_due_delete_pending
DELETE FROM schedule_record_due WHERE automation_id = %(id)s AND status = 'pending';

-- name: schedule_record_due_delete_all
DELETE FROM schedule_record_due WHERE automation_id = %(id)s;

-- name: schedule_claim_due_records
SELECT d.automation_id, d.entity_id, d.workspace_id, d.entity_type, d.date_value, d.due_at,
       a.trigger_config,
       COALESCE(NULLIF(w.settings->>'timezone', ''), 'UTC') AS workspace_timezone
FROM schedule_record_due d
JOIN automations a ON a.id = d.automation_id
JOIN workspaces w ON w.id = d.workspace_id
WHERE d.status = 'pending' AND d.due_at <= %(now)s
  AND a.enabled AND a.deleted_at IS NULL AND a.trigger_type = 'time_based'
ORDER BY d.due_at
LIMIT %(limit)s
FOR UPDATE OF d SKIP LOCKED;

-- name: schedule_next_record_due
SELECT min(due_at) AS due_at FROM schedule_record_due WHERE status = 'pending';

-- name: schedule_record_due_settle_many
UPDATE schedule_record_due d SET
    status = u.status,
    fired_at = CASE WHEN u.status = 'fired' THEN %(now)s ELSE d.fired_at END,
    updated_at = now()
FROM unnest(%(automation_ids)s::uuid[], %(entity_ids)s::uuid[], %(statuses)s::text[])
    AS u(automation_id, entity_id, status)
WHERE d.automation_id = u.automation_id AND d.entity_id = u.entity_id;

-- name: schedule_refresh_date_field_next_runs
-- next_run_at of a date-field automation = its earliest pending record.
UPDATE automations a SET next_run_at = n.next_run_at
FROM (
    SELECT x.id,
           (SELECT min(d.due_at) FROM schedule_record_due d
            WHERE d.automation_id = x.id AND d.status = 'pending') AS next_run_at
    FROM automations x
    WHERE x.trigger_type = 'time_based' AND x.deleted_at IS NULL
      AND x.trigger_config ? 'date_field' AND x.enabled
      AND (%(ids)s::uuid[] IS NULL OR x.id = ANY(%(ids)s::uuid[]))
) n
WHERE a.id = n.id AND a.next_run_at IS DISTINCT FROM n.next_run_at;

-- ---------------------------------------------------------------------------------------
-- delays
-- ---------------------------------------------------------------------------------------

-- name: schedule_delay_due_many
-- Waiting executions whose delay is over; a replica skips the rows another one holds.
SELECT id FROM automation_executions
WHERE status = 'waiting' AND resume_at <= %(now)s
ORDER BY resume_at
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED;

-- name: schedule_next_delay
SELECT min(resume_at) AS resume_at FROM automation_executions
WHERE status = 'waiting' AND resume_at IS NOT NULL;

-- ---------------------------------------------------------------------------------------
-- maintenance jobs and their runs
-- ---------------------------------------------------------------------------------------

-- name: job_get_many
SELECT name, cron, timezone, next_run_at FROM scheduler_jobs WHERE name = ANY(%(names)s::text[]);

-- name: job_upsert
INSERT INTO scheduler_jobs (name, cron, timezone, next_run_at)
VALUES (%(name)s, %(cron)s, %(timezone)s, %(next_run_at)s)
ON CONFLICT (name) DO UPDATE SET
    cron = EXCLUDED.cron, timezone = EXCLUDED.timezone, next_run_at = EXCLUDED.next_run_at,
    updated_at = now();

-- name: job_claim
-- Guarded: the job is ours only if it is still due (another replica's claim moved it).
UPDATE scheduler_jobs SET next_run_at = %(next_run_at)s, updated_at = now()
WHERE name = %(name)s AND next_run_at <= %(now)s
RETURNING name;

-- name: job_run_start
-- Recorded in the claim's transaction (or alone for haste schedule --run-job).
INSERT INTO scheduler_job_runs (job, scheduled_for, runner)
VALUES (%(name)s, %(scheduled_for)s, %(runner)s)
RETURNING id;

-- name: job_set_last_run
UPDATE scheduler_jobs SET last_run_id = %(run_id)s WHERE name = %(name)s;

-- name: job_run_finish
UPDATE scheduler_job_runs SET
    finished_at = clock_timestamp(), status = %(status)s, result = %(result)s, error = %(error)s
WHERE id = %(id)s AND status = 'running';

-- name: job_runs_abandon
-- Runs left 'running' by a leader that died: only one leader runs jobs at a time, so a
-- new leader closes them.
UPDATE scheduler_job_runs SET finished_at = clock_timestamp(), status = 'abandoned',
    error = 'the scheduler running it stopped before it finished'
WHERE status = 'running'
RETURNING id;

-- name: job_next_due
SELECT min(next_run_at) AS next_run_at FROM scheduler_jobs WHERE cron IS NOT NULL;

-- ---------------------------------------------------------------------------------------
-- maintenance: partitions, engagement view, rotting, reminders, reports, prune
-- ---------------------------------------------------------------------------------------

-- name: partition_exists
SELECT to_regclass(%(name)s) IS NOT NULL;

-- name: partition_create
SELECT create_monthly_partition(%(month)s::date);

-- name: engagement_refresh
REFRESH MATERIALIZED VIEW CONCURRENTLY contact_engagement_scores;

-- name: engagement_count
SELECT count(*) FROM contact_engagement_scores;

-- name: rotting_workspaces
SELECT DISTINCT workspace_id FROM pipelines;

-- name: rotting_update
-- Runs under the workspace's tenant transaction; writes only the deals whose value changes.
UPDATE deals d SET rotting_days = r.days
FROM (
    SELECT x.id,
           CASE WHEN p.rotting_enabled AND p.deleted_at IS NULL AND x.status = 'open'
                     AND x.deleted_at IS NULL
                THEN GREATEST(0,
                     floor(extract(epoch FROM %(now)s::timestamptz
                         - COALESCE(GREATEST(x.stage_entered_at, x.last_activity_at), x.created_at,
                                    %(now)s::timestamptz)) / 86400)::int
                     - COALESCE(p.rotting_days, 0))
                ELSE 0
           END AS days
    FROM deals x
    JOIN pipelines p ON p.id = x.pipeline_id
) r
WHERE d.id = r.id AND d.rotting_days IS DISTINCT FROM r.days
RETURNING d.id;

-- name: reminder_candidates
-- Open tasks whose reminder time has come (and is not older than the catch-up), with
-- their due instant on the assignee's wall clock; zones PostgreSQL does not know fall
-- back to the workspace's, then UTC.
WITH zones AS MATERIALIZED (SELECT name FROM pg_timezone_names)
SELECT t.id, t.workspace_id, t.title, t.assigned_to, t.contact_id, t.deal_id, t.company_id,
       t.reminder_minutes, x.due_at, x.due_at - make_interval(mins => t.reminder_minutes) AS remind_at
FROM tasks t
JOIN workspaces w ON w.id = t.workspace_id
LEFT JOIN users u ON u.id = t.assigned_to
CROSS JOIN LATERAL (
    SELECT (t.due_date + COALESCE(t.due_time, %(all_day)s::time)) AT TIME ZONE COALESCE(
        (SELECT z.name FROM zones z WHERE z.name = u.timezone),
        (SELECT z.name FROM zones z WHERE z.name = w.settings->>'timezone'),
        'UTC') AS due_at
) x
WHERE t.reminder_minutes IS NOT NULL AND t.reminder_minutes >= 0
  AND t.due_date IS NOT NULL AND t.deleted_at IS NULL
  AND t.status IN ('pending', 'in_progress')
  AND t.due_date BETWEEN (%(now)s::timestamptz - interval '2 days')::date
                     AND (%(now)s::timestamptz + make_interval(days => %(horizon)s))::date
  AND x.due_at - make_interval(mins => t.reminder_minutes) <= %(now)s::timestamptz
  AND x.due_at - make_interval(mins => t.reminder_minutes)
      > %(now)s::timestamptz - make_interval(secs => %(catch_up)s)
  AND NOT EXISTS (SELECT 1 FROM task_reminders r WHERE r.task_id = t.id AND r.due_at = x.due_at)
ORDER BY t.workspace_id, x.due_at;

-- name: reminder_claim_many
-- The once-only ledger: a (task, due instant) already there is left out.
INSERT INTO task_reminders (task_id, due_at, workspace_id, remind_at, activity_id)
SELECT u.task_id, u.due_at, %(workspace_id)s, u.remind_at, u.activity_id
FROM unnest(%(task_ids)s::uuid[], %(due_ats)s::timestamptz[], %(remind_ats)s::timestamptz[],
            %(activity_ids)s::uuid[]) AS u(task_id, due_at, remind_at, activity_id)
ON CONFLICT (task_id, due_at) DO NOTHING
RETURNING task_id;

-- name: reminder_activity_insert_many
INSERT INTO activities (id, workspace_id, type, title, description, entity_type, entity_id,
                        contact_id, deal_id, company_id, user_id, metadata, occurred_at)
SELECT u.id, %(workspace_id)s, 'custom', u.title, u.description, 'task', u.task_id,
       u.contact_id, u.deal_id, u.company_id, u.user_id, u.metadata, %(now)s
FROM unnest(%(ids)s::uuid[], %(titles)s::text[], %(descriptions)s::text[],
            %(task_ids)s::uuid[], %(contact_ids)s::uuid[], %(deal_ids)s::uuid[],
            %(company_ids)s::uuid[], %(user_ids)s::uuid[], %(metadata)s::jsonb[])
    AS u(id, title, description, task_id, contact_id, deal_id, company_id, user_id, metadata);

-- name: report_scheduled
SELECT r.id, r.workspace_id, r.name, r.type, r.config, r.schedule_cron, r.schedule_timezone,
       r.recipients, r.created_at,
       (SELECT max(rr.scheduled_for) FROM report_runs rr WHERE rr.report_id = r.id)
           AS last_scheduled
FROM reports r
WHERE r.schedule_enabled AND r.schedule_cron IS NOT NULL AND r.schedule_cron <> '';

-- name: report_run_insert
INSERT INTO report_runs (report_id, workspace_id, scheduled_for, recipients, generated_at)
VALUES (%(report_id)s, %(workspace_id)s, %(scheduled_for)s, %(recipients)s, %(now)s)
ON CONFLICT (report_id, scheduled_for) DO NOTHING
RETURNING id;

-- name: report_run_set_data
UPDATE report_runs SET data = %(data)s WHERE id = %(id)s;

-- name: report_cache_update
UPDATE reports SET cached_data = %(data)s, last_generated_at = %(now)s WHERE id = %(id)s;

-- name: report_pipeline
SELECT p.id AS pipeline_id, p.name AS pipeline, s.id AS stage_id, s.name AS stage,
       count(d.id) AS deals, COALESCE(sum(d.value), 0) AS value,
       COALESCE(sum(d.value * COALESCE(d.probability, s.probability, 0) / 100), 0)
           AS weighted_value
FROM pipelines p
JOIN pipeline_stages s ON s.pipeline_id = p.id
LEFT JOIN deals d ON d.stage_id = s.id AND d.status = 'open' AND d.deleted_at IS NULL
WHERE p.deleted_at IS NULL
  AND (%(pipeline_id)s::uuid IS NULL OR p.id = %(pipeline_id)s::uuid)
GROUP BY p.id, p.name, s.id, s.name, s.order_index
ORDER BY p.name, s.order_index;

-- name: report_activity
SELECT type, count(*) AS n FROM activities
WHERE occurred_at >= %(since)s AND occurred_at < %(until)s
GROUP BY type ORDER BY type;

-- name: report_email
SELECT
    (SELECT count(*) FROM emails WHERE is_sent AND deleted_at IS NULL
        AND sent_at >= %(since)s AND sent_at < %(until)s) AS sent,
    (SELECT count(*) FROM emails WHERE NOT COALESCE(is_sent, false) AND deleted_at IS NULL
        AND received_at >= %(since)s AND received_at < %(until)s) AS received,
    (SELECT count(*) FROM email_tracking_events WHERE event_type = 'open'
        AND occurred_at >= %(since)s AND occurred_at < %(until)s) AS opens,
    (SELECT count(*) FROM email_tracking_events WHERE event_type = 'click'
        AND occurred_at >= %(since)s AND occurred_at < %(until)s) AS clicks,
    (SELECT count(*) FROM email_tracking_events WHERE event_type = 'bounce'
        AND occurred_at >= %(since)s AND occurred_at < %(until)s) AS bounces;

-- name: report_revenue_won
SELECT date_trunc('month', COALESCE(actual_close_date, updated_at::date))::date AS month,
       count(*) AS deals, COALESCE(sum(value), 0) AS value
FROM deals
WHERE status = 'won' AND deleted_at IS NULL
  AND COALESCE(actual_close_date, updated_at::date) >= %(since)s::date
  AND COALESCE(actual_close_date, updated_at::date) <= %(until)s::date
GROUP BY 1 ORDER BY 1;

-- name: report_revenue_open
SELECT count(*) AS deals, COALESCE(sum(value), 0) AS value,
       COALESCE(sum(value * COALESCE(probability, 0) / 100), 0) AS weighted_value
FROM deals WHERE status = 'open' AND deleted_at IS NULL;

-- name: report_runs_pending
SELECT rr.id, rr.report_id, rr.workspace_id, rr.scheduled_for, rr.recipients, rr.attempts,
       rr.data, r.name
FROM report_runs rr
JOIN reports r ON r.id = rr.report_id
WHERE rr.delivery = 'pending' AND rr.attempts < %(max_attempts)s
ORDER BY rr.generated_at;

-- name: report_user_emails
SELECT email FROM users WHERE id = ANY(%(ids)s::uuid[]) AND deleted_at IS NULL;

-- name: report_delivery_update
UPDATE report_runs SET
    delivery = %(delivery)s, attempts = attempts + 1, message_id = %(message_id)s,
    error = %(error)s, sent_at = %(sent_at)s
WHERE id = %(id)s;

-- name: prune_fires
DELETE FROM schedule_fires WHERE fired_at < %(before)s;

-- name: prune_job_runs
DELETE FROM scheduler_job_runs r
WHERE r.started_at < %(before)s AND r.status <> 'running'
  AND NOT EXISTS (SELECT 1 FROM scheduler_jobs j WHERE j.last_run_id = r.id);

-- name: prune_task_reminders
DELETE FROM task_reminders WHERE due_at < %(before)s;

-- ---------------------------------------------------------------------------------------
-- haste schedule --list
-- ---------------------------------------------------------------------------------------

-- name: schedule_list_jobs
SELECT j.name, j.cron, j.timezone, j.next_run_at, r.started_at, r.finished_at, r.status,
       r.result, r.error
FROM scheduler_jobs j
LEFT JOIN scheduler_job_runs r ON r.id = j.last_run_id
ORDER BY j.name;

-- name: schedule_list_automations
SELECT w.slug AS workspace, a.name, a.enabled, a.next_run_at, a.last_run_at,
       s.mode, s.last_fire_at, s.last_outcome, s.buffered_for, s.error,
       a.trigger_config
FROM automations a
JOIN workspaces w ON w.id = a.workspace_id
LEFT JOIN automation_schedules s ON s.automation_id = a.id
WHERE a.trigger_type = 'time_based' AND a.deleted_at IS NULL
ORDER BY a.next_run_at NULLS LAST, w.slug, a.name
LIMIT %(limit)s;

-- name: schedule_list_backlog
SELECT
    (SELECT count(*) FROM schedule_record_due WHERE status = 'pending') AS records_pending,
    (SELECT min(due_at) FROM schedule_record_due WHERE status = 'pending') AS records_next,
    (SELECT count(*) FROM automation_executions WHERE status = 'waiting'
        AND resume_at IS NOT NULL) AS delays_waiting,
    (SELECT min(resume_at) FROM automation_executions WHERE status = 'waiting') AS delays_next;

-- name: scheduler_lock_try
SELECT pg_try_advisory_lock(%(key)s);

-- name: scheduler_lock_release
SELECT pg_advisory_unlock(%(key)s);

-- name: schedule_leader
-- Who holds the scheduler's advisory lock (its application_name names the replica).
SELECT a.pid, a.application_name, a.client_addr, a.backend_start
FROM pg_locks l
JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND ((l.classid::bigint << 32) | l.objid::bigint) = %(key)s;
