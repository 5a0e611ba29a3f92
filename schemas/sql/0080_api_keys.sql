-- Workspace API keys of the web API (engine/web/auth.py). See docs/schema-changes.md.
--
-- A key is shown once, when it is created, and only its SHA-256 is stored. A key is 32
-- random bytes, so a fast hash is enough: there is nothing to brute-force (slow password
-- hashes such as bcrypt exist for low-entropy secrets, and would cost ~100 ms per request).
-- The lookup is by hash (unique index), so no comparison of secrets happens in Python.
-- `prefix` (the key's first characters) lets people tell their keys apart in listings.
--
-- The engine reads this table as the owner, before it knows the workspace (the key is what
-- selects the tenant); tenant code (haste_app) never sees it. RLS is enabled with the usual
-- policy anyway, so every table with a workspace_id stays under RLS.

CREATE TABLE IF NOT EXISTS api_keys (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id UUID NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    name VARCHAR(100) NOT NULL,
    prefix VARCHAR(20) NOT NULL,
    key_hash BYTEA NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    created_by_name TEXT,
    -- Written at most once a minute per key (api_key_authenticate), not on every request.
    last_used_at TIMESTAMPTZ,
    expires_at TIMESTAMPTZ,
    revoked_at TIMESTAMPTZ,
    CONSTRAINT api_keys_hash_is_sha256 CHECK (octet_length(key_hash) = 32)
);

CREATE UNIQUE INDEX IF NOT EXISTS uq_api_keys_hash ON api_keys (key_hash);
CREATE INDEX IF NOT EXISTS idx_api_keys_workspace ON api_keys (workspace_id);

ALTER TABLE api_keys ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS workspace_isolation ON api_keys;
CREATE POLICY workspace_isolation ON api_keys
    FOR ALL
    USING (workspace_id = NULLIF(current_setting('app.workspace_id', true), '')::uuid);
REVOKE ALL ON api_keys FROM haste_app;
