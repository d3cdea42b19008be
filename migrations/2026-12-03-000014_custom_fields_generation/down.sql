ALTER TABLE organizations DROP COLUMN custom_fields_generation;
