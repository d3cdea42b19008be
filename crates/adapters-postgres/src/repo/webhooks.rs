//! Webhook subscriptions and their delivery queue. Deliveries are created by the
//! `events` trigger in the event's own transaction; workers lease the head of each
//! subscription's queue (`FOR NO KEY UPDATE … SKIP LOCKED` on the subscription), so one
//! subscription has at most one delivery in flight and receives events in order.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{
    Array, BigInt, Bool, Integer, Nullable, Text, Timestamptz, Uuid as SqlUuid,
};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use nexus_domain::audit::{AuditChange, field_changes};
use nexus_domain::webhook::{AttemptDecision, DeliveryNext};
use nexus_domain::{DeliveryId, DomainEvent, OrgId, WebhookId};
use nexus_ports::StoreError;
use nexus_ports::webhooks::{
    AttemptRecord, AttemptReport, ClaimedDelivery, DeliveryRecord, DeliveryStatus, NewDelivery,
    NewWebhook, WebhookPatch, WebhookRecord, WebhookStore, WebhookWriteError,
};
use uuid::Uuid;

use crate::audit;
use crate::error::from_diesel;
use crate::outbox;
use crate::pool::Db;

const WEBHOOK_COLUMNS: &str = "id, url, description, event_types, active, disabled_reason, \
    failing_since, CASE WHEN previous_secret_expires_at > now() THEN previous_secret_expires_at END \
    AS previous_secret_expires_at, version, created_at, updated_at";

const DELIVERY_COLUMNS: &str = "id, webhook_id, seq, message_id, event_id, event_type, status, \
    attempts, next_attempt_at, last_attempt_at, last_status_code, last_error, last_duration_ms, \
    created_at, completed_at";

#[derive(QueryableByName)]
struct WebhookRow {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Text)]
    url: String,
    #[diesel(sql_type = Nullable<Text>)]
    description: Option<String>,
    #[diesel(sql_type = Array<Text>)]
    event_types: Vec<String>,
    #[diesel(sql_type = Bool)]
    active: bool,
    #[diesel(sql_type = Nullable<Text>)]
    disabled_reason: Option<String>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    failing_since: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    previous_secret_expires_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Integer)]
    version: i32,
    #[diesel(sql_type = Timestamptz)]
    created_at: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    updated_at: DateTime<Utc>,
}

impl From<WebhookRow> for WebhookRecord {
    fn from(r: WebhookRow) -> Self {
        Self {
            id: WebhookId::from_uuid(r.id),
            url: r.url,
            description: r.description,
            event_types: r.event_types,
            active: r.active,
            disabled_reason: r.disabled_reason,
            failing_since: r.failing_since,
            previous_secret_expires_at: r.previous_secret_expires_at,
            version: r.version,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

#[derive(QueryableByName)]
struct DeliveryRow {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    webhook_id: Uuid,
    #[diesel(sql_type = BigInt)]
    seq: i64,
    #[diesel(sql_type = SqlUuid)]
    message_id: Uuid,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    event_id: Option<Uuid>,
    #[diesel(sql_type = Text)]
    event_type: String,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Integer)]
    attempts: i32,
    #[diesel(sql_type = Timestamptz)]
    next_attempt_at: DateTime<Utc>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    last_attempt_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Integer>)]
    last_status_code: Option<i32>,
    #[diesel(sql_type = Nullable<Text>)]
    last_error: Option<String>,
    #[diesel(sql_type = Nullable<Integer>)]
    last_duration_ms: Option<i32>,
    #[diesel(sql_type = Timestamptz)]
    created_at: DateTime<Utc>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    completed_at: Option<DateTime<Utc>>,
}

impl TryFrom<DeliveryRow> for DeliveryRecord {
    type Error = StoreError;

    fn try_from(r: DeliveryRow) -> Result<Self, StoreError> {
        let status = DeliveryStatus::parse(&r.status).ok_or_else(|| {
            StoreError::Other(anyhow::anyhow!(
                "delivery {} has status {:?}",
                r.id,
                r.status
            ))
        })?;
        Ok(Self {
            id: DeliveryId::from_uuid(r.id),
            webhook_id: WebhookId::from_uuid(r.webhook_id),
            seq: r.seq,
            message_id: r.message_id,
            event_id: r.event_id,
            event_type: r.event_type,
            next_attempt_at: (status == DeliveryStatus::Pending).then_some(r.next_attempt_at),
            status,
            attempts: r.attempts,
            last_attempt_at: r.last_attempt_at,
            last_status_code: r.last_status_code,
            last_error: r.last_error,
            last_duration_ms: r.last_duration_ms,
            created_at: r.created_at,
            completed_at: r.completed_at,
        })
    }
}

