-- Activities (partitioned by month) and tasks.
-- Source: docs/crm-schema.md, sections "Activities & Tasks" and "Data Partitioning".
-- Deviations from the spec are listed in docs/schema-changes.md.

-- Activities (unified activity stream)
-- Partitioned by month on occurred_at. A partitioned table's primary key must
-- contain the partition key, hence PRIMARY KEY (id, occurred_at) instead of
-- "id UUID PRIMARY KEY"; this also makes occurred_at NOT NULL.
CREATE TABLE activities (
    id UUID DEFAULT uuid_generate_v4(),
    workspace_id UUID NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    
    -- Activity info
    type VARCHAR(50) NOT NULL,
    title VARCHAR(255) NOT NULL,
    description TEXT,
    
    -- Relationships (polymorphic)
    entity_type VARCHAR(50) NOT NULL,
    entity_id UUID NOT NULL,
    
    -- Specific relationships
    contact_id UUID REFERENCES contacts(id),
    deal_id UUID REFERENCES deals(id),
    company_id UUID REFERENCES companies(id),
    
    -- User info
    user_id UUID REFERENCES users(id),
    
    -- Metadata
    metadata JSONB DEFAULT '{}',
    
    -- Timestamps
    occurred_at TIMESTAMPTZ DEFAULT NOW(),
    created_at TIMESTAMPTZ DEFAULT NOW(),
    
    CONSTRAINT valid_type CHECK (type IN (
        'email_sent', 'email_received', 'email_opened', 'email_clicked',
        'meeting_held', 'meeting_scheduled', 'call_made', 'call_received',
        'note_added', 'task_created', 'task_completed',
        'deal_created', 'deal_updated', 'deal_won', 'deal_lost',
        'contact_created', 'contact_updated',
        'custom'
    )),
    CONSTRAINT valid_entity_type CHECK (entity_type IN ('contact', 'deal', 'company', 'email', 'task')),

    CONSTRAINT activities_pkey PRIMARY KEY (id, occurred_at)
) PARTITION BY RANGE (occurred_at);

-- Indexes
CREATE INDEX idx_activities_workspace ON activities(workspace_id);
CREATE INDEX idx_activities_entity ON activities(entity_type, entity_id);
CREATE INDEX idx_activities_contact ON activities(contact_id);
CREATE INDEX idx_activities_deal ON activities(deal_id);
CREATE INDEX idx_activities_user ON activities(user_id);
CREATE INDEX idx_activities_occurred ON activities(workspace_id, occurred_at DESC);
CREATE INDEX idx_activities_type ON activities(workspace_id, type);

-- Partitions (spec section "Data Partitioning").
-- Rows whose month has no partition yet land here instead of failing the INSERT.
CREATE TABLE activities_default PARTITION OF activities DEFAULT;

-- Partition activities by month
CREATE TABLE activities_2024_01 PARTITION OF activities
    FOR VALUES FROM ('2024-01-01') TO ('2024-02-01');

CREATE TABLE activities_2024_02 PARTITION OF activities
    FOR VALUES FROM ('2024-02-01') TO ('2024-03-01');

-- Creates (IF NOT EXISTS) the partition activities_YYYY_MM for the month that
-- contains p_month. The engine's scheduler calls it for months ahead.
-- If activities_default already holds rows of that month, a plain
-- CREATE ... PARTITION OF would fail, so those rows are moved into the new
-- table before it is attached.
-- Every partition gets RLS enabled (no policy) and no privileges for
-- haste_app: tenant code must go through "activities", whose policy applies;
-- a direct read of a partition would bypass it.
CREATE OR REPLACE FUNCTION create_monthly_partition(p_month date)
RETURNS void AS $$
DECLARE
    start_date date;
    end_date date;
    partition_name text;
    default_has_rows boolean := false;
