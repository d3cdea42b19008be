-- Contact writes validate custom fields against the organization's definitions, and an
-- instance keeps those definitions in memory between writes. A write states the
-- generation it validated under and takes this row FOR SHARE in its own transaction; a
-- definition change bumps the generation first (waiting for those writes to commit), so
-- a write validated under older definitions is refused and validated again, and a
-- change's own checks (values of a field whose type changes) see every write before it.
ALTER TABLE organizations ADD COLUMN custom_fields_generation bigint NOT NULL DEFAULT 0;
