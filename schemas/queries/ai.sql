-- AI tasks, budgets, response cache, embeddings and search (workers/ai_*.py,
-- workers/embeddings.py). Every transition is guarded by the state it leaves, so a stale
-- or duplicate worker updates 0 rows and can tell.

-- ---------------------------------------------------------------------------------------
-- ai_tasks lifecycle: pending → processing → completed | failed | cancelled
-- (processing → pending when a long Retry-After defers it; a stale processing row is
-- claimed again after its lease).
-- ---------------------------------------------------------------------------------------

-- name: ai_task_locate
SELECT workspace_id, status FROM ai_tasks WHERE id = %(id)s;

-- name: ai_task_claim
UPDATE ai_tasks t SET
    status = 'processing',
    started_at = COALESCE(t.started_at, now()),
    updated_at = now(),
    not_before = NULL,
    automation_id = COALESCE(t.automation_id, (
        SELECT e.automation_id FROM automation_executions e
        WHERE e.id = CASE
            WHEN t.input->>'execution_id' ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
            THEN (t.input->>'execution_id')::uuid END
    ))
WHERE t.id = %(id)s
  AND (
      (t.status = 'pending' AND (t.not_before IS NULL OR t.not_before <= now()))
      OR (t.status = 'processing' AND t.updated_at < now() - make_interval(secs => %(stale_after)s))
  )
RETURNING t.*;

-- name: ai_task_reserve
UPDATE ai_tasks SET budget_reservation = %(reservation)s, updated_at = now()
WHERE id = %(id)s AND status = 'processing'
RETURNING id;

-- name: ai_task_finish
UPDATE ai_tasks SET
    status = %(status)s,
    output = %(output)s,
    model_provider = %(model_provider)s,
    model_name = %(model_name)s,
    tokens_used = %(tokens_used)s,
    cost_cents = %(cost_cents)s,
    cost_exact_cents = %(cost_exact_cents)s,
    duration_ms = %(duration_ms)s,
    retry_count = %(retry_count)s,
    error_message = %(error_message)s,
    input_hash = %(input_hash)s,
    cache_hit = %(cache_hit)s,
    failover_from = %(failover_from)s,
    attempts = %(attempts)s,
    write_back = %(write_back)s,
    budget_reservation = NULL,
    completed_at = now(),
    updated_at = now()
WHERE id = %(id)s AND status = 'processing'
RETURNING id;

-- name: ai_task_defer
UPDATE ai_tasks SET
    status = 'pending',
    not_before = now() + make_interval(secs => %(delay)s),
    model_provider = %(model_provider)s,
    model_name = %(model_name)s,
    tokens_used = %(tokens_used)s,
    cost_cents = %(cost_cents)s,
    cost_exact_cents = %(cost_exact_cents)s,
    duration_ms = %(duration_ms)s,
    retry_count = %(retry_count)s,
    error_message = %(error_message)s,
    failover_from = %(failover_from)s,
    attempts = %(attempts)s,
    budget_reservation = NULL,
    updated_at = now()
WHERE id = %(id)s AND status = 'processing'
RETURNING id;

-- name: ai_task_execution_depth
SELECT depth FROM automation_executions WHERE id = %(id)s;

-- name: ai_task_orphan_reservations
-- Reservations left on finished tasks by a worker that died mid-call; released by the sweep.
UPDATE ai_tasks t SET budget_reservation = NULL
FROM (
    SELECT id, budget_reservation FROM ai_tasks
    WHERE budget_reservation IS NOT NULL AND status IN ('completed', 'failed', 'cancelled')
      AND updated_at < now() - make_interval(secs => %(stale_after)s)
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
) old
WHERE t.id = old.id
RETURNING t.id, t.workspace_id, old.budget_reservation;

-- name: ai_task_finished_waiting_executions
-- Executions still waiting on an AI task that has finished (their wake-up was lost).
SELECT e.id FROM automation_executions e
JOIN ai_tasks t ON t.input->>'execution_id' = e.id::text
WHERE e.status = 'waiting' AND e.resume_at IS NULL
  AND t.status IN ('completed', 'failed', 'cancelled')
  AND t.completed_at < now() - make_interval(secs => %(grace)s)
