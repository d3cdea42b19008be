//! CSV import jobs in PostgreSQL: the queue (`FOR UPDATE SKIP LOCKED`), and chunk writes
//! that land rows, events and the job's checkpoint in one transaction.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{
    Array, BigInt, Binary, Bool, Integer, Jsonb, Nullable, Text, Timestamptz, Uuid as SqlUuid,
};
use diesel_async::{AsyncConnection, RunQueryDsl, SimpleAsyncConnection};
use nexus_domain::contact::Contact;
use nexus_domain::{ApiKeyId, ImportId, OrgId, UserId};
use nexus_ports::StoreError;
use nexus_ports::imports::{
    ChunkWrite, ChunkWriteError, ImportJob, ImportRepository, ImportStatus, MAX_ROW_ERRORS,
    OnDuplicate, RowError, Turn,
};
use uuid::Uuid;

use crate::audit;
use crate::error::from_diesel;
use crate::pool::{Db, LARGE_MESSAGE, PgConn, PgPool, retire};
use crate::repo::contacts::{COLUMNS, ContactRow};
use crate::repo::{holds_generation, import_chunk};
use nexus_domain::audit::AuditChange;

const JOB_COLUMNS: &str = "organization_id, id, created_by, api_key_id, status, on_duplicate, total_rows, next_row, processed, \
     created, updated, skipped, failed, errors, failure, created_at, finished_at, starts";

#[derive(QueryableByName)]
struct JobRow {
    #[diesel(sql_type = SqlUuid)]
    organization_id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    created_by: Option<Uuid>,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    api_key_id: Option<Uuid>,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Text)]
    on_duplicate: String,
    #[diesel(sql_type = Nullable<Integer>)]
    total_rows: Option<i32>,
    #[diesel(sql_type = Integer)]
    next_row: i32,
    #[diesel(sql_type = Integer)]
    processed: i32,
    #[diesel(sql_type = Integer)]
    created: i32,
    #[diesel(sql_type = Integer)]
    updated: i32,
    #[diesel(sql_type = Integer)]
    skipped: i32,
    #[diesel(sql_type = Integer)]
    failed: i32,
    #[diesel(sql_type = Jsonb)]
    errors: serde_json::Value,
    #[diesel(sql_type = Nullable<Text>)]
    failure: Option<String>,
    #[diesel(sql_type = Timestamptz)]
    created_at: DateTime<Utc>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    finished_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Integer)]
    starts: i32,
}

#[derive(QueryableByName)]
struct ClaimedRow {
    #[diesel(embed)]
    job: JobRow,
    #[diesel(sql_type = Binary)]
    csv: Vec<u8>,
}

impl TryFrom<JobRow> for ImportJob {
    type Error = StoreError;

    fn try_from(r: JobRow) -> Result<Self, StoreError> {
        let corrupt = || StoreError::Other(anyhow::anyhow!("stored import {} is invalid", r.id));
        Ok(Self {
            id: ImportId::from_uuid(r.id),
            organization_id: OrgId::from_uuid(r.organization_id),
            created_by: r.created_by.map(UserId::from_uuid),
            api_key_id: r.api_key_id.map(ApiKeyId::from_uuid),
            status: ImportStatus::parse(&r.status).ok_or_else(corrupt)?,
            on_duplicate: OnDuplicate::parse(&r.on_duplicate).ok_or_else(corrupt)?,
            total_rows: r.total_rows.map(i64::from),
            next_row: i64::from(r.next_row),
            processed: i64::from(r.processed),
            created: i64::from(r.created),
            updated: i64::from(r.updated),
            skipped: i64::from(r.skipped),
            failed: i64::from(r.failed),
            errors: serde_json::from_value(r.errors.clone()).map_err(|_| corrupt())?,
            failure: r.failure,
            created_at: r.created_at,
            finished_at: r.finished_at,
            starts: i64::from(r.starts),
        })
    }
}

#[derive(Clone)]
pub struct PgImportRepository {
    db: Db,
    /// Set while a chunk refreshes the contacts' statistics, so that the chunks beside
    /// it do not queue behind the same `ANALYZE`.
    analyzing: Arc<AtomicBool>,
}

