-- Executions as the source of truth of a run, per-step records, and the decision log.
-- See docs/schema-changes.md ("Executions, steps, decisions"). Additions only, except the
-- widened valid_status CHECK (same name, superset of the spec's values).

-- State machine: queued → running → waiting → completed | failed | cancelled
-- (running ↔ queued on retry back-off or reaper recovery; waiting → queued when due).
ALTER TABLE automation_executions DROP CONSTRAINT valid_status;
ALTER TABLE automation_executions ADD CONSTRAINT valid_status CHECK (status IN (
    'queued', 'running', 'waiting', 'completed', 'failed', 'cancelled'
));

ALTER TABLE automation_executions
    ADD COLUMN workspace_id UUID REFERENCES workspaces(id) ON DELETE CASCADE,
    ADD COLUMN event_id BIGINT,
    ADD COLUMN automation_version INTEGER,
    ADD COLUMN depth INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN run_once BOOLEAN NOT NULL DEFAULT FALSE,
    ADD COLUMN exclusive BOOLEAN NOT NULL DEFAULT TRUE,
    ADD COLUMN context JSONB NOT NULL DEFAULT '{}',
    ADD COLUMN queued_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    ADD COLUMN enqueued_at TIMESTAMPTZ,
    ADD COLUMN resume_at TIMESTAMPTZ,
    ADD COLUMN heartbeat_at TIMESTAMPTZ,
    ADD COLUMN claimed_by TEXT,
    ADD COLUMN attempt INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN recoveries INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW();

-- Rows written by other clients without workspace_id get their automation's, so the
-- restrictive policy below never hides a spec-conformant insert.
CREATE FUNCTION automation_executions_fill_workspace() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.workspace_id IS NULL THEN
        SELECT a.workspace_id INTO NEW.workspace_id FROM automations a WHERE a.id = NEW.automation_id;
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER automation_executions_fill_workspace
    BEFORE INSERT ON automation_executions
    FOR EACH ROW EXECUTE FUNCTION automation_executions_fill_workspace();

-- At most once per (automation, event): the database says so, not luck.
CREATE UNIQUE INDEX uq_executions_automation_event
    ON automation_executions (automation_id, event_id) WHERE event_id IS NOT NULL;
-- run_once: at most once per (automation, record), ever.
CREATE UNIQUE INDEX uq_executions_run_once
    ON automation_executions (automation_id, trigger_entity_type, trigger_entity_id)
    WHERE run_once AND trigger_entity_id IS NOT NULL;
-- reenrollment 'not_while_active': no second live execution for the same record.
CREATE UNIQUE INDEX uq_executions_active_per_record
    ON automation_executions (automation_id, trigger_entity_type, trigger_entity_id)
    WHERE exclusive AND trigger_entity_id IS NOT NULL
      AND status IN ('queued', 'running', 'waiting');

-- The reaper and the scheduler look only at live rows.
CREATE INDEX idx_automation_executions_live
    ON automation_executions (status, resume_at)
    WHERE status IN ('queued', 'running', 'waiting');
CREATE INDEX idx_automation_executions_workspace
    ON automation_executions (workspace_id, started_at DESC);
CREATE INDEX idx_automation_executions_entity
    ON automation_executions (trigger_entity_type, trigger_entity_id);

-- Restrictive: AND-ed with the spec-derived parent_workspace_isolation policy, so a row
-- must both belong to one of the workspace's automations and carry its workspace_id.
CREATE POLICY workspace_isolation ON automation_executions
    AS RESTRICTIVE
    FOR ALL
    USING (workspace_id = NULLIF(current_setting('app.workspace_id', true), '')::uuid);

-- One row per executed step; committed in the same transaction as the step's writes.
CREATE TABLE automation_execution_steps (
    id UUID PRIMARY KEY DEFAULT uuid_generate_v4(),
    execution_id UUID NOT NULL REFERENCES automation_executions(id) ON DELETE CASCADE,
    workspace_id UUID NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    step_id TEXT NOT NULL,
    pointer TEXT NOT NULL,
    type VARCHAR(50) NOT NULL,
    status VARCHAR(20) NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    idempotency_key TEXT NOT NULL,
    input JSONB,
    output JSONB,
    error JSONB,
    attempt_history JSONB NOT NULL DEFAULT '[]',
    started_at TIMESTAMPTZ,
    finished_at TIMESTAMPTZ,
    duration_ms INTEGER,
    CONSTRAINT unique_execution_step UNIQUE (execution_id, step_id),
    CONSTRAINT valid_step_status CHECK (status IN ('running', 'completed', 'failed', 'skipped', 'waiting'))
);

CREATE INDEX idx_execution_steps_workspace ON automation_execution_steps (workspace_id);

ALTER TABLE automation_execution_steps ENABLE ROW LEVEL SECURITY;
CREATE POLICY workspace_isolation ON automation_execution_steps
    FOR ALL
    USING (workspace_id = NULLIF(current_setting('app.workspace_id', true), '')::uuid);

-- "Why didn't it run?": one row per (event, candidate automation).
CREATE TABLE automation_decisions (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace_id UUID NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    event_id BIGINT NOT NULL,
    automation_id UUID REFERENCES automations(id) ON DELETE CASCADE,
    automation_version INTEGER,
    entity_type VARCHAR(50),
    entity_id UUID,
    outcome VARCHAR(30) NOT NULL,
    execution_id UUID REFERENCES automation_executions(id) ON DELETE SET NULL,
    detail JSONB NOT NULL DEFAULT '{}',
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    CONSTRAINT unique_event_automation_decision UNIQUE (event_id, automation_id),
    CONSTRAINT valid_outcome CHECK (outcome IN (
        'matched', 'filtered', 'trigger_config_mismatch', 'deduplicated', 'run_once_blocked',
        'reenrollment_blocked', 'cycle_depth_exceeded', 'disabled', 'error'
    ))
);

CREATE INDEX idx_decisions_entity ON automation_decisions (workspace_id, entity_type, entity_id, created_at DESC);
CREATE INDEX idx_decisions_created ON automation_decisions (created_at);

ALTER TABLE automation_decisions ENABLE ROW LEVEL SECURITY;
CREATE POLICY workspace_isolation ON automation_decisions
    FOR ALL
    USING (workspace_id = NULLIF(current_setting('app.workspace_id', true), '')::uuid);

GRANT SELECT, INSERT, UPDATE, DELETE ON automation_execution_steps, automation_decisions TO haste_app;
