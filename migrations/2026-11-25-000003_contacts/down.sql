DROP TABLE custom_field_definitions;
DROP FUNCTION contact_event_json(contacts);
DROP TABLE contacts;
DROP EXTENSION IF EXISTS btree_gin;
DROP EXTENSION IF EXISTS pg_trgm;
