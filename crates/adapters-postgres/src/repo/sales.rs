use chrono::{DateTime, NaiveDate, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use nexus_domain::activity::ActivityType;
use nexus_domain::deal::{Deal, DealStatus};
use nexus_domain::pipeline::{Pipeline, Stage, StageKind};
use nexus_domain::{
    ActivityId, ContactId, DealId, DomainEvent, OrgId, PipelineId, StageId, UserId,
};
use nexus_ports::StoreError;
use nexus_ports::sales::{
    ActivityFilter, ActivityRecord, BoardData, DealFilter, DealMove, DealRecord, DealWrite,
    DealWriteError, NewActivity, PipelineChange, PipelineRecord, PipelineWriteError, SalesStore,
    StageTotals,
};
use uuid::Uuid;

use crate::error::from_diesel;
use crate::pool::Db;
use crate::schema::{
    activities, deal_stage_history, deals, memberships, organizations, pipeline_stages, pipelines,
};
use crate::{audit, outbox};
use nexus_domain::audit::{AuditChange, field_changes};
use serde_json::json;

/// Gap between neighbours when a deal is appended to a stage.
const POSITION_STEP: f64 = 1024.0;

#[derive(Clone)]
pub struct PgSalesStore {
    db: Db,
}

impl PgSalesStore {
    #[must_use]
    pub const fn new(db: Db) -> Self {
        Self { db }
    }
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Other(anyhow::anyhow!("corrupt {what} in the database"))
}

#[derive(Queryable, Selectable, QueryableByName)]
#[diesel(table_name = deals)]
struct DealRow {
    id: Uuid,
    pipeline_id: Uuid,
    stage_id: Uuid,
    contact_id: Uuid,
    owner_id: Option<Uuid>,
    title: String,
    value_minor: i64,
    currency: String,
    status: String,
    probability: i16,
    expected_close_date: Option<NaiveDate>,
    closed_at: Option<DateTime<Utc>>,
    lost_reason: Option<String>,
    won_reason: Option<String>,
    position: f64,
    stage_entered_at: DateTime<Utc>,
    version: i32,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<DealRow> for DealRecord {
    type Error = StoreError;
    fn try_from(r: DealRow) -> Result<Self, StoreError> {
        Ok(Self {
            deal: Deal {
                id: DealId::from_uuid(r.id),
                pipeline_id: PipelineId::from_uuid(r.pipeline_id),
                stage_id: StageId::from_uuid(r.stage_id),
                contact_id: ContactId::from_uuid(r.contact_id),
                owner_id: r.owner_id.map(UserId::from_uuid),
                title: r.title,
                value_minor: r.value_minor,
                currency: r.currency,
                status: DealStatus::parse(&r.status).ok_or_else(|| corrupt("deal status"))?,
                probability: u8::try_from(r.probability).map_err(|_| corrupt("probability"))?,
                closed_at: r.closed_at,
                lost_reason: r.lost_reason,
                won_reason: r.won_reason,
                stage_entered_at: r.stage_entered_at,
                version: r.version,
            },
            expected_close_date: r.expected_close_date,
            position: r.position,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = activities)]
struct ActivityRow {
    id: Uuid,
    activity_type: String,
    subject: String,
    description: Option<String>,
    metadata: serde_json::Value,
    contact_id: Option<Uuid>,
    deal_id: Option<Uuid>,
    due_at: Option<DateTime<Utc>>,
    assignee_id: Option<Uuid>,
    completed_at: Option<DateTime<Utc>>,
    created_by: Option<Uuid>,
    occurred_at: DateTime<Utc>,
    version: i32,
}

impl TryFrom<ActivityRow> for ActivityRecord {
    type Error = StoreError;
    fn try_from(r: ActivityRow) -> Result<Self, StoreError> {
        Ok(Self {
            id: ActivityId::from_uuid(r.id),
            activity_type: ActivityType::parse(&r.activity_type)
                .ok_or_else(|| corrupt("activity type"))?,
            subject: r.subject,
            description: r.description,
            metadata: r.metadata,
            contact_id: r.contact_id.map(ContactId::from_uuid),
            deal_id: r.deal_id.map(DealId::from_uuid),
            due_at: r.due_at,
            assignee_id: r.assignee_id.map(UserId::from_uuid),
            completed_at: r.completed_at,
            created_by: r.created_by.map(UserId::from_uuid),
            occurred_at: r.occurred_at,
            version: r.version,
        })
    }
}

fn deals_from(rows: Vec<DealRow>) -> Result<Vec<DealRecord>, StoreError> {
    rows.into_iter().map(TryInto::try_into).collect()
}

enum Tx<E> {
    Domain(E),
    Db(diesel::result::Error),
}

impl<E> From<diesel::result::Error> for Tx<E> {
    fn from(e: diesel::result::Error) -> Self {
        Self::Db(e)
    }
}

/// A foreign key that names a row of another tenant (or none) is the caller's error.
fn reference_error(e: diesel::result::Error) -> DealWriteError {
    use diesel::result::{DatabaseErrorKind, Error};
    if let Error::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, info) = &e {
        let name = info.constraint_name().unwrap_or_default();
        let field = if name.contains("contact") {
            "contactId"
        } else if name.contains("deal") {
            "dealId"
        } else if name.contains("assignee") {
            "assigneeId"
        } else if name.contains("owner") {
            "ownerId"
        } else {
            "reference"
        };
        return DealWriteError::UnknownReference(field);
    }
    DealWriteError::Store(from_diesel(e))
}

fn deal_error(e: Tx<DealWriteError>) -> DealWriteError {
    match e {
        Tx::Domain(d) => d,
        Tx::Db(e) => reference_error(e),
    }
}

pub(crate) async fn insert_pipeline(
    conn: &mut AsyncPgConnection,
    org: OrgId,
    p: &Pipeline,
) -> QueryResult<()> {
    if p.is_default {
        diesel::update(
            pipelines::table
                .filter(pipelines::organization_id.eq(org.as_uuid()))
                .filter(pipelines::is_default),
        )
        .set(pipelines::is_default.eq(false))
        .execute(conn)
        .await?;
    }
    diesel::insert_into(pipelines::table)
        .values((
            pipelines::organization_id.eq(org.as_uuid()),
            pipelines::id.eq(p.id.as_uuid()),
            pipelines::name.eq(&p.name),
            pipelines::is_default.eq(p.is_default),
        ))
        .execute(conn)
        .await?;
    insert_stages(conn, org, p.id, &p.stages).await
}

async fn insert_stages(
    conn: &mut AsyncPgConnection,
    org: OrgId,
    pipeline: PipelineId,
    stages: &[Stage],
) -> QueryResult<()> {
    let rows: Vec<_> = stages
        .iter()
        .enumerate()
        .map(|(i, s)| {
            (
                pipeline_stages::organization_id.eq(org.as_uuid()),
                pipeline_stages::id.eq(s.id.as_uuid()),
                pipeline_stages::pipeline_id.eq(pipeline.as_uuid()),
                pipeline_stages::name.eq(s.name.clone()),
                pipeline_stages::probability.eq(i16::from(s.probability)),
                pipeline_stages::kind.eq(s.kind.as_str()),
                pipeline_stages::position.eq(i32::try_from(i).unwrap_or(i32::MAX)),
            )
        })
        .collect();
    diesel::insert_into(pipeline_stages::table)
        .values(rows)
        .execute(conn)
        .await?;
    Ok(())
}

type PipelineRow = (Uuid, String, bool, i32, DateTime<Utc>, DateTime<Utc>);

/// A pipeline as the audit log records it: name, default flag and ordered stages.
async fn pipeline_json(
    conn: &mut AsyncPgConnection,
    org: OrgId,
    id: PipelineId,
) -> QueryResult<serde_json::Value> {
    #[derive(QueryableByName)]
    struct Doc {
        #[diesel(sql_type = diesel::sql_types::Jsonb)]
        doc: serde_json::Value,
    }
    let doc: Option<Doc> = diesel::sql_query(
        "SELECT jsonb_build_object('name', p.name, 'isDefault', p.is_default, 'stages',
                 (SELECT coalesce(jsonb_agg(jsonb_build_object('id', s.id, 'name', s.name,
                         'probability', s.probability, 'kind', s.kind) ORDER BY s.position), '[]')
                  FROM pipeline_stages s
                  WHERE s.organization_id = p.organization_id AND s.pipeline_id = p.id)) AS doc
         FROM pipelines p WHERE p.organization_id = $1 AND p.id = $2",
    )
    .bind::<diesel::sql_types::Uuid, _>(org.as_uuid())
    .bind::<diesel::sql_types::Uuid, _>(id.as_uuid())
    .get_result(conn)
    .await
    .optional()?;
    Ok(doc.map_or(serde_json::Value::Null, |d| d.doc))
}

async fn audit_pipeline(
    conn: &mut AsyncPgConnection,
    org: OrgId,
    id: PipelineId,
    action: &str,
    changes: &serde_json::Value,
) -> QueryResult<()> {
    let change = AuditChange::new(action, "pipeline", Some(id.as_uuid().to_string()), changes);
    audit::record(conn, org, change).await
}

async fn load_pipelines(
    conn: &mut AsyncPgConnection,
    org: OrgId,
    only: Option<PipelineId>,
    only_default: bool,
) -> Result<Vec<PipelineRecord>, StoreError> {
    let mut query = pipelines::table
        .filter(pipelines::organization_id.eq(org.as_uuid()))
        .select((
            pipelines::id,
            pipelines::name,
            pipelines::is_default,
            pipelines::version,
            pipelines::created_at,
            pipelines::updated_at,
        ))
        .order((pipelines::created_at.asc(), pipelines::id.asc()))
        .into_boxed();
    if let Some(id) = only {
        query = query.filter(pipelines::id.eq(id.as_uuid()));
    }
    if only_default {
        query = query.filter(pipelines::is_default);
    }
    let rows: Vec<PipelineRow> = query.load(conn).await.map_err(from_diesel)?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = rows.iter().map(|r| r.0).collect();
    let stages: Vec<(Uuid, Uuid, String, i16, String)> = pipeline_stages::table
        .filter(pipeline_stages::organization_id.eq(org.as_uuid()))
        .filter(pipeline_stages::pipeline_id.eq_any(&ids))
        .order((pipeline_stages::pipeline_id, pipeline_stages::position))
        .select((
            pipeline_stages::pipeline_id,
            pipeline_stages::id,
            pipeline_stages::name,
            pipeline_stages::probability,
            pipeline_stages::kind,
        ))
        .load(conn)
        .await
        .map_err(from_diesel)?;
    rows.into_iter()
        .map(|(id, name, is_default, version, created_at, updated_at)| {
            let stages = stages
                .iter()
                .filter(|s| s.0 == id)
                .map(|(_, sid, sname, prob, kind)| {
                    Ok(Stage {
                        id: StageId::from_uuid(*sid),
                        name: sname.clone(),
                        probability: u8::try_from(*prob).map_err(|_| corrupt("probability"))?,
                        kind: StageKind::parse(kind).ok_or_else(|| corrupt("stage kind"))?,
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            Ok(PipelineRecord {
                pipeline: Pipeline {
                    id: PipelineId::from_uuid(id),
                    name,
                    is_default,
                    stages,
                },
                version,
                created_at,
                updated_at,
            })
        })
        .collect()
}

async fn end_position(
    conn: &mut AsyncPgConnection,
    org: OrgId,
    stage: StageId,
) -> QueryResult<f64> {
    let max: Option<f64> = deals::table
        .filter(deals::organization_id.eq(org.as_uuid()))
        .filter(deals::stage_id.eq(stage.as_uuid()))
        .select(diesel::dsl::max(deals::position))
        .first(conn)
        .await?;
    Ok(max.map_or(POSITION_STEP, |m| m + POSITION_STEP))
}

/// A position between the neighbours at `index` in the stage (excluding `deal`).
async fn position_at(
    conn: &mut AsyncPgConnection,
    org: OrgId,
    stage: StageId,
    deal: DealId,
    index: u32,
) -> QueryResult<f64> {
    let positions: Vec<f64> = deals::table
        .filter(deals::organization_id.eq(org.as_uuid()))
        .filter(deals::stage_id.eq(stage.as_uuid()))
        .filter(deals::id.ne(deal.as_uuid()))
        .order((deals::position.asc(), deals::id.asc()))
        .select(deals::position)
        .limit(i64::from(index) + 1)
        .load(conn)
        .await?;
    let i = usize::try_from(index).unwrap_or(usize::MAX);
    let before = i.checked_sub(1).and_then(|p| positions.get(p)).copied();
    let after = positions.get(i).copied();
    Ok(match (before, after) {
        (Some(b), Some(a)) => f64::midpoint(b, a),
        (Some(b), None) => b + POSITION_STEP,
        (None, Some(a)) => a - POSITION_STEP,
        (None, None) => POSITION_STEP,
    })
}

/// A deal or an activity may be linked to a contact only while the contact is live: one
/// in the trash is out of reach (its reads answer 404), unless `deal` already names it
/// (a deal whose contact was deleted can still be edited).
async fn contact_reachable(
    conn: &mut AsyncPgConnection,
    org: OrgId,
    contact: ContactId,
    deal: Option<DealId>,
) -> Result<(), Tx<DealWriteError>> {
    #[derive(QueryableByName)]
    struct Reachable {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        ok: bool,
    }
    let r: Reachable = diesel::sql_query(
        // A deal keeping its contact is checked first, and alone: PostgreSQL runs the
        // second subquery only when the first is false, so such an update waits for no
        // lock on the contact. FOR SHARE: a delete of the contact in flight is waited for,
        // then seen; it cannot commit past this check and leave a new link in the trash.
        "SELECT EXISTS (SELECT 1 FROM deals
                        WHERE organization_id = $1 AND id = $3 AND contact_id = $2)
             OR EXISTS (SELECT 1 FROM contacts
                        WHERE organization_id = $1 AND id = $2 AND deleted_at IS NULL FOR SHARE) AS ok",
    )
    .bind::<SqlUuid, _>(org.as_uuid())
    .bind::<SqlUuid, _>(contact.as_uuid())
    .bind::<diesel::sql_types::Nullable<SqlUuid>, _>(deal.map(|d| d.as_uuid()))
    .get_result(conn)
    .await?;
    if r.ok {
        Ok(())
    } else {
        Err(Tx::Domain(DealWriteError::UnknownReference("contactId")))
    }
}

async fn insert_activity(
    conn: &mut AsyncPgConnection,
    org: OrgId,
    a: &NewActivity,
) -> QueryResult<ActivityRow> {
    diesel::insert_into(activities::table)
        .values((
            activities::organization_id.eq(org.as_uuid()),
            activities::id.eq(a.id.as_uuid()),
            activities::activity_type.eq(a.activity_type.as_str()),
            activities::subject.eq(&a.subject),
            activities::description.eq(&a.description),
            activities::metadata.eq(&a.metadata),
            activities::contact_id.eq(a.contact_id.map(|c| c.as_uuid())),
            activities::deal_id.eq(a.deal_id.map(|d| d.as_uuid())),
            activities::due_at.eq(a.due_at),
            activities::assignee_id.eq(a.assignee_id.map(|u| u.as_uuid())),
            activities::created_by.eq(a.created_by.map(|u| u.as_uuid())),
            activities::occurred_at.eq(a.occurred_at),
        ))
        .returning(ActivityRow::as_returning())
        .get_result(conn)
        .await
}

async fn deal_version(
    conn: &mut AsyncPgConnection,
    org: OrgId,
    id: DealId,
) -> QueryResult<Option<i32>> {
    deals::table
        .find((org.as_uuid(), id.as_uuid()))
        .select(deals::version)
        .first(conn)
        .await
        .optional()
}

async fn stale_or_missing(
    conn: &mut AsyncPgConnection,
    org: OrgId,
    id: DealId,
) -> Tx<DealWriteError> {
    match deal_version(conn, org, id).await {
        Ok(Some(_)) => Tx::Domain(DealWriteError::VersionMismatch),
        Ok(None) => Tx::Domain(DealWriteError::NotFound),
        Err(e) => Tx::Db(e),
    }
}

#[derive(QueryableByName)]
struct TotalsRow {
    #[diesel(sql_type = SqlUuid)]
    stage_id: Uuid,
    #[diesel(sql_type = diesel::sql_types::Text)]
    currency: String,
    #[diesel(sql_type = BigInt)]
    count: i64,
    #[diesel(sql_type = BigInt)]
    value_minor: i64,
    #[diesel(sql_type = BigInt)]
    weighted_minor: i64,
}

impl SalesStore for PgSalesStore {
    async fn pipelines(&self, org: OrgId) -> Result<Vec<PipelineRecord>, StoreError> {
        let mut conn = self.db.conn().await?;
        load_pipelines(&mut conn, org, None, false).await
    }

    async fn pipeline(
        &self,
        org: OrgId,
        id: PipelineId,
    ) -> Result<Option<PipelineRecord>, StoreError> {
        let mut conn = self.db.conn().await?;
        Ok(load_pipelines(&mut conn, org, Some(id), false).await?.pop())
    }

    async fn default_pipeline(&self, org: OrgId) -> Result<Option<PipelineRecord>, StoreError> {
        let mut conn = self.db.conn().await?;
        Ok(load_pipelines(&mut conn, org, None, true).await?.pop())
    }

    async fn create_pipeline(
        &self,
        org: OrgId,
        pipeline: Pipeline,
    ) -> Result<PipelineRecord, StoreError> {
        let mut conn = self.db.conn().await?;
        let id = pipeline.id;
        conn.transaction(async move |conn| {
            insert_pipeline(conn, org, &pipeline).await?;
            let after = pipeline_json(conn, org, id).await?;
            audit_pipeline(
                conn,
                org,
                id,
                "pipeline.created",
                &json!({ "after": after }),
            )
            .await
        })
        .await
        .map_err(from_diesel)?;
        load_pipelines(&mut conn, org, Some(id), false)
            .await?
            .pop()
            .ok_or_else(|| corrupt("pipeline"))
    }

    async fn stage_deal_counts(
        &self,
        org: OrgId,
        id: PipelineId,
    ) -> Result<Vec<(StageId, i64)>, StoreError> {
        let mut conn = self.db.conn().await?;
        let rows: Vec<(Uuid, i64)> = deals::table
            .filter(deals::organization_id.eq(org.as_uuid()))
            .filter(deals::pipeline_id.eq(id.as_uuid()))
            .group_by(deals::stage_id)
            .select((deals::stage_id, diesel::dsl::count_star()))
            .load(&mut conn)
            .await
            .map_err(from_diesel)?;
        Ok(rows
            .into_iter()
            .map(|(s, n)| (StageId::from_uuid(s), n))
            .collect())
    }

    async fn redefine_pipeline(
        &self,
        org: OrgId,
        id: PipelineId,
        change: PipelineChange,
        expected_version: Option<i32>,
    ) -> Result<PipelineRecord, PipelineWriteError> {
        let mut conn = self.db.conn().await?;
        let result = conn
            .transaction(async move |conn| {
                let version: i32 = pipelines::table
                    .find((org.as_uuid(), id.as_uuid()))
                    .select(pipelines::version)
                    .for_update()
                    .first(conn)
                    .await
                    .optional()?
                    .ok_or(Tx::Domain(PipelineWriteError::NotFound))?;
                if expected_version.is_some_and(|v| v != version) {
                    return Err(Tx::Domain(PipelineWriteError::VersionMismatch));
                }
                let before = pipeline_json(conn, org, id).await?;
                if change.make_default {
                    diesel::update(
                        pipelines::table
                            .filter(pipelines::organization_id.eq(org.as_uuid()))
                            .filter(pipelines::is_default),
                    )
                    .set(pipelines::is_default.eq(false))
                    .execute(conn)
                    .await?;
                }
                let removed: Vec<Uuid> = change.removed.iter().map(|s| s.as_uuid()).collect();
                // Park every stage's position out of the way, then write the new order.
                let kept: Vec<&Stage> = change.stages.iter().collect();
                for (i, stage) in kept.iter().enumerate() {
                    let position = i32::try_from(i).unwrap_or(i32::MAX);
                    let updated = diesel::update(
                        pipeline_stages::table.find((org.as_uuid(), stage.id.as_uuid())),
                    )
                    .filter(pipeline_stages::pipeline_id.eq(id.as_uuid()))
                    .set((
                        pipeline_stages::name.eq(&stage.name),
                        pipeline_stages::probability.eq(i16::from(stage.probability)),
                        pipeline_stages::kind.eq(stage.kind.as_str()),
                        pipeline_stages::position.eq(position),
                    ))
                    .execute(conn)
                    .await?;
                    if updated == 0 {
                        insert_stages(conn, org, id, std::slice::from_ref(stage)).await?;
                        diesel::update(
                            pipeline_stages::table.find((org.as_uuid(), stage.id.as_uuid())),
                        )
                        .set(pipeline_stages::position.eq(position))
                        .execute(conn)
                        .await?;
                    }
                }
                if !removed.is_empty() {
                    if let Some(target) = change.move_deals_to {
                        let to = change
                            .stages
                            .iter()
                            .find(|s| s.id == target)
                            .ok_or(Tx::Domain(PipelineWriteError::NotFound))?;
                        let status = DealStatus::of(to.kind).as_str();
                        diesel::update(
                            deals::table
                                .filter(deals::organization_id.eq(org.as_uuid()))
                                .filter(deals::stage_id.eq_any(&removed)),
                        )
                        .set((
                            deals::stage_id.eq(target.as_uuid()),
                            deals::status.eq(status),
                            deals::probability.eq(i16::from(to.probability)),
                            deals::stage_entered_at.eq(diesel::dsl::now),
                            deals::version.eq(deals::version + 1),
                            deals::updated_at.eq(diesel::dsl::now),
                        ))
                        .execute(conn)
                        .await?;
                    }
                    diesel::delete(
                        pipeline_stages::table
                            .filter(pipeline_stages::organization_id.eq(org.as_uuid()))
                            .filter(pipeline_stages::pipeline_id.eq(id.as_uuid()))
                            .filter(pipeline_stages::id.eq_any(&removed)),
                    )
                    .execute(conn)
                    .await
                    .map_err(|e| match e {
                        diesel::result::Error::DatabaseError(
                            diesel::result::DatabaseErrorKind::ForeignKeyViolation,
                            _,
                        ) => Tx::Domain(PipelineWriteError::HasDeals),
                        other => Tx::Db(other),
                    })?;
                }
                let mut set_default = change.make_default;
                if !set_default {
                    set_default = pipelines::table
                        .find((org.as_uuid(), id.as_uuid()))
                        .select(pipelines::is_default)
                        .first(conn)
                        .await?;
                }
                diesel::update(pipelines::table.find((org.as_uuid(), id.as_uuid())))
                    .set((
                        pipelines::name.eq(&change.name),
                        pipelines::is_default.eq(set_default),
                        pipelines::version.eq(version + 1),
                        pipelines::updated_at.eq(diesel::dsl::now),
                    ))
                    .execute(conn)
                    .await?;
                let after = pipeline_json(conn, org, id).await?;
                let changes = field_changes(&before, &after);
                audit_pipeline(conn, org, id, "pipeline.updated", &changes).await?;
                Ok(())
            })
            .await;
        match result {
            Ok(()) => Ok(load_pipelines(&mut conn, org, Some(id), false)
                .await?
                .pop()
                .ok_or(PipelineWriteError::NotFound)?),
            Err(Tx::Domain(e)) => Err(e),
            Err(Tx::Db(e)) => Err(PipelineWriteError::Store(from_diesel(e))),
        }
    }

    async fn delete_pipeline(&self, org: OrgId, id: PipelineId) -> Result<(), PipelineWriteError> {
        let mut conn = self.db.conn().await?;
        let result = conn
            .transaction(async move |conn| {
                let is_default: bool = pipelines::table
                    .find((org.as_uuid(), id.as_uuid()))
                    .select(pipelines::is_default)
                    .for_update()
                    .first(conn)
                    .await
                    .optional()?
                    .ok_or(Tx::Domain(PipelineWriteError::NotFound))?;
                if is_default {
                    return Err(Tx::Domain(PipelineWriteError::IsDefault));
                }
                let holding: i64 = deals::table
                    .filter(deals::organization_id.eq(org.as_uuid()))
                    .filter(deals::pipeline_id.eq(id.as_uuid()))
                    .count()
                    .get_result(conn)
                    .await?;
                if holding > 0 {
                    return Err(Tx::Domain(PipelineWriteError::HasDeals));
                }
                let before = pipeline_json(conn, org, id).await?;
                audit_pipeline(
                    conn,
                    org,
                    id,
                    "pipeline.deleted",
                    &json!({ "before": before }),
                )
                .await?;
                diesel::delete(pipelines::table.find((org.as_uuid(), id.as_uuid())))
                    .execute(conn)
                    .await?;
                Ok(())
            })
            .await;
        match result {
            Ok(()) => Ok(()),
            Err(Tx::Domain(e)) => Err(e),
            Err(Tx::Db(e)) => Err(PipelineWriteError::Store(from_diesel(e))),
        }
    }

    async fn board(
        &self,
        org: OrgId,
        pipeline: PipelineId,
        per_stage: i64,
    ) -> Result<BoardData, StoreError> {
        let mut conn = self.db.conn().await?;
        // Kept by a trigger on deals (migration `stage_totals`): a few rows, not a scan.
        let totals: Vec<TotalsRow> = diesel::sql_query(
            "SELECT t.stage_id, t.currency, t.deal_count AS count, t.value_minor, t.weighted_minor
             FROM stage_totals t
             JOIN pipeline_stages s ON s.organization_id = t.organization_id AND s.id = t.stage_id
             WHERE t.organization_id = $1 AND s.pipeline_id = $2 AND t.deal_count > 0
             ORDER BY t.stage_id, t.currency",
        )
        .bind::<SqlUuid, _>(org.as_uuid())
        .bind::<SqlUuid, _>(pipeline.as_uuid())
        .load(&mut conn)
        .await
        .map_err(from_diesel)?;
        // One query for every stage's first deals: a lateral index scan per stage.
        let rows: Vec<DealRow> = diesel::sql_query(
            "SELECT d.* FROM pipeline_stages s
             CROSS JOIN LATERAL (
                 SELECT * FROM deals d
                 WHERE d.organization_id = s.organization_id AND d.stage_id = s.id
                 ORDER BY d.position, d.id LIMIT $3
             ) d
             WHERE s.organization_id = $1 AND s.pipeline_id = $2
             ORDER BY s.position, d.position, d.id",
        )
        .bind::<SqlUuid, _>(org.as_uuid())
        .bind::<SqlUuid, _>(pipeline.as_uuid())
        .bind::<BigInt, _>(per_stage)
        .load(&mut conn)
        .await
        .map_err(from_diesel)?;
        Ok(BoardData {
            totals: totals
                .into_iter()
                .map(|t| StageTotals {
                    stage_id: StageId::from_uuid(t.stage_id),
                    currency: t.currency,
                    count: t.count,
                    value_minor: t.value_minor,
                    weighted_minor: t.weighted_minor,
                })
                .collect(),
            deals: deals_from(rows)?,
        })
    }

    async fn stage_deals(
        &self,
        org: OrgId,
        stage: StageId,
        after: Option<(f64, DealId)>,
        limit: i64,
    ) -> Result<Vec<DealRecord>, StoreError> {
        let mut conn = self.db.conn().await?;
        let mut query = deals::table
            .filter(deals::organization_id.eq(org.as_uuid()))
            .filter(deals::stage_id.eq(stage.as_uuid()))
            .order((deals::position.asc(), deals::id.asc()))
            .select(DealRow::as_select())
            .limit(limit)
            .into_boxed();
        if let Some((p, id)) = after {
            query = query.filter(
                deals::position
                    .gt(p)
                    .or(deals::position.eq(p).and(deals::id.gt(id.as_uuid()))),
            );
        }
        deals_from(query.load(&mut conn).await.map_err(from_diesel)?)
    }

    async fn create_deal(
        &self,
        org: OrgId,
        write: DealWrite,
    ) -> Result<DealRecord, DealWriteError> {
        let mut conn = self.db.conn().await?;
        conn.transaction(async move |conn| {
            let d = &write.deal;
            contact_reachable(conn, org, d.contact_id, None).await?;
            let position = end_position(conn, org, d.stage_id).await?;
            let row: DealRow = diesel::insert_into(deals::table)
                .values((
                    deals::organization_id.eq(org.as_uuid()),
                    deals::id.eq(d.id.as_uuid()),
                    deals::pipeline_id.eq(d.pipeline_id.as_uuid()),
                    deals::stage_id.eq(d.stage_id.as_uuid()),
                    deals::contact_id.eq(d.contact_id.as_uuid()),
                    deals::owner_id.eq(d.owner_id.map(|u| u.as_uuid())),
                    deals::title.eq(&d.title),
                    deals::value_minor.eq(d.value_minor),
                    deals::currency.eq(&d.currency),
                    deals::status.eq(d.status.as_str()),
                    deals::probability.eq(i16::from(d.probability)),
                    deals::expected_close_date.eq(write.expected_close_date),
                    deals::closed_at.eq(d.closed_at),
                    deals::position.eq(position),
                    deals::stage_entered_at.eq(d.stage_entered_at),
                ))
                .returning(DealRow::as_returning())
                .get_result(conn)
                .await?;
            diesel::insert_into(deal_stage_history::table)
                .values((
                    deal_stage_history::organization_id.eq(org.as_uuid()),
                    deal_stage_history::deal_id.eq(d.id.as_uuid()),
                    deal_stage_history::stage_id.eq(d.stage_id.as_uuid()),
                    deal_stage_history::entered_at.eq(d.stage_entered_at),
                ))
                .execute(conn)
                .await?;
            if let Some(activity) = &write.activity {
                insert_activity(conn, org, activity).await?;
            }
            outbox::append(conn, &write.events).await?;
            DealRecord::try_from(row).map_err(|e| Tx::Domain(DealWriteError::Store(e)))
        })
        .await
        .map_err(deal_error)
    }

    async fn deal(&self, org: OrgId, id: DealId) -> Result<Option<DealRecord>, StoreError> {
        let mut conn = self.db.conn().await?;
        let row: Option<DealRow> = deals::table
            .find((org.as_uuid(), id.as_uuid()))
            .select(DealRow::as_select())
            .first(&mut conn)
            .await
            .optional()
            .map_err(from_diesel)?;
        row.map(TryInto::try_into).transpose()
    }

    async fn deals(
        &self,
        org: OrgId,
        f: DealFilter,
        after: Option<(DateTime<Utc>, DealId)>,
        limit: i64,
    ) -> Result<Vec<DealRecord>, StoreError> {
        let mut conn = self.db.conn().await?;
        let mut q = deals::table
            .filter(deals::organization_id.eq(org.as_uuid()))
            .order((deals::created_at.desc(), deals::id.desc()))
            .select(DealRow::as_select())
            .limit(limit)
            .into_boxed();
        if let Some(v) = f.pipeline_id {
            q = q.filter(deals::pipeline_id.eq(v.as_uuid()));
        }
        if let Some(v) = f.stage_id {
            q = q.filter(deals::stage_id.eq(v.as_uuid()));
        }
        if let Some(v) = f.status {
            q = q.filter(deals::status.eq(v.as_str()));
        }
        if let Some(v) = f.contact_id {
            q = q.filter(deals::contact_id.eq(v.as_uuid()));
        }
        if let Some(v) = f.owner_id {
            q = q.filter(deals::owner_id.eq(v.as_uuid()));
        }
        if let Some(v) = f.min_value_minor {
            q = q.filter(deals::value_minor.ge(v));
        }
        if let Some(v) = f.max_value_minor {
            q = q.filter(deals::value_minor.le(v));
        }
        if let Some(v) = f.close_after {
            q = q.filter(deals::expected_close_date.ge(v));
        }
        if let Some(v) = f.close_before {
            q = q.filter(deals::expected_close_date.lt(v));
        }
        if let Some((at, id)) = after {
            q = q.filter(
                deals::created_at
                    .lt(at)
                    .or(deals::created_at.eq(at).and(deals::id.lt(id.as_uuid()))),
            );
        }
        deals_from(q.load(&mut conn).await.map_err(from_diesel)?)
    }

    async fn update_deal(
        &self,
        org: OrgId,
        write: DealWrite,
    ) -> Result<DealRecord, DealWriteError> {
        let mut conn = self.db.conn().await?;
        conn.transaction(async move |conn| {
            let d = &write.deal;
            contact_reachable(conn, org, d.contact_id, Some(d.id)).await?;
            let expected = write.expected_version.unwrap_or(d.version - 1);
            let row: Option<DealRow> =
                diesel::update(deals::table.find((org.as_uuid(), d.id.as_uuid())))
                    .filter(deals::version.eq(expected))
                    .set((
                        deals::title.eq(&d.title),
                        deals::value_minor.eq(d.value_minor),
                        deals::currency.eq(&d.currency),
                        deals::owner_id.eq(d.owner_id.map(|u| u.as_uuid())),
                        deals::contact_id.eq(d.contact_id.as_uuid()),
                        deals::expected_close_date.eq(write.expected_close_date),
                        deals::version.eq(expected + 1),
                        deals::updated_at.eq(diesel::dsl::now),
                    ))
                    .returning(DealRow::as_returning())
                    .get_result(conn)
                    .await
                    .optional()?;
            let Some(row) = row else {
                return Err(stale_or_missing(conn, org, d.id).await);
            };
            outbox::append(conn, &write.events).await?;
            DealRecord::try_from(row).map_err(|e| Tx::Domain(DealWriteError::Store(e)))
        })
        .await
        .map_err(deal_error)
    }

    async fn delete_deal(
        &self,
        org: OrgId,
        id: DealId,
        expected_version: Option<i32>,
        events: Vec<DomainEvent>,
    ) -> Result<(), DealWriteError> {
        let mut conn = self.db.conn().await?;
        conn.transaction(async move |conn| {
            let mut query =
                diesel::delete(deals::table.find((org.as_uuid(), id.as_uuid()))).into_boxed();
            if let Some(v) = expected_version {
                query = query.filter(deals::version.eq(v));
            }
            if query.execute(conn).await? == 0 {
                return Err(stale_or_missing(conn, org, id).await);
            }
            outbox::append(conn, &events).await?;
            Ok(())
        })
        .await
        .map_err(deal_error)
    }

    async fn save_move(&self, org: OrgId, m: DealMove) -> Result<DealRecord, DealWriteError> {
        let mut conn = self.db.conn().await?;
        conn.transaction(async move |conn| {
            let d = &m.deal;
            let position = match m.index {
                Some(i) => position_at(conn, org, d.stage_id, d.id, i).await?,
                None => end_position(conn, org, d.stage_id).await?,
            };
            // The version guard makes concurrent moves of one deal serialize: the loser
            // matches no row and re-decides on the winner's state.
            let row: Option<DealRow> =
                diesel::update(deals::table.find((org.as_uuid(), d.id.as_uuid())))
                    .filter(deals::version.eq(m.expected_version))
                    .set((
                        deals::stage_id.eq(d.stage_id.as_uuid()),
                        deals::status.eq(d.status.as_str()),
                        deals::probability.eq(i16::from(d.probability)),
                        deals::closed_at.eq(d.closed_at),
                        deals::lost_reason.eq(&d.lost_reason),
                        deals::won_reason.eq(&d.won_reason),
                        deals::stage_entered_at.eq(d.stage_entered_at),
                        deals::position.eq(position),
                        deals::version.eq(m.expected_version + 1),
                        deals::updated_at.eq(diesel::dsl::now),
                    ))
                    .returning(DealRow::as_returning())
                    .get_result(conn)
                    .await
                    .optional()?;
            let Some(row) = row else {
                return Err(stale_or_missing(conn, org, d.id).await);
            };
            diesel::update(
                deal_stage_history::table
                    .filter(deal_stage_history::organization_id.eq(org.as_uuid()))
                    .filter(deal_stage_history::deal_id.eq(d.id.as_uuid()))
                    .filter(deal_stage_history::left_at.is_null()),
            )
            .set(deal_stage_history::left_at.eq(d.stage_entered_at))
            .execute(conn)
            .await?;
            diesel::insert_into(deal_stage_history::table)
                .values((
                    deal_stage_history::organization_id.eq(org.as_uuid()),
                    deal_stage_history::deal_id.eq(d.id.as_uuid()),
                    deal_stage_history::stage_id.eq(d.stage_id.as_uuid()),
                    deal_stage_history::entered_at.eq(d.stage_entered_at),
                ))
                .on_conflict_do_nothing()
                .execute(conn)
                .await?;
            insert_activity(conn, org, &m.activity).await?;
            outbox::append(conn, &m.events).await?;
            DealRecord::try_from(row).map_err(|e| Tx::Domain(DealWriteError::Store(e)))
        })
        .await
        .map_err(deal_error)
    }

    async fn create_activity(
        &self,
        org: OrgId,
        activity: NewActivity,
        events: Vec<DomainEvent>,
    ) -> Result<ActivityRecord, DealWriteError> {
        let mut conn = self.db.conn().await?;
        conn.transaction(async move |conn| {
            if let Some(contact) = activity.contact_id {
                contact_reachable(conn, org, contact, None).await?;
            }
            let row = insert_activity(conn, org, &activity).await?;
            outbox::append(conn, &events).await?;
            ActivityRecord::try_from(row).map_err(|e| Tx::Domain(DealWriteError::Store(e)))
        })
        .await
        .map_err(deal_error)
    }

    async fn activity(
        &self,
        org: OrgId,
        id: ActivityId,
    ) -> Result<Option<ActivityRecord>, StoreError> {
        let mut conn = self.db.conn().await?;
        let row: Option<ActivityRow> = activities::table
            .find((org.as_uuid(), id.as_uuid()))
            .select(ActivityRow::as_select())
            .first(&mut conn)
            .await
            .optional()
            .map_err(from_diesel)?;
        row.map(TryInto::try_into).transpose()
    }

    async fn activities(
        &self,
        org: OrgId,
        f: ActivityFilter,
        after: Option<(DateTime<Utc>, ActivityId)>,
        limit: i64,
    ) -> Result<Vec<ActivityRecord>, StoreError> {
        let mut conn = self.db.conn().await?;
        let mut q = activities::table
            .filter(activities::organization_id.eq(org.as_uuid()))
            .order((activities::occurred_at.desc(), activities::id.desc()))
            .select(ActivityRow::as_select())
            .limit(limit)
            .into_boxed();
        if let Some(v) = f.contact_id {
            // Listing by a contact is reading that contact's history, which its deletion
            // takes out of reads as it does the contact (as its timeline does); restored, it
            // is back. Lists by deal, type or assignee are the deal's and the team's
            // history and keep such entries.
            q = q.filter(activities::contact_id.eq(v.as_uuid())).filter(
                diesel::dsl::sql::<diesel::sql_types::Bool>(
                    "EXISTS (SELECT 1 FROM contacts c WHERE c.organization_id = activities.organization_id \
                     AND c.id = activities.contact_id AND c.deleted_at IS NULL)",
                ),
            );
        }
        if let Some(v) = f.deal_id {
            q = q.filter(activities::deal_id.eq(v.as_uuid()));
        }
        if !f.types.is_empty() {
            let types: Vec<&str> = f.types.iter().map(|t| t.as_str()).collect();
            q = q.filter(activities::activity_type.eq_any(types));
        }
        if let Some(v) = f.assignee_id {
            q = q.filter(activities::assignee_id.eq(v.as_uuid()));
        }
        if f.open || f.overdue_at.is_some() {
            q = q
                .filter(activities::activity_type.eq("TASK"))
                .filter(activities::completed_at.is_null());
        }
        if let Some(now) = f.overdue_at {
            q = q.filter(activities::due_at.lt(now));
        }
        if let Some(v) = f.after {
            q = q.filter(activities::occurred_at.ge(v));
        }
        if let Some(v) = f.before {
            q = q.filter(activities::occurred_at.lt(v));
        }
        if let Some((at, id)) = after {
            q = q.filter(
                activities::occurred_at.lt(at).or(activities::occurred_at
                    .eq(at)
                    .and(activities::id.lt(id.as_uuid()))),
            );
        }
        let rows: Vec<ActivityRow> = q.load(&mut conn).await.map_err(from_diesel)?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    async fn set_completed(
        &self,
        org: OrgId,
        id: ActivityId,
        completed_at: Option<DateTime<Utc>>,
    ) -> Result<ActivityRecord, DealWriteError> {
        let mut conn = self.db.conn().await?;
        let row: Option<ActivityRow> = conn
            .transaction(async move |conn| {
                let row: Option<ActivityRow> =
                    diesel::update(activities::table.find((org.as_uuid(), id.as_uuid())))
                        .filter(activities::activity_type.eq("TASK"))
                        .set((
                            activities::completed_at.eq(completed_at),
                            activities::version.eq(activities::version + 1),
                            activities::updated_at.eq(diesel::dsl::now),
                        ))
                        .returning(ActivityRow::as_returning())
                        .get_result(conn)
                        .await
                        .optional()?;
                if row.is_some() {
                    let action = if completed_at.is_some() {
                        "activity.completed"
                    } else {
                        "activity.reopened"
                    };
                    let change = AuditChange::new(
                        action,
                        "activity",
                        Some(id.as_uuid().to_string()),
                        &json!({ "completedAt": { "to": completed_at } }),
                    );
                    audit::record(conn, org, change).await?;
                }
                QueryResult::Ok(row)
            })
            .await
            .map_err(|e| DealWriteError::Store(from_diesel(e)))?;
        row.ok_or(DealWriteError::NotFound)?
            .try_into()
            .map_err(DealWriteError::Store)
    }

    async fn delete_activity(&self, org: OrgId, id: ActivityId) -> Result<(), DealWriteError> {
        let mut conn = self.db.conn().await?;
        let system: Vec<&str> = ActivityType::ALL
            .iter()
            .filter(|t| t.is_system())
            .map(|t| t.as_str())
            .collect();
        let n = conn
            .transaction(async move |conn| {
                let n = diesel::delete(activities::table.find((org.as_uuid(), id.as_uuid())))
                    .filter(activities::activity_type.ne_all(system))
                    .execute(conn)
                    .await?;
                if n > 0 {
                    let change = AuditChange::new(
                        "activity.deleted",
                        "activity",
                        Some(id.as_uuid().to_string()),
                        &json!({}),
                    );
                    audit::record(conn, org, change).await?;
                }
                QueryResult::Ok(n)
            })
            .await
            .map_err(|e| DealWriteError::Store(from_diesel(e)))?;
        if n == 0 {
            Err(DealWriteError::NotFound)
        } else {
            Ok(())
        }
    }

    async fn is_member(&self, org: OrgId, user: UserId) -> Result<bool, StoreError> {
        let mut conn = self.db.conn().await?;
        let n: i64 = memberships::table
            .filter(memberships::organization_id.eq(org.as_uuid()))
            .filter(memberships::user_id.eq(user.as_uuid()))
            .count()
            .get_result(&mut conn)
            .await
            .map_err(from_diesel)?;
        Ok(n > 0)
    }

    async fn requires_lost_reason(&self, org: OrgId) -> Result<bool, StoreError> {
        let mut conn = self.db.conn().await?;
        let settings: Option<serde_json::Value> = organizations::table
            .find(org.as_uuid())
            .select(organizations::settings)
            .first(&mut conn)
            .await
            .optional()
            .map_err(from_diesel)?;
        Ok(settings
            .is_some_and(|s| s.get("requireLostReason") == Some(&serde_json::Value::Bool(true))))
    }
}
