-- Automation definitions as deployed documents: versions, re-enrollment policy, cycle opt-in.
-- See docs/schema-changes.md. Additions only; the spec's automations columns are untouched.

ALTER TABLE automations
    ADD COLUMN IF NOT EXISTS reenrollment VARCHAR(20) NOT NULL DEFAULT 'not_while_active',
    ADD COLUMN IF NOT EXISTS current_version INTEGER,
    ADD COLUMN IF NOT EXISTS max_chain_depth INTEGER,
    ADD COLUMN IF NOT EXISTS document JSONB;

ALTER TABLE automations
    ADD CONSTRAINT valid_reenrollment CHECK (reenrollment IN ('not_while_active', 'always')),
    ADD CONSTRAINT valid_max_chain_depth CHECK (max_chain_depth IS NULL OR max_chain_depth > 0);

-- Deploy creates or updates "by workspace + name": one live automation per name.
CREATE UNIQUE INDEX IF NOT EXISTS idx_automations_workspace_name
    ON automations (workspace_id, name) WHERE deleted_at IS NULL;

CREATE TABLE automation_versions (
    id UUID PRIMARY KEY DEFAULT uuid_generate_v4(),
    automation_id UUID NOT NULL REFERENCES automations(id) ON DELETE CASCADE,
    workspace_id UUID NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    version INTEGER NOT NULL,
    document JSONB NOT NULL,
    checksum TEXT NOT NULL,
    deployed_by UUID REFERENCES users(id),
    deployed_by_name TEXT,
    deployed_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    CONSTRAINT unique_automation_version UNIQUE (automation_id, version),
    CONSTRAINT positive_version CHECK (version > 0)
);

CREATE INDEX idx_automation_versions_workspace ON automation_versions (workspace_id);

ALTER TABLE automation_versions ENABLE ROW LEVEL SECURITY;
CREATE POLICY workspace_isolation ON automation_versions
    FOR ALL
    USING (workspace_id = NULLIF(current_setting('app.workspace_id', true), '')::uuid);
GRANT SELECT, INSERT, UPDATE, DELETE ON automation_versions TO haste_app;
