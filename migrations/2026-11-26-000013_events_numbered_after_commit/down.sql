-- Back to numbering at insert. Rows not numbered yet keep their insert order.
DROP FUNCTION events_number(integer);
DROP TRIGGER events_notify_after_numbering ON events;
DROP TRIGGER events_enqueue_webhooks_after_numbering ON events;
DROP INDEX events_unnumbered_idx;
DROP TRIGGER webhook_deliveries_notify_after_insert ON webhook_deliveries;
DROP FUNCTION webhook_deliveries_notify();
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
