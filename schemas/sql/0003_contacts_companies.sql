-- Contacts, tags and companies.
-- Source: docs/crm-schema.md, sections "Contact Management" and "Companies".
-- Deviations from the spec are listed in docs/schema-changes.md.

-- Contacts
CREATE TABLE contacts (
    id UUID PRIMARY KEY DEFAULT uuid_generate_v4(),
    workspace_id UUID NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    
    -- Basic info
    email VARCHAR(255),
    first_name VARCHAR(100),
    last_name VARCHAR(100),
    phone VARCHAR(50),
    mobile VARCHAR(50),
    
    -- Company info
    company VARCHAR(255),
    title VARCHAR(255),
    department VARCHAR(100),
    
    -- Address
    address_line1 VARCHAR(255),
    address_line2 VARCHAR(255),
    city VARCHAR(100),
    state VARCHAR(100),
    country VARCHAR(100),
    postal_code VARCHAR(50),
    
    -- Contact metadata
    source VARCHAR(50) DEFAULT 'manual',
    source_details JSONB DEFAULT '{}',
    score INTEGER DEFAULT 0,
    lifecycle_stage VARCHAR(50) DEFAULT 'lead',
    
    -- Social profiles
    linkedin_url TEXT,
    twitter_handle VARCHAR(100),
    facebook_url TEXT,
    website TEXT,
    
    -- AI and enrichment
    enrichment_data JSONB DEFAULT '{}',
    enrichment_updated_at TIMESTAMPTZ,
    ai_insights JSONB DEFAULT '{}',
    embedding vector(1536), -- For semantic search
    
    -- Custom fields
    custom_fields JSONB DEFAULT '{}',
    
    -- Relationships
    owner_id UUID REFERENCES users(id),
    created_by UUID REFERENCES users(id),
    
    -- Tracking
    last_activity_at TIMESTAMPTZ,
    last_contacted_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW(),
    deleted_at TIMESTAMPTZ,
    
    CONSTRAINT valid_source CHECK (source IN ('manual', 'import', 'website', 'email', 'api', 'linkedin', 'enrichment')),
    CONSTRAINT valid_lifecycle CHECK (lifecycle_stage IN ('lead', 'MQL', 'SQL', 'opportunity', 'customer', 'evangelist'))
);

-- Indexes for performance
CREATE INDEX idx_contacts_workspace ON contacts(workspace_id);
CREATE INDEX idx_contacts_email ON contacts(workspace_id, email);
CREATE INDEX idx_contacts_company ON contacts(workspace_id, company);
CREATE INDEX idx_contacts_owner ON contacts(workspace_id, owner_id);
CREATE INDEX idx_contacts_score ON contacts(workspace_id, score DESC);
CREATE INDEX idx_contacts_created_at ON contacts(workspace_id, created_at DESC);
CREATE INDEX idx_contacts_last_activity ON contacts(workspace_id, last_activity_at DESC);
CREATE INDEX idx_contacts_deleted_at ON contacts(deleted_at);

-- Full-text search
CREATE INDEX idx_contacts_search ON contacts USING gin(
    to_tsvector('english', 
        coalesce(first_name, '') || ' ' || 
        coalesce(last_name, '') || ' ' || 
        coalesce(email, '') || ' ' || 
        coalesce(company, '')
    )
);

-- Vector similarity search
CREATE INDEX idx_contacts_embedding ON contacts USING ivfflat (embedding vector_cosine_ops);

-- Tags (many-to-many)
CREATE TABLE tags (
    id UUID PRIMARY KEY DEFAULT uuid_generate_v4(),
    workspace_id UUID NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    name VARCHAR(100) NOT NULL,
    color VARCHAR(7) DEFAULT '#808080',
    description TEXT,
    created_at TIMESTAMPTZ DEFAULT NOW(),
    
    CONSTRAINT unique_workspace_tag UNIQUE (workspace_id, name)
);

CREATE TABLE contact_tags (
    contact_id UUID NOT NULL REFERENCES contacts(id) ON DELETE CASCADE,
    tag_id UUID NOT NULL REFERENCES tags(id) ON DELETE CASCADE,
    created_at TIMESTAMPTZ DEFAULT NOW(),
    
    PRIMARY KEY (contact_id, tag_id)
);

CREATE INDEX idx_contact_tags_contact ON contact_tags(contact_id);
CREATE INDEX idx_contact_tags_tag ON contact_tags(tag_id);

-- Companies (Organizations)
CREATE TABLE companies (
    id UUID PRIMARY KEY DEFAULT uuid_generate_v4(),
    workspace_id UUID NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    
    -- Basic info
    name VARCHAR(255) NOT NULL,
    domain VARCHAR(255),
    website TEXT,
    
    -- Details
    industry VARCHAR(100),
    company_size VARCHAR(50),
    annual_revenue DECIMAL(15,2),
    currency VARCHAR(3) DEFAULT 'USD',
    
    -- Location
    address_line1 VARCHAR(255),
    address_line2 VARCHAR(255),
    city VARCHAR(100),
    state VARCHAR(100),
    country VARCHAR(100),
    postal_code VARCHAR(50),
    timezone VARCHAR(50),
    
    -- Contact info
    phone VARCHAR(50),
    email VARCHAR(255),
    
    -- Social
    linkedin_url TEXT,
    twitter_handle VARCHAR(100),
    facebook_url TEXT,
    
    -- Enrichment
    enrichment_data JSONB DEFAULT '{}',
    enrichment_updated_at TIMESTAMPTZ,
    logo_url TEXT,
    description TEXT,
    
    -- AI
    ai_insights JSONB DEFAULT '{}',
    embedding vector(1536),
    
    -- Metadata
    custom_fields JSONB DEFAULT '{}',
    tags TEXT[],
    
    -- Relationships
    parent_company_id UUID REFERENCES companies(id),
    owner_id UUID REFERENCES users(id),
    created_by UUID REFERENCES users(id),
    
    -- Tracking
    employee_count INTEGER,
    founded_year INTEGER,
    last_activity_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW(),
    deleted_at TIMESTAMPTZ,
    
    CONSTRAINT valid_company_size CHECK (company_size IN ('1-10', '11-50', '51-200', '201-500', '501-1000', '1001-5000', '5000+'))
);

-- Indexes
CREATE INDEX idx_companies_workspace ON companies(workspace_id);
CREATE INDEX idx_companies_domain ON companies(domain);
CREATE INDEX idx_companies_name ON companies(workspace_id, name);
CREATE INDEX idx_companies_owner ON companies(workspace_id, owner_id);
CREATE INDEX idx_companies_parent ON companies(parent_company_id);
CREATE INDEX idx_companies_deleted_at ON companies(deleted_at);

-- Full-text search
CREATE INDEX idx_companies_search ON companies USING gin(
    to_tsvector('english', 
        coalesce(name, '') || ' ' || 
        coalesce(domain, '') || ' ' ||
        coalesce(description, '')
    )
);

-- Company-Contact relationships
CREATE TABLE company_contacts (
    company_id UUID NOT NULL REFERENCES companies(id) ON DELETE CASCADE,
    contact_id UUID NOT NULL REFERENCES contacts(id) ON DELETE CASCADE,
    
    role VARCHAR(100),
    is_primary BOOLEAN DEFAULT FALSE,
    
    created_at TIMESTAMPTZ DEFAULT NOW(),
    
    PRIMARY KEY (company_id, contact_id)
);

CREATE INDEX idx_company_contacts_company ON company_contacts(company_id);
CREATE INDEX idx_company_contacts_contact ON company_contacts(contact_id);
