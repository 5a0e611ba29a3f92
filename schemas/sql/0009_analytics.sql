-- Custom field definitions, saved views and reports.
-- Source: docs/crm-schema.md, section "Analytics & Reporting".
-- Deviations from the spec are listed in docs/schema-changes.md.

-- Custom fields definitions
CREATE TABLE custom_field_definitions (
    id UUID PRIMARY KEY DEFAULT uuid_generate_v4(),
    workspace_id UUID NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    
    object_type VARCHAR(50) NOT NULL,
    field_name VARCHAR(100) NOT NULL,
    field_type VARCHAR(50) NOT NULL,
    
    -- Display
    label VARCHAR(255) NOT NULL,
    description TEXT,
    placeholder TEXT,
    
    -- Validation
    required BOOLEAN DEFAULT FALSE,
    validation_rules JSONB DEFAULT '{}',
    
    -- Options (for select/multiselect)
    options JSONB,
    
    -- Settings
    is_active BOOLEAN DEFAULT TRUE,
    order_index INTEGER DEFAULT 0,
    
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW(),
    
    CONSTRAINT valid_object_type CHECK (object_type IN ('contact', 'company', 'deal')),
    CONSTRAINT valid_field_type CHECK (field_type IN ('text', 'number', 'date', 'datetime', 'boolean', 'select', 'multiselect', 'url', 'email', 'phone')),
    CONSTRAINT unique_field_name UNIQUE (workspace_id, object_type, field_name)
);

CREATE INDEX idx_custom_fields_workspace ON custom_field_definitions(workspace_id, object_type);

-- Saved views/filters
CREATE TABLE saved_views (
    id UUID PRIMARY KEY DEFAULT uuid_generate_v4(),
    workspace_id UUID NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    
    name VARCHAR(255) NOT NULL,
    object_type VARCHAR(50) NOT NULL,
    
    -- View configuration
    filters JSONB NOT NULL,
    columns JSONB,
    sort_by VARCHAR(100),
    sort_order VARCHAR(4) DEFAULT 'ASC',
    
    -- Sharing
    visibility VARCHAR(50) DEFAULT 'private',
    created_by UUID NOT NULL REFERENCES users(id),
    
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW(),
    
    CONSTRAINT valid_visibility CHECK (visibility IN ('private', 'workspace'))
);

CREATE INDEX idx_saved_views_workspace ON saved_views(workspace_id, object_type);
CREATE INDEX idx_saved_views_user ON saved_views(created_by);

-- Reports
CREATE TABLE reports (
    id UUID PRIMARY KEY DEFAULT uuid_generate_v4(),
    workspace_id UUID NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    
    name VARCHAR(255) NOT NULL,
    type VARCHAR(50) NOT NULL,
    description TEXT,
    
    -- Report configuration
    config JSONB NOT NULL,
    
    -- Scheduling
    schedule_enabled BOOLEAN DEFAULT FALSE,
    schedule_cron VARCHAR(100),
    schedule_timezone VARCHAR(50) DEFAULT 'UTC',
    
    -- Distribution
    recipients JSONB DEFAULT '[]',
    
    -- Cache
    last_generated_at TIMESTAMPTZ,
    cached_data JSONB,
    
    created_by UUID NOT NULL REFERENCES users(id),
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW(),
    
    CONSTRAINT valid_type CHECK (type IN ('pipeline', 'activity', 'email', 'revenue', 'custom'))
);

CREATE INDEX idx_reports_workspace ON reports(workspace_id);
