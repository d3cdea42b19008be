-- Back to numbering at insert. Rows not numbered yet keep their insert order.
DROP FUNCTION events_number(integer);
DROP TRIGGER events_notify_after_numbering ON events;
DROP TRIGGER events_enqueue_webhooks_after_numbering ON events;
DROP INDEX events_unnumbered_idx;
CREATE OR REPLACE FUNCTION events_enqueue_webhooks() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_deliveries
        (organization_id, id, webhook_id, message_id, event_id, event_type, body)
    SELECT e.organization_id, nexus_uuid_v7(), w.id, e.id, e.id, e.type,
           jsonb_build_object(
               'id', e.id,
               'type', e.type,
               'timestamp', to_char(e.occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
               'organizationId', e.organization_id,
               'actor', e.actor,
               'data', e.payload)::text
    FROM inserted e
    JOIN webhooks w
      ON w.organization_id = e.organization_id
     AND w.active
     AND (w.event_types = '{*}' OR e.type = ANY (w.event_types))
    ORDER BY e.seq, w.id;
    RETURN NULL;
END;
$$;
DROP INDEX events_org_seq_idx;
DROP INDEX events_seq_idx;
ALTER TABLE events DROP COLUMN seq;
ALTER TABLE events RENAME COLUMN append_seq TO seq;
CREATE INDEX events_org_seq_idx ON events (organization_id, seq);
CREATE UNIQUE INDEX events_seq_idx ON events (seq);
CREATE TRIGGER events_enqueue_webhooks_after_insert
    AFTER INSERT ON events
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION events_enqueue_webhooks();
CREATE TRIGGER events_notify_after_insert
    AFTER INSERT ON events
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION events_notify();