#[derive(QueryableByName)]
struct AttemptRow {
    #[diesel(sql_type = Integer)]
    attempt: i32,
    #[diesel(sql_type = Timestamptz)]
    attempted_at: DateTime<Utc>,
    #[diesel(sql_type = Nullable<Integer>)]
    status_code: Option<i32>,
    #[diesel(sql_type = Nullable<Text>)]
    error: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    response_body: Option<String>,
    #[diesel(sql_type = Integer)]
    duration_ms: i32,
}

#[derive(QueryableByName)]
struct BodyRow {
    #[diesel(sql_type = SqlUuid)]
    message_id: Uuid,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    event_id: Option<Uuid>,
    #[diesel(sql_type = Text)]
    event_type: String,
    #[diesel(sql_type = Text)]
    body: String,
}

#[derive(QueryableByName)]
struct ClaimRow {
    #[diesel(sql_type = SqlUuid)]
    organization_id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    webhook_id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    message_id: Uuid,
    #[diesel(sql_type = Text)]
    body: String,
    #[diesel(sql_type = Text)]
    url: String,
    #[diesel(sql_type = Text)]
    secret: String,
    #[diesel(sql_type = Nullable<Text>)]
    previous_secret: Option<String>,
    #[diesel(sql_type = Integer)]
    attempts: i32,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    failing_since: Option<DateTime<Utc>>,
}

#[derive(QueryableByName)]
struct Exists {
    #[diesel(sql_type = Integer)]
    version: i32,
}

#[derive(QueryableByName)]
struct Affected {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(Clone)]
pub struct PgWebhookStore {
    db: Db,
}

impl PgWebhookStore {
    #[must_use]
    pub const fn new(db: Db) -> Self {
        Self { db }
    }

