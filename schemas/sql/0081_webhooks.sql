-- Webhook intake (engine/web/webhooks.py): one endpoint per `webhook` automation, its
-- signing secrets with rotation, and receipts that make a webhook-id count once.
-- See docs/schema-changes.md.
--
-- Endpoint: POST /hooks/<token>. The token only locates the automation (it travels in
-- URLs and proxy logs, so it is not what authenticates); the Standard Webhooks signature
-- made with one of the endpoint's secrets is.
--
-- Secrets: HMAC-SHA256 needs the key itself, so secrets are stored as given to the sender
-- (`whsec_<base64>`), unlike API keys. A secret is valid while expires_at is NULL or in the
-- future. Rotation inserts a new secret and sets the previous ones to expire after the
-- overlap (HASTE_WEBHOOK_SECRET_OVERLAP), so old and new both verify while the sender
-- switches over.
--
-- Receipts: the first accepted request of a webhook-id stores its answer; a later request
-- with the same id (a sender's retry) gets that answer back and starts nothing. The primary
-- key is the guarantee (two concurrent deliveries: the second INSERT waits for the first
-- and finds its row). No foreign key to webhook_endpoints: every receipt would take a
-- KEY SHARE lock on its endpoint's row, one hot row for all of that endpoint's traffic
-- (the outbox rejects an FK to workspaces for the same reason). Receipts of a deleted
-- endpoint are removed by the prune after HASTE_WEBHOOK_RECEIPT_DAYS.

CREATE TABLE IF NOT EXISTS webhook_endpoints (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id UUID NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    automation_id UUID NOT NULL REFERENCES automations(id) ON DELETE CASCADE,
    token TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    CONSTRAINT webhook_endpoints_token_length CHECK (length(token) BETWEEN 20 AND 100)
);
CREATE UNIQUE INDEX IF NOT EXISTS uq_webhook_endpoints_token ON webhook_endpoints (token);
CREATE UNIQUE INDEX IF NOT EXISTS uq_webhook_endpoints_automation
    ON webhook_endpoints (automation_id);
CREATE INDEX IF NOT EXISTS idx_webhook_endpoints_workspace ON webhook_endpoints (workspace_id);

CREATE TABLE IF NOT EXISTS webhook_secrets (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    endpoint_id UUID NOT NULL REFERENCES webhook_endpoints(id) ON DELETE CASCADE,
    workspace_id UUID NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    secret TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    expires_at TIMESTAMPTZ,
    CONSTRAINT webhook_secrets_format CHECK (secret LIKE 'whsec\_%')
);
CREATE INDEX IF NOT EXISTS idx_webhook_secrets_endpoint ON webhook_secrets (endpoint_id);
CREATE INDEX IF NOT EXISTS idx_webhook_secrets_workspace ON webhook_secrets (workspace_id);

CREATE TABLE IF NOT EXISTS webhook_receipts (
    endpoint_id UUID NOT NULL,
    webhook_id VARCHAR(255) NOT NULL,
    workspace_id UUID NOT NULL,
    event_id BIGINT NOT NULL,
    status_code SMALLINT NOT NULL,
    response JSONB NOT NULL,
    received_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    PRIMARY KEY (endpoint_id, webhook_id)
);
CREATE INDEX IF NOT EXISTS idx_webhook_receipts_received ON webhook_receipts (received_at);

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['webhook_endpoints', 'webhook_secrets', 'webhook_receipts'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        IF NOT EXISTS (
            SELECT 1 FROM pg_policy WHERE polrelid = t::regclass AND polname = 'workspace_isolation'
        ) THEN
            EXECUTE format(
                'CREATE POLICY workspace_isolation ON %I FOR ALL USING '
                '(workspace_id = NULLIF(current_setting(''app.workspace_id'', true), '''')::uuid)',
                t);
        END IF;
        EXECUTE format('REVOKE ALL ON %I FROM haste_app', t);
    END LOOP;
END
$$;
