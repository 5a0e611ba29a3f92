-- Executions: re-run generations and the reaper's index. See docs/schema-changes.md
-- ("Executions, steps, decisions"). Additions only.

-- How many times an operator re-ran the execution (haste rerun / redrive). Part of the
-- idempotency key of the steps run again, so a re-run of a committed step really runs it
-- again instead of being deduplicated against its first run.
ALTER TABLE automation_executions
    ADD COLUMN IF NOT EXISTS reruns INTEGER NOT NULL DEFAULT 0;

-- The reaper looks for running executions whose heartbeat went stale.
CREATE INDEX IF NOT EXISTS idx_automation_executions_heartbeat
    ON automation_executions (heartbeat_at)
    WHERE status = 'running';

-- Operators list and redrive executions of one automation by status and time.
CREATE INDEX IF NOT EXISTS idx_automation_executions_automation_status
    ON automation_executions (automation_id, status, completed_at DESC);