    /// Tells a missing subscription from a stale `If-Match` after a write matched nothing.
    async fn miss(&self, org: OrgId, id: WebhookId) -> WebhookWriteError {
        let found = async {
            let mut conn = self.db.conn().await?;
            diesel::sql_query("SELECT version FROM webhooks WHERE organization_id = $1 AND id = $2")
                .bind::<SqlUuid, _>(org.as_uuid())
                .bind::<SqlUuid, _>(id.as_uuid())
                .get_result::<Exists>(&mut conn)
                .await
                .optional()
                .map_err(from_diesel)
        };
        match found.await.map(|row| row.map(|e| e.version)) {
            Ok(Some(_)) => WebhookWriteError::VersionMismatch,
            Ok(None) => WebhookWriteError::NotFound,
            Err(e) => WebhookWriteError::Store(e),
        }
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The head of each active subscription's queue (its oldest pending delivery) when it is
/// due and not leased: one in flight per subscription keeps its events in order.
const DUE_HEADS: &str = "FROM webhooks w
     CROSS JOIN LATERAL (
         SELECT d.id, d.next_attempt_at, d.lease_until FROM webhook_deliveries d
         WHERE d.organization_id = w.organization_id AND d.webhook_id = w.id
           AND d.status = 'pending'
         ORDER BY d.seq LIMIT 1) d
     WHERE w.active AND d.next_attempt_at <= now()
       AND (d.lease_until IS NULL OR d.lease_until < now())";

/// One attempt to lease the due head of an active subscription's queue.
async fn claim_once(
    conn: &mut AsyncPgConnection,
    lease: Duration,
    token: Uuid,
) -> Result<Option<ClaimRow>, diesel::result::Error> {
    // The lease condition is repeated in the UPDATE: if another worker leased the
    // head after this statement's snapshot, PostgreSQL re-checks the updated row and
    // drops it, so a head is never claimed twice.
    diesel::sql_query(format!(
        "WITH head AS (
             SELECT w.organization_id, w.id AS webhook_id, d.id AS delivery_id {DUE_HEADS}
             ORDER BY d.next_attempt_at
             LIMIT 1
             FOR NO KEY UPDATE OF w SKIP LOCKED)
         UPDATE webhook_deliveries d
            SET lease_until = now() + $1 * interval '1 millisecond', lease_token = $2
         FROM head, webhooks w
         WHERE d.organization_id = head.organization_id AND d.id = head.delivery_id
           AND w.organization_id = head.organization_id AND w.id = head.webhook_id
           AND d.status = 'pending' AND (d.lease_until IS NULL OR d.lease_until < now())
         RETURNING d.organization_id, d.id, d.webhook_id, d.message_id, d.body, w.url, w.secret,
             CASE WHEN w.previous_secret_expires_at > now() THEN w.previous_secret END
                 AS previous_secret,
             d.attempts, w.failing_since"
    ))
    .bind::<BigInt, _>(millis(lease))
    .bind::<SqlUuid, _>(token)
    .get_result(conn)
    .await
    .optional()
}

/// Whether some active subscription's head is due and not leased.
async fn due_head_exists(conn: &mut AsyncPgConnection) -> Result<bool, diesel::result::Error> {
    #[derive(QueryableByName)]
    struct Due {
        #[diesel(sql_type = Bool)]
        due: bool,
    }
    let row: Due = diesel::sql_query(format!("SELECT EXISTS (SELECT 1 {DUE_HEADS}) AS due"))
        .get_result(conn)
        .await?;
    Ok(row.due)
}

/// Records a change to subscription `id` in the audit log, inside the change's transaction.
async fn audit_webhook(
    conn: &mut AsyncPgConnection,
    org: OrgId,
    action: &str,
    id: impl std::fmt::Display,
    changes: &serde_json::Value,
) -> Result<(), diesel::result::Error> {
    let change = AuditChange::new(action, "webhook", Some(id.to_string()), changes);
    audit::record(conn, org, change).await
}

/// What the audit log shows of a subscription: its settings, never its secrets.
fn audited(row: &WebhookRow) -> serde_json::Value {
    serde_json::json!({
        "url": row.url,
        "description": row.description,
        "eventTypes": row.event_types,
        "active": row.active,
    })
}

/// The subscription, locked for the rest of the transaction (the state an update starts from).
async fn locked(
    conn: &mut AsyncPgConnection,
    org: OrgId,
    id: WebhookId,
) -> Result<Option<WebhookRow>, diesel::result::Error> {
    diesel::sql_query(format!(
        "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE organization_id = $1 AND id = $2 FOR UPDATE"
    ))
    .bind::<SqlUuid, _>(org.as_uuid())
    .bind::<SqlUuid, _>(id.as_uuid())
    .get_result(conn)
    .await
    .optional()
}

impl WebhookStore for PgWebhookStore {
    async fn create(&self, org: OrgId, w: NewWebhook) -> Result<WebhookRecord, StoreError> {
        let mut conn = self.db.conn().await?;
        let w = &w;
        let row: WebhookRow = conn
            .transaction(async |conn| {
                let row: WebhookRow = diesel::sql_query(format!(
                    "INSERT INTO webhooks (organization_id, id, url, description, event_types, active, secret, created_by)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {WEBHOOK_COLUMNS}"
                ))
                .bind::<SqlUuid, _>(org.as_uuid())
                .bind::<SqlUuid, _>(w.id.as_uuid())
                .bind::<Text, _>(&w.url)
                .bind::<Nullable<Text>, _>(w.description.as_deref())
                .bind::<Array<Text>, _>(&w.event_types)
                .bind::<Bool, _>(w.active)
                .bind::<Text, _>(&w.secret)
                .bind::<SqlUuid, _>(w.created_by.as_uuid())
                .get_result(conn)
                .await?;
                let after = serde_json::json!({ "after": audited(&row) });
                audit_webhook(conn, org, "webhook.created", row.id, &after).await?;
                Ok::<_, diesel::result::Error>(row)
            })
            .await
            .map_err(from_diesel)?;
        Ok(row.into())
    }

