-- Back to numbering only by passes, with fan-out and wake-up in the update triggers.
DROP FUNCTION events_append_numbered(uuid, jsonb);

CREATE OR REPLACE FUNCTION events_number(batch integer) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    head bigint;
    numbered integer;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM events WHERE seq IS NULL) THEN
        RETURN 0;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtextextended('nexus.events_number', 0));
    SELECT coalesce(max(seq), 0) INTO head FROM events;
    UPDATE events e
       SET seq = head + q.n
      FROM (SELECT organization_id, id, row_number() OVER (ORDER BY append_seq) AS n
              FROM (SELECT organization_id, id, append_seq
                      FROM events
                     WHERE seq IS NULL
                     ORDER BY append_seq
                     LIMIT batch) pending) q
     WHERE e.organization_id = q.organization_id AND e.id = q.id;
    GET DIAGNOSTICS numbered = ROW_COUNT;
    RETURN numbered;
END;
$$;

DROP FUNCTION events_published(bigint, bigint);

CREATE FUNCTION events_enqueue_webhooks() RETURNS trigger LANGUAGE plpgsql AS $$
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

CREATE FUNCTION events_notify() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    last record;
BEGIN
    FOR last IN SELECT organization_id, max(seq) AS seq FROM inserted GROUP BY organization_id LOOP
        PERFORM pg_notify('nexus_events', last.organization_id::text || ':' || last.seq::text);
    END LOOP;
    RETURN NULL;
END;
$$;

CREATE TRIGGER events_enqueue_webhooks_after_numbering
    AFTER UPDATE ON events
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION events_enqueue_webhooks();
CREATE TRIGGER events_notify_after_numbering
    AFTER UPDATE ON events
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION events_notify();
