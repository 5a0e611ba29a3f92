-- AI models, automations, automation executions and AI tasks.
-- Source: docs/crm-schema.md, section "AI & Automation".
-- Deviations from the spec are listed in docs/schema-changes.md.

-- AI models and configurations
CREATE TABLE ai_models (
    id UUID PRIMARY KEY DEFAULT uuid_generate_v4(),
    workspace_id UUID NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    
    name VARCHAR(255) NOT NULL,
    type VARCHAR(50) NOT NULL,
    provider VARCHAR(50) NOT NULL,
    model_id VARCHAR(255),
    
    -- Configuration
    config JSONB DEFAULT '{}',
    
    -- Performance metrics
    metrics JSONB DEFAULT '{}',
    
    -- Status
    status VARCHAR(50) DEFAULT 'active',
    
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW(),
    
    CONSTRAINT valid_type CHECK (type IN ('classification', 'generation', 'embedding', 'analysis')),
    CONSTRAINT valid_provider CHECK (provider IN ('openai', 'anthropic', 'perplexity', 'custom'))
);

-- Automations
CREATE TABLE automations (
    id UUID PRIMARY KEY DEFAULT uuid_generate_v4(),
    workspace_id UUID NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    
    name VARCHAR(255) NOT NULL,
    description TEXT,
    category VARCHAR(50),
    
    -- Trigger configuration
    trigger_type VARCHAR(50) NOT NULL,
    trigger_config JSONB NOT NULL,
    
    -- Conditions
    conditions JSONB DEFAULT '[]',
    
    -- Actions
    actions JSONB NOT NULL,
    
    -- Settings
    enabled BOOLEAN DEFAULT TRUE,
    run_once BOOLEAN DEFAULT FALSE,
    
    -- Error handling
    on_error VARCHAR(50) DEFAULT 'stop',
    max_retries INTEGER DEFAULT 3,
    
    -- Execution stats
    last_run_at TIMESTAMPTZ,
    next_run_at TIMESTAMPTZ,
    run_count INTEGER DEFAULT 0,
    success_count INTEGER DEFAULT 0,
    error_count INTEGER DEFAULT 0,
    
    created_by UUID REFERENCES users(id),
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW(),
    deleted_at TIMESTAMPTZ,
    
    CONSTRAINT valid_trigger_type CHECK (trigger_type IN (
        'contact_created', 'contact_updated', 'contact_tagged',
        'email_received', 'email_opened', 'email_clicked',
        'deal_created', 'deal_stage_changed', 'deal_won', 'deal_lost',
        'time_based', 'webhook', 'manual'
    ))
);

CREATE INDEX idx_automations_workspace ON automations(workspace_id);
CREATE INDEX idx_automations_enabled ON automations(enabled);
CREATE INDEX idx_automations_trigger ON automations(trigger_type);

-- Automation executions (audit log)
CREATE TABLE automation_executions (
    id UUID PRIMARY KEY DEFAULT uuid_generate_v4(),
    automation_id UUID NOT NULL REFERENCES automations(id) ON DELETE CASCADE,
    
    -- Trigger info
    triggered_by VARCHAR(50),
    trigger_entity_type VARCHAR(50),
    trigger_entity_id UUID,
    
    -- Execution details
    status VARCHAR(50) NOT NULL,
    started_at TIMESTAMPTZ DEFAULT NOW(),
    completed_at TIMESTAMPTZ,
    
    -- Results
    actions_executed JSONB DEFAULT '[]',
    error_message TEXT,
    error_details JSONB,
    
    -- Metrics
    duration_ms INTEGER,
    
    CONSTRAINT valid_status CHECK (status IN ('running', 'completed', 'failed', 'cancelled'))
);

CREATE INDEX idx_automation_executions_automation ON automation_executions(automation_id);
CREATE INDEX idx_automation_executions_started ON automation_executions(started_at DESC);

-- AI tasks
CREATE TABLE ai_tasks (
    id UUID PRIMARY KEY DEFAULT uuid_generate_v4(),
    workspace_id UUID NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    
    type VARCHAR(50) NOT NULL,
    status VARCHAR(50) DEFAULT 'pending',
    
    -- Input/Output
    input JSONB NOT NULL,
    output JSONB,
    
    -- Model info
    model_provider VARCHAR(50),
    model_name VARCHAR(100),
    
    -- Metrics
    tokens_used INTEGER,
    cost_cents INTEGER,
    duration_ms INTEGER,
    
    -- Error handling
    error_message TEXT,
    retry_count INTEGER DEFAULT 0,
    
    -- User context
    user_id UUID REFERENCES users(id),
    
    created_at TIMESTAMPTZ DEFAULT NOW(),
    started_at TIMESTAMPTZ,
    completed_at TIMESTAMPTZ,
    
    CONSTRAINT valid_type CHECK (type IN (
        'email_generation', 'email_reply', 'summarization',
        'sentiment_analysis', 'entity_extraction', 'classification',
        'contact_enrichment', 'lead_scoring', 'meeting_summary'
    )),
    CONSTRAINT valid_status CHECK (status IN ('pending', 'processing', 'completed', 'failed', 'cancelled'))
);

CREATE INDEX idx_ai_tasks_workspace ON ai_tasks(workspace_id);
CREATE INDEX idx_ai_tasks_status ON ai_tasks(status);
CREATE INDEX idx_ai_tasks_created ON ai_tasks(created_at DESC);
