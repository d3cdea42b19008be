-- `q` also finds a phone by its digits: "+44 20 7946 0958" is stored as given, and a
-- search for "2079460958" matched none of it. The normalized form joins the searched
-- text. PostgreSQL 15 cannot change a generated column's expression, so the column (and
-- its index) are made again: a table rewrite, once.
ALTER TABLE contacts DROP COLUMN search;
ALTER TABLE contacts ADD COLUMN search text GENERATED ALWAYS AS (lower(
    first_name || ' ' || last_name || ' ' || coalesce(email, '') || ' ' ||
    coalesce(company, '') || ' ' || coalesce(phone, '') || ' ' || coalesce(phone_e164, ''))) STORED;
CREATE INDEX contacts_org_search_trgm_idx ON contacts
    USING gin (organization_id, search gin_trgm_ops) WHERE deleted_at IS NULL;
