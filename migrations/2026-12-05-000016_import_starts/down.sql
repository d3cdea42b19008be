ALTER TABLE contact_imports DROP COLUMN starts;
