//! Bulk demo and benchmark data: realistic contacts generated inside PostgreSQL by
//! set-based `INSERT .. SELECT` over `generate_series`, in batches, so a million rows
//! take one round trip per batch and no client-side rows at all.
//!
//! Seeding writes no outbox events: it fabricates data, it does not record what users did.
//! Seeded contacts otherwise keep every rule the API keeps (see `INSERT_BATCH`), required
//! custom fields included.

use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Text, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

/// Rows per statement.
pub const BATCH: i64 = 50_000;

#[derive(QueryableByName)]
struct Id {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
}

/// The organization with `slug`, created (named after the slug) when missing.
///
/// # Errors
/// Database failures, or a slug that is not `^[a-z0-9]+(-[a-z0-9]+)*$`.
pub async fn organization(conn: &mut AsyncPgConnection, slug: &str) -> anyhow::Result<Uuid> {
    let found: Option<Id> = diesel::sql_query("SELECT id FROM organizations WHERE slug = $1")
        .bind::<Text, _>(slug)
        .get_result(conn)
        .await
        .map(Some)
        .or_else(|e| {
            if e == diesel::result::Error::NotFound {
                Ok(None)
            } else {
                Err(e)
            }
        })?;
    if let Some(found) = found {
        return Ok(found.id);
    }
    let created: Id = diesel::sql_query(
        "INSERT INTO organizations (id, name, slug) VALUES ($1, $2, $2) RETURNING id",
    )
    .bind::<SqlUuid, _>(Uuid::now_v7())
    .bind::<Text, _>(slug)
    .get_result(conn)
    .await?;
    Ok(created.id)
}

/// One batch: `$3` contacts numbered from `$2`, of a load of `$5` numbered from `$6`,
/// created over the last two years.
const INSERT_BATCH: &str = r"
WITH names AS (
    SELECT ARRAY['James','Mary','Robert','Patricia','John','Jennifer','Michael','Linda','David','Elizabeth',
                 'William','Barbara','Richard','Susan','Joseph','Jessica','Thomas','Sarah','Charles','Karen',
                 'Ada','Grace','Alan','Marie','Nikola','Rosalind','Emmy','Hedy','Katherine','Dorothy',
                 'Sofia','Lucas','Mateo','Amara','Yuki','Hiroshi','Chen','Aisha','Omar','Fatima',
                 'Lars','Ingrid','Pierre','Camille','Giulia','Marco','Anna','Jan','Olga','Ivan'] AS first,
           ARRAY['Smith','Johnson','Williams','Brown','Jones','Garcia','Miller','Davis','Rodriguez','Martinez',
                 'Hernandez','Lopez','Gonzalez','Wilson','Anderson','Thomas','Taylor','Moore','Jackson','Martin',
                 'Lee','Perez','Thompson','White','Harris','Sanchez','Clark','Ramirez','Lewis','Robinson',
                 'Walker','Young','Allen','King','Wright','Scott','Torres','Nguyen','Hill','Flores',
                 'Lovelace','Hopper','Turing','Curie','Tesla','Franklin','Noether','Lamarr','Johnson','Vaughan',
                 'Müller','Schmidt','Dubois','Rossi','Kowalski','Novak','Tanaka','Sato','Wang','Kim',
                 'Okafor','Mensah','Haddad','Nakamura','Andersson','Nielsen','Costa','Silva','Ivanova','Petrov'] AS last,
           ARRAY['Acme','Globex','Initech','Umbrella','Hooli','Stark Industries','Wayne Enterprises','Wonka',
                 'Soylent','Tyrell','Cyberdyne','Aperture','Massive Dynamic','Vandelay','Pied Piper','Dunder Mifflin',
                 'Oscorp','Gringotts','Monarch','Blue Sun'] AS company,
           ARRAY['example.com','mail.test','corp.example','inbox.test','post.example'] AS domain,
           ARRAY['vip','newsletter','partner','churn-risk','event-2026','webinar','trial','enterprise',
                 'smb','referral','inbound','outbound'] AS tag,
           ARRAY['lead','lead','lead','marketing_qualified','marketing_qualified','sales_qualified',
                 'opportunity','customer','customer','evangelist','other'] AS stage
), raw AS (
    SELECT n,
           -- Spread over the last two years in numbering order (with jitter), as contacts
           -- created over time are: rows land in the heap roughly in creation order.
           now() - interval '730 days' * (1 - (n - $6::bigint + random()) / $5::float8) AS created_at,
           first[1 + (hashint8(n) & 2147483647) % cardinality(first)] AS first_name,
           last[1 + (hashint8(n * 7 + 3) & 2147483647) % cardinality(last)] AS last_name,
           CASE WHEN n % 10 < 8 THEN company[1 + n % cardinality(company)] END AS company,
           domain[1 + n % cardinality(domain)] AS domain,
           stage[1 + (hashint8(n * 13) & 2147483647) % cardinality(stage)] AS lifecycle_stage,
           CASE WHEN n % 10 < 7 THEN lpad(((hashint8(n * 31) & 2147483647) % 10000000)::text, 7, '0') END AS phone_digits,
           (ARRAY[tag[1 + (hashint8(n * 17) & 2147483647) % 12],
                  tag[1 + ((hashint8(n * 17) & 2147483647) + 5) % 12],
                  tag[1 + ((hashint8(n * 17) & 2147483647) + 9) % 12]])[1:n % 4] AS tags
    FROM names, generate_series($2::bigint, $2::bigint + $3::bigint - 1) AS n
)
INSERT INTO contacts (organization_id, id, first_name, last_name, email, phone, phone_e164, company,
                      lifecycle_stage, lead_score, tags, custom_fields, created_at, updated_at)