    async fn list(
        &self,
        org: OrgId,
        after: Option<WebhookId>,
        limit: i64,
    ) -> Result<Vec<WebhookRecord>, StoreError> {
        let mut conn = self.db.conn().await?;
        let rows: Vec<WebhookRow> = diesel::sql_query(format!(
            "SELECT {WEBHOOK_COLUMNS} FROM webhooks
             WHERE organization_id = $1 AND ($2::uuid IS NULL OR id > $2)
             ORDER BY id LIMIT $3"
        ))
        .bind::<SqlUuid, _>(org.as_uuid())
        .bind::<Nullable<SqlUuid>, _>(after.map(|a| a.as_uuid()))
        .bind::<BigInt, _>(limit)
        .load(&mut conn)
        .await
        .map_err(from_diesel)?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn get(&self, org: OrgId, id: WebhookId) -> Result<Option<WebhookRecord>, StoreError> {
        let mut conn = self.db.conn().await?;
        let row: Option<WebhookRow> = diesel::sql_query(format!(
            "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE organization_id = $1 AND id = $2"
        ))
        .bind::<SqlUuid, _>(org.as_uuid())
        .bind::<SqlUuid, _>(id.as_uuid())
        .get_result(&mut conn)
        .await
        .optional()
        .map_err(from_diesel)?;
        Ok(row.map(Into::into))
    }

    async fn update(
        &self,
        org: OrgId,
        id: WebhookId,
        patch: WebhookPatch,
        expected_version: Option<i32>,
    ) -> Result<WebhookRecord, WebhookWriteError> {
        let mut conn = self.db.conn().await?;
        let patch = &patch;
        let row: Option<WebhookRow> = conn
            .transaction(async |conn| {
                let Some(before) = locked(conn, org, id).await? else {
                    return Ok(None);
                };
                // Re-activating ends the failing streak: the 5-day clock restarts.
                let row: Option<WebhookRow> = diesel::sql_query(format!(
                    "UPDATE webhooks SET
                         url = COALESCE($3, url),
                         description = CASE WHEN $4 THEN $5 ELSE description END,
                         event_types = COALESCE($6, event_types),
                         active = COALESCE($7, active),
                         disabled_reason = CASE WHEN $7 THEN NULL ELSE disabled_reason END,
                         failing_since = CASE WHEN $7 AND NOT active THEN NULL ELSE failing_since END,
                         version = version + 1, updated_at = now()
                     WHERE organization_id = $1 AND id = $2 AND ($8::int IS NULL OR version = $8)
                     RETURNING {WEBHOOK_COLUMNS}"
                ))
                .bind::<SqlUuid, _>(org.as_uuid())
                .bind::<SqlUuid, _>(id.as_uuid())
                .bind::<Nullable<Text>, _>(patch.url.as_deref())
                .bind::<Bool, _>(patch.description.is_some())
                .bind::<Nullable<Text>, _>(patch.description.clone().flatten())
                .bind::<Nullable<Array<Text>>, _>(patch.event_types.clone())
                .bind::<Nullable<Bool>, _>(patch.active)
                .bind::<Nullable<Integer>, _>(expected_version)
                .get_result(conn)
                .await
                .optional()?;
                if let Some(after) = &row {
                    let changes = field_changes(&audited(&before), &audited(after));
                    audit_webhook(conn, org, "webhook.updated", id, &changes).await?;
                }
                Ok::<_, diesel::result::Error>(row)
            })
            .await
            .map_err(from_diesel)?;
        drop(conn);
        match row {
            Some(r) => Ok(r.into()),
            None => Err(self.miss(org, id).await),
        }
    }

    async fn delete(
        &self,
        org: OrgId,
        id: WebhookId,
        expected_version: Option<i32>,
    ) -> Result<(), WebhookWriteError> {
        let mut conn = self.db.conn().await?;
        let deleted: Option<WebhookRow> = conn
            .transaction(async |conn| {
                let row: Option<WebhookRow> = diesel::sql_query(format!(
                    "DELETE FROM webhooks WHERE organization_id = $1 AND id = $2
                       AND ($3::int IS NULL OR version = $3) RETURNING {WEBHOOK_COLUMNS}"
                ))
                .bind::<SqlUuid, _>(org.as_uuid())
                .bind::<SqlUuid, _>(id.as_uuid())
                .bind::<Nullable<Integer>, _>(expected_version)
                .get_result(conn)
                .await
                .optional()?;
                if let Some(before) = &row {
                    audit_webhook(
                        conn,
                        org,
                        "webhook.deleted",
                        id,
                        &serde_json::json!({ "before": audited(before) }),
                    )
                    .await?;
                }
                Ok::<_, diesel::result::Error>(row)
            })
            .await
            .map_err(from_diesel)?;
        drop(conn);
        match deleted {
            Some(_) => Ok(()),
            None => Err(self.miss(org, id).await),
        }
    }

    async fn rotate_secret(
        &self,
        org: OrgId,
        id: WebhookId,
        secret: String,
        previous_expires_at: DateTime<Utc>,
    ) -> Result<WebhookRecord, WebhookWriteError> {
        let mut conn = self.db.conn().await?;
        let secret = &secret;
        let row: Option<WebhookRow> = conn
            .transaction(async |conn| {
                let row: Option<WebhookRow> = diesel::sql_query(format!(
                    "UPDATE webhooks SET previous_secret = secret, previous_secret_expires_at = $4,
                         secret = $3, version = version + 1, updated_at = now()
                     WHERE organization_id = $1 AND id = $2 RETURNING {WEBHOOK_COLUMNS}"
                ))
                .bind::<SqlUuid, _>(org.as_uuid())
                .bind::<SqlUuid, _>(id.as_uuid())
                .bind::<Text, _>(secret)
                .bind::<Timestamptz, _>(previous_expires_at)
                .get_result(conn)
                .await
                .optional()?;
                if row.is_some() {
                    // Which secret is never recorded: only that it changed and how long
                    // the old one keeps signing.
                    audit_webhook(
                        conn,
                        org,
                        "webhook.secret_rotated",
                        id,
                        &serde_json::json!({ "previousSecretExpiresAt": previous_expires_at }),
                    )
                    .await?;
                }
                Ok::<_, diesel::result::Error>(row)
            })
            .await
            .map_err(from_diesel)?;
        row.map(Into::into).ok_or(WebhookWriteError::NotFound)
    }

    async fn deliveries(
        &self,
        org: OrgId,
        webhook: WebhookId,
        status: Option<DeliveryStatus>,
        before_seq: Option<i64>,
        limit: i64,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        let mut conn = self.db.conn().await?;
        // Deliveries are queued when their events are numbered: number what committed
        // before this read, so a write's deliveries show in the next listing.
        crate::numberer::number_pending(&mut conn)
            .await
            .map_err(from_diesel)?;
        let rows: Vec<DeliveryRow> = diesel::sql_query(format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries
             WHERE organization_id = $1 AND webhook_id = $2
               AND ($3::text IS NULL OR status = $3) AND ($4::bigint IS NULL OR seq < $4)
             ORDER BY seq DESC LIMIT $5"
        ))
        .bind::<SqlUuid, _>(org.as_uuid())
        .bind::<SqlUuid, _>(webhook.as_uuid())
        .bind::<Nullable<Text>, _>(status.map(DeliveryStatus::as_str))
        .bind::<Nullable<BigInt>, _>(before_seq)
        .bind::<BigInt, _>(limit)
        .load(&mut conn)
        .await
        .map_err(from_diesel)?;
        rows.into_iter().map(DeliveryRecord::try_from).collect()
    }

