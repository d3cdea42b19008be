-- Pipelines, their stages, deals, stage history and activities. Every key and index
-- leads with organization_id; foreign keys include it, so rows can never point across
-- tenants and the schema stays distributable by tenant.

CREATE TABLE pipelines (
    organization_id uuid        NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    id              uuid        NOT NULL,
    name            text        NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
    is_default      boolean     NOT NULL DEFAULT false,
    version         integer     NOT NULL DEFAULT 1,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, id)
);
-- One default pipeline per organization.
CREATE UNIQUE INDEX pipelines_one_default_key ON pipelines (organization_id) WHERE is_default;

CREATE TABLE pipeline_stages (
    organization_id uuid     NOT NULL,
    id              uuid     NOT NULL,
    pipeline_id     uuid     NOT NULL,
    name            text     NOT NULL,
    probability     smallint NOT NULL CHECK (probability BETWEEN 0 AND 100),
    kind            text     NOT NULL CHECK (kind IN ('open', 'won', 'lost')),
    position        integer  NOT NULL,
    PRIMARY KEY (organization_id, id),
    FOREIGN KEY (organization_id, pipeline_id) REFERENCES pipelines ON DELETE CASCADE,
    CHECK ((kind = 'won') = (probability = 100) OR kind = 'open'),
    CHECK (kind <> 'lost' OR probability = 0)
);
CREATE INDEX pipeline_stages_pipeline_idx ON pipeline_stages (organization_id, pipeline_id, position);

CREATE TABLE deals (
    organization_id     uuid             NOT NULL,
    id                  uuid             NOT NULL,
    pipeline_id         uuid             NOT NULL,
    stage_id            uuid             NOT NULL,
    contact_id          uuid             NOT NULL,
    owner_id            uuid             REFERENCES users (id) ON DELETE SET NULL,
    title               text             NOT NULL CHECK (char_length(title) BETWEEN 1 AND 200),
    value_minor         bigint           NOT NULL CHECK (value_minor >= 0),
    currency            text             NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    status              text             NOT NULL CHECK (status IN ('OPEN', 'WON', 'LOST')),
    probability         smallint         NOT NULL CHECK (probability BETWEEN 0 AND 100),
    expected_close_date date,
    closed_at           timestamptz,
    lost_reason         text,
    won_reason          text,
    -- Fractional ordering within a stage: a move rewrites one row.
    position            double precision NOT NULL,
    stage_entered_at    timestamptz      NOT NULL DEFAULT now(),
    version             integer          NOT NULL DEFAULT 1,
    created_at          timestamptz      NOT NULL DEFAULT now(),
    updated_at          timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, id),
    FOREIGN KEY (organization_id, pipeline_id) REFERENCES pipelines,
    -- A stage holding deals cannot vanish: its deals must be moved first.
    FOREIGN KEY (organization_id, stage_id) REFERENCES pipeline_stages ON DELETE RESTRICT,
    FOREIGN KEY (organization_id, contact_id) REFERENCES contacts ON DELETE CASCADE
);
-- The board: deals of a stage in order.
CREATE INDEX deals_stage_position_idx ON deals (organization_id, stage_id, position, id);
-- Lists: newest first, and by each equality filter.
CREATE INDEX deals_created_idx ON deals (organization_id, created_at, id);
CREATE INDEX deals_pipeline_idx ON deals (organization_id, pipeline_id, created_at, id);
CREATE INDEX deals_contact_idx ON deals (organization_id, contact_id, created_at, id);
CREATE INDEX deals_owner_idx ON deals (organization_id, owner_id, created_at, id);
CREATE INDEX deals_status_idx ON deals (organization_id, status, created_at, id);

-- When each deal entered and left each stage (time in stage, conversion).
CREATE TABLE deal_stage_history (
    organization_id uuid        NOT NULL,
    deal_id         uuid        NOT NULL,
    stage_id        uuid        NOT NULL,
    entered_at      timestamptz NOT NULL,
    left_at         timestamptz,
    PRIMARY KEY (organization_id, deal_id, entered_at),
    FOREIGN KEY (organization_id, deal_id) REFERENCES deals ON DELETE CASCADE
);

CREATE TABLE activities (
    organization_id uuid        NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    id              uuid        NOT NULL,
    type            text        NOT NULL CHECK (type IN ('CALL', 'EMAIL', 'MEETING', 'NOTE', 'TASK',
                                    'DEAL_CREATED', 'DEAL_STAGE_CHANGED', 'DEAL_WON', 'DEAL_LOST')),
    subject         text        NOT NULL CHECK (char_length(subject) BETWEEN 1 AND 200),
    description     text,
    metadata        jsonb       NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
    contact_id      uuid,
    deal_id         uuid,
    due_at          timestamptz,
    assignee_id     uuid        REFERENCES users (id) ON DELETE SET NULL,
    completed_at    timestamptz,
    created_by      uuid        REFERENCES users (id) ON DELETE SET NULL,
    occurred_at     timestamptz NOT NULL DEFAULT now(),
    version         integer     NOT NULL DEFAULT 1,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, id),
    FOREIGN KEY (organization_id, contact_id) REFERENCES contacts ON DELETE CASCADE,
    -- A deleted deal's history stays on its contact's timeline.
    FOREIGN KEY (organization_id, deal_id) REFERENCES deals ON DELETE SET NULL (deal_id),
    CHECK (type = 'TASK' OR (due_at IS NULL AND completed_at IS NULL))
);
CREATE INDEX activities_timeline_idx ON activities (organization_id, occurred_at DESC, id DESC);
CREATE INDEX activities_contact_idx ON activities (organization_id, contact_id, occurred_at DESC, id DESC)
    WHERE contact_id IS NOT NULL;
CREATE INDEX activities_deal_idx ON activities (organization_id, deal_id, occurred_at DESC, id DESC)
    WHERE deal_id IS NOT NULL;
CREATE INDEX activities_open_tasks_idx ON activities (organization_id, assignee_id, due_at)
    WHERE type = 'TASK' AND completed_at IS NULL;

-- Every organization that exists before this migration gets the default pipeline that
-- registration creates from now on.
WITH orgs AS (
    SELECT id AS organization_id, gen_random_uuid() AS pipeline_id
    FROM organizations o
    WHERE NOT EXISTS (SELECT 1 FROM pipelines p WHERE p.organization_id = o.id)
), created AS (
    INSERT INTO pipelines (organization_id, id, name, is_default)
    SELECT organization_id, pipeline_id, 'Sales', true FROM orgs
    RETURNING organization_id, id
)
INSERT INTO pipeline_stages (organization_id, id, pipeline_id, name, probability, kind, position)
SELECT c.organization_id, gen_random_uuid(), c.id, s.name, s.probability, s.kind, s.position
FROM created c
CROSS JOIN (VALUES ('Lead', 10, 'open', 0), ('Qualified', 25, 'open', 1), ('Proposal', 50, 'open', 2),
                   ('Negotiation', 75, 'open', 3), ('Closed Won', 100, 'won', 4),
                   ('Closed Lost', 0, 'lost', 5)) AS s (name, probability, kind, position);
