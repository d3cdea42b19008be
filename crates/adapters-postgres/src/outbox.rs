//! Appending domain events to the outbox, always inside the caller's transaction, so no
//! event is written without its row and no row without its event.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use nexus_domain::DomainEvent;

use crate::schema::events;
use crate::statement::{Bind, Statement};

#[derive(Insertable)]
#[diesel(table_name = events)]
struct NewEvent<'a> {
    id: uuid::Uuid,
    organization_id: uuid::Uuid,
    event_type: &'a str,
    occurred_at: chrono::DateTime<chrono::Utc>,
    actor: serde_json::Value,
    payload: &'a serde_json::Value,
}

/// Inserts `events` on `conn`, which must be inside the transaction of the change, with
/// their audit entries.
///
/// The rows get no `seq` here: a number drawn at insert could become visible before a
/// smaller one still in flight, and a reader that moved its cursor past it (the feed,
/// SSE's `Last-Event-ID`) would never see the smaller one. The numberer numbers them
/// once committed (see `numberer`), so writers of one tenant take no lock and do not
/// wait for each other's commits.
///
/// # Errors
/// Database failures (the caller's transaction then rolls back).
pub async fn append(
    conn: &mut AsyncPgConnection,
    batch: &[DomainEvent],
) -> Result<(), diesel::result::Error> {
    if batch.is_empty() {
        return Ok(());
    }
    let rows: Vec<NewEvent<'_>> = batch
        .iter()
        .map(|e| NewEvent {
            id: e.id.as_uuid(),
            organization_id: e.organization_id.as_uuid(),
            event_type: e.event_type.as_str(),
            occurred_at: e.occurred_at,
            actor: serde_json::to_value(&e.actor).unwrap_or(serde_json::Value::Null),
            payload: &e.payload,
        })
        .collect();
    diesel::insert_into(events::table)
        .values(&rows)
        .execute(conn)
        .await?;
    crate::audit::record_events(conn, batch).await
}

/// Adds to `stmt`, a `WITH` list whose CTE `gate` makes the change, the event and its
/// audit entry as two more CTEs that write them once per row `gate` returns. The change,
/// its event and its entry are then one statement: one round trip, atomic on its own
/// (no `BEGIN`/`COMMIT`), and preparable once per connection.
pub(crate) fn push_gated(stmt: &mut Statement, event: &DomainEvent, gate: &str) {
    stmt.push(
        ", outbox_event AS (INSERT INTO events (id, organization_id, type, occurred_at, actor, payload) SELECT ",
    );
    stmt.bind_list([
        Bind::Uuid(event.id.as_uuid()),
        Bind::Uuid(event.organization_id.as_uuid()),
        Bind::Text(event.event_type.as_str().to_owned()),
        Bind::Time(event.occurred_at),
        Bind::Json(serde_json::to_value(&event.actor).unwrap_or(serde_json::Value::Null)),
        Bind::Json(event.payload.clone()),
    ]);
    stmt.push(&format!(" FROM {gate})"));
    crate::audit::push_gated_entry(stmt, event, gate);
}
