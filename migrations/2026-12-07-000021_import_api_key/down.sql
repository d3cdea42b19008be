ALTER TABLE contact_imports DROP COLUMN api_key_id;
