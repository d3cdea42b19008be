DROP INDEX contacts_org_deleted_idx;
