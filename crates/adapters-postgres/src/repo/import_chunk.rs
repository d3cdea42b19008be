//! The set-based write of one import chunk: every new contact in one statement, every
//! update in another, then the events of the rows written in a third, all in the
//! caller's transaction.
//!
//! A chunk travels as one JSON array per statement, unpacked by `jsonb_to_recordset`: a
//! constant, short statement text whatever the chunk size, instead of a `VALUES` list
//! of 17 binds a row (which PostgreSQL parsed and planned anew for every chunk), and
//! one round trip for all the rows.

use std::collections::HashSet;

use diesel::QueryableByName;
use diesel::sql_types::{Jsonb, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use nexus_domain::contact::Contact;
use nexus_domain::{DomainEvent, OrgId};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::repo::contacts::ContactRow;

/// The record type of a contact row in a chunk's JSON (see [`contact_json`]).
const CONTACT_RECORD: &str = "id uuid, first_name text, last_name text, email text, phone text, \
     phone_e164 text, company text, lifecycle_stage text, lead_score smallint, owner_id uuid, \
     tags text[], custom_fields jsonb, version integer, created_at timestamptz, \
     updated_at timestamptz, expected integer";

/// New contacts; a row whose email a live contact took meanwhile is skipped by the
/// partial unique index (and later gets no event).
fn insert_sql() -> String {
    format!(
        "INSERT INTO contacts (organization_id, id, first_name, last_name, email, phone, phone_e164, company,
                               lifecycle_stage, lead_score, owner_id, tags, custom_fields, version,
                               created_at, updated_at)
         SELECT $1, id, first_name, last_name, email, phone, phone_e164, company, lifecycle_stage, lead_score,
                owner_id, tags, custom_fields, version, created_at, updated_at
         FROM jsonb_to_recordset($2) AS r({CONTACT_RECORD})
         ON CONFLICT (organization_id, lower(email)) WHERE deleted_at IS NULL AND email IS NOT NULL DO NOTHING
         RETURNING id"
    )
}

/// Changed contacts, each only if still at the version it was read at.
fn update_sql() -> String {
    format!(
        "UPDATE contacts c SET first_name = r.first_name, last_name = r.last_name, email = r.email,
             phone = r.phone, phone_e164 = r.phone_e164, company = r.company,
             lifecycle_stage = r.lifecycle_stage, lead_score = r.lead_score, owner_id = r.owner_id,
             tags = r.tags, custom_fields = r.custom_fields, version = r.version, updated_at = r.updated_at
         FROM jsonb_to_recordset($2) AS r({CONTACT_RECORD})
         WHERE c.organization_id = $1 AND c.id = r.id AND c.version = r.expected AND c.deleted_at IS NULL
         RETURNING c.id"
    )
}

/// The events, numbered in chunk order (see `events_append_numbered`, migration 000015).
const EVENTS_SQL: &str = "SELECT events_append_numbered($1, $2) AS n";

#[derive(QueryableByName)]
struct Written {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
}

fn contact_json(contact: &Contact, expected: Option<i32>) -> Value {
    let r = ContactRow::from(contact);
    json!({
        "id": r.id, "first_name": r.first_name, "last_name": r.last_name, "email": r.email,
        "phone": r.phone, "phone_e164": r.phone_e164, "company": r.company,
        "lifecycle_stage": r.lifecycle_stage, "lead_score": r.lead_score, "owner_id": r.owner_id,
        "tags": r.tags, "custom_fields": r.custom_fields, "version": r.version,
        "created_at": r.created_at, "updated_at": r.updated_at, "expected": expected,
    })
}

fn event_json(event: &DomainEvent) -> Value {
    json!({
        "id": event.id.as_uuid(), "type": event.event_type.as_str(),
        "occurred_at": event.occurred_at, "actor": event.actor, "payload": event.payload,
    })
}

/// Writes `rows` (contact, version read at for updates) without their events; returns
/// the ids written. Rows not written (email taken, contact changed) are left out.
pub(crate) async fn write<'a>(
    conn: &mut AsyncPgConnection,
    org: OrgId,
    update: bool,
    rows: impl Iterator<Item = (&'a Contact, Option<i32>)>,
) -> Result<HashSet<Uuid>, diesel::result::Error> {
    let contacts: Vec<Value> = rows.map(|(c, v)| contact_json(c, v)).collect();
    if contacts.is_empty() {
        return Ok(HashSet::new());
    }
    let sql = if update { update_sql() } else { insert_sql() };
    let written: Vec<Written> = diesel::sql_query(sql)
        .bind::<SqlUuid, _>(org.as_uuid())
        .bind::<Jsonb, _>(Value::Array(contacts))
        .load(conn)
        .await?;
    Ok(written.into_iter().map(|w| w.id).collect())
}

/// Appends the events of the rows written, in one statement, already numbered: a bulk
/// write spares the numberer's second write of each event. This takes the numbering
/// lock until the transaction ends, so it must be the chunk's last statements but one
/// and the transaction must commit synchronously.
pub(crate) async fn append_events<'a>(
    conn: &mut AsyncPgConnection,
    org: OrgId,
    events: impl Iterator<Item = &'a DomainEvent>,
) -> Result<(), diesel::result::Error> {
    let events: Vec<Value> = events.map(event_json).collect();
    if events.is_empty() {
        return Ok(());
    }
    diesel::sql_query(EVENTS_SQL)
        .bind::<SqlUuid, _>(org.as_uuid())
        .bind::<Jsonb, _>(Value::Array(events))
        .execute(conn)
        .await?;
    Ok(())
}
