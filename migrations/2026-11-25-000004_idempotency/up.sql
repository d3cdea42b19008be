-- Responses to requests sent with an `Idempotency-Key`, per caller (organization and
-- user or API key), kept 24 hours. `status` is NULL while the first request runs.
CREATE TABLE idempotency_keys (
    scope            text        NOT NULL,
    key              text        NOT NULL CHECK (char_length(key) BETWEEN 1 AND 255),
    request_hash     bytea       NOT NULL,
    status           smallint,
    response_headers jsonb,
    response_body    bytea,
    created_at       timestamptz NOT NULL,
    completed_at     timestamptz,
    PRIMARY KEY (scope, key)
);
-- The sweep of expired keys.
CREATE INDEX idempotency_keys_created_idx ON idempotency_keys (created_at);
