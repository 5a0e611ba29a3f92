-- The maintenance jobs that replace the spec's pg_cron jobs: their schedule, their runs,
-- and the once-only ledgers of task reminders and scheduled reports.
-- See docs/schema-changes.md. Additions only; safe to re-run.

-- One row per maintenance job: its cron (NULL = off) and when it is due next. Claimed with
-- a guarded UPDATE (next_run_at <= now), so two scheduler replicas never run a job twice.
CREATE TABLE IF NOT EXISTS scheduler_jobs (
    name VARCHAR(50) PRIMARY KEY,
    cron VARCHAR(100),
    timezone VARCHAR(50) NOT NULL DEFAULT 'UTC',
    next_run_at TIMESTAMPTZ,
    last_run_id BIGINT,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
);

-- Every job run: start, end, result, error.
CREATE TABLE IF NOT EXISTS scheduler_job_runs (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job VARCHAR(50) NOT NULL,
    scheduled_for TIMESTAMPTZ,
    started_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    finished_at TIMESTAMPTZ,
    status VARCHAR(20) NOT NULL DEFAULT 'running',
    result JSONB,
    error TEXT,
    runner TEXT,
    CONSTRAINT valid_job_run_status CHECK (status IN ('running', 'succeeded', 'failed', 'abandoned'))
);

CREATE INDEX IF NOT EXISTS idx_scheduler_job_runs_job ON scheduler_job_runs (job, started_at DESC);
CREATE INDEX IF NOT EXISTS idx_scheduler_job_runs_running
    ON scheduler_job_runs (started_at) WHERE status = 'running';

-- Engine bookkeeping, not tenant data (like schema_migrations).
REVOKE ALL ON scheduler_jobs, scheduler_job_runs FROM haste_app;

-- Task reminders sent: (task, due instant) once. A task moved to another due time gets a
-- new reminder; the same due time never a second one.
CREATE TABLE IF NOT EXISTS task_reminders (
    task_id UUID NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
    due_at TIMESTAMPTZ NOT NULL,
    workspace_id UUID NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    remind_at TIMESTAMPTZ NOT NULL,
    activity_id UUID,
    sent_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    PRIMARY KEY (task_id, due_at)
);

CREATE INDEX IF NOT EXISTS idx_task_reminders_workspace ON task_reminders (workspace_id);

-- Scheduled report runs: one per (report, scheduled instant), generated once; delivery by
-- email is tracked on the row and retried while pending.
CREATE TABLE IF NOT EXISTS report_runs (
    id UUID PRIMARY KEY DEFAULT uuid_generate_v4(),
    report_id UUID NOT NULL REFERENCES reports(id) ON DELETE CASCADE,
    workspace_id UUID NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    scheduled_for TIMESTAMPTZ NOT NULL,
    generated_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    delivery VARCHAR(20) NOT NULL DEFAULT 'pending',
    recipients JSONB NOT NULL DEFAULT '[]',
    data JSONB,
    message_id TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    sent_at TIMESTAMPTZ,
    CONSTRAINT unique_report_run UNIQUE (report_id, scheduled_for),
    CONSTRAINT valid_report_delivery CHECK (delivery IN ('pending', 'sent', 'failed', 'skipped'))
);

CREATE INDEX IF NOT EXISTS idx_report_runs_workspace ON report_runs (workspace_id);
CREATE INDEX IF NOT EXISTS idx_report_runs_pending
    ON report_runs (generated_at) WHERE delivery = 'pending';

ALTER TABLE task_reminders ENABLE ROW LEVEL SECURITY;
ALTER TABLE report_runs ENABLE ROW LEVEL SECURITY;

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['task_reminders', 'report_runs'] LOOP
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

GRANT SELECT, INSERT, UPDATE, DELETE ON task_reminders, report_runs TO haste_app;
