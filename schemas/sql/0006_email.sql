-- Email accounts, emails, attachments and tracking events.
-- Source: docs/crm-schema.md, section "Email System".
-- Deviations from the spec are listed in docs/schema-changes.md.

-- Email accounts (for sending)
CREATE TABLE email_accounts (
    id UUID PRIMARY KEY DEFAULT uuid_generate_v4(),
    workspace_id UUID NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    user_id UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    
    -- Account info
    email VARCHAR(255) NOT NULL,
    display_name VARCHAR(255),
    provider VARCHAR(50) NOT NULL,
    
    -- OAuth tokens
    access_token TEXT,
    refresh_token TEXT,
    token_expires_at TIMESTAMPTZ,
    
    -- Gmail specific
    gmail_history_id VARCHAR(255),
    gmail_sync_token TEXT,
    
    -- Settings
    is_primary BOOLEAN DEFAULT FALSE,
    sync_enabled BOOLEAN DEFAULT TRUE,
    signature TEXT,
    
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW(),
    deleted_at TIMESTAMPTZ,
    
    CONSTRAINT valid_provider CHECK (provider IN ('gmail', 'outlook', 'smtp'))
);

CREATE INDEX idx_email_accounts_workspace ON email_accounts(workspace_id);
CREATE INDEX idx_email_accounts_user ON email_accounts(user_id);

-- Emails
CREATE TABLE emails (
    id UUID PRIMARY KEY DEFAULT uuid_generate_v4(),
    workspace_id UUID NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    
    -- Email identifiers
    message_id VARCHAR(255) NOT NULL,
    thread_id VARCHAR(255),
    in_reply_to VARCHAR(255),
    "references" TEXT[], -- quoted: REFERENCES is a reserved word
    
    -- Headers
    subject TEXT,
    from_email VARCHAR(255) NOT NULL,
    from_name VARCHAR(255),
    to_emails TEXT[] NOT NULL,
    cc_emails TEXT[],
    bcc_emails TEXT[],
    reply_to VARCHAR(255),
    
    -- Content
    body_html TEXT,
    body_text TEXT,
    snippet TEXT,
    
    -- Metadata
    folder VARCHAR(50) DEFAULT 'inbox',
    labels TEXT[],
    is_read BOOLEAN DEFAULT FALSE,
    is_starred BOOLEAN DEFAULT FALSE,
    is_important BOOLEAN DEFAULT FALSE,
    is_draft BOOLEAN DEFAULT FALSE,
    is_sent BOOLEAN DEFAULT FALSE,
    
    -- Tracking
    tracking_id UUID,
    track_opens BOOLEAN DEFAULT FALSE,
    track_clicks BOOLEAN DEFAULT FALSE,
    
    -- Relationships
    email_account_id UUID REFERENCES email_accounts(id),
    contact_id UUID REFERENCES contacts(id),
    deal_id UUID REFERENCES deals(id),
    
    -- AI analysis
    ai_analysis JSONB DEFAULT '{}',
    sentiment VARCHAR(20),
    category VARCHAR(50),
    priority VARCHAR(20),
    
    -- Timestamps
    sent_at TIMESTAMPTZ,
    received_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW(),
    deleted_at TIMESTAMPTZ,
    
    CONSTRAINT unique_message_id UNIQUE (workspace_id, message_id)
);

-- Indexes
CREATE INDEX idx_emails_workspace ON emails(workspace_id);
CREATE INDEX idx_emails_thread ON emails(workspace_id, thread_id);
CREATE INDEX idx_emails_contact ON emails(workspace_id, contact_id);
CREATE INDEX idx_emails_received_at ON emails(workspace_id, received_at DESC);
CREATE INDEX idx_emails_from ON emails(workspace_id, from_email);
CREATE INDEX idx_emails_folder ON emails(workspace_id, folder);

-- Full-text search
CREATE INDEX idx_emails_search ON emails USING gin(
    to_tsvector('english', 
        coalesce(subject, '') || ' ' || 
        coalesce(body_text, '')
    )
);

-- Email attachments
CREATE TABLE email_attachments (
    id UUID PRIMARY KEY DEFAULT uuid_generate_v4(),
    email_id UUID NOT NULL REFERENCES emails(id) ON DELETE CASCADE,
    
    filename VARCHAR(255) NOT NULL,
    content_type VARCHAR(100),
    size INTEGER,
    storage_url TEXT NOT NULL,
    
    -- Security
    virus_scanned BOOLEAN DEFAULT FALSE,
    virus_scan_result JSONB,
    
    created_at TIMESTAMPTZ DEFAULT NOW()
);

CREATE INDEX idx_email_attachments_email ON email_attachments(email_id);

-- Email tracking events
CREATE TABLE email_tracking_events (
    id UUID PRIMARY KEY DEFAULT uuid_generate_v4(),
    email_id UUID NOT NULL REFERENCES emails(id) ON DELETE CASCADE,
    
    event_type VARCHAR(50) NOT NULL,
    
    -- Event data
    ip_address INET,
    user_agent TEXT,
    referer TEXT,
    
    -- Click tracking
    link_url TEXT,
    link_position INTEGER,
    
    -- Location (from IP)
    country VARCHAR(2),
    city VARCHAR(100),
    
    occurred_at TIMESTAMPTZ DEFAULT NOW(),
    
    CONSTRAINT valid_event_type CHECK (event_type IN ('open', 'click', 'bounce', 'complaint', 'unsubscribe'))
);

CREATE INDEX idx_tracking_events_email ON email_tracking_events(email_id);
CREATE INDEX idx_tracking_events_occurred ON email_tracking_events(occurred_at DESC);