/// Whether the contacts table has more than doubled since its statistics were taken
/// (or never had any): its file's size against the pages `ANALYZE` last counted. Unlike
/// the activity counters, the file's size does not lag behind the commits.
const STATS_STALE_SQL: &str =
    "SELECT pg_relation_size(c.oid) / current_setting('block_size')::bigint
            > 2 * greatest(c.relpages, 0)::bigint + 8 AS stale
     FROM pg_class c WHERE c.oid = 'contacts'::regclass";

#[derive(QueryableByName)]
struct Stale {
    #[diesel(sql_type = Bool)]
    stale: bool,
}

/// Clears the flag however the refresh ends, a dropped future included.
struct Analyzing<'a>(&'a AtomicBool);

impl Drop for Analyzing<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl PgImportRepository {
    #[must_use]
    pub fn new(pool: PgPool, acquire_timeout: Duration) -> Self {
        Self {
            db: Db::new(pool, acquire_timeout),
            analyzing: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Analyzes the contacts table when an import has outgrown its statistics. Without
    /// statistics (a new database) or with ones taken at less than half the table's
    /// size, PostgreSQL cannot tell the email index from the organization's other
    /// indexes for the lookup by email, and may pick one that reads all of the
    /// organization's contacts per address: a first import of 100,000 rows into a new
    /// database took 63 s instead of about 5, until autovacuum's analyze came a minute
    /// in. Checked before each chunk's lookup, so a growing table is analyzed each time
    /// it doubles; a large, analyzed table is left alone.
    async fn refresh_statistics(&self, conn: &mut PgConn) -> Result<(), diesel::result::Error> {
        if self.analyzing.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let _clear = Analyzing(&self.analyzing);
        let stats: Stale = diesel::sql_query(STATS_STALE_SQL).get_result(conn).await?;
        if stats.stale {
            conn.batch_execute("ANALYZE contacts").await?;
        }
        Ok(())
    }

    async fn conn(&self) -> Result<PgConn, StoreError> {
        self.db.conn().await
    }
}

fn count(n: i64) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

#[derive(QueryableByName)]
struct Unfinished {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

impl ImportRepository for PgImportRepository {
    async fn create(
        &self,
        org: OrgId,
        job: &ImportJob,
        csv: &[u8],
        max_unfinished: usize,
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn().await?;
        let change = AuditChange::new(
            "contact_import.created",
            "contact_import",
            Some(job.id.as_uuid().to_string()),
            &serde_json::json!({ "after": {
                "onDuplicate": job.on_duplicate.as_str(),
                "bytes": csv.len(),
            }}),
        );
        let created = conn.transaction(async |conn| {
            // One organization's creates take turns here, so each counts the others'. (Its
            // own statement: a count in the same one could be taken before the lock.)
            diesel::sql_query(
                "SELECT pg_advisory_xact_lock(hashtextextended('contact_imports:' || $1::text, 0))",
            )
            .bind::<SqlUuid, _>(org.as_uuid())
            .execute(conn)
            .await?;
            let unfinished: Unfinished = diesel::sql_query(
                "SELECT count(*) AS n FROM contact_imports
                  WHERE organization_id = $1 AND status IN ('pending', 'running')",
            )
            .bind::<SqlUuid, _>(org.as_uuid())
            .get_result(conn)
            .await?;
            if usize::try_from(unfinished.n).unwrap_or(usize::MAX) >= max_unfinished {
                return Ok(false);
            }
            diesel::sql_query(
                "INSERT INTO contact_imports (organization_id, id, created_by, status, on_duplicate, csv, created_at, api_key_id)
                 VALUES ($1, $2, $3, 'pending', $4, $5, $6, $7)",
            )
            .bind::<SqlUuid, _>(org.as_uuid())
            .bind::<SqlUuid, _>(job.id.as_uuid())
            .bind::<Nullable<SqlUuid>, _>(job.created_by.map(|u| u.as_uuid()))
            .bind::<Text, _>(job.on_duplicate.as_str())
            .bind::<Binary, _>(csv)
            .bind::<Timestamptz, _>(job.created_at)
            .bind::<Nullable<SqlUuid>, _>(job.api_key_id.map(|k| k.as_uuid()))
            .execute(conn)
            .await?;
            audit::record(conn, org, change).await?;
            Ok(true)
        })
        .await;
        // Unless refused before the insert, the file may have gone out on this connection.
        if csv.len() > LARGE_MESSAGE && !matches!(created, Ok(false)) {
            retire(conn);
        }
        created.map_err(from_diesel)
    }

    async fn get(&self, org: OrgId, id: ImportId) -> Result<Option<ImportJob>, StoreError> {
        let mut conn = self.conn().await?;
        let row: Option<JobRow> = diesel::sql_query(format!(
            "SELECT {JOB_COLUMNS} FROM contact_imports WHERE organization_id = $1 AND id = $2"
        ))
        .bind::<SqlUuid, _>(org.as_uuid())
        .bind::<SqlUuid, _>(id.as_uuid())
        .get_result(&mut conn)
        .await
        .optional()
        .map_err(from_diesel)?;
        row.map(ImportJob::try_from).transpose()
    }

    async fn claim_next(
        &self,
        now: DateTime<Utc>,
        stale_before: DateTime<Utc>,
    ) -> Result<Option<(ImportJob, Vec<u8>)>, StoreError> {
        let mut conn = self.conn().await?;
        // Organizations take turns: the job taken is that of the organization served
        // longest ago (never first), so one organization's queue of large files does
        // not hold up another's import; within an organization, oldest first.
        let row: Option<ClaimedRow> = diesel::sql_query(format!(
            "UPDATE contact_imports SET status = 'running', heartbeat_at = $1, starts = starts + 1
             WHERE (organization_id, id) = (
                 SELECT c.organization_id, c.id FROM contact_imports c
                 WHERE c.status = 'pending' OR (c.status = 'running' AND c.heartbeat_at < $2)
                 ORDER BY (SELECT max(s.heartbeat_at) FROM contact_imports s
                           WHERE s.organization_id = c.organization_id) NULLS FIRST,
                          c.created_at
                 LIMIT 1 FOR UPDATE OF c SKIP LOCKED)
             RETURNING {JOB_COLUMNS}, csv"
        ))
        .bind::<Timestamptz, _>(now)
        .bind::<Timestamptz, _>(stale_before)
        .get_result(&mut conn)
        .await
        .optional()
        .map_err(from_diesel)?;
        if row.as_ref().is_some_and(|r| r.csv.len() > LARGE_MESSAGE) {
            retire(conn);
        }
        row.map(|r| Ok((ImportJob::try_from(r.job)?, r.csv)))
            .transpose()
    }

    async fn existing_by_email(
        &self,
        org: OrgId,
        emails: &[String],
    ) -> Result<Vec<Contact>, StoreError> {
        let mut conn = self.conn().await?;
        // Only a matter of speed: a lookup without fresh statistics is slower, not wrong,
        // so an ANALYZE waiting on a lock or timing out must not fail the chunk.
        if let Err(e) = self.refresh_statistics(&mut conn).await {
            tracing::warn!(error = %e, "contacts statistics not refreshed before an import lookup");
        }
        // One probe of the unique email index per address: the `LIMIT 1` keeps the
        // lateral subquery a per-address index lookup. PostgreSQL misjudges how many
        // rows an address matches, and planned `lower(email) = ANY($2)` as a whole-table
        // scan and a plain join as a merge over the organization's index (1.5–7 s a
        // 1,000-row chunk at a million rows, against 7 ms for the probes).
        //
        // The plan is the generic one, made for an average organization. A plan made
        // for this organization's id takes it from the statistics, where a new one is
        // absent: expecting about one contact, PostgreSQL may read them all per address
        // through another index that leads with the organization (a first import into a
        // new organization beside two others: 64,000 rows, then 10 s a chunk).
        let rows: Vec<ContactRow> = conn
            .transaction(async |conn| {
                conn.batch_execute("SET LOCAL plan_cache_mode = force_generic_plan")
                    .await?;
                diesel::sql_query(format!(
                    "SELECT c.* FROM unnest($2::text[]) AS wanted(email)
                     CROSS JOIN LATERAL (
                         SELECT {COLUMNS} FROM contacts
                         WHERE organization_id = $1 AND lower(email) = wanted.email
                           AND deleted_at IS NULL AND email IS NOT NULL
                         LIMIT 1) AS c"
                ))
                .bind::<SqlUuid, _>(org.as_uuid())
                .bind::<Array<Text>, _>(emails)
                .load(conn)
                .await
            })
            .await
            .map_err(from_diesel)?;
        rows.into_iter().map(Contact::try_from).collect()
    }

    async fn members_among(&self, org: OrgId, users: &[UserId]) -> Result<Vec<UserId>, StoreError> {
        #[derive(QueryableByName)]
        struct Member {
            #[diesel(sql_type = SqlUuid)]
            user_id: Uuid,
        }
        let ids: Vec<Uuid> = users.iter().map(|u| u.as_uuid()).collect();
        let mut conn = self.conn().await?;
        let members: Vec<Member> = diesel::sql_query(
            "SELECT user_id FROM memberships WHERE organization_id = $1 AND user_id = ANY($2)",
        )
        .bind::<SqlUuid, _>(org.as_uuid())
        .bind::<Array<SqlUuid>, _>(ids)
        .load(&mut conn)
        .await
        .map_err(from_diesel)?;
        Ok(members
            .into_iter()
            .map(|m| UserId::from_uuid(m.user_id))
            .collect())
    }

    async fn commit_chunk(
        &self,
        org: OrgId,
        id: ImportId,
        chunk: &ChunkWrite,
        now: DateTime<Utc>,
        turn: Turn,
    ) -> Result<(), ChunkWriteError> {
        let mut conn = self.conn().await?;
        let mut abandoned = false;
        let held = conn.transaction(async |conn| {
            if !holds_generation(conn, org, chunk.fields_generation).await? {
                return Ok(false);
            }
            let mut errors = chunk.errors.clone();
            let (mut failed, mut skipped) = (chunk.failed, chunk.skipped);
            let inserted = import_chunk::write(
                conn,
                org,
                false,
                chunk.inserts.iter().map(|(_, c, _)| (c, None)),
            )
            .await?;
            for (row, contact, _) in &chunk.inserts {
                if inserted.contains(&contact.id.as_uuid()) {
                    continue;
                }
                if chunk.skip_taken {
                    skipped += 1;
                } else {
                    failed += 1;
                    errors.push(RowError {
                        row: *row,
                        field: "email".into(),
                        message: "another contact took this email meanwhile".into(),
                    });
                }
            }
            let written = import_chunk::write(
                conn,
                org,
                true,
                chunk.updates.iter().map(|(_, c, v, _)| (c, Some(*v))),
            )
            .await?;
            // The rows are in; what follows is in file order. Nothing past this point
            // takes a lock another chunk's rows could be waiting for, so waiting here
            // cannot deadlock with the chunk before.
            if !turn.await {
                abandoned = true;
                return Err(diesel::result::Error::RollbackTransaction);
            }
            let inserted_events = chunk
                .inserts
                .iter()
                .filter(|(_, c, _)| inserted.contains(&c.id.as_uuid()))
                .map(|(_, _, e)| e);
            let updated_events = chunk
                .updates
                .iter()
                .filter(|(_, c, _, _)| written.contains(&c.id.as_uuid()))
                .map(|(_, _, _, e)| e);
            // Numbered as they are appended, under a lock held to the commit: the
            // checkpoint's update is all that follows.
            import_chunk::append_events(conn, org, inserted_events.chain(updated_events)).await?;
            for (row, contact, _, _) in &chunk.updates {
                if !written.contains(&contact.id.as_uuid()) {
                    failed += 1;
                    errors.push(RowError {
                        row: *row,
                        field: String::new(),
                        message: "the contact changed meanwhile; import this row again".into(),
                    });
                }
            }
            let created = i64::try_from(inserted.len()).unwrap_or(0);
            let updated = i64::try_from(written.len()).unwrap_or(0);
            errors.sort_by_key(|e| e.row);
            errors.truncate(MAX_ROW_ERRORS);
            // Only from the checkpoint the chunk starts at, and only while the job runs:
            // a worker that lost the job (stalled past the takeover) must not write its
            // rows again, nor into a job its successor has ended.
            let moved = diesel::sql_query(
                "UPDATE contact_imports SET
                     next_row = $3, total_rows = $4, processed = processed + $5, created = created + $6,
                     updated = updated + $7, skipped = skipped + $8, failed = failed + $9, heartbeat_at = $10, starts = 0,
                     errors = (SELECT coalesce(jsonb_agg(e ORDER BY n), '[]'::jsonb)
                               FROM jsonb_array_elements(errors || $11) WITH ORDINALITY AS x(e, n) WHERE n <= $12)
                 WHERE organization_id = $1 AND id = $2 AND next_row = $13 AND status IN ('pending', 'running')",
            )
            .bind::<SqlUuid, _>(org.as_uuid())
            .bind::<SqlUuid, _>(id.as_uuid())
            .bind::<Integer, _>(count(chunk.next_row))
            .bind::<Integer, _>(count(chunk.total_rows))
            .bind::<Integer, _>(count(chunk.processed))
            .bind::<Integer, _>(count(created))
            .bind::<Integer, _>(count(updated))
            .bind::<Integer, _>(count(skipped))
            .bind::<Integer, _>(count(failed))
            .bind::<Timestamptz, _>(now)
            .bind::<Jsonb, _>(serde_json::to_value(&errors).unwrap_or_default())
            .bind::<BigInt, _>(i64::try_from(MAX_ROW_ERRORS).unwrap_or(1000))
            .bind::<Integer, _>(count(chunk.first_row()))
            .execute(conn)
            .await?;
            if moved == 0 {
                abandoned = true;
                return Err(diesel::result::Error::RollbackTransaction);
            }
            Ok::<_, diesel::result::Error>(true)
        })
        .await;
        if abandoned {
            return Err(ChunkWriteError::Abandoned);
        }
        if held.map_err(from_diesel)? {
            Ok(())
        } else {
            Err(ChunkWriteError::DefinitionsChanged)
        }
    }

    async fn finish(
        &self,
        org: OrgId,
        id: ImportId,
        status: ImportStatus,
        failure: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        #[derive(QueryableByName)]
        struct Totals {
            #[diesel(sql_type = Jsonb)]
            totals: serde_json::Value,
        }
        let mut conn = self.conn().await?;
        let failure = &failure;
        conn.transaction(async |conn| {
            // The file is not needed once the job ends. A job ends once: a worker that
            // lost it must not turn its successor's verdict over.
            let done: Option<Totals> = diesel::sql_query(
                "UPDATE contact_imports SET status = $3, failure = $4, finished_at = $5, csv = ''::bytea
                 WHERE organization_id = $1 AND id = $2 AND status IN ('pending', 'running')
                 RETURNING jsonb_build_object('status', status, 'failure', failure,
                     'processed', processed, 'created', created, 'updated', updated,
                     'skipped', skipped, 'failed', failed) AS totals",
            )
            .bind::<SqlUuid, _>(org.as_uuid())
            .bind::<SqlUuid, _>(id.as_uuid())
            .bind::<Text, _>(status.as_str())
            .bind::<Nullable<Text>, _>(failure.as_deref())
            .bind::<Timestamptz, _>(now)
            .get_result(conn)
            .await
            .optional()?;
            if let Some(done) = done {
                // What the job wrote, in one entry: the contacts' own events say which.
                let change = AuditChange::new(
                    "contact_import.finished",
                    "contact_import",
                    Some(id.as_uuid().to_string()),
                    &serde_json::json!({ "after": done.totals }),
                );
                audit::record(conn, org, change).await?;
            }
            Ok::<_, diesel::result::Error>(())
        })
        .await
        .map_err(from_diesel)
    }
}