    async fn delivery(
        &self,
        org: OrgId,
        webhook: WebhookId,
        id: DeliveryId,
    ) -> Result<Option<(DeliveryRecord, Vec<AttemptRecord>)>, StoreError> {
        let mut conn = self.db.conn().await?;
        let row: Option<DeliveryRow> = diesel::sql_query(format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries
             WHERE organization_id = $1 AND webhook_id = $2 AND id = $3"
        ))
        .bind::<SqlUuid, _>(org.as_uuid())
        .bind::<SqlUuid, _>(webhook.as_uuid())
        .bind::<SqlUuid, _>(id.as_uuid())
        .get_result(&mut conn)
        .await
        .optional()
        .map_err(from_diesel)?;
        let Some(row) = row else { return Ok(None) };
        let attempts: Vec<AttemptRow> = diesel::sql_query(
            "SELECT attempt, attempted_at, status_code, error, response_body, duration_ms
             FROM webhook_attempts WHERE organization_id = $1 AND delivery_id = $2 ORDER BY attempt",
        )
        .bind::<SqlUuid, _>(org.as_uuid())
        .bind::<SqlUuid, _>(id.as_uuid())
        .load(&mut conn)
        .await
        .map_err(from_diesel)?;
        let attempts = attempts
            .into_iter()
            .map(|a| AttemptRecord {
                attempt: a.attempt,
                attempted_at: a.attempted_at,
                status_code: a.status_code,
                error: a.error,
                response_body: a.response_body,
                duration_ms: a.duration_ms,
            })
            .collect();
        Ok(Some((DeliveryRecord::try_from(row)?, attempts)))
    }

