CREATE INDEX contacts_deleted_idx ON contacts (deleted_at) WHERE deleted_at IS NOT NULL;
DROP INDEX contacts_org_deleted_idx;
