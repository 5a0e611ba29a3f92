-- Queries of engine/automations.py (deploy, list, show, enable/disable, versions).
-- All run inside tenant_transaction: RLS scopes them to one workspace.

-- name: workspace_by_slug
SELECT id, slug, name, settings FROM workspaces WHERE slug = %(slug)s AND deleted_at IS NULL;

-- name: automation_deploy_lock
SELECT pg_advisory_xact_lock(hashtextextended('haste-deploy:' || %(workspace_id)s::text, 0));

-- name: automation_live_documents
SELECT id, name, enabled, document, trigger_type, trigger_config, actions
FROM automations
WHERE deleted_at IS NULL;

-- name: automation_by_name
SELECT id, current_version, document
FROM automations
WHERE name = %(name)s AND deleted_at IS NULL
FOR UPDATE;

-- name: automation_insert
INSERT INTO automations (
    workspace_id, name, description, category, trigger_type, trigger_config, conditions,
    actions, enabled, run_once, on_error, max_retries, reenrollment, max_chain_depth,
    document, current_version, created_by
) VALUES (
    %(workspace_id)s, %(name)s, %(description)s, %(category)s, %(trigger_type)s,
    %(trigger_config)s, %(conditions)s, %(actions)s, %(enabled)s, %(run_once)s, %(on_error)s,
    %(max_retries)s, %(reenrollment)s, %(max_chain_depth)s, %(document)s, 1, %(user_id)s
)
RETURNING id;

-- name: automation_update
UPDATE automations SET
    description = %(description)s, category = %(category)s, trigger_type = %(trigger_type)s,
    trigger_config = %(trigger_config)s, conditions = %(conditions)s, actions = %(actions)s,
    enabled = %(enabled)s, run_once = %(run_once)s, on_error = %(on_error)s,
    max_retries = %(max_retries)s, reenrollment = %(reenrollment)s,
    max_chain_depth = %(max_chain_depth)s, document = %(document)s,
    current_version = current_version + 1, updated_at = NOW()
WHERE id = %(id)s
RETURNING current_version;

-- name: automation_version_insert
INSERT INTO automation_versions (
    automation_id, workspace_id, version, document, checksum, deployed_by, deployed_by_name
) VALUES (
    %(automation_id)s, %(workspace_id)s, %(version)s, %(document)s, %(checksum)s,
    %(user_id)s, %(deployed_by_name)s
);

-- name: automation_list
SELECT id, name, trigger_type, enabled, current_version, run_count, success_count,
       error_count, last_run_at, next_run_at
FROM automations
WHERE deleted_at IS NULL
ORDER BY name;

-- name: automation_show
SELECT id, name, description, category, trigger_type, enabled, run_once, reenrollment,
       current_version, run_count, success_count, error_count, last_run_at, next_run_at,
       created_at, updated_at, document
FROM automations
WHERE (id::text = %(ref)s OR name = %(ref)s) AND deleted_at IS NULL;

-- name: automation_set_enabled
UPDATE automations SET enabled = %(enabled)s, updated_at = NOW()
WHERE (id::text = %(ref)s OR name = %(ref)s) AND deleted_at IS NULL
RETURNING id, name, enabled;

-- name: automation_versions_list
SELECT v.version, v.checksum, v.deployed_at, v.deployed_by_name, u.email AS deployed_by_email
FROM automation_versions v
JOIN automations a ON a.id = v.automation_id
LEFT JOIN users u ON u.id = v.deployed_by
WHERE (a.id::text = %(ref)s OR a.name = %(ref)s) AND a.deleted_at IS NULL
ORDER BY v.version;
