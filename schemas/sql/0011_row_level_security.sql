-- Privileges for haste_app and row-level security on every tenant table.
-- Source: docs/crm-schema.md, section "Row-Level Security", extended from
-- contacts/deals/emails to every tenant table. Deviations and reasons:
-- docs/schema-changes.md.
--
-- Tenant expression, used everywhere below:
--     workspace_id = NULLIF(current_setting('app.workspace_id', true), '')::uuid
-- current_setting(..., true) yields NULL instead of raising when the setting
-- is missing, and NULLIF turns the empty string (what a reset custom setting
-- reads as) into NULL too; comparing with NULL is never true, so a session
-- without a workspace sees no rows and can write none.
--
-- RLS is ENABLEd, not FORCEd: the owner connection deliberately bypasses it
-- for engine system code (scheduler, migrations, matview refresh).

-- ---------------------------------------------------------------------------
-- Privileges
-- ---------------------------------------------------------------------------
GRANT USAGE ON SCHEMA public TO haste_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO haste_app;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO haste_app;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO haste_app;

-- Objects created later by the migrating role are granted too.
ALTER DEFAULT PRIVILEGES IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO haste_app;
ALTER DEFAULT PRIVILEGES IN SCHEMA public
    GRANT USAGE, SELECT ON SEQUENCES TO haste_app;
ALTER DEFAULT PRIVILEGES IN SCHEMA public
    GRANT EXECUTE ON FUNCTIONS TO haste_app;

-- The migration runner's bookkeeping table is no business of tenant code.
DO $$
BEGIN
    IF to_regclass('schema_migrations') IS NOT NULL THEN
        REVOKE ALL ON TABLE schema_migrations FROM haste_app;
    END IF;
END
$$;

-- The materialized view cannot have RLS and holds all workspaces.
REVOKE ALL ON contact_engagement_scores FROM haste_app;
-- Its tenant-filtered view is read-only.
REVOKE ALL ON tenant_contact_engagement_scores FROM haste_app;
GRANT SELECT ON tenant_contact_engagement_scores TO haste_app;

-- Partitions of activities: reachable for haste_app only through the parent
-- (whose policy applies); RLS enabled without policy as a second lock.
-- create_monthly_partition() does the same for partitions it creates later.
DO $$
DECLARE
    part regclass;
BEGIN
    FOR part IN
        SELECT inhrelid::regclass FROM pg_inherits WHERE inhparent = 'activities'::regclass
    LOOP
        EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', part);
        EXECUTE format('REVOKE ALL ON TABLE %s FROM haste_app', part);
    END LOOP;
END
$$;

-- ---------------------------------------------------------------------------
-- Workspace root
-- ---------------------------------------------------------------------------
ALTER TABLE workspaces ENABLE ROW LEVEL SECURITY;

CREATE POLICY workspace_isolation ON workspaces
    FOR ALL
    USING (id = NULLIF(current_setting('app.workspace_id', true), '')::uuid);

-- ---------------------------------------------------------------------------
-- Tables carrying workspace_id
-- ---------------------------------------------------------------------------

-- Contacts policy (spec), made null-safe.
ALTER TABLE contacts ENABLE ROW LEVEL SECURITY;

CREATE POLICY workspace_isolation ON contacts
    FOR ALL
    USING (workspace_id = NULLIF(current_setting('app.workspace_id', true), '')::uuid);

-- Deals policy with owner check (spec), made null-safe with app.user_id.
ALTER TABLE deals ENABLE ROW LEVEL SECURITY;

CREATE POLICY deal_access ON deals
    FOR ALL
    USING (
        workspace_id = NULLIF(current_setting('app.workspace_id', true), '')::uuid
        AND (
            owner_id = NULLIF(current_setting('app.user_id', true), '')::uuid
            OR EXISTS (
                SELECT 1 FROM workspace_members
                WHERE workspace_id = deals.workspace_id
                AND user_id = NULLIF(current_setting('app.user_id', true), '')::uuid
                AND role IN ('owner', 'admin')
            )
        )
    );

-- The engine acts for a whole workspace, with no user: automations must see
-- and move every deal of the workspace. Permissive policies are OR-ed, so for
-- haste_app this widens deal_access to the workspace; deal_access still
-- governs any other (per-user) role.
CREATE POLICY engine_workspace_access ON deals
    FOR ALL
    TO haste_app
    USING (workspace_id = NULLIF(current_setting('app.workspace_id', true), '')::uuid);

ALTER TABLE emails ENABLE ROW LEVEL SECURITY;

CREATE POLICY workspace_isolation ON emails
    FOR ALL
    USING (workspace_id = NULLIF(current_setting('app.workspace_id', true), '')::uuid);

ALTER TABLE workspace_members ENABLE ROW LEVEL SECURITY;

CREATE POLICY workspace_isolation ON workspace_members
    FOR ALL
    USING (workspace_id = NULLIF(current_setting('app.workspace_id', true), '')::uuid);

ALTER TABLE tags ENABLE ROW LEVEL SECURITY;

CREATE POLICY workspace_isolation ON tags
    FOR ALL
    USING (workspace_id = NULLIF(current_setting('app.workspace_id', true), '')::uuid);

ALTER TABLE companies ENABLE ROW LEVEL SECURITY;

CREATE POLICY workspace_isolation ON companies
    FOR ALL
    USING (workspace_id = NULLIF(current_setting('app.workspace_id', true), '')::uuid);

