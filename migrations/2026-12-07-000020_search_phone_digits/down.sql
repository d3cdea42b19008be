ALTER TABLE contacts DROP COLUMN search;
ALTER TABLE contacts ADD COLUMN search text GENERATED ALWAYS AS (lower(
    first_name || ' ' || last_name || ' ' || coalesce(email, '') || ' ' ||
    coalesce(company, '') || ' ' || coalesce(phone, '') || ' ' || coalesce(phone_e164, ''))) STORED;
CREATE INDEX contacts_org_search_trgm_idx ON contacts
    USING gin (organization_id, search gin_trgm_ops) WHERE deleted_at IS NULL;