    async fn delivery_body(
        &self,
        org: OrgId,
        webhook: WebhookId,
        id: DeliveryId,
    ) -> Result<Option<NewDelivery>, StoreError> {
        let mut conn = self.db.conn().await?;
        let row: Option<BodyRow> = diesel::sql_query(
            "SELECT message_id, event_id, event_type, body FROM webhook_deliveries
             WHERE organization_id = $1 AND webhook_id = $2 AND id = $3",
        )
        .bind::<SqlUuid, _>(org.as_uuid())
        .bind::<SqlUuid, _>(webhook.as_uuid())
        .bind::<SqlUuid, _>(id.as_uuid())
        .get_result(&mut conn)
        .await
        .optional()
        .map_err(from_diesel)?;
        Ok(row.map(|r| NewDelivery {
            id,
            message_id: r.message_id,
            event_id: r.event_id,
            event_type: r.event_type,
            body: r.body,
        }))
    }

    async fn enqueue(
        &self,
        org: OrgId,
        webhook: WebhookId,
        d: NewDelivery,
    ) -> Result<DeliveryRecord, WebhookWriteError> {
        let mut conn = self.db.conn().await?;
        let d = &d;
        let row: Option<DeliveryRow> = conn
            .transaction(async |conn| {
                let row: Option<DeliveryRow> = diesel::sql_query(format!(
                    "INSERT INTO webhook_deliveries
                         (organization_id, id, webhook_id, message_id, event_id, event_type, body)
                     SELECT organization_id, $3, id, $4, $5, $6, $7 FROM webhooks
                     WHERE organization_id = $1 AND id = $2
                     RETURNING {DELIVERY_COLUMNS}"
                ))
                .bind::<SqlUuid, _>(org.as_uuid())
                .bind::<SqlUuid, _>(webhook.as_uuid())
                .bind::<SqlUuid, _>(d.id.as_uuid())
                .bind::<SqlUuid, _>(d.message_id)
                .bind::<Nullable<SqlUuid>, _>(d.event_id)
                .bind::<Text, _>(&d.event_type)
                .bind::<Text, _>(&d.body)
                .get_result(conn)
                .await
                .optional()?;
                if row.is_some() {
                    // A redelivery or a test ping: someone chose to send this again.
                    audit_webhook(
                        conn,
                        org,
                        "webhook.delivery_enqueued",
                        webhook,
                        &serde_json::json!({
                            "deliveryId": d.id.as_uuid(),
                            "eventType": d.event_type,
                            "messageId": d.message_id,
                        }),
                    )
                    .await?;
                }
                Ok::<_, diesel::result::Error>(row)
            })
            .await
            .map_err(from_diesel)?;
        match row {
            Some(r) => Ok(DeliveryRecord::try_from(r)?),
            None => Err(WebhookWriteError::NotFound),
        }
    }

    async fn claim(
        &self,
        lease: Duration,
        token: Uuid,
    ) -> Result<Option<ClaimedDelivery>, StoreError> {
        let mut conn = self.db.conn().await?;
        let mut row: Option<ClaimRow> = None;
        // A claim loses a race when another worker leased the same head after this
        // statement's snapshot was taken: it then matches nothing although work is due.
        // Try again at once rather than idling until the next wake-up (measured: two
        // workers delivered less than one while losers slept).
        for _ in 0..4 {
            row = claim_once(&mut conn, lease, token)
                .await
                .map_err(from_diesel)?;
            if row.is_some() || !due_head_exists(&mut conn).await.map_err(from_diesel)? {
                break;
            }
        }
        Ok(row.map(|r| ClaimedDelivery {
            org: OrgId::from_uuid(r.organization_id),
            id: DeliveryId::from_uuid(r.id),
            webhook_id: WebhookId::from_uuid(r.webhook_id),
            message_id: r.message_id,
            body: r.body,
            url: r.url,
            secrets: std::iter::once(r.secret).chain(r.previous_secret).collect(),
            attempts: r.attempts,
            failing_since: r.failing_since,
            lease_token: token,
        }))
    }

