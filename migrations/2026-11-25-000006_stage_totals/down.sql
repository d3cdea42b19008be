DROP TRIGGER IF EXISTS deals_stage_totals_update ON deals;
DROP TRIGGER IF EXISTS deals_stage_totals_insert_delete ON deals;
DROP FUNCTION IF EXISTS deals_stage_totals();
DROP TABLE IF EXISTS stage_totals;
