-- The trash list (`GET /contacts/deleted`): an organization's deleted contacts, most
-- recently deleted first. Partial, so it holds only deleted rows; the purge's own index
-- on `deleted_at` alone stays, for its lookup of old rows across organizations.
CREATE INDEX contacts_org_deleted_idx ON contacts (organization_id, deleted_at, id)
    WHERE deleted_at IS NOT NULL;
