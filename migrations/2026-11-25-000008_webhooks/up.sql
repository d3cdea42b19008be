-- Webhook subscriptions and their delivery queue.
CREATE TABLE webhooks (
    organization_id            uuid        NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    id                         uuid        NOT NULL,
    url                        text        NOT NULL CHECK (length(url) BETWEEN 1 AND 2048),
    description                text        CHECK (length(description) <= 500),
    -- Event names, or the single element '*' for every event.
    event_types                text[]      NOT NULL CHECK (cardinality(event_types) >= 1),
    active                     boolean     NOT NULL DEFAULT true,
    -- Kept retrievable (not hashed): the server signs with it.
    secret                     text        NOT NULL,
    previous_secret            text,
    previous_secret_expires_at timestamptz,
    disabled_reason            text,
    -- Start of the current run of failed attempts; cleared by a success.
    failing_since              timestamptz,
    version                    integer     NOT NULL DEFAULT 1,
    created_by                 uuid,
    created_at                 timestamptz NOT NULL DEFAULT now(),
    updated_at                 timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, id)
);

CREATE INDEX webhooks_active_idx ON webhooks (organization_id) WHERE active;

CREATE TABLE webhook_deliveries (
    organization_id  uuid        NOT NULL,
    id               uuid        NOT NULL,
    -- Queue order within a subscription: deliveries are inserted in event order.
    seq              bigint      GENERATED ALWAYS AS IDENTITY,
    webhook_id       uuid        NOT NULL,
    -- The `webhook-id` header: the event id (a ping's own id), the same on every retry
    -- and redelivery so receivers can deduplicate.
    message_id       uuid        NOT NULL,
    event_id         uuid,
    event_type       text        NOT NULL,
    -- The exact JSON body, signed and sent as is on every attempt.
    body             text        NOT NULL,
    status           text        NOT NULL DEFAULT 'pending'
                                 CHECK (status IN ('pending', 'succeeded', 'failed')),
    attempts         integer     NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    -- A worker's claim; once it passes, another worker may take the delivery over.
    lease_until      timestamptz,
    lease_token      uuid,
    last_attempt_at  timestamptz,
    last_status_code integer,
    last_error       text,
    last_duration_ms integer,
    created_at       timestamptz NOT NULL DEFAULT now(),
    completed_at     timestamptz,
    PRIMARY KEY (organization_id, id),
    FOREIGN KEY (organization_id, webhook_id) REFERENCES webhooks (organization_id, id) ON DELETE CASCADE
);

-- The head of each subscription's queue, and its log newest first.
CREATE INDEX webhook_deliveries_pending_idx
    ON webhook_deliveries (organization_id, webhook_id, seq) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_log_idx
    ON webhook_deliveries (organization_id, webhook_id, seq DESC);
CREATE INDEX webhook_deliveries_created_idx ON webhook_deliveries (created_at);

CREATE TABLE webhook_attempts (
    organization_id uuid        NOT NULL,
    delivery_id     uuid        NOT NULL,
    attempt         integer     NOT NULL,
    attempted_at    timestamptz NOT NULL,
    status_code     integer,
    error           text,
    -- Truncated to 4 KiB.
    response_body   text,
    duration_ms     integer     NOT NULL,
    PRIMARY KEY (organization_id, delivery_id, attempt),
    FOREIGN KEY (organization_id, delivery_id) REFERENCES webhook_deliveries (organization_id, id) ON DELETE CASCADE
);

-- A time-ordered (version 7) UUID, as the API promises for every id.
CREATE FUNCTION nexus_uuid_v7() RETURNS uuid LANGUAGE sql VOLATILE AS $$
    SELECT encode(set_bit(set_bit(overlay(uuid_send(gen_random_uuid())
        PLACING substring(int8send((extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
        FROM 1 FOR 6), 52, 1), 53, 1), 'hex')::uuid;
$$;

-- Fan-out happens in the event's own transaction, so an event can never be committed
-- without its deliveries (no cursor that could skip a late-committing transaction).
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

CREATE TRIGGER events_enqueue_webhooks_after_insert
    AFTER INSERT ON events
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION events_enqueue_webhooks();
