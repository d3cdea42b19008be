-- `q` finds a phone whatever punctuation either side uses: "(415) 555-2671" was found by
-- "555-2671" but not by "415-555-2671" or "4155552671", since only numbers given with a
-- country code have an E.164 form. The phone's digits alone now join the searched text
-- beside the E.164 form (which differs from them when the number was written with a
-- trunk prefix: "+44 (0)20 7946 0958"), and a phone-shaped `q` is also searched by its
-- digits (see `repo::contacts::gin_conditions`). As in 000017, the generated column and
-- its index are made again: a table rewrite, once.
ALTER TABLE contacts DROP COLUMN search;
ALTER TABLE contacts ADD COLUMN search text GENERATED ALWAYS AS (lower(
    first_name || ' ' || last_name || ' ' || coalesce(email, '') || ' ' ||
    coalesce(company, '') || ' ' || coalesce(phone, '') || ' ' || coalesce(phone_e164, '') || ' ' ||
    regexp_replace(coalesce(phone, ''), '[^0-9]', '', 'g'))) STORED;
CREATE INDEX contacts_org_search_trgm_idx ON contacts
    USING gin (organization_id, search gin_trgm_ops) WHERE deleted_at IS NULL;
