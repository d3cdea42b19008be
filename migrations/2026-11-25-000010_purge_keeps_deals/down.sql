ALTER TABLE deals DROP CONSTRAINT deals_organization_id_contact_id_fkey;
ALTER TABLE deals ADD CONSTRAINT deals_organization_id_contact_id_fkey
    FOREIGN KEY (organization_id, contact_id) REFERENCES contacts ON DELETE CASCADE;
