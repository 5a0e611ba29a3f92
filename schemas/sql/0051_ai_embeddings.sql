-- Embeddings of contacts and companies: per-record state (pending refresh, which model and
-- text produced the vector) and the vector indexes' upkeep. See docs/schema-changes.md ("AI
-- tasks and embeddings") and docs/ai.md ("Index choice"). Additions only; safe to re-run.

-- One row per record that has (or is waiting for) an embedding. requested_at NOT NULL
-- means a refresh is pending since then; a worker leases pending rows with claimed_until.
CREATE TABLE IF NOT EXISTS ai_embeddings (
    entity_type VARCHAR(20) NOT NULL,
    entity_id UUID NOT NULL,
    workspace_id UUID NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    requested_at TIMESTAMPTZ,
    claimed_until TIMESTAMPTZ,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    model_provider VARCHAR(50),
    model_name VARCHAR(100),
    text_hash TEXT,
    embedded_at TIMESTAMPTZ,
    PRIMARY KEY (entity_type, entity_id),
    CONSTRAINT valid_embedding_entity CHECK (entity_type IN ('contact', 'company'))
);

CREATE INDEX IF NOT EXISTS idx_ai_embeddings_pending
    ON ai_embeddings (requested_at) WHERE requested_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_ai_embeddings_workspace ON ai_embeddings (workspace_id);

ALTER TABLE ai_embeddings ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS workspace_isolation ON ai_embeddings;
CREATE POLICY workspace_isolation ON ai_embeddings
    FOR ALL
    USING (workspace_id = NULLIF(current_setting('app.workspace_id', true), '')::uuid);
GRANT SELECT, INSERT, UPDATE, DELETE ON ai_embeddings TO haste_app;

-- Vector indexes. contacts keeps the spec's ivfflat (idx_contacts_embedding) as its only
-- vector index: an HNSW beside it made every embedding write 2.5-4 times slower (bench G11),
-- and a trained ivfflat meets the latency and recall goals. Trained is the point: the spec
-- builds it on an empty table, so haste rebuilds it (REINDEX CONCURRENTLY, with lists set
-- to about sqrt(rows), never below the spec's default 100) once there is data and whenever
-- the vectors have doubled since (workers.embeddings.maintain_vector_indexes); this table
-- remembers what each build saw.
CREATE TABLE IF NOT EXISTS ai_vector_indexes (
    index_name TEXT PRIMARY KEY,
    rows_at_build BIGINT NOT NULL,
    lists INTEGER,
    built_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
);
REVOKE ALL ON ai_vector_indexes FROM haste_app;

-- companies has no vector index in the spec. HNSW: it needs no training (right from the
-- first row), and companies are few and rarely rewritten, so its slower inserts do not
-- matter there. On a large existing table, create it CONCURRENTLY by hand first:
-- IF NOT EXISTS then skips it.
CREATE INDEX IF NOT EXISTS idx_companies_embedding_hnsw
    ON companies USING hnsw (embedding vector_cosine_ops);
