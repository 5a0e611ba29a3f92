-- AI tasks: what the lifecycle records beyond the spec's columns, the monthly usage ledger
-- and budgets, and the response cache. See docs/schema-changes.md ("AI tasks and
-- embeddings"). Additions only; safe to re-run.

-- ai_tasks: cache, failover, attempts, write-back, exact cost, deferred retries, leases.
ALTER TABLE ai_tasks
    ADD COLUMN IF NOT EXISTS automation_id UUID REFERENCES automations(id) ON DELETE SET NULL,
    ADD COLUMN IF NOT EXISTS input_hash TEXT,
    ADD COLUMN IF NOT EXISTS cache_hit BOOLEAN NOT NULL DEFAULT FALSE,
    ADD COLUMN IF NOT EXISTS failover_from VARCHAR(50),
    ADD COLUMN IF NOT EXISTS attempts JSONB NOT NULL DEFAULT '[]',
    ADD COLUMN IF NOT EXISTS write_back JSONB,
    ADD COLUMN IF NOT EXISTS cost_exact_cents NUMERIC(16, 6),
    ADD COLUMN IF NOT EXISTS budget_reservation JSONB,
    ADD COLUMN IF NOT EXISTS not_before TIMESTAMPTZ,
    ADD COLUMN IF NOT EXISTS updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW();

-- The executor finds (and cancels) the tasks of an execution by input->>'execution_id'.
CREATE INDEX IF NOT EXISTS idx_ai_tasks_execution ON ai_tasks ((input->>'execution_id'));
-- The sweep looks only at live rows: pending without a message, processing past its lease.
CREATE INDEX IF NOT EXISTS idx_ai_tasks_live
    ON ai_tasks (updated_at) WHERE status IN ('pending', 'processing');

-- Monthly budgets. automation_id NULL = the whole workspace. NULL limit = no limit.
CREATE TABLE IF NOT EXISTS ai_budgets (
    id UUID PRIMARY KEY DEFAULT uuid_generate_v4(),
    workspace_id UUID NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    automation_id UUID REFERENCES automations(id) ON DELETE CASCADE,
    monthly_tokens BIGINT,
    monthly_cost_cents NUMERIC(14, 2),
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    CONSTRAINT ai_budgets_scope UNIQUE NULLS NOT DISTINCT (workspace_id, automation_id),
    CONSTRAINT valid_monthly_tokens CHECK (monthly_tokens IS NULL OR monthly_tokens >= 0),
    CONSTRAINT valid_monthly_cost CHECK (monthly_cost_cents IS NULL OR monthly_cost_cents >= 0)
);

-- Usage per (workspace, automation | NULL = workspace total, calendar month UTC). Calls in
-- flight hold a reservation (their estimate) so concurrent workers cannot overshoot.
CREATE TABLE IF NOT EXISTS ai_usage (
    workspace_id UUID NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    automation_id UUID REFERENCES automations(id) ON DELETE CASCADE,
    month DATE NOT NULL,
    tokens_used BIGINT NOT NULL DEFAULT 0,
    cost_cents NUMERIC(16, 6) NOT NULL DEFAULT 0,
    calls INTEGER NOT NULL DEFAULT 0,
    reserved_tokens BIGINT NOT NULL DEFAULT 0,
    reserved_cents NUMERIC(16, 6) NOT NULL DEFAULT 0,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    CONSTRAINT ai_usage_scope UNIQUE NULLS NOT DISTINCT (workspace_id, automation_id, month)
);

-- Validated responses by input hash, so a rerun does not pay twice. Per workspace: a
-- tenant never reads another tenant's answers.
CREATE TABLE IF NOT EXISTS ai_response_cache (
    workspace_id UUID NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    input_hash TEXT NOT NULL,
    task_type VARCHAR(50) NOT NULL,
    output JSONB NOT NULL,
    model_provider VARCHAR(50) NOT NULL,
    model_name VARCHAR(100) NOT NULL,
    tokens_used INTEGER NOT NULL DEFAULT 0,
    cost_exact_cents NUMERIC(16, 6) NOT NULL DEFAULT 0,
    hits INTEGER NOT NULL DEFAULT 0,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    expires_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (workspace_id, input_hash)
);

CREATE INDEX IF NOT EXISTS idx_ai_response_cache_expires ON ai_response_cache (expires_at);

ALTER TABLE ai_budgets ENABLE ROW LEVEL SECURITY;
ALTER TABLE ai_usage ENABLE ROW LEVEL SECURITY;
ALTER TABLE ai_response_cache ENABLE ROW LEVEL SECURITY;

DROP POLICY IF EXISTS workspace_isolation ON ai_budgets;
CREATE POLICY workspace_isolation ON ai_budgets
    FOR ALL
    USING (workspace_id = NULLIF(current_setting('app.workspace_id', true), '')::uuid);
DROP POLICY IF EXISTS workspace_isolation ON ai_usage;
CREATE POLICY workspace_isolation ON ai_usage
    FOR ALL
    USING (workspace_id = NULLIF(current_setting('app.workspace_id', true), '')::uuid);
DROP POLICY IF EXISTS workspace_isolation ON ai_response_cache;
CREATE POLICY workspace_isolation ON ai_response_cache
    FOR ALL
    USING (workspace_id = NULLIF(current_setting('app.workspace_id', true), '')::uuid);

GRANT SELECT, INSERT, UPDATE, DELETE ON ai_budgets, ai_usage, ai_response_cache TO haste_app;