SELECT $1,
       -- UUIDv7 from the creation time, so ids stay time-ordered like the API's.
       (lpad(to_hex((extract(epoch FROM created_at) * 1000)::bigint), 12, '0') || '7'
        || substr(replace(gen_random_uuid()::text, '-', ''), 14))::uuid,
       first_name, last_name,
       CASE WHEN n % 20 <> 0 THEN lower(translate(first_name || '.' || last_name, 'ü', 'u')) || '.' || n || $4 || '@' || domain END,
       CASE WHEN phone_digits IS NOT NULL THEN '+1 (555) ' || substr(phone_digits, 1, 3) || '-' || substr(phone_digits, 4) END,
       CASE WHEN phone_digits IS NOT NULL THEN '+1555' || phone_digits END,
       company, lifecycle_stage,
       LEAST(100, (CASE WHEN n % 20 <> 0 THEN 20 ELSE 0 END) + (CASE WHEN phone_digits IS NOT NULL THEN 10 ELSE 0 END)
                 + (CASE WHEN company IS NOT NULL THEN 10 ELSE 0 END)
                 + 10 * coalesce(array_position(ARRAY['lead','marketing_qualified','sales_qualified','opportunity',
                                                      'customer','evangelist'], lifecycle_stage) - 1, 0)),
       tags, required.values, created_at, created_at
FROM raw, (
    -- A value for each required custom field, valid for its type, so seeded contacts
    -- keep the rule that a contact has every required field (one value for all rows).
    SELECT coalesce(jsonb_object_agg(key, CASE field_type
               WHEN 'number' THEN to_jsonb(0)
               WHEN 'date' THEN to_jsonb((now() AT TIME ZONE 'UTC')::date::text)
               WHEN 'boolean' THEN to_jsonb(false)
               WHEN 'select' THEN to_jsonb(options[1])
               WHEN 'multiselect' THEN jsonb_build_array(options[1])
               ELSE to_jsonb('Seeded'::text) END), '{}'::jsonb) AS values
    FROM custom_field_definitions WHERE organization_id = $1 AND required
) AS required";

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(QueryableByName)]
struct IndexDef {
    #[diesel(sql_type = Text)]
    indexname: String,
    #[diesel(sql_type = Text)]
    indexdef: String,
}

/// From this many rows on (and when the load at least doubles the table), the secondary
/// indexes are dropped and rebuilt around the load: a bulk build is several times faster
/// than maintaining them row by row.
pub const REBUILD_INDEXES_FROM: i64 = 100_000;

