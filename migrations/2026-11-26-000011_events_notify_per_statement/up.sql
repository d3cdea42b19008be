-- One notification per organization per statement instead of one per event row: a bulk
-- write (an import chunk appends a thousand events in one statement) no longer queues a
-- thousand notifications. Listeners only keep the highest `seq` they hear and re-read the
-- outbox from their own cursor, so the last position of each statement is all they need.
DROP TRIGGER events_notify_after_insert ON events;

CREATE OR REPLACE FUNCTION events_notify() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    last record;
BEGIN
    FOR last IN SELECT organization_id, max(seq) AS seq FROM inserted GROUP BY organization_id LOOP
        PERFORM pg_notify('nexus_events', last.organization_id::text || ':' || last.seq::text);
    END LOOP;
    RETURN NULL;
END;
$$;

CREATE TRIGGER events_notify_after_insert
    AFTER INSERT ON events
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION events_notify();
