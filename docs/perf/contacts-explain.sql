-- The SQL the contacts repository sends for each list shape (see
-- crates/adapters-postgres/src/repo/contacts.rs, `list`), with parameters inlined: the
-- repository sends searches, GIN filters and stage, owner and date filters unprepared,
-- so PostgreSQL plans them with their actual values, as here. Unfiltered pages and the
-- lookup by id are prepared once on the shared reader's connection, which runs with
-- `plan_cache_mode = force_generic_plan` (a page's LIMIT written as a constant, one of
-- 11, 21, 26, 51, 101, 201): sections 18-22 show those plans. A page asked with
-- includeTotal=true and the export's pages are prepared on a pooled connection in the
-- default plan mode instead (planned with their values, as here).
-- A test (`the_documented_explain_statements_are_the_ones_sent`, in
-- crates/adapters-postgres/tests/contacts_repo.rs) runs each shape through the
-- repository and fails when it sends a statement whose structure is not shown here.
-- Regenerate docs/perf/contacts-explain.txt with `just explain` (the dev
-- database's `nexus-demo` organization; seed it with `nexus seed --contacts 1000000
-- --organization nexus-demo`).
\set cols 'organization_id, id, first_name, last_name, email, phone, phone_e164, company, lifecycle_stage, lead_score, owner_id, tags, custom_fields, version, created_at, updated_at, deleted_at'
\pset pager off

\echo '### 1. First page, newest first (?limit=50)'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
SELECT :cols FROM contacts WHERE organization_id = :'org' AND deleted_at IS NULL
ORDER BY created_at DESC, id DESC LIMIT 51;

\echo '### 2. Next page (keyset after the 50th row)'
SELECT created_at AS k_time, id AS k_id FROM contacts WHERE organization_id = :'org' AND deleted_at IS NULL
ORDER BY created_at DESC, id DESC OFFSET 49 LIMIT 1 \gset
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
SELECT :cols FROM contacts WHERE organization_id = :'org' AND deleted_at IS NULL
  AND (created_at, id) < (:'k_time', :'k_id')
ORDER BY created_at DESC, id DESC LIMIT 51;

\echo '### 3. ?q=smi (common surname fragment) (phase 1: the first 10,000 rows in sort order, filtered)'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
SELECT :cols FROM (SELECT :cols, search FROM contacts WHERE organization_id = :'org' AND deleted_at IS NULL
                   ORDER BY created_at DESC, id DESC LIMIT 10000) AS contacts
WHERE true AND search LIKE lower('%smi%') ORDER BY created_at DESC, id DESC LIMIT 51;
\echo '### 3. ?q=smi (common surname fragment) (phase 2, only when phase 1 found less than a page: every match through GIN)'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
SELECT :cols FROM (SELECT :cols FROM contacts WHERE organization_id = :'org' AND deleted_at IS NULL AND search LIKE lower('%smi%')
                   OFFSET 0) AS matches
ORDER BY created_at DESC, id DESC LIMIT 51;

\echo '### 4. ?q=lovelace (phase 1: the first 10,000 rows in sort order, filtered)'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
SELECT :cols FROM (SELECT :cols, search FROM contacts WHERE organization_id = :'org' AND deleted_at IS NULL
                   ORDER BY created_at DESC, id DESC LIMIT 10000) AS contacts
WHERE true AND search LIKE lower('%lovelace%') ORDER BY created_at DESC, id DESC LIMIT 51;
\echo '### 4. ?q=lovelace (phase 2, only when phase 1 found less than a page: every match through GIN)'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
SELECT :cols FROM (SELECT :cols FROM contacts WHERE organization_id = :'org' AND deleted_at IS NULL AND search LIKE lower('%lovelace%')
                   OFFSET 0) AS matches
ORDER BY created_at DESC, id DESC LIMIT 51;

\echo '### 5. ?q=555) 12 (phone fragment, also searched by its digits) (phase 1: the first 10,000 rows in sort order, filtered)'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
SELECT :cols FROM (SELECT :cols, search FROM contacts WHERE organization_id = :'org' AND deleted_at IS NULL
                   ORDER BY created_at DESC, id DESC LIMIT 10000) AS contacts
WHERE true AND (search LIKE lower('%555) 12%') OR search LIKE '%55512%' AND (regexp_replace(coalesce(phone, ''), '[^0-9]', '', 'g') || ' ' || coalesce(phone_e164, '')) LIKE '%55512%') ORDER BY created_at DESC, id DESC LIMIT 51;
\echo '### 5. ?q=555) 12 (phone fragment, also searched by its digits) (phase 2, only when phase 1 found less than a page: every match through GIN)'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
SELECT :cols FROM (SELECT :cols FROM contacts WHERE organization_id = :'org' AND deleted_at IS NULL
                     AND (search LIKE lower('%555) 12%') OR search LIKE '%55512%' AND (regexp_replace(coalesce(phone, ''), '[^0-9]', '', 'g') || ' ' || coalesce(phone_e164, '')) LIKE '%55512%')
                   OFFSET 0) AS matches
ORDER BY created_at DESC, id DESC LIMIT 51;

\echo '### 6. ?q=qzx (no match anywhere) (phase 1: the first 10,000 rows in sort order, filtered)'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
SELECT :cols FROM (SELECT :cols, search FROM contacts WHERE organization_id = :'org' AND deleted_at IS NULL
                   ORDER BY created_at DESC, id DESC LIMIT 10000) AS contacts
WHERE true AND search LIKE lower('%qzx%') ORDER BY created_at DESC, id DESC LIMIT 51;
\echo '### 6. ?q=qzx (no match anywhere) (phase 2, only when phase 1 found less than a page: every match through GIN)'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
SELECT :cols FROM (SELECT :cols FROM contacts WHERE organization_id = :'org' AND deleted_at IS NULL AND search LIKE lower('%qzx%')
                   OFFSET 0) AS matches
ORDER BY created_at DESC, id DESC LIMIT 51;

\echo '### 7. ?tag=vip (phase 1: the first 10,000 rows in sort order, filtered)'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
SELECT :cols FROM (SELECT :cols, search FROM contacts WHERE organization_id = :'org' AND deleted_at IS NULL
                   ORDER BY created_at DESC, id DESC LIMIT 10000) AS contacts
WHERE true AND tags && ARRAY['vip'] ORDER BY created_at DESC, id DESC LIMIT 51;
\echo '### 7. ?tag=vip (phase 2, only when phase 1 found less than a page: every match through GIN)'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
SELECT :cols FROM (SELECT :cols FROM contacts WHERE organization_id = :'org' AND deleted_at IS NULL AND tags && ARRAY['vip']
                   OFFSET 0) AS matches
ORDER BY created_at DESC, id DESC LIMIT 51;

\echo '### 8. ?tag=vip&tag=trial&tagMode=all (no contact has both) (phase 1: the first 10,000 rows in sort order, filtered)'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
SELECT :cols FROM (SELECT :cols, search FROM contacts WHERE organization_id = :'org' AND deleted_at IS NULL
                   ORDER BY created_at DESC, id DESC LIMIT 10000) AS contacts
WHERE true AND tags @> ARRAY['vip', 'trial'] ORDER BY created_at DESC, id DESC LIMIT 51;
\echo '### 8. ?tag=vip&tag=trial&tagMode=all (no contact has both) (phase 2, only when phase 1 found less than a page: every match through GIN)'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
SELECT :cols FROM (SELECT :cols FROM contacts WHERE organization_id = :'org' AND deleted_at IS NULL AND tags @> ARRAY['vip', 'trial']
                   OFFSET 0) AS matches
ORDER BY created_at DESC, id DESC LIMIT 51;

\echo '### 9. ?customFields.industry=saas (phase 1: the first 10,000 rows in sort order, filtered)'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
SELECT :cols FROM (SELECT :cols, search FROM contacts WHERE organization_id = :'org' AND deleted_at IS NULL
                   ORDER BY created_at DESC, id DESC LIMIT 10000) AS contacts
WHERE true AND custom_fields @> '{"industry": "saas"}' ORDER BY created_at DESC, id DESC LIMIT 51;
\echo '### 9. ?customFields.industry=saas (phase 2, only when phase 1 found less than a page: every match through GIN)'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
SELECT :cols FROM (SELECT :cols FROM contacts WHERE organization_id = :'org' AND deleted_at IS NULL AND custom_fields @> '{"industry": "saas"}'
                   OFFSET 0) AS matches
ORDER BY created_at DESC, id DESC LIMIT 51;

\echo '### 10. ?sort=-updatedAt&q=smi&tag=vip (phase 1: the first 10,000 rows in sort order, filtered)'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
SELECT :cols FROM (SELECT :cols, search FROM contacts WHERE organization_id = :'org' AND deleted_at IS NULL
                   ORDER BY updated_at DESC, id DESC LIMIT 10000) AS contacts
WHERE true AND search LIKE lower('%smi%') AND tags && ARRAY['vip'] ORDER BY updated_at DESC, id DESC LIMIT 51;
\echo '### 10. ?sort=-updatedAt&q=smi&tag=vip (phase 2, only when phase 1 found less than a page: every match through GIN)'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
SELECT :cols FROM (SELECT :cols FROM contacts WHERE organization_id = :'org' AND deleted_at IS NULL AND search LIKE lower('%smi%') AND tags && ARRAY['vip']
                   OFFSET 0) AS matches
ORDER BY updated_at DESC, id DESC LIMIT 51;

\echo '### 11. ?lifecycleStage=evangelist'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
SELECT :cols FROM contacts WHERE organization_id = :'org' AND deleted_at IS NULL AND lifecycle_stage = 'evangelist'
ORDER BY created_at DESC, id DESC LIMIT 51;

\echo '### 12. ?ownerId=<user>'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
SELECT :cols FROM contacts WHERE organization_id = :'org' AND deleted_at IS NULL AND owner_id = '00000000-0000-7000-8000-000000000000'
ORDER BY created_at DESC, id DESC LIMIT 51;

\echo '### 13. ?createdAfter=..&createdBefore=.. (one month)'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
SELECT :cols FROM contacts WHERE organization_id = :'org' AND deleted_at IS NULL AND created_at >= now() - interval '60 days' AND created_at < now() - interval '30 days'
ORDER BY created_at DESC, id DESC LIMIT 51;

\echo '### 14. ?sort=lastName'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
SELECT :cols FROM contacts WHERE organization_id = :'org' AND deleted_at IS NULL
ORDER BY last_name ASC, id ASC LIMIT 51;

\echo '### 15. ?sort=-leadScore'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
SELECT :cols FROM contacts WHERE organization_id = :'org' AND deleted_at IS NULL
ORDER BY lead_score DESC, id DESC LIMIT 51;

\echo '### 16. GET /contacts/{id}'
SELECT id AS some_id FROM contacts WHERE organization_id = :'org' ORDER BY created_at DESC OFFSET 5000 LIMIT 1 \gset
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
SELECT :cols FROM contacts WHERE organization_id = :'org' AND id = :'some_id';

\echo '### 17. ?q=smi&includeTotal=true (the count, only when asked)'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
SELECT count(*) AS n FROM contacts WHERE organization_id = :'org' AND deleted_at IS NULL AND search LIKE lower('%smi%');

-- The prepared shapes, with the plan a prepared statement keeps (no parameter values).
SET plan_cache_mode = force_generic_plan;
PREPARE first_page(uuid) AS
SELECT organization_id, id, first_name, last_name, email, phone, phone_e164, company, lifecycle_stage, lead_score, owner_id, tags, custom_fields, version, created_at, updated_at, deleted_at
FROM contacts WHERE organization_id = $1 AND deleted_at IS NULL ORDER BY created_at DESC, id DESC LIMIT 51;
PREPARE next_page(uuid, timestamptz, uuid) AS
SELECT organization_id, id, first_name, last_name, email, phone, phone_e164, company, lifecycle_stage, lead_score, owner_id, tags, custom_fields, version, created_at, updated_at, deleted_at
FROM contacts WHERE organization_id = $1 AND deleted_at IS NULL AND (created_at, id) < ($2, $3)
ORDER BY created_at DESC, id DESC LIMIT 51;
PREPARE by_last_name(uuid) AS
SELECT organization_id, id, first_name, last_name, email, phone, phone_e164, company, lifecycle_stage, lead_score, owner_id, tags, custom_fields, version, created_at, updated_at, deleted_at
FROM contacts WHERE organization_id = $1 AND deleted_at IS NULL ORDER BY last_name ASC, id ASC LIMIT 51;
PREPARE by_lead_score(uuid) AS
SELECT organization_id, id, first_name, last_name, email, phone, phone_e164, company, lifecycle_stage, lead_score, owner_id, tags, custom_fields, version, created_at, updated_at, deleted_at
FROM contacts WHERE organization_id = $1 AND deleted_at IS NULL ORDER BY lead_score DESC, id DESC LIMIT 51;
PREPARE by_id(uuid, uuid) AS
SELECT organization_id, id, first_name, last_name, email, phone, phone_e164, company, lifecycle_stage, lead_score, owner_id, tags, custom_fields, version, created_at, updated_at, deleted_at
FROM contacts WHERE organization_id = $1 AND id = $2;

\echo '### 18. First page, prepared (generic plan)'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE first_page(:'org');
\echo '### 19. Next page, prepared (generic plan)'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE next_page(:'org', :'k_time', :'k_id');
\echo '### 20. ?sort=lastName, prepared (generic plan)'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE by_last_name(:'org');
\echo '### 21. ?sort=-leadScore, prepared (generic plan)'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE by_lead_score(:'org');
\echo '### 22. GET /contacts/{id}, prepared (generic plan)'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE by_id(:'org', :'some_id');
DEALLOCATE ALL;
RESET plan_cache_mode;

\echo '### 23. GET /contacts/deleted (the trash; 2,000 contacts deleted in a transaction rolled back after)'
BEGIN;
UPDATE contacts SET deleted_at = now() - (random() * interval '20 days')
WHERE organization_id = :'org' AND id IN
  (SELECT id FROM contacts WHERE organization_id = :'org' ORDER BY created_at LIMIT 2000);
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
SELECT :cols FROM contacts WHERE organization_id = :'org' AND deleted_at IS NOT NULL
ORDER BY deleted_at DESC, id DESC LIMIT 51;
\echo '### 24. GET /contacts/deleted, next page'
SELECT deleted_at AS d_time, id AS d_id FROM contacts WHERE organization_id = :'org' AND deleted_at IS NOT NULL
ORDER BY deleted_at DESC, id DESC OFFSET 49 LIMIT 1 \gset
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
SELECT :cols FROM contacts WHERE organization_id = :'org' AND deleted_at IS NOT NULL
  AND (deleted_at, id) < (:'d_time', :'d_id')
ORDER BY deleted_at DESC, id DESC LIMIT 51;
ROLLBACK;

\echo '### 25. ?includeTotal=true with no filter (the count of every live contact, only when asked)'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
SELECT count(*) AS n FROM contacts WHERE organization_id = :'org' AND deleted_at IS NULL;

\echo '### 26. ?sort=-updatedAt'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
SELECT :cols FROM contacts WHERE organization_id = :'org' AND deleted_at IS NULL
ORDER BY updated_at DESC, id DESC LIMIT 51;

\echo '### 27. ?lifecycleStage=evangelist&sort=lastName (a filter whose index serves another order)'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
SELECT :cols FROM contacts WHERE organization_id = :'org' AND deleted_at IS NULL AND lifecycle_stage = 'evangelist'
ORDER BY last_name ASC, id ASC LIMIT 51;

\echo '### 28. ?q=smi, next page (phase 1: the keyset, after the last match of the first page, inside the scan of the first 10,000 rows)'
SELECT created_at AS s_time, id AS s_id FROM contacts WHERE organization_id = :'org' AND deleted_at IS NULL
  AND search LIKE lower('%smi%') ORDER BY created_at DESC, id DESC OFFSET 49 LIMIT 1 \gset
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
SELECT :cols FROM (SELECT :cols, search FROM contacts WHERE organization_id = :'org' AND deleted_at IS NULL
                   AND (created_at, id) < (:'s_time', :'s_id')
                   ORDER BY created_at DESC, id DESC LIMIT 10000) AS contacts
WHERE true AND search LIKE lower('%smi%') ORDER BY created_at DESC, id DESC LIMIT 51;
\echo '### 28. ?q=smi, next page (phase 2, only when phase 1 found less than a page)'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
SELECT :cols FROM (SELECT :cols FROM contacts WHERE organization_id = :'org' AND deleted_at IS NULL AND search LIKE lower('%smi%')
                   AND (created_at, id) < (:'s_time', :'s_id')
                   OFFSET 0) AS matches
ORDER BY created_at DESC, id DESC LIMIT 51;
