-- Events get their `seq` after they commit instead of when they are written.
--
-- Before, `seq` was drawn at insert, so a reader could see 11 committed while 10 was
-- still in flight and move its cursor past 10 for good. Writers therefore took a
-- per-tenant lock from their append to their commit, and the NOTIFY of the insert
-- trigger took PostgreSQL's cluster-wide notify lock to its commit as well: every
-- write of a tenant waited for the previous one's WAL flush (about 300 creates/s).
--
-- Now a writer only inserts the row (`seq` NULL). A numberer, `events_number`, runs one
-- at a time after commits: it numbers the committed rows in the order they were
-- written and commits before the next pass may start. A number is therefore only ever
-- seen after every smaller one, with no lock in the writers' transactions. Webhook
-- fan-out and the wake-up notification follow the numbering, in the numberer's
-- transaction: a numbered event always has its deliveries.
ALTER TABLE events RENAME COLUMN seq TO append_seq;
DROP INDEX events_org_seq_idx;
DROP INDEX events_seq_idx;

ALTER TABLE events ADD COLUMN seq bigint;
-- Rows written before this migration all committed: their order stands.
UPDATE events SET seq = append_seq;

CREATE UNIQUE INDEX events_seq_idx ON events (seq);
CREATE INDEX events_org_seq_idx ON events (organization_id, seq);
-- The numberer's queue: only rows not numbered yet, in the order they were written.
CREATE INDEX events_unnumbered_idx ON events (append_seq) WHERE seq IS NULL;

DROP TRIGGER events_notify_after_insert ON events;
DROP TRIGGER events_enqueue_webhooks_after_insert ON events;

-- Webhook workers wait for this rather than for every event (most events match no
-- subscription): one notification per statement that queued deliveries, whether by the
-- fan-out, a ping or a redelivery.
CREATE FUNCTION webhook_deliveries_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM queued) THEN
        PERFORM pg_notify('nexus_deliveries', '');
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER webhook_deliveries_notify_after_insert
    AFTER INSERT ON webhook_deliveries
    REFERENCING NEW TABLE AS queued
    FOR EACH STATEMENT EXECUTE FUNCTION webhook_deliveries_notify();

-- Only `events_number` updates events (the log is otherwise append-only), so "after
-- update" means "after numbering". Transition tables rule out a column list.
CREATE TRIGGER events_enqueue_webhooks_after_numbering
    AFTER UPDATE ON events
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION events_enqueue_webhooks();
CREATE TRIGGER events_notify_after_numbering
    AFTER UPDATE ON events
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION events_notify();

-- Numbers up to `batch` committed events; returns how many. Must run in its own
-- READ COMMITTED transaction (autocommit): the lock is taken first, so the statements
-- after it see every earlier pass, and it is held until this pass commits.
CREATE FUNCTION events_number(batch integer) RETURNS integer LANGUAGE plpgsql AS $$
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
    RETURN numbered;
END;
$$;
