-- Each claim of a key draws a token; only the request holding the current token may
-- store its response or release the key. A request that ran past the abandonment delay
-- and was taken over can then no longer overwrite or delete its successor's claim.
ALTER TABLE idempotency_keys ADD COLUMN claim_token uuid NOT NULL DEFAULT gen_random_uuid();
