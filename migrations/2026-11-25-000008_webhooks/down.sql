DROP TRIGGER events_enqueue_webhooks_after_insert ON events;
DROP FUNCTION events_enqueue_webhooks();
DROP TABLE webhook_attempts;
DROP TABLE webhook_deliveries;
DROP TABLE webhooks;
DROP FUNCTION nexus_uuid_v7();
