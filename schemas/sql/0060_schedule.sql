-- The scheduler's state for time_based automations: what was computed from which version,
-- per-record due times of date-field automations, and the ledger of fires.
-- See docs/schema-changes.md. Additions only; safe to re-run.

-- One row per time_based automation the scheduler has seen. next_run_at itself stays on
-- automations (the spec's column); this row says which version and enabled state it was
-- computed from, so a deploy or an enable/disable is noticed without a trigger on
-- automations, and holds the one fire that overlap = buffer_one keeps back.
CREATE TABLE IF NOT EXISTS automation_schedules (
    automation_id UUID PRIMARY KEY REFERENCES automations(id) ON DELETE CASCADE,
    workspace_id UUID NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    version INTEGER,
    live BOOLEAN NOT NULL,
    mode VARCHAR(20) NOT NULL,
    error TEXT,
    buffered_for TIMESTAMPTZ,
    buffered_key TEXT,
    last_fire_at TIMESTAMPTZ,
    last_outcome VARCHAR(30),
    synced_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    CONSTRAINT valid_schedule_mode CHECK (mode IN ('cron', 'at', 'date_field', 'invalid'))
);

CREATE INDEX IF NOT EXISTS idx_automation_schedules_buffered
    ON automation_schedules (buffered_for) WHERE buffered_for IS NOT NULL;

-- Date-field automations ("3 days before deal.expected_close_date at 09:00"): one row per
-- (automation, record) with the record's current date value and the instant it is due.
-- A new date value makes the row pending again; a deleted record deletes the row.
CREATE TABLE IF NOT EXISTS schedule_record_due (
    automation_id UUID NOT NULL REFERENCES automations(id) ON DELETE CASCADE,
    entity_id UUID NOT NULL,
    workspace_id UUID NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    entity_type VARCHAR(50) NOT NULL,
    date_value TEXT NOT NULL,
    due_at TIMESTAMPTZ NOT NULL,
    status VARCHAR(20) NOT NULL DEFAULT 'pending',
    fired_at TIMESTAMPTZ,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    PRIMARY KEY (automation_id, entity_id),
    CONSTRAINT valid_due_status CHECK (status IN ('pending', 'fired', 'skipped'))
);

-- The claimer's scan, and the next_run_at of each date-field automation.
CREATE INDEX IF NOT EXISTS idx_schedule_record_due_pending
    ON schedule_record_due (due_at) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS idx_schedule_record_due_automation_pending
    ON schedule_record_due (automation_id, due_at) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS idx_schedule_record_due_entity
    ON schedule_record_due (entity_id);

-- Every fire decided, once: (automation, fire key) is unique, so a fire can never be
-- emitted twice, whatever replica or retry decides it again. The key is the scheduled
-- instant for cron/at, "<record id>:<date value>" for date fields.
CREATE TABLE IF NOT EXISTS schedule_fires (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    automation_id UUID NOT NULL REFERENCES automations(id) ON DELETE CASCADE,
    workspace_id UUID NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    fire_key TEXT NOT NULL,
    scheduled_for TIMESTAMPTZ NOT NULL,
    entity_type VARCHAR(50),
    entity_id UUID,
    outcome VARCHAR(20) NOT NULL,
    event_id BIGINT,
    fired_by TEXT,
    fired_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    CONSTRAINT unique_schedule_fire UNIQUE (automation_id, fire_key),
    CONSTRAINT valid_fire_outcome CHECK (outcome IN (
        'emitted', 'skipped_misfire', 'skipped_overlap', 'skipped_window'
    ))
);

CREATE INDEX IF NOT EXISTS idx_schedule_fires_fired_at ON schedule_fires (fired_at);
CREATE INDEX IF NOT EXISTS idx_schedule_fires_workspace ON schedule_fires (workspace_id);

-- The claimer's scan of cron/at automations that are due (date-field ones are claimed
-- through schedule_record_due).
CREATE INDEX IF NOT EXISTS idx_automations_schedule_due
    ON automations (next_run_at)
    WHERE trigger_type = 'time_based' AND enabled AND deleted_at IS NULL
      AND NOT (trigger_config ? 'date_field');

-- on_record_event looks up a workspace's date-field automations for every CRM event.
CREATE INDEX IF NOT EXISTS idx_automations_date_field
    ON automations (workspace_id)
    WHERE trigger_type = 'time_based' AND deleted_at IS NULL AND trigger_config ? 'date_field';

-- Tenant tables: RLS like every table with a workspace_id (docs/schema-changes.md).
ALTER TABLE automation_schedules ENABLE ROW LEVEL SECURITY;
ALTER TABLE schedule_record_due ENABLE ROW LEVEL SECURITY;
ALTER TABLE schedule_fires ENABLE ROW LEVEL SECURITY;

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['automation_schedules', 'schedule_record_due', 'schedule_fires'] LOOP
        IF NOT EXISTS (
            SELECT 1 FROM pg_policy WHERE polrelid = t::regclass AND polname = 'workspace_isolation'
        ) THEN
            EXECUTE format(
                'CREATE POLICY workspace_isolation ON %I FOR ALL USING '
                '(workspace_id = NULLIF(current_setting(''app.workspace_id'', true), '''')::uuid)',
                t);
        END IF;
    END LOOP;
END
$$;

GRANT SELECT, INSERT, UPDATE, DELETE
    ON automation_schedules, schedule_record_due, schedule_fires TO haste_app;