BEGIN
    IF p_month IS NULL THEN
        RAISE EXCEPTION 'create_monthly_partition: p_month must not be NULL';
    END IF;

    start_date := date_trunc('month', p_month);
    end_date := start_date + interval '1 month';
    partition_name := 'activities_' || to_char(start_date, 'YYYY_MM');

    IF to_regclass(quote_ident(partition_name)) IS NOT NULL THEN
        RETURN;
    END IF;

    IF to_regclass('activities_default') IS NOT NULL THEN
        EXECUTE 'SELECT EXISTS (SELECT 1 FROM activities_default'
             || ' WHERE occurred_at >= $1 AND occurred_at < $2)'
           INTO default_has_rows
          USING start_date, end_date;
    END IF;

    IF default_has_rows THEN
        EXECUTE format('CREATE TABLE %I (LIKE activities INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
            partition_name);
        EXECUTE format('WITH moved AS (DELETE FROM activities_default'
                    || ' WHERE occurred_at >= %L AND occurred_at < %L RETURNING *)'
                    || ' INSERT INTO %I SELECT * FROM moved',
            start_date, end_date, partition_name);
        EXECUTE format('ALTER TABLE activities ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
            partition_name, start_date, end_date);
    ELSE
        EXECUTE format('CREATE TABLE IF NOT EXISTS %I PARTITION OF activities FOR VALUES FROM (%L) TO (%L)',
            partition_name, start_date, end_date);
    END IF;

    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', partition_name);
    EXECUTE format('REVOKE ALL ON TABLE %I FROM haste_app', partition_name);
END;
$$ LANGUAGE plpgsql;

-- Automated partition creation (spec): the partition of the current month.
-- Same behaviour as the spec's body, delegated to the overload above so both
-- share the default-partition and privilege handling.
CREATE OR REPLACE FUNCTION create_monthly_partition()
RETURNS void AS $$
BEGIN
    PERFORM create_monthly_partition(CURRENT_DATE);
END;
$$ LANGUAGE plpgsql;

-- The spec's pg_cron job ('create-partitions', '0 0 1 * *') is not created
-- here: the engine's scheduler owns it. Current and next month now:
DO $$
BEGIN
    PERFORM create_monthly_partition(CURRENT_DATE);
    PERFORM create_monthly_partition((CURRENT_DATE + interval '1 month')::date);
END
$$;

-- Tasks
CREATE TABLE tasks (
    id UUID PRIMARY KEY DEFAULT uuid_generate_v4(),
    workspace_id UUID NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    
    -- Task info
    title VARCHAR(255) NOT NULL,
    description TEXT,
    type VARCHAR(50) DEFAULT 'task',
    priority VARCHAR(20) DEFAULT 'medium',
    
    -- Relationships
    contact_id UUID REFERENCES contacts(id),
    deal_id UUID REFERENCES deals(id),
    company_id UUID REFERENCES companies(id),
    
    -- Assignment
    assigned_to UUID NOT NULL REFERENCES users(id),
    assigned_by UUID REFERENCES users(id),
    
    -- Scheduling
    due_date DATE,
    due_time TIME,
    reminder_minutes INTEGER,
    
    -- Status
    status VARCHAR(50) DEFAULT 'pending',
    completed_at TIMESTAMPTZ,
    completed_by UUID REFERENCES users(id),
    
    -- Recurrence
    recurrence_rule JSONB,
    recurrence_parent_id UUID REFERENCES tasks(id),
    
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW(),
    deleted_at TIMESTAMPTZ,
    
    CONSTRAINT valid_type CHECK (type IN ('task', 'call', 'email', 'meeting')),
    CONSTRAINT valid_priority CHECK (priority IN ('low', 'medium', 'high', 'urgent')),
    CONSTRAINT valid_status CHECK (status IN ('pending', 'in_progress', 'completed', 'cancelled'))
);

-- Indexes
CREATE INDEX idx_tasks_workspace ON tasks(workspace_id);
CREATE INDEX idx_tasks_assigned_to ON tasks(assigned_to);
CREATE INDEX idx_tasks_contact ON tasks(contact_id);
CREATE INDEX idx_tasks_deal ON tasks(deal_id);
CREATE INDEX idx_tasks_due_date ON tasks(due_date);
CREATE INDEX idx_tasks_status ON tasks(status);
