-- The outbox: every mutation appends its domain events here in the same transaction.
-- Consumers (webhooks, SSE, audit log) read it in `seq` order; `seq` is the cursor.
CREATE TABLE events (
    id              uuid        NOT NULL,
    organization_id uuid        NOT NULL,
    seq             bigint      GENERATED ALWAYS AS IDENTITY,
    type            text        NOT NULL CHECK (type ~ '^[a-z_]+\.[a-z_]+$'),
    occurred_at     timestamptz NOT NULL DEFAULT now(),
    actor           jsonb       NOT NULL,
    payload         jsonb       NOT NULL,
    PRIMARY KEY (organization_id, id)
);

-- One tenant's feed (SSE replay, the pollable change feed) in order.
CREATE INDEX events_org_seq_idx ON events (organization_id, seq);
-- Consumers that fan out over all tenants walk the log in order.
CREATE UNIQUE INDEX events_seq_idx ON events (seq);

-- Wakes listeners (SSE, delivery workers) in every app instance; the row itself is
-- read from the table, the notification only carries the tenant and the cursor.
CREATE FUNCTION events_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('nexus_events', NEW.organization_id::text || ':' || NEW.seq::text);
    RETURN NULL;
END;
$$;

CREATE TRIGGER events_notify_after_insert
    AFTER INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION events_notify();
