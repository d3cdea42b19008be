-- Hard-deleting a contact no longer destroys its deals: a deal is a record of business
-- (value, stage history, totals) that outlives its contact's removal from lists. The
-- purge of soft-deleted contacts skips those that still have deals; this constraint
-- makes any other hard delete of such a contact fail instead of cascading. NO ACTION
-- (checked at the end of the statement) still lets deleting a whole organization
-- remove its contacts and deals together.
ALTER TABLE deals DROP CONSTRAINT deals_organization_id_contact_id_fkey;
ALTER TABLE deals ADD CONSTRAINT deals_organization_id_contact_id_fkey
    FOREIGN KEY (organization_id, contact_id) REFERENCES contacts ON DELETE NO ACTION;