LIMIT %(limit)s;

-- name: ai_task_cancel_many
UPDATE ai_tasks SET
    status = 'cancelled',
    error_message = COALESCE(error_message, %(reason)s),
    completed_at = now(),
    updated_at = now()
WHERE id = ANY(%(ids)s::uuid[]) AND status IN ('pending', 'processing')
RETURNING id, input->>'execution_id' AS execution_id, budget_reservation;

-- name: ai_task_sweep_many
-- Pending rows nobody picked up within the grace (their message was never sent or was
-- lost) and processing rows past their lease (their worker died): back to pending with
-- updated_at bumped, so one sweep sends one message, and return them to be sent. The
-- next claim releases a dead worker's budget reservation.
UPDATE ai_tasks SET updated_at = now(), status = 'pending'
WHERE id IN (
    SELECT id FROM ai_tasks
    WHERE (status = 'pending' AND updated_at < now() - make_interval(secs => %(grace)s)
           AND (not_before IS NULL OR not_before <= now()))
       OR (status = 'processing' AND updated_at < now() - make_interval(secs => %(stale_after)s))
    ORDER BY updated_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
RETURNING id, status;

-- name: ai_task_list
SELECT t.id, w.slug AS workspace, t.type, t.status, t.model_provider, t.model_name,
       t.tokens_used, t.cost_cents, t.duration_ms, t.retry_count, t.cache_hit, t.failover_from,
       t.error_message, t.created_at, t.completed_at
FROM ai_tasks t JOIN workspaces w ON w.id = t.workspace_id
WHERE (%(workspace_id)s::uuid IS NULL OR t.workspace_id = %(workspace_id)s::uuid)
  AND (%(status)s::text IS NULL OR t.status = %(status)s::text)
ORDER BY t.created_at DESC
LIMIT %(limit)s;

-- name: ai_task_get_full
SELECT t.*, w.slug AS workspace FROM ai_tasks t JOIN workspaces w ON w.id = t.workspace_id
WHERE t.id = %(id)s;

-- name: ai_model_for_task
-- An exact task-type match in config.task_types wins over the coarser ai_models.type.
SELECT provider, model_id, type, config
FROM ai_models
WHERE status = 'active'
  AND (COALESCE(config->'task_types' ? %(task_type)s, false) OR type = %(model_type)s)
ORDER BY COALESCE(config->'task_types' ? %(task_type)s, false) DESC,
         updated_at DESC NULLS LAST, created_at DESC NULLS LAST
LIMIT 1;

-- ---------------------------------------------------------------------------------------
-- Record snapshots given to the model (volatile bookkeeping columns left out, so the
-- response cache is not defeated by them).
-- ---------------------------------------------------------------------------------------

-- name: ai_record_contact
SELECT id, first_name, last_name, email, phone, mobile, company, title, department, city,
       state, country, source, score, lifecycle_stage, linkedin_url, twitter_handle, website,
       enrichment_data, custom_fields, owner_id
FROM contacts WHERE id = %(id)s AND deleted_at IS NULL;

-- name: ai_record_company
SELECT id, name, domain, website, industry, company_size, annual_revenue, currency, city,
       state, country, employee_count, founded_year, description, linkedin_url, custom_fields,
       owner_id
FROM companies WHERE id = %(id)s AND deleted_at IS NULL;

-- name: ai_record_deal
SELECT d.id, d.title, d.value, d.currency, d.status, d.probability, d.expected_close_date,
       d.actual_close_date, d.won_reason, d.lost_reason, d.custom_fields, d.owner_id,
       d.contact_id, d.company_id, s.name AS stage, p.name AS pipeline,
       d.stage_entered_at::date AS stage_entered_on
FROM deals d
LEFT JOIN pipeline_stages s ON s.id = d.stage_id
LEFT JOIN pipelines p ON p.id = d.pipeline_id
WHERE d.id = %(id)s AND d.deleted_at IS NULL;

-- name: ai_record_email
SELECT id, subject, from_email, from_name, to_emails, cc_emails,
       left(COALESCE(body_text, snippet, ''), 8000) AS body_text, folder, received_at, sent_at,
       contact_id, deal_id
FROM emails WHERE id = %(id)s AND deleted_at IS NULL;

-- ---------------------------------------------------------------------------------------
-- Budgets and the monthly ledger. Rows are locked workspace first, then automation, so
-- two workers never deadlock.
-- ---------------------------------------------------------------------------------------

-- name: ai_usage_lock
INSERT INTO ai_usage (workspace_id, automation_id, month)
VALUES (%(workspace_id)s, %(automation_id)s, %(month)s)
ON CONFLICT ON CONSTRAINT ai_usage_scope DO UPDATE SET updated_at = ai_usage.updated_at
RETURNING tokens_used, cost_cents, reserved_tokens, reserved_cents, calls;

-- name: ai_budget_get
SELECT monthly_tokens, monthly_cost_cents FROM ai_budgets
WHERE workspace_id = %(workspace_id)s AND automation_id IS NOT DISTINCT FROM %(automation_id)s;

-- name: ai_usage_reserve
UPDATE ai_usage SET
    reserved_tokens = reserved_tokens + %(tokens)s,
    reserved_cents = reserved_cents + %(cents)s,
    updated_at = now()
WHERE workspace_id = %(workspace_id)s AND automation_id IS NOT DISTINCT FROM %(automation_id)s
  AND month = %(month)s;

-- name: ai_usage_settle
-- Release a reservation and add what was really used (tokens 0 = a released call).
UPDATE ai_usage SET
    reserved_tokens = GREATEST(0, reserved_tokens - %(reserved_tokens)s),
    reserved_cents = GREATEST(0, reserved_cents - %(reserved_cents)s),
    tokens_used = tokens_used + %(tokens)s,
    cost_cents = cost_cents + %(cents)s,
    calls = calls + %(calls)s,
    updated_at = now()
WHERE workspace_id = %(workspace_id)s AND automation_id IS NOT DISTINCT FROM %(automation_id)s
  AND month = %(month)s;

-- name: ai_usage_report
SELECT u.month, u.automation_id, a.name AS automation, u.tokens_used, u.cost_cents, u.calls,
       u.reserved_tokens, b.monthly_tokens, b.monthly_cost_cents
FROM ai_usage u
LEFT JOIN automations a ON a.id = u.automation_id
LEFT JOIN ai_budgets b ON b.workspace_id = u.workspace_id
     AND b.automation_id IS NOT DISTINCT FROM u.automation_id
WHERE u.month = %(month)s
ORDER BY u.automation_id NULLS FIRST, a.name;

-- name: ai_budget_set
INSERT INTO ai_budgets (workspace_id, automation_id, monthly_tokens, monthly_cost_cents)
VALUES (%(workspace_id)s, %(automation_id)s, %(monthly_tokens)s, %(monthly_cost_cents)s)
ON CONFLICT ON CONSTRAINT ai_budgets_scope DO UPDATE SET
    monthly_tokens = EXCLUDED.monthly_tokens,
    monthly_cost_cents = EXCLUDED.monthly_cost_cents,
    updated_at = now();

-- ---------------------------------------------------------------------------------------
-- Response cache
-- ---------------------------------------------------------------------------------------

-- name: ai_cache_get
UPDATE ai_response_cache SET hits = hits + 1
WHERE workspace_id = %(workspace_id)s AND input_hash = %(input_hash)s AND expires_at > now()
RETURNING output, model_provider, model_name, tokens_used, cost_exact_cents, created_at;

-- name: ai_cache_put
INSERT INTO ai_response_cache (workspace_id, input_hash, task_type, output, model_provider,
                               model_name, tokens_used, cost_exact_cents, expires_at)
VALUES (%(workspace_id)s, %(input_hash)s, %(task_type)s, %(output)s, %(model_provider)s,
        %(model_name)s, %(tokens_used)s, %(cost_exact_cents)s,
        now() + make_interval(secs => %(ttl)s))
ON CONFLICT (workspace_id, input_hash) DO UPDATE SET
    output = EXCLUDED.output,
    model_provider = EXCLUDED.model_provider,
    model_name = EXCLUDED.model_name,
    tokens_used = EXCLUDED.tokens_used,
    cost_exact_cents = EXCLUDED.cost_exact_cents,
    created_at = now(),
    expires_at = EXCLUDED.expires_at;

-- name: ai_cache_purge
DELETE FROM ai_response_cache WHERE expires_at <= now();

-- ---------------------------------------------------------------------------------------
-- Embeddings: ai_embeddings is the queue and the state. Times are clock_timestamp(), not
-- now(): a request made after a worker's claim must survive that worker's completion.
-- ---------------------------------------------------------------------------------------

-- name: embedding_schedule_contacts
INSERT INTO ai_embeddings (entity_type, entity_id, workspace_id, requested_at)
SELECT 'contact', c.id, c.workspace_id, clock_timestamp()
FROM contacts c WHERE c.id = ANY(%(ids)s::uuid[])
ON CONFLICT (entity_type, entity_id) DO UPDATE SET requested_at = EXCLUDED.requested_at
RETURNING entity_id;

-- name: embedding_schedule_companies
INSERT INTO ai_embeddings (entity_type, entity_id, workspace_id, requested_at)
SELECT 'company', c.id, c.workspace_id, clock_timestamp()
FROM companies c WHERE c.id = ANY(%(ids)s::uuid[])
ON CONFLICT (entity_type, entity_id) DO UPDATE SET requested_at = EXCLUDED.requested_at
RETURNING entity_id;

-- name: embedding_claim_many
UPDATE ai_embeddings e SET
    claimed_until = clock_timestamp() + make_interval(secs => %(lease)s),
    attempts = e.attempts + 1
FROM (
    SELECT entity_type, entity_id FROM ai_embeddings
    WHERE requested_at IS NOT NULL AND requested_at <= clock_timestamp()
      AND (claimed_until IS NULL OR claimed_until < clock_timestamp())
    ORDER BY requested_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
) pick
WHERE e.entity_type = pick.entity_type AND e.entity_id = pick.entity_id
RETURNING e.entity_type, e.entity_id, e.workspace_id, e.attempts, e.model_name,
          e.text_hash, clock_timestamp() AS claimed_at;

-- name: embedding_pending_count
SELECT count(*) FROM ai_embeddings WHERE requested_at IS NOT NULL;

-- name: embedding_source_contacts
SELECT c.id, c.first_name, c.last_name, c.email, c.title, c.department, c.company, c.city,
       c.state, c.country, c.website, (c.embedding IS NOT NULL) AS has_vector
FROM contacts c WHERE c.id = ANY(%(ids)s::uuid[]) AND c.deleted_at IS NULL;

-- name: embedding_source_companies
SELECT c.id, c.name, c.domain, c.website, c.industry, c.description, c.city, c.state,
       c.country, c.company_size, (c.embedding IS NOT NULL) AS has_vector
FROM companies c WHERE c.id = ANY(%(ids)s::uuid[]) AND c.deleted_at IS NULL;

-- name: embedding_write_contacts
UPDATE contacts c SET embedding = d.embedding
FROM unnest(%(ids)s::uuid[], %(vectors)s::vector[]) AS d(id, embedding)
WHERE c.id = d.id;

-- name: embedding_write_companies
UPDATE companies c SET embedding = d.embedding
FROM unnest(%(ids)s::uuid[], %(vectors)s::vector[]) AS d(id, embedding)
WHERE c.id = d.id;

-- name: embedding_done_many
-- Done: clear the request unless a newer one arrived after the claim.
UPDATE ai_embeddings e SET
    requested_at = CASE WHEN e.requested_at <= %(claimed_at)s THEN NULL ELSE e.requested_at END,
    claimed_until = NULL,
    attempts = 0,
    last_error = NULL,
    model_provider = %(provider)s,
    model_name = %(model)s,
    text_hash = d.text_hash,
    embedded_at = CASE WHEN d.wrote THEN clock_timestamp() ELSE e.embedded_at END
FROM unnest(%(types)s::text[], %(ids)s::uuid[], %(hashes)s::text[], %(wrote)s::boolean[])
     AS d(entity_type, entity_id, text_hash, wrote)
WHERE e.entity_type = d.entity_type AND e.entity_id = d.entity_id;

-- name: embedding_failed_many
-- A failed batch: retry after %(delay)s seconds, keeping a newer request if there is one.
UPDATE ai_embeddings e SET
    requested_at = CASE WHEN e.requested_at <= %(claimed_at)s
                        THEN clock_timestamp() + make_interval(secs => %(delay)s)
                        ELSE e.requested_at END,
    claimed_until = NULL,
    last_error = %(error)s
WHERE e.entity_type = ANY(%(types)s::text[]) AND e.entity_id = ANY(%(ids)s::uuid[]);

-- name: embedding_forget_many
DELETE FROM ai_embeddings
WHERE entity_type = %(entity_type)s AND entity_id = ANY(%(ids)s::uuid[]);

-- name: embedding_backfill_contacts
-- Every live contact without a vector, or whose vector came from another model.
INSERT INTO ai_embeddings (entity_type, entity_id, workspace_id, requested_at)
SELECT 'contact', c.id, c.workspace_id, clock_timestamp()
FROM contacts c
LEFT JOIN ai_embeddings e ON e.entity_type = 'contact' AND e.entity_id = c.id
WHERE c.deleted_at IS NULL
  AND (%(workspace_id)s::uuid IS NULL OR c.workspace_id = %(workspace_id)s::uuid)
  AND (c.embedding IS NULL OR e.model_name IS DISTINCT FROM %(model)s)
  AND (e.requested_at IS NULL)
ON CONFLICT (entity_type, entity_id) DO UPDATE SET requested_at = EXCLUDED.requested_at
RETURNING entity_id;

-- name: embedding_backfill_companies
INSERT INTO ai_embeddings (entity_type, entity_id, workspace_id, requested_at)
SELECT 'company', c.id, c.workspace_id, clock_timestamp()
FROM companies c
LEFT JOIN ai_embeddings e ON e.entity_type = 'company' AND e.entity_id = c.id
WHERE c.deleted_at IS NULL
  AND (%(workspace_id)s::uuid IS NULL OR c.workspace_id = %(workspace_id)s::uuid)
  AND (c.embedding IS NULL OR e.model_name IS DISTINCT FROM %(model)s)
  AND (e.requested_at IS NULL)
ON CONFLICT (entity_type, entity_id) DO UPDATE SET requested_at = EXCLUDED.requested_at
RETURNING entity_id;

-- name: embedding_model_for_workspace
SELECT provider, model_id, config FROM ai_models
WHERE status = 'active' AND type = 'embedding'
ORDER BY updated_at DESC NULLS LAST, created_at DESC NULLS LAST
LIMIT 1;

-- ---------------------------------------------------------------------------------------
-- Search: vector kNN and full-text, each ranked, fused with reciprocal rank fusion. The
-- full-text expressions are the spec's GIN index expressions, so those indexes serve them;
-- the ORDER BY embedding <=> $vector subqueries are served by the HNSW indexes.
-- ---------------------------------------------------------------------------------------

-- name: search_hybrid
WITH tsq AS (
    SELECT CASE WHEN q::text = '' THEN NULL ELSE replace(q::text, ' & ', ' | ')::tsquery END AS query
    FROM websearch_to_tsquery('english', %(text)s) AS q
),
vec AS (
    SELECT entity_type, id, distance, row_number() OVER (ORDER BY distance) AS rank
    FROM (
        (SELECT 'contact'::text AS entity_type, c.id, c.embedding <=> %(embedding)s::vector AS distance
         FROM contacts c
         WHERE 'contact' = ANY(%(entities)s::text[]) AND c.deleted_at IS NULL
           AND c.embedding IS NOT NULL
         ORDER BY c.embedding <=> %(embedding)s::vector
         LIMIT %(k)s)
        UNION ALL
        (SELECT 'company'::text, c.id, c.embedding <=> %(embedding)s::vector
         FROM companies c
         WHERE 'company' = ANY(%(entities)s::text[]) AND c.deleted_at IS NULL
           AND c.embedding IS NOT NULL
         ORDER BY c.embedding <=> %(embedding)s::vector
         LIMIT %(k)s)
    ) v
),
fts AS (
    SELECT entity_type, id, text_score, row_number() OVER (ORDER BY text_score DESC) AS rank
    FROM (
        (SELECT 'contact'::text AS entity_type, c.id,
                ts_rank_cd(to_tsvector('english',
                    coalesce(c.first_name, '') || ' ' ||
                    coalesce(c.last_name, '') || ' ' ||
                    coalesce(c.email, '') || ' ' ||
                    coalesce(c.company, '')), tsq.query) AS text_score
         FROM contacts c, tsq
         WHERE 'contact' = ANY(%(entities)s::text[]) AND tsq.query IS NOT NULL
           AND c.deleted_at IS NULL
           AND to_tsvector('english',
                    coalesce(c.first_name, '') || ' ' ||
                    coalesce(c.last_name, '') || ' ' ||
                    coalesce(c.email, '') || ' ' ||
                    coalesce(c.company, '')) @@ tsq.query
         ORDER BY 3 DESC
         LIMIT %(k)s)
        UNION ALL
        (SELECT 'company'::text, c.id,
                ts_rank_cd(to_tsvector('english',
                    coalesce(c.name, '') || ' ' ||
                    coalesce(c.domain, '') || ' ' ||
                    coalesce(c.description, '')), tsq.query)
         FROM companies c, tsq
         WHERE 'company' = ANY(%(entities)s::text[]) AND tsq.query IS NOT NULL
           AND c.deleted_at IS NULL
           AND to_tsvector('english',
                    coalesce(c.name, '') || ' ' ||
                    coalesce(c.domain, '') || ' ' ||
                    coalesce(c.description, '')) @@ tsq.query
         ORDER BY 3 DESC
         LIMIT %(k)s)
    ) f
)
SELECT COALESCE(v.entity_type, f.entity_type) AS entity_type,
       COALESCE(v.id, f.id) AS id,
       COALESCE(1.0 / (%(rrf_k)s + v.rank), 0) + COALESCE(1.0 / (%(rrf_k)s + f.rank), 0) AS score,
       v.distance, v.rank AS vector_rank, f.text_score, f.rank AS text_rank
FROM vec v
FULL JOIN fts f ON f.entity_type = v.entity_type AND f.id = v.id
ORDER BY score DESC, v.distance ASC NULLS LAST
LIMIT %(limit)s;

-- name: vector_index_state
SELECT (SELECT count(*) FROM contacts WHERE embedding IS NOT NULL) AS vectors,
       (SELECT rows_at_build FROM ai_vector_indexes WHERE index_name = %(index)s) AS rows_at_build;

-- name: vector_index_built
INSERT INTO ai_vector_indexes (index_name, rows_at_build, lists, built_at)
VALUES (%(index)s, %(rows)s, %(lists)s, now())
ON CONFLICT (index_name) DO UPDATE SET rows_at_build = EXCLUDED.rows_at_build,
                                       lists = EXCLUDED.lists,
                                       built_at = EXCLUDED.built_at;

-- name: vector_index_rows
-- Rows the index held at its last build / VACUUM / ANALYZE (-1: never counted), and its
-- options (lists=N when haste tuned them).
SELECT reltuples, reloptions FROM pg_class WHERE relname = %(index)s;

-- name: search_labels_contacts
SELECT id, trim(coalesce(first_name, '') || ' ' || coalesce(last_name, '')) AS name,
       email, company AS detail
FROM contacts WHERE id = ANY(%(ids)s::uuid[]);

-- name: search_labels_companies
SELECT id, name, domain AS email, industry AS detail
FROM companies WHERE id = ANY(%(ids)s::uuid[]);

-- ---------------------------------------------------------------------------------------
-- Write-back of validated outputs (workers/ai_writeback.py). The columns each one sets are
-- engine/cycles.py's AI_WRITES (a test keeps them equal).
-- ---------------------------------------------------------------------------------------

-- name: writeback_contact_lead_scoring
UPDATE contacts SET
    score = %(score)s,
    ai_insights = COALESCE(ai_insights, '{}'::jsonb) || jsonb_build_object('lead_scoring', %(output)s::jsonb),
    updated_at = now()
WHERE id = %(id)s AND deleted_at IS NULL
RETURNING id;

-- name: writeback_deal_lead_scoring
UPDATE deals SET
    ai_score = %(score)s,
    ai_insights = COALESCE(ai_insights, '{}'::jsonb) || jsonb_build_object('lead_scoring', %(output)s::jsonb),
    ai_predicted_close_date = %(predicted_close_date)s::date,
    updated_at = now()
WHERE id = %(id)s AND deleted_at IS NULL
RETURNING id;

-- name: writeback_contact_enrichment
UPDATE contacts SET
    enrichment_data = COALESCE(enrichment_data, '{}'::jsonb) || jsonb_build_object('ai', %(output)s::jsonb),
    enrichment_updated_at = now(),
    updated_at = now()
WHERE id = %(id)s AND deleted_at IS NULL
RETURNING id;

-- name: writeback_email_sentiment
UPDATE emails SET
    sentiment = %(sentiment)s,
    ai_analysis = COALESCE(ai_analysis, '{}'::jsonb) || jsonb_build_object('sentiment', %(output)s::jsonb),
    updated_at = now()
WHERE id = %(id)s AND deleted_at IS NULL
RETURNING id;

-- name: writeback_email_classification
UPDATE emails SET
    category = %(category)s,
    priority = %(priority)s,
    ai_analysis = COALESCE(ai_analysis, '{}'::jsonb) || jsonb_build_object('classification', %(output)s::jsonb),
    updated_at = now()
WHERE id = %(id)s AND deleted_at IS NULL
RETURNING id;

-- name: writeback_email_entities
UPDATE emails SET
    ai_analysis = COALESCE(ai_analysis, '{}'::jsonb) || jsonb_build_object('entities', %(entities)s::jsonb),
    updated_at = now()
WHERE id = %(id)s AND deleted_at IS NULL
RETURNING id;

-- name: writeback_note_target
-- Where a summary of a record goes as a note: the record itself (contact, company, deal),
-- or, for an email, its contact, else its deal. With the owner, as the note's author.
SELECT 'contact' AS entity, id, owner_id FROM contacts
 WHERE %(entity)s = 'contact' AND id = %(id)s AND deleted_at IS NULL
UNION ALL
SELECT 'company', id, owner_id FROM companies
 WHERE %(entity)s = 'company' AND id = %(id)s AND deleted_at IS NULL
UNION ALL
SELECT 'deal', id, owner_id FROM deals
 WHERE %(entity)s = 'deal' AND id = %(id)s AND deleted_at IS NULL
UNION ALL
SELECT * FROM (
    SELECT CASE WHEN c.id IS NOT NULL THEN 'contact' ELSE 'deal' END, COALESCE(c.id, d.id),
           COALESCE(c.owner_id, d.owner_id)
    FROM emails e
    LEFT JOIN contacts c ON c.id = e.contact_id AND c.deleted_at IS NULL
    LEFT JOIN deals d ON d.id = e.deal_id AND d.deleted_at IS NULL
    WHERE %(entity)s = 'email' AND e.id = %(id)s AND e.deleted_at IS NULL
      AND (c.id IS NOT NULL OR d.id IS NOT NULL)
) email_target
LIMIT 1;