ALTER TABLE notes ENABLE ROW LEVEL SECURITY;

CREATE POLICY workspace_isolation ON notes
    FOR ALL
    USING (workspace_id = NULLIF(current_setting('app.workspace_id', true), '')::uuid);

ALTER TABLE email_accounts ENABLE ROW LEVEL SECURITY;

CREATE POLICY workspace_isolation ON email_accounts
    FOR ALL
    USING (workspace_id = NULLIF(current_setting('app.workspace_id', true), '')::uuid);

ALTER TABLE pipelines ENABLE ROW LEVEL SECURITY;

CREATE POLICY workspace_isolation ON pipelines
    FOR ALL
    USING (workspace_id = NULLIF(current_setting('app.workspace_id', true), '')::uuid);

ALTER TABLE activities ENABLE ROW LEVEL SECURITY;

CREATE POLICY workspace_isolation ON activities
    FOR ALL
    USING (workspace_id = NULLIF(current_setting('app.workspace_id', true), '')::uuid);

ALTER TABLE tasks ENABLE ROW LEVEL SECURITY;

CREATE POLICY workspace_isolation ON tasks
    FOR ALL
    USING (workspace_id = NULLIF(current_setting('app.workspace_id', true), '')::uuid);

ALTER TABLE ai_models ENABLE ROW LEVEL SECURITY;

CREATE POLICY workspace_isolation ON ai_models
    FOR ALL
    USING (workspace_id = NULLIF(current_setting('app.workspace_id', true), '')::uuid);

ALTER TABLE automations ENABLE ROW LEVEL SECURITY;

CREATE POLICY workspace_isolation ON automations
    FOR ALL
    USING (workspace_id = NULLIF(current_setting('app.workspace_id', true), '')::uuid);

ALTER TABLE ai_tasks ENABLE ROW LEVEL SECURITY;

CREATE POLICY workspace_isolation ON ai_tasks
    FOR ALL
    USING (workspace_id = NULLIF(current_setting('app.workspace_id', true), '')::uuid);

ALTER TABLE custom_field_definitions ENABLE ROW LEVEL SECURITY;

CREATE POLICY workspace_isolation ON custom_field_definitions
    FOR ALL
    USING (workspace_id = NULLIF(current_setting('app.workspace_id', true), '')::uuid);

ALTER TABLE saved_views ENABLE ROW LEVEL SECURITY;

CREATE POLICY workspace_isolation ON saved_views
    FOR ALL
    USING (workspace_id = NULLIF(current_setting('app.workspace_id', true), '')::uuid);

ALTER TABLE reports ENABLE ROW LEVEL SECURITY;

CREATE POLICY workspace_isolation ON reports
    FOR ALL
    USING (workspace_id = NULLIF(current_setting('app.workspace_id', true), '')::uuid);

-- ---------------------------------------------------------------------------
-- Child tables without workspace_id: a row is visible (and writable) when its
-- parent row is. The parent's own policy applies inside the subquery. Link
-- tables check both parents, so a row cannot join one workspace's contact to
-- another workspace's tag or company.
-- ---------------------------------------------------------------------------
ALTER TABLE contact_tags ENABLE ROW LEVEL SECURITY;

CREATE POLICY parent_workspace_isolation ON contact_tags
    FOR ALL
    USING (
        EXISTS (SELECT 1 FROM contacts p WHERE p.id = contact_tags.contact_id)
        AND EXISTS (SELECT 1 FROM tags p WHERE p.id = contact_tags.tag_id)
    );

ALTER TABLE company_contacts ENABLE ROW LEVEL SECURITY;

CREATE POLICY parent_workspace_isolation ON company_contacts
    FOR ALL
    USING (
        EXISTS (SELECT 1 FROM companies p WHERE p.id = company_contacts.company_id)
        AND EXISTS (SELECT 1 FROM contacts p WHERE p.id = company_contacts.contact_id)
    );

ALTER TABLE deal_history ENABLE ROW LEVEL SECURITY;

CREATE POLICY parent_workspace_isolation ON deal_history
    FOR ALL
    USING (EXISTS (SELECT 1 FROM deals p WHERE p.id = deal_history.deal_id));

ALTER TABLE pipeline_stages ENABLE ROW LEVEL SECURITY;

CREATE POLICY parent_workspace_isolation ON pipeline_stages
    FOR ALL
    USING (EXISTS (SELECT 1 FROM pipelines p WHERE p.id = pipeline_stages.pipeline_id));

ALTER TABLE email_attachments ENABLE ROW LEVEL SECURITY;

CREATE POLICY parent_workspace_isolation ON email_attachments
    FOR ALL
    USING (EXISTS (SELECT 1 FROM emails p WHERE p.id = email_attachments.email_id));

ALTER TABLE email_tracking_events ENABLE ROW LEVEL SECURITY;

CREATE POLICY parent_workspace_isolation ON email_tracking_events
    FOR ALL
    USING (EXISTS (SELECT 1 FROM emails p WHERE p.id = email_tracking_events.email_id));

ALTER TABLE automation_executions ENABLE ROW LEVEL SECURITY;

CREATE POLICY parent_workspace_isolation ON automation_executions
    FOR ALL
    USING (EXISTS (SELECT 1 FROM automations p WHERE p.id = automation_executions.automation_id));

-- Not under RLS, on purpose:
--   users     global: one user belongs to several workspaces (workspace_members).
--   comments  polymorphic (entity_type, entity_id) with no workspace_id and no
--             foreign key to derive one from.
