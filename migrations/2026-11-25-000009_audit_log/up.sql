-- The audit log: every mutation, who made it, from where, and what changed. Written in
-- the transaction of the change; append-only (see the trigger below).
CREATE TABLE audit_log (
    organization_id  uuid        NOT NULL,
    id               uuid        NOT NULL,
    occurred_at      timestamptz NOT NULL DEFAULT now(),
    actor_type       text        NOT NULL CHECK (actor_type IN ('user', 'api_key', 'system')),
    -- The user acting, or on whose behalf the API key acts.
    actor_user_id    uuid,
    actor_api_key_id uuid,
    ip               text,
    user_agent       text,
    action           text        NOT NULL,
    entity_type      text        NOT NULL,
    entity_id        text,
    changes          jsonb       NOT NULL DEFAULT '{}',
    PRIMARY KEY (organization_id, id)
);

-- Newest first, the list's order; the filters narrow it within one tenant.
CREATE INDEX audit_log_org_time_idx ON audit_log (organization_id, occurred_at DESC, id DESC);
CREATE INDEX audit_log_org_entity_idx
    ON audit_log (organization_id, entity_type, entity_id, occurred_at DESC);

-- Nobody edits or deletes the audit trail, not even through a bug in the application:
-- UPDATE, DELETE and TRUNCATE fail. The retention job deletes through
-- `audit_log_purge`, which alone lifts the guard, for its own transaction only.
CREATE FUNCTION audit_log_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('nexus.audit_purge', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit_log is append-only (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER audit_log_append_only
    BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_refuse_change();
CREATE TRIGGER audit_log_no_truncate
    BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse_change();

-- Retention: removes entries older than `cutoff`, at most `batch` of them; returns how
-- many. The only sanctioned way to delete audit entries.
CREATE FUNCTION audit_log_purge(cutoff timestamptz, batch integer) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    removed bigint;
BEGIN
    PERFORM set_config('nexus.audit_purge', 'on', true);
    DELETE FROM audit_log
     WHERE (organization_id, id) IN (
         SELECT organization_id, id FROM audit_log WHERE occurred_at < cutoff LIMIT batch);
    GET DIAGNOSTICS removed = ROW_COUNT;
    PERFORM set_config('nexus.audit_purge', 'off', true);
    RETURN removed;
END;
$$;

-- The retention job of the outbox walks it by time.
CREATE INDEX events_occurred_at_idx ON events (occurred_at);
