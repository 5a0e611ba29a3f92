-- Materialized view contact_engagement_scores and get_contact_details().
-- Source: docs/crm-schema.md, sections "Materialized Views" and
-- "Query Optimization Functions". Deviations: docs/schema-changes.md.

-- Contact engagement scores
CREATE MATERIALIZED VIEW contact_engagement_scores AS
SELECT 
    c.id,
    c.workspace_id,
    COUNT(DISTINCT e.id) as email_count,
    COUNT(DISTINCT CASE WHEN et.event_type = 'open' THEN et.id END) as email_opens,
    COUNT(DISTINCT CASE WHEN et.event_type = 'click' THEN et.id END) as email_clicks,
    COUNT(DISTINCT a.id) as activity_count,
    MAX(a.occurred_at) as last_activity_at,
    
    -- Calculate engagement score
    (
        COUNT(DISTINCT CASE WHEN et.event_type = 'open' THEN et.id END) * 1 +
        COUNT(DISTINCT CASE WHEN et.event_type = 'click' THEN et.id END) * 3 +
        COUNT(DISTINCT CASE WHEN a.type = 'meeting_held' THEN a.id END) * 10 +
        COUNT(DISTINCT CASE WHEN a.type = 'email_received' THEN a.id END) * 5
    ) as engagement_score
    
FROM contacts c
LEFT JOIN emails e ON c.id = e.contact_id
LEFT JOIN email_tracking_events et ON e.id = et.email_id
LEFT JOIN activities a ON c.id = a.contact_id
WHERE c.deleted_at IS NULL
GROUP BY c.id, c.workspace_id;

CREATE INDEX idx_engagement_scores_workspace ON contact_engagement_scores(workspace_id);
CREATE INDEX idx_engagement_scores_score ON contact_engagement_scores(workspace_id, engagement_score DESC);


-- Not in the spec: REFRESH MATERIALIZED VIEW CONCURRENTLY needs a unique
-- index without WHERE clause on the view. The spec's hourly pg_cron refresh
-- is not created here: the engine's scheduler owns it.
CREATE UNIQUE INDEX idx_engagement_scores_id ON contact_engagement_scores(id);

-- Not in the spec: a materialized view cannot carry row-level security, and
-- it holds every workspace's rows. haste_app gets no privilege on it (see
-- 0011) and reads this workspace-filtered view instead. The view runs with
-- its owner's rights; security_barrier keeps caller-supplied predicates from
-- being evaluated before the workspace filter.
CREATE VIEW tenant_contact_engagement_scores WITH (security_barrier = true) AS
SELECT *
FROM contact_engagement_scores
WHERE workspace_id = NULLIF(current_setting('app.workspace_id', true), '')::uuid;

-- Function to get contact with all related data
CREATE OR REPLACE FUNCTION get_contact_details(p_contact_id UUID)
RETURNS JSON AS $$
BEGIN
    RETURN json_build_object(
        'contact', (SELECT row_to_json(c.*) FROM contacts c WHERE c.id = p_contact_id),
        'recent_emails', (
            SELECT json_agg(row_to_json(e.*))
            FROM (
                SELECT * FROM emails 
                WHERE contact_id = p_contact_id 
                ORDER BY received_at DESC 
                LIMIT 10
            ) e
        ),
        'activities', (
            SELECT json_agg(row_to_json(a.*))
            FROM (
                SELECT * FROM activities 
                WHERE contact_id = p_contact_id 
                ORDER BY occurred_at DESC 
                LIMIT 20
            ) a
        ),
        'deals', (
            SELECT json_agg(row_to_json(d.*))
            FROM deals d 
            WHERE d.contact_id = p_contact_id
        ),
        'tags', (
            SELECT json_agg(t.name)
            FROM tags t
            JOIN contact_tags ct ON t.id = ct.tag_id
            WHERE ct.contact_id = p_contact_id
        )
    );
END;
$$ LANGUAGE plpgsql;
