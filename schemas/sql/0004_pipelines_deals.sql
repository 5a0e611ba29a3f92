-- Pipelines, stages, deals and deal history. Created before notes/emails/activities/tasks, which reference deals.
-- Source: docs/crm-schema.md, section "Pipeline & Deals".
-- Deviations from the spec are listed in docs/schema-changes.md.

-- Pipelines
CREATE TABLE pipelines (
    id UUID PRIMARY KEY DEFAULT uuid_generate_v4(),
    workspace_id UUID NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    
    name VARCHAR(255) NOT NULL,
    type VARCHAR(50) NOT NULL DEFAULT 'sales',
    description TEXT,
    
    -- Settings
    currency VARCHAR(3) DEFAULT 'USD',
    probability_enabled BOOLEAN DEFAULT TRUE,
    rotting_enabled BOOLEAN DEFAULT TRUE,
    rotting_days INTEGER DEFAULT 30,
    
    -- Permissions
    visibility VARCHAR(50) DEFAULT 'everyone',
    
    created_by UUID REFERENCES users(id),
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW(),
    deleted_at TIMESTAMPTZ,
    
    CONSTRAINT valid_type CHECK (type IN ('sales', 'recruitment', 'investor', 'vendor', 'custom'))
);

CREATE INDEX idx_pipelines_workspace ON pipelines(workspace_id);

-- Pipeline stages
CREATE TABLE pipeline_stages (
    id UUID PRIMARY KEY DEFAULT uuid_generate_v4(),
    pipeline_id UUID NOT NULL REFERENCES pipelines(id) ON DELETE CASCADE,
    
    name VARCHAR(255) NOT NULL,
    order_index INTEGER NOT NULL,
    probability DECIMAL(5,2) DEFAULT 0,
    
    -- Visual
    color VARCHAR(7) DEFAULT '#808080',
    
    -- Automation
    automation_rules JSONB DEFAULT '{}',
    
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW(),
    
    CONSTRAINT unique_stage_order UNIQUE (pipeline_id, order_index)
);

CREATE INDEX idx_pipeline_stages_pipeline ON pipeline_stages(pipeline_id);

-- Deals
CREATE TABLE deals (
    id UUID PRIMARY KEY DEFAULT uuid_generate_v4(),
    workspace_id UUID NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    
    -- Basic info
    title VARCHAR(255) NOT NULL,
    value DECIMAL(15,2),
    currency VARCHAR(3) DEFAULT 'USD',
    
    -- Pipeline position
    pipeline_id UUID NOT NULL REFERENCES pipelines(id),
    stage_id UUID NOT NULL REFERENCES pipeline_stages(id),
    
    -- Relationships
    contact_id UUID REFERENCES contacts(id),
    company_id UUID REFERENCES companies(id),
    owner_id UUID NOT NULL REFERENCES users(id),
    
    -- Deal details
    probability DECIMAL(5,2),
    expected_close_date DATE,
    actual_close_date DATE,
    
    -- Status
    status VARCHAR(50) DEFAULT 'open',
    won_reason TEXT,
    lost_reason TEXT,
    
    -- Tracking
    stage_entered_at TIMESTAMPTZ DEFAULT NOW(),
    last_activity_at TIMESTAMPTZ,
    rotting_days INTEGER DEFAULT 0,
    
    -- AI predictions
    ai_score DECIMAL(5,2),
    ai_insights JSONB DEFAULT '{}',
    ai_predicted_close_date DATE,
    
    -- Custom fields
    custom_fields JSONB DEFAULT '{}',
    
    created_by UUID REFERENCES users(id),
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW(),
    deleted_at TIMESTAMPTZ,
    
    CONSTRAINT valid_status CHECK (status IN ('open', 'won', 'lost'))
);

-- Indexes
CREATE INDEX idx_deals_workspace ON deals(workspace_id);
CREATE INDEX idx_deals_pipeline ON deals(pipeline_id);
CREATE INDEX idx_deals_stage ON deals(stage_id);
CREATE INDEX idx_deals_contact ON deals(contact_id);
CREATE INDEX idx_deals_owner ON deals(owner_id);
CREATE INDEX idx_deals_status ON deals(status);
CREATE INDEX idx_deals_expected_close ON deals(expected_close_date);
CREATE INDEX idx_deals_value ON deals(workspace_id, value DESC);

-- Deal history (audit trail)
CREATE TABLE deal_history (
    id UUID PRIMARY KEY DEFAULT uuid_generate_v4(),
    deal_id UUID NOT NULL REFERENCES deals(id) ON DELETE CASCADE,
    
    field_name VARCHAR(100) NOT NULL,
    old_value TEXT,
    new_value TEXT,
    
    changed_by UUID NOT NULL REFERENCES users(id),
    changed_at TIMESTAMPTZ DEFAULT NOW()
);

CREATE INDEX idx_deal_history_deal ON deal_history(deal_id);
CREATE INDEX idx_deal_history_changed_at ON deal_history(changed_at DESC);
