//! Appending domain events to the outbox, always inside the caller's transaction, so no
//! event is written without its row and no row without its event.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use nexus_domain::{DomainEvent, OrgId};

use crate::schema::events;

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

/// Takes the per-tenant outbox locks (see [`append`]). SQL that inserts into `events`
/// itself must call this first, inside the same transaction.
///
/// # Errors
/// Database failures.
pub async fn lock_tenants(
    conn: &mut AsyncPgConnection,
    orgs: impl IntoIterator<Item = OrgId>,
) -> Result<(), diesel::result::Error> {
    let mut orgs: Vec<uuid::Uuid> = orgs.into_iter().map(|o| o.as_uuid()).collect();
    // One order for every writer, so two multi-tenant batches cannot deadlock.
    orgs.sort_unstable();
    orgs.dedup();
    for org in orgs {
        diesel::sql_query("SELECT pg_advisory_xact_lock(hashtextextended($1::text, 7))")
            .bind::<diesel::sql_types::Uuid, _>(org)
            .execute(conn)
            .await?;
    }
    Ok(())
}

/// Inserts `events` on `conn`, which must be inside the transaction of the change, with
/// their audit entries.
///
/// It first takes a transaction-scoped advisory lock per organization: `seq` is drawn
/// at insert, not at commit, so without it a transaction could commit `seq` 11 while
/// 10 of the same tenant is still in flight, and a reader that moved its cursor to 11
/// (the feed, SSE's `Last-Event-ID`) would never see 10. Under the lock one tenant's
/// events commit in `seq` order. Tenants do not wait for each other; the cost is that
/// two writers of one tenant serialize from their append to their commit, which is why
/// repositories append last.
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
    lock_tenants(conn, batch.iter().map(|e| e.organization_id)).await?;
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
