-- Contact writes validate custom fields against the organization's definitions, and an
-- instance keeps those definitions in memory between writes. A write states the
-- generation it validated under and takes this row FOR SHARE in its own transaction.
-- Every change of a definition (by the API or by hand) bumps the generation, which
-- waits for those writes to commit and refuses the ones validated under the old
-- generation after it: they are validated again. The change's own later statements
-- (values of a field whose type changes) see every write the bump waited for.
ALTER TABLE organizations ADD COLUMN custom_fields_generation bigint NOT NULL DEFAULT 0;

CREATE FUNCTION custom_fields_bump_generation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE organizations SET custom_fields_generation = custom_fields_generation + 1
     WHERE id = CASE WHEN TG_OP = 'DELETE' THEN OLD.organization_id ELSE NEW.organization_id END;
    RETURN NULL;
END;
$$;

CREATE TRIGGER custom_field_definitions_bump_generation
    AFTER INSERT OR UPDATE OR DELETE ON custom_field_definitions
    FOR EACH ROW EXECUTE FUNCTION custom_fields_bump_generation();
