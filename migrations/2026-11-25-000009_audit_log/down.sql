DROP INDEX events_occurred_at_idx;
DROP FUNCTION audit_log_purge(timestamptz, integer);
DROP TABLE audit_log;
DROP FUNCTION audit_log_refuse_change();
