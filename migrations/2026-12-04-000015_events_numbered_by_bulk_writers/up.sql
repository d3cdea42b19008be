-- A bulk writer (an import chunk) numbers its own events as it appends them.
--
-- The numberer (migration 000013) writes every event twice: inserted without `seq`, then
-- rewritten with it, which touches each of the events' indexes again. For an import's
-- thousand events a chunk that was a fifth of the database's work. A bulk writer instead
-- takes the numbering lock itself, right before its last statements, and holds it to its
-- commit: numbers are still only ever seen after every smaller one, because a pass and
-- a bulk append cannot overlap and each commits before the lock is released. Single
-- writes keep the numberer: they must not wait for each other's commits.
--
-- What follows numbering (webhook fan-out and the wake-up notification) moves from the
-- numberer's update triggers into one function both paths call with the range they
-- numbered.

DROP TRIGGER events_enqueue_webhooks_after_numbering ON events;
DROP TRIGGER events_notify_after_numbering ON events;
DROP FUNCTION events_enqueue_webhooks();
DROP FUNCTION events_notify();

-- Fan-out and wake-up for the events numbered `lo` to `hi`, in the numbering transaction:
-- a numbered event always has its deliveries. One notification per organization: the
-- listeners re-read the log from their own cursor, the highest position is all they need.
CREATE FUNCTION events_published(lo bigint, hi bigint) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    last record;
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
    FROM events e
    JOIN webhooks w
      ON w.organization_id = e.organization_id
     AND w.active
     AND (w.event_types = '{*}' OR e.type = ANY (w.event_types))
    WHERE e.seq BETWEEN lo AND hi
    ORDER BY e.seq, w.id;
    FOR last IN SELECT organization_id, max(seq) AS seq FROM events
                WHERE seq BETWEEN lo AND hi GROUP BY organization_id LOOP
        PERFORM pg_notify('nexus_events', last.organization_id::text || ':' || last.seq::text);
    END LOOP;
END;
$$;

CREATE OR REPLACE FUNCTION events_number(batch integer) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    head bigint;
    numbered integer;
BEGIN
    -- Feed reads and idle sweeps call this too: with nothing to number (the partial
    -- index is empty) they neither take the lock nor wait for a pass in progress. A row
    -- that commits right after this check is one that committed after the caller asked.
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
    IF numbered > 0 THEN
        PERFORM events_published(head + 1, head + numbered);
    END IF;
    RETURN numbered;
END;
$$;

-- Appends `batch` (a JSON array of {id, type, occurred_at, actor, payload}) to `org`'s
-- events, numbered in array order. Holds the numbering lock until the caller's
-- transaction ends, so the caller must be READ COMMITTED (each statement here then sees
-- the passes committed before it), commit soon after, and commit synchronously (a
-- number seen by a reader must not be lost by a crash and then given to another event).
CREATE FUNCTION events_append_numbered(org uuid, batch jsonb) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    head bigint;
    appended integer;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('nexus.events_number', 0));
    SELECT coalesce(max(seq), 0) INTO head FROM events;
    INSERT INTO events (id, organization_id, type, occurred_at, actor, payload, seq)
    SELECT e.id, org, e.type, e.occurred_at, e.actor, e.payload, head + e.n
    FROM ROWS FROM (jsonb_to_recordset(batch) AS (id uuid, type text, occurred_at timestamptz,
                                                  actor jsonb, payload jsonb))
         WITH ORDINALITY AS e(id, type, occurred_at, actor, payload, n);
    GET DIAGNOSTICS appended = ROW_COUNT;
    IF appended > 0 THEN
        PERFORM events_published(head + 1, head + appended);
    END IF;
    RETURN appended;
END;
$$;