/// Adds `count` contacts to the organization, numbering them after those it has.
/// Calls `progress` with the running total after each batch.
///
/// Everything happens in one transaction: a failure leaves the table as it was, indexes
/// included. Large loads lock `contacts` for their duration (a seed is not for a live
/// production database).
///
/// # Errors
/// Database failures.
pub async fn contacts(
    conn: &mut AsyncPgConnection,
    organization: Uuid,
    count: i64,
    mut progress: impl FnMut(i64) + Send,
) -> anyhow::Result<i64> {
    let existing: Count =
        diesel::sql_query("SELECT count(*) AS n FROM contacts WHERE organization_id = $1")
            .bind::<SqlUuid, _>(organization)
            .get_result(conn)
            .await?;
    // Distinguishes this run's emails from earlier runs' (unique per organization): the
    // numbering restarts lower after a purge, so the number alone could meet an old one.
    let run = format!(".{:08x}", rand::random::<u32>());
    conn.transaction(async |conn| {
        diesel::sql_query("SET LOCAL synchronous_commit = off").execute(conn).await?;
        // The trigram GIN build keeps its entries in memory up to this, then merges.
        diesel::sql_query("SET LOCAL maintenance_work_mem = '1GB'").execute(conn).await?;
        // Rebuilding costs as much as the table is large: only worth it when the load
        // at least doubles the table.
        let rows: Count = diesel::sql_query("SELECT greatest(reltuples, 0)::bigint AS n FROM pg_class WHERE oid = 'contacts'::regclass")
            .get_result(conn)
            .await?;
        let rebuild: Vec<IndexDef> = if count >= REBUILD_INDEXES_FROM && count >= rows.n {
            // The definitions come from the catalog, so they always match the migrations.
            // Only the primary key stays (foreign keys need it); the unique email index
            // is rebuilt too, and its build checks uniqueness inside this transaction.
            diesel::sql_query(
                "SELECT indexname::text AS indexname, indexdef FROM pg_indexes
                 WHERE schemaname = current_schema() AND tablename = 'contacts'
                   AND indexname <> 'contacts_pkey'",
            )
            .load(conn)
            .await?
        } else {
            Vec::new()
        };
        for index in &rebuild {
            diesel::sql_query(format!("DROP INDEX {}", index.indexname)).execute(conn).await?;
        }
        let mut done = 0;
        while done < count {
            let batch = BATCH.min(count - done);
            diesel::sql_query(INSERT_BATCH)
                .bind::<SqlUuid, _>(organization)
                .bind::<BigInt, _>(existing.n + done + 1)
                .bind::<BigInt, _>(batch)
                .bind::<Text, _>(&run)
                .bind::<diesel::sql_types::Double, _>(count as f64)
                .bind::<BigInt, _>(existing.n + 1)
                .execute(conn)
                .await?;
            done += batch;
            progress(done);
        }
        for index in &rebuild {
            diesel::sql_query(&index.indexdef).execute(conn).await?;
        }
        Ok::<_, anyhow::Error>(())
    })
    .await?;
    diesel::sql_query("ANALYZE contacts").execute(conn).await?;
    Ok(count)
}

/// Connects to `url`, finds the organization `slug`, and adds `count` contacts. Returns
/// the organization id.
///
/// # Errors
/// No such organization; as [`contacts`].
pub async fn contacts_for_slug(
    url: &str,
    slug: &str,
    count: i64,
    progress: impl FnMut(i64) + Send,
) -> anyhow::Result<Uuid> {
    let mut conn = AsyncPgConnection::establish(url).await?;
    // Not created here: an organization made outside registration would have no OWNER,
    // and one an older seed made that way is refused too: nobody could log into it.
    let found: Vec<Id> = diesel::sql_query(
        "SELECT id FROM organizations o WHERE slug = $1
           AND EXISTS (SELECT 1 FROM memberships m WHERE m.organization_id = o.id AND m.role = 'OWNER')",
    )
    .bind::<Text, _>(slug)
    .load(&mut conn)
    .await?;
    let Some(org) = found.into_iter().next().map(|o| o.id) else {
        anyhow::bail!(
            "no organization `{slug}` with an OWNER: register one first (POST /api/v1/auth/register), \
             or seed the demo organization's (`nexus-demo`)"
        );
    };
    contacts(&mut conn, org, count, progress).await?;
    Ok(org)
}
