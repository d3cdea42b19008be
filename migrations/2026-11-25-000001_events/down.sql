DROP TRIGGER IF EXISTS events_notify_after_insert ON events;
DROP FUNCTION IF EXISTS events_notify();
DROP TABLE IF EXISTS events;
