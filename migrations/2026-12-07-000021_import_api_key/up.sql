-- An import started with an API key names the key on the events of the contacts it
-- writes, as `POST /contacts` with that key does; `created_by` stays the key's creator.
ALTER TABLE contact_imports ADD COLUMN api_key_id uuid REFERENCES api_keys (id) ON DELETE SET NULL;
