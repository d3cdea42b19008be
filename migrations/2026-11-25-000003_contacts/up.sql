-- Contacts, their custom field definitions, and the indexes every list query shape uses
-- at a million rows per tenant. Every index leads with organization_id (btree_gin lets
-- the GIN indexes lead with it too), and partial indexes cover live rows only.

CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE EXTENSION IF NOT EXISTS btree_gin;

CREATE TABLE contacts (
    organization_id uuid        NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    id              uuid        NOT NULL,
    first_name      text        NOT NULL CHECK (char_length(first_name) BETWEEN 1 AND 100),
    last_name       text        NOT NULL CHECK (char_length(last_name) BETWEEN 1 AND 100),
    email           text        CHECK (email = lower(email)),
    phone           text,
    phone_e164      text        CHECK (phone_e164 ~ '^\+[1-9][0-9]{7,14}$'),
    company         text,
    lifecycle_stage text        NOT NULL DEFAULT 'lead' CHECK (lifecycle_stage IN
                        ('lead', 'marketing_qualified', 'sales_qualified', 'opportunity',
                         'customer', 'evangelist', 'other')),
    lead_score      smallint    NOT NULL DEFAULT 0 CHECK (lead_score BETWEEN 0 AND 100),
    owner_id        uuid        REFERENCES users (id) ON DELETE SET NULL,
    tags            text[]      NOT NULL DEFAULT '{}' CHECK (cardinality(tags) <= 50),
    custom_fields   jsonb       NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(custom_fields) = 'object'),
    version         integer     NOT NULL DEFAULT 1,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    deleted_at      timestamptz,
    -- What `q` searches: names (and the full name), email, company, phone, lower-cased.
    search          text        GENERATED ALWAYS AS (lower(
                        first_name || ' ' || last_name || ' ' || coalesce(email, '') || ' ' ||
                        coalesce(company, '') || ' ' || coalesce(phone, ''))) STORED,
    PRIMARY KEY (organization_id, id)
);

-- Email is unique per organization among live contacts, case-insensitively.
CREATE UNIQUE INDEX contacts_org_email_key ON contacts (organization_id, lower(email))
    WHERE deleted_at IS NULL AND email IS NOT NULL;

-- Keyset pagination per sort (either direction: btree indexes scan backwards).
CREATE INDEX contacts_org_created_idx ON contacts (organization_id, created_at, id)
    WHERE deleted_at IS NULL;
CREATE INDEX contacts_org_updated_idx ON contacts (organization_id, updated_at, id)
    WHERE deleted_at IS NULL;
CREATE INDEX contacts_org_last_name_idx ON contacts (organization_id, last_name, id)
    WHERE deleted_at IS NULL;
CREATE INDEX contacts_org_lead_score_idx ON contacts (organization_id, lead_score, id)
    WHERE deleted_at IS NULL;
-- Equality filters, newest first.
CREATE INDEX contacts_org_owner_idx ON contacts (organization_id, owner_id, created_at, id)
    WHERE deleted_at IS NULL;
CREATE INDEX contacts_org_stage_idx ON contacts (organization_id, lifecycle_stage, created_at, id)
    WHERE deleted_at IS NULL;
-- Case-insensitive substring search (`q`), tags (any/all), custom field equality.
CREATE INDEX contacts_org_search_trgm_idx ON contacts
    USING gin (organization_id, search gin_trgm_ops) WHERE deleted_at IS NULL;
CREATE INDEX contacts_org_tags_idx ON contacts USING gin (organization_id, tags)
    WHERE deleted_at IS NULL;
CREATE INDEX contacts_org_custom_fields_idx ON contacts
    USING gin (organization_id, custom_fields jsonb_path_ops) WHERE deleted_at IS NULL;
-- The purge job finds rows deleted long ago.
CREATE INDEX contacts_deleted_idx ON contacts (deleted_at) WHERE deleted_at IS NOT NULL;

-- The contact as events carry it: the same shape as the domain's `Contact::to_json`
-- (a repository test compares the two), for events written by set-based statements
-- (tag rename and delete, custom field removal).
CREATE FUNCTION contact_event_json(c contacts) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_strip_nulls(jsonb_build_object('deletedAt', c.deleted_at)) || jsonb_build_object(
        'id', c.id, 'firstName', c.first_name, 'lastName', c.last_name, 'email', c.email,
        'phone', c.phone, 'phoneE164', c.phone_e164, 'company', c.company,
        'lifecycleStage', c.lifecycle_stage, 'ownerId', c.owner_id, 'tags', to_jsonb(c.tags),
        'customFields', c.custom_fields, 'leadScore', c.lead_score, 'version', c.version,
        'createdAt', c.created_at, 'updatedAt', c.updated_at)
$$;

CREATE TABLE custom_field_definitions (
    organization_id uuid        NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    id              uuid        NOT NULL,
    key             text        NOT NULL CHECK (key ~ '^[a-z][a-z0-9_]{0,49}$'),
    label           text        NOT NULL,
    field_type      text        NOT NULL CHECK (field_type IN
                        ('text', 'number', 'date', 'boolean', 'select', 'multiselect')),
    required        boolean     NOT NULL DEFAULT false,
    options         text[]      NOT NULL DEFAULT '{}',
    version         integer     NOT NULL DEFAULT 1,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, id)
);
CREATE UNIQUE INDEX custom_field_definitions_org_key_key
    ON custom_field_definitions (organization_id, key);
