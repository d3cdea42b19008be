-- The trash list (`GET /contacts/deleted`): an organization's deleted contacts, most
-- recently deleted first. Partial, so it holds only deleted rows; it also serves the
-- purge, which looks them up by organization and age, so the purge's own index goes.
CREATE INDEX contacts_org_deleted_idx ON contacts (organization_id, deleted_at, id)
    WHERE deleted_at IS NOT NULL;
DROP INDEX contacts_deleted_idx;
