-- Queries of engine/matching.py: run under the event's workspace (RLS, role haste_app).

-- name: automation_cache_stamp
SELECT count(*) AS n, max(updated_at) AS changed FROM automations WHERE deleted_at IS NULL;

-- name: automation_candidates
SELECT id, name, trigger_type, trigger_config, conditions, enabled, run_once, reenrollment,
       max_chain_depth, current_version
FROM automations
WHERE deleted_at IS NULL
ORDER BY created_at, id;

-- name: decision_insert
INSERT INTO automation_decisions (
    workspace_id, event_id, automation_id, automation_version, entity_type, entity_id,
    outcome, execution_id, detail
) VALUES (
    %(workspace_id)s, %(event_id)s, %(automation_id)s, %(automation_version)s,
    %(entity_type)s, %(entity_id)s, %(outcome)s, %(execution_id)s, %(detail)s
)
ON CONFLICT (event_id, automation_id) DO NOTHING;

-- name: pipeline_and_stage_names
SELECT id::text AS id, name FROM pipelines
UNION ALL
SELECT s.id::text, s.name FROM pipeline_stages s;

-- name: execution_insert_queued
INSERT INTO automation_executions (
    automation_id, workspace_id, event_id, automation_version, triggered_by,
    trigger_entity_type, trigger_entity_id, status, started_at, depth, run_once, exclusive,
    context
) VALUES (
    %(automation_id)s, %(workspace_id)s, %(event_id)s, %(automation_version)s,
    %(triggered_by)s, %(entity_type)s, %(entity_id)s, 'queued', NULL, %(depth)s,
    %(run_once)s, %(exclusive)s, %(context)s
)
ON CONFLICT DO NOTHING
RETURNING id;

-- name: execution_conflict
SELECT id, 'deduplicated' AS reason, 1 AS rank FROM automation_executions
 WHERE automation_id = %(automation_id)s AND event_id = %(event_id)s
UNION ALL
SELECT id, 'run_once_blocked', 2 FROM automation_executions
 WHERE %(run_once)s AND run_once AND automation_id = %(automation_id)s
   AND trigger_entity_type = %(entity_type)s AND trigger_entity_id = %(entity_id)s
UNION ALL
SELECT id, 'reenrollment_blocked', 3 FROM automation_executions
 WHERE %(exclusive)s AND exclusive AND automation_id = %(automation_id)s
   AND trigger_entity_type = %(entity_type)s AND trigger_entity_id = %(entity_id)s
   AND status IN ('queued', 'running', 'waiting')
ORDER BY rank
LIMIT 1;

-- name: automation_error_count
UPDATE automations SET error_count = error_count + 1 WHERE id = %(id)s;

-- name: decisions_for_record
SELECT d.event_id, d.created_at, d.outcome, d.detail, d.execution_id, d.automation_version,
       a.name AS automation, d.entity_type, d.entity_id
FROM automation_decisions d
LEFT JOIN automations a ON a.id = d.automation_id
WHERE d.entity_type = %(entity_type)s AND d.entity_id = %(entity_id)s
ORDER BY d.created_at DESC, d.event_id DESC, a.name
LIMIT %(limit)s;

-- name: decisions_for_event
SELECT d.event_id, d.created_at, d.outcome, d.detail, d.execution_id, d.automation_version,
       a.name AS automation, d.entity_type, d.entity_id
FROM automation_decisions d
LEFT JOIN automations a ON a.id = d.automation_id
WHERE d.event_id = %(event_id)s
ORDER BY a.name;

-- name: decisions_prune
DELETE FROM automation_decisions WHERE created_at < %(before)s;
