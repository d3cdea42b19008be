//! The outbox read as a log: one tenant's page (feed, replay) or every tenant's new rows
//! (the instance's shared reader).

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use nexus_domain::{DomainEvent, EventActor, EventId, EventType, OrgId, StoredEvent};
use nexus_ports::StoreError;
use nexus_ports::events::EventLog;

use crate::error::from_diesel;
use crate::pool::Db;
use crate::schema::events;

#[derive(Clone)]
pub struct PgEventLog {
    db: Db,
}

impl PgEventLog {
    #[must_use]
    pub const fn new(db: Db) -> Self {
        Self { db }
    }
}

type Row = (
    uuid::Uuid,
    uuid::Uuid,
    // Every read filters on `seq > cursor`, which leaves out events not numbered yet.
    Option<i64>,
    String,
    chrono::DateTime<chrono::Utc>,
    serde_json::Value,
    serde_json::Value,
);

const COLUMNS: (
    events::id,
    events::organization_id,
    events::seq,
    events::event_type,
    events::occurred_at,
    events::actor,
    events::payload,
) = (
    events::id,
    events::organization_id,
    events::seq,
    events::event_type,
    events::occurred_at,
    events::actor,
    events::payload,
);

fn stored(row: Row) -> Result<StoredEvent, StoreError> {
    let (id, org, seq, name, occurred_at, actor, payload) = row;
    let seq = seq.ok_or_else(|| StoreError::Other(anyhow::anyhow!("event {id} not numbered")))?;
    let event_type = EventType::parse(&name)
        .ok_or_else(|| StoreError::Other(anyhow::anyhow!("unknown event type {name:?}")))?;
    let actor: EventActor = serde_json::from_value(actor)
        .map_err(|e| StoreError::Other(anyhow::anyhow!("event actor: {e}")))?;
    Ok(StoredEvent {
        seq,
        event: DomainEvent {
            id: EventId::from_uuid(id),
            organization_id: OrgId::from_uuid(org),
            event_type,
            occurred_at,
            actor,
            payload,
        },
    })
}

impl EventLog for PgEventLog {
    async fn list(
        &self,
        org: OrgId,
        after: i64,
        types: Vec<EventType>,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let mut conn = self.db.conn().await?;
        // Read-your-writes: what the caller committed before asking is numbered now
        // rather than when the numberer gets to it a moment later.
        crate::numberer::number_pending(&mut conn)
            .await
            .map_err(from_diesel)?;
        let mut query = events::table
            .filter(events::organization_id.eq(org.as_uuid()))
            .filter(events::seq.gt(after))
            .select(COLUMNS)
            .order(events::seq.asc())
            .limit(limit)
            .into_boxed();
        if !types.is_empty() {
            let names: Vec<&str> = types.iter().map(|t| t.as_str()).collect();
            query = query.filter(events::event_type.eq_any(names));
        }
        let rows: Vec<Row> = query.load(&mut conn).await.map_err(from_diesel)?;
        rows.into_iter().map(stored).collect()
    }

    async fn since(&self, after: i64, limit: i64) -> Result<Vec<StoredEvent>, StoreError> {
        let mut conn = self.db.conn().await?;
        let rows: Vec<Row> = events::table
            .filter(events::seq.gt(after))
            .select(COLUMNS)
            .order(events::seq.asc())
            .limit(limit)
            .load(&mut conn)
            .await
            .map_err(from_diesel)?;
        rows.into_iter().map(stored).collect()
    }

    async fn head(&self, org: Option<OrgId>) -> Result<i64, StoreError> {
        let mut conn = self.db.conn().await?;
        // A stream without a position starts here: what committed before it asked must
        // be numbered below the head, or it would arrive as if it were new.
        crate::numberer::number_pending(&mut conn)
            .await
            .map_err(from_diesel)?;
        let mut query = events::table
            .select(diesel::dsl::max(events::seq))
            .into_boxed();
        if let Some(org) = org {
            query = query.filter(events::organization_id.eq(org.as_uuid()));
        }
        let max: Option<i64> = query.first(&mut conn).await.map_err(from_diesel)?;
        Ok(max.unwrap_or(0))
    }
}
