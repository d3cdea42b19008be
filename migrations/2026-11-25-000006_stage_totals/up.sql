-- Running totals per stage and currency, kept by a trigger on deals, so the board reads
-- a handful of rows instead of aggregating every deal of the pipeline per request.
CREATE TABLE stage_totals (
    organization_id uuid   NOT NULL,
    stage_id        uuid   NOT NULL,
    currency        text   NOT NULL,
    deal_count      bigint NOT NULL,
    value_minor     bigint NOT NULL,
    weighted_minor  bigint NOT NULL,
    PRIMARY KEY (organization_id, stage_id, currency)
);

-- Applies signed deltas in one statement, rows ordered by key: two moves crossing the
-- same pair of stages lock the rows in the same order and cannot deadlock.
CREATE FUNCTION deals_stage_totals() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO stage_totals AS t (organization_id, stage_id, currency, deal_count, value_minor, weighted_minor)
    SELECT o, s, c, sum(n), sum(v), sum(w)
    FROM (
        SELECT OLD.organization_id, OLD.stage_id, OLD.currency, -1, -OLD.value_minor,
               -((OLD.value_minor * OLD.probability + 50) / 100)
        WHERE TG_OP IN ('UPDATE', 'DELETE')
        UNION ALL
        SELECT NEW.organization_id, NEW.stage_id, NEW.currency, 1, NEW.value_minor,
               (NEW.value_minor * NEW.probability + 50) / 100
        WHERE TG_OP IN ('UPDATE', 'INSERT')
    ) AS d (o, s, c, n, v, w)
    GROUP BY o, s, c
    ORDER BY s, c
    ON CONFLICT (organization_id, stage_id, currency) DO UPDATE SET
        deal_count = t.deal_count + EXCLUDED.deal_count,
        value_minor = t.value_minor + EXCLUDED.value_minor,
        weighted_minor = t.weighted_minor + EXCLUDED.weighted_minor;
    RETURN NULL;
END;
$$;

CREATE TRIGGER deals_stage_totals_insert_delete
    AFTER INSERT OR DELETE ON deals
    FOR EACH ROW EXECUTE FUNCTION deals_stage_totals();
CREATE TRIGGER deals_stage_totals_update
    AFTER UPDATE OF stage_id, currency, value_minor, probability ON deals
    FOR EACH ROW
    WHEN (OLD.stage_id IS DISTINCT FROM NEW.stage_id OR OLD.currency IS DISTINCT FROM NEW.currency
          OR OLD.value_minor IS DISTINCT FROM NEW.value_minor OR OLD.probability IS DISTINCT FROM NEW.probability)
    EXECUTE FUNCTION deals_stage_totals();

-- Deals that exist already.
INSERT INTO stage_totals (organization_id, stage_id, currency, deal_count, value_minor, weighted_minor)
SELECT organization_id, stage_id, currency, count(*), sum(value_minor), sum((value_minor * probability + 50) / 100)
FROM deals GROUP BY organization_id, stage_id, currency;
