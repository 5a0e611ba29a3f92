-- Notes and comments.
-- Source: docs/crm-schema.md, section "Notes & Comments".
-- Deviations from the spec are listed in docs/schema-changes.md.

-- Notes
CREATE TABLE notes (
    id UUID PRIMARY KEY DEFAULT uuid_generate_v4(),
    workspace_id UUID NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    
    -- Content
    content TEXT NOT NULL,
    content_html TEXT,
    
    -- Relationships (polymorphic)
    entity_type VARCHAR(50) NOT NULL,
    entity_id UUID NOT NULL,
    
    -- Specific relationships for indexing
    contact_id UUID REFERENCES contacts(id),
    company_id UUID REFERENCES companies(id),
    deal_id UUID REFERENCES deals(id),
    
    -- Metadata
    is_pinned BOOLEAN DEFAULT FALSE,
    mentions UUID[], -- User IDs mentioned
    
    created_by UUID NOT NULL REFERENCES users(id),
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW(),
    deleted_at TIMESTAMPTZ,
    
    CONSTRAINT valid_entity_type CHECK (entity_type IN ('contact', 'company', 'deal', 'task'))
);

-- Indexes
CREATE INDEX idx_notes_workspace ON notes(workspace_id);
CREATE INDEX idx_notes_entity ON notes(entity_type, entity_id);
CREATE INDEX idx_notes_contact ON notes(contact_id);
CREATE INDEX idx_notes_company ON notes(company_id);
CREATE INDEX idx_notes_deal ON notes(deal_id);
CREATE INDEX idx_notes_created_by ON notes(created_by);
CREATE INDEX idx_notes_created_at ON notes(created_at DESC);

-- Full-text search
CREATE INDEX idx_notes_search ON notes USING gin(
    to_tsvector('english', content)
);

-- Comments (for collaboration)
CREATE TABLE comments (
    id UUID PRIMARY KEY DEFAULT uuid_generate_v4(),
    
    -- Parent entity (polymorphic)
    entity_type VARCHAR(50) NOT NULL,
    entity_id UUID NOT NULL,
    
    -- Content
    content TEXT NOT NULL,
    
    -- Threading
    parent_comment_id UUID REFERENCES comments(id),
    
    -- Metadata
    mentions UUID[], -- User IDs mentioned
    reactions JSONB DEFAULT '{}', -- {"👍": [user_ids], "❤️": [user_ids]}
    
    created_by UUID NOT NULL REFERENCES users(id),
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW(),
    deleted_at TIMESTAMPTZ,
    
    CONSTRAINT valid_entity_type CHECK (entity_type IN ('note', 'task', 'deal', 'email'))
);

CREATE INDEX idx_comments_entity ON comments(entity_type, entity_id);
CREATE INDEX idx_comments_parent ON comments(parent_comment_id);
CREATE INDEX idx_comments_created_at ON comments(created_at);
