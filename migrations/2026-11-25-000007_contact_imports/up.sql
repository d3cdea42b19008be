-- CSV imports of contacts: the uploaded file, the options, and the progress of the job
-- that works through it. Each chunk of rows commits with the job's checkpoint
-- (`next_row` and the counters), so a crashed import resumes where it stopped and never
-- leaves half a chunk behind.
CREATE TABLE contact_imports (
    organization_id uuid        NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    id              uuid        NOT NULL,
    created_by      uuid        REFERENCES users (id) ON DELETE SET NULL,
    status          text        NOT NULL CHECK (status IN ('pending', 'running', 'completed', 'failed')),
    on_duplicate    text        NOT NULL CHECK (on_duplicate IN ('skip', 'update')),
    csv             bytea       NOT NULL,
    total_rows      integer,
    next_row        integer     NOT NULL DEFAULT 1,
    processed       integer     NOT NULL DEFAULT 0,
    created         integer     NOT NULL DEFAULT 0,
    updated         integer     NOT NULL DEFAULT 0,
    skipped         integer     NOT NULL DEFAULT 0,
    failed          integer     NOT NULL DEFAULT 0,
    -- [{row, field, message}], the first 1,000 only (the counters stay exact).
    errors          jsonb       NOT NULL DEFAULT '[]',
    failure         text,
    created_at      timestamptz NOT NULL,
    heartbeat_at    timestamptz,
    finished_at     timestamptz,
    PRIMARY KEY (organization_id, id)
);
-- The worker's queue: pending jobs, and running ones whose worker stopped beating.
CREATE INDEX contact_imports_queue_idx ON contact_imports (created_at)
    WHERE status IN ('pending', 'running');