    async fn finish(
        &self,
        claimed: ClaimedDelivery,
        report: AttemptReport,
        decision: AttemptDecision,
        disabled: Option<DomainEvent>,
    ) -> Result<bool, StoreError> {
        let mut conn = self.db.conn().await?;
        let (status, next) = match decision.delivery {
            DeliveryNext::Succeeded => ("succeeded", None),
            DeliveryNext::RetryAt(at) => ("pending", Some(at)),
            DeliveryNext::Failed => ("failed", None),
        };
        let org = claimed.org.as_uuid();
        conn.transaction(async |conn| {
            let held = diesel::sql_query(
                "UPDATE webhook_deliveries SET
                     attempts = attempts + 1, status = $4,
                     next_attempt_at = COALESCE($5, next_attempt_at),
                     completed_at = CASE WHEN $4 = 'pending' THEN NULL ELSE now() END,
                     last_attempt_at = $6, last_status_code = $7, last_error = $8,
                     last_duration_ms = $9, lease_until = NULL, lease_token = NULL
                 WHERE organization_id = $1 AND id = $2 AND lease_token = $3",
            )
            .bind::<SqlUuid, _>(org)
            .bind::<SqlUuid, _>(claimed.id.as_uuid())
            .bind::<SqlUuid, _>(claimed.lease_token)
            .bind::<Text, _>(status)
            .bind::<Nullable<Timestamptz>, _>(next)
            .bind::<Timestamptz, _>(report.attempted_at)
            .bind::<Nullable<Integer>, _>(report.status_code.map(i32::from))
            .bind::<Nullable<Text>, _>(report.error.as_deref())
            .bind::<Integer, _>(report.duration_ms)
            .execute(conn)
            .await?;
            if held == 0 {
                return Ok(false);
            }
            diesel::sql_query(
                "INSERT INTO webhook_attempts
                     (organization_id, delivery_id, attempt, attempted_at, status_code, error,
                      response_body, duration_ms)
                 SELECT $1, $2, attempts, $3, $4, $5, $6, $7 FROM webhook_deliveries
                 WHERE organization_id = $1 AND id = $2",
            )
            .bind::<SqlUuid, _>(org)
            .bind::<SqlUuid, _>(claimed.id.as_uuid())
            .bind::<Timestamptz, _>(report.attempted_at)
            .bind::<Nullable<Integer>, _>(report.status_code.map(i32::from))
            .bind::<Nullable<Text>, _>(report.error.as_deref())
            .bind::<Nullable<Text>, _>(report.response_body.as_deref())
            .bind::<Integer, _>(report.duration_ms)
            .execute(conn)
            .await?;
            diesel::sql_query(
                "UPDATE webhooks SET failing_since = $3
                 WHERE organization_id = $1 AND id = $2 AND failing_since IS DISTINCT FROM $3",
            )
            .bind::<SqlUuid, _>(org)
            .bind::<SqlUuid, _>(claimed.webhook_id.as_uuid())
            .bind::<Nullable<Timestamptz>, _>(decision.failing_since)
            .execute(conn)
            .await?;
            if let (Some(reason), Some(event)) = (decision.disable, disabled) {
                // Only the transition from active records the event, once.
                let switched = diesel::sql_query(
                    "UPDATE webhooks SET active = false, disabled_reason = $3,
                         version = version + 1, updated_at = now()
                     WHERE organization_id = $1 AND id = $2 AND active",
                )
                .bind::<SqlUuid, _>(org)
                .bind::<SqlUuid, _>(claimed.webhook_id.as_uuid())
                .bind::<Text, _>(reason.message())
                .execute(conn)
                .await?;
                if switched == 1 {
                    outbox::append(conn, std::slice::from_ref(&event)).await?;
                }
            }
            Ok(true)
        })
        .await
        .map_err(from_diesel)
    }

    async fn purge_deliveries(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut conn = self.db.conn().await?;
        let row: Affected = diesel::sql_query(
            "WITH gone AS (DELETE FROM webhook_deliveries WHERE created_at < $1 RETURNING 1)
             SELECT count(*) AS n FROM gone",
        )
        .bind::<Timestamptz, _>(before)
        .get_result(&mut conn)
        .await
        .map_err(from_diesel)?;
        Ok(u64::try_from(row.n).unwrap_or(0))
    }
}
