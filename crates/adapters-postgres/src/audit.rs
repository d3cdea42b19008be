//! Writing audit entries, always on the connection of the change's transaction, so an
//! entry exists exactly when its change does. Who and from where come from the request
//! context (see `nexus_ports::request_context`).

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use nexus_domain::audit::{AuditActor, AuditChange, actor_of};
use nexus_domain::{Actor, DomainEvent, OrgId, Principal, UserId};
use nexus_ports::request_context::{self, RequestContext};

use crate::schema::audit_log;
use crate::statement::{Bind, Statement};

#[derive(Insertable)]
#[diesel(table_name = audit_log)]
struct NewEntry<'a> {
    organization_id: uuid::Uuid,
    id: uuid::Uuid,
    actor_type: &'static str,
    actor_user_id: Option<uuid::Uuid>,
    actor_api_key_id: Option<uuid::Uuid>,
    ip: Option<&'a str>,
    user_agent: Option<&'a str>,
    action: String,
    entity_type: String,
    entity_id: Option<String>,
    changes: serde_json::Value,
}

fn actor_from(actor: Option<Actor>) -> AuditActor {
    match actor.map(|a| a.principal) {
        Some(Principal::User { user_id, .. }) => AuditActor::User { user_id },
        Some(Principal::ApiKey {
            api_key_id,
            created_by,
        }) => AuditActor::ApiKey {
            api_key_id,
            on_behalf_of: Some(created_by),
        },
        None => AuditActor::System,
    }
}

fn entry<'a>(
    ctx: Option<&'a RequestContext>,
    org: OrgId,
    actor: AuditActor,
    change: AuditChange,
) -> NewEntry<'a> {
    let (user, key) = match actor {
        AuditActor::User { user_id } => (Some(user_id.as_uuid()), None),
        AuditActor::ApiKey {
            api_key_id,
            on_behalf_of,
        } => (
            on_behalf_of.map(|u| u.as_uuid()),
            Some(api_key_id.as_uuid()),
        ),
        AuditActor::System => (None, None),
    };
    NewEntry {
        organization_id: org.as_uuid(),
        id: uuid::Uuid::now_v7(),
        actor_type: actor.kind(),
        actor_user_id: user,
        actor_api_key_id: key,
        ip: ctx.and_then(|c| c.ip.as_deref()),
        user_agent: ctx.and_then(|c| c.user_agent.as_deref()),
        action: change.action,
        entity_type: change.entity_type,
        entity_id: change.entity_id,
        changes: change.changes,
    }
}

/// Records a change that emits no domain event (custom fields, tags, pipelines,
/// settings, API keys, invitations, roles ...), attributed to the request's caller.
/// `conn` must be inside the change's transaction.
///
/// # Errors
/// Database failures (the caller's transaction then rolls back).
pub async fn record(
    conn: &mut AsyncPgConnection,
    org: OrgId,
    change: AuditChange,
) -> Result<(), diesel::result::Error> {
    let ctx = request_context::current();
    let row = entry(
        ctx.as_deref(),
        org,
        actor_from(ctx.as_ref().and_then(|c| c.actor())),
        change,
    );
    diesel::insert_into(audit_log::table)
        .values(&row)
        .execute(conn)
        .await?;
    Ok(())
}

/// Records one entry per event (called by `outbox::append`).
pub(crate) async fn record_events(
    conn: &mut AsyncPgConnection,
    batch: &[DomainEvent],
) -> Result<(), diesel::result::Error> {
    let ctx = request_context::current();
    let on_behalf_of = on_behalf_of(ctx.as_deref());
    let rows: Vec<NewEntry<'_>> = batch
        .iter()
        .map(|e| {
            entry(
                ctx.as_deref(),
                e.organization_id,
                actor_of(e, on_behalf_of),
                AuditChange::from_event(e),
            )
        })
        .collect();
    // Bulk imports append thousands of events at once; stay under the bind-parameter cap.
    for chunk in rows.chunks(4000) {
        diesel::insert_into(audit_log::table)
            .values(chunk)
            .execute(conn)
            .await?;
    }
    Ok(())
}

/// The user an API key acts for, when the request's caller is a key.
fn on_behalf_of(ctx: Option<&RequestContext>) -> Option<UserId> {
    ctx.and_then(RequestContext::actor)
        .and_then(|a| match a.principal {
            Principal::ApiKey { created_by, .. } => Some(created_by),
            Principal::User { .. } => None,
        })
}

/// Adds to `stmt`, a `WITH` list, the audit entry of `event` as one more CTE that writes
/// it once per row of the CTE `gate`: exactly when the gated change is written, in the
/// same statement (see `outbox::push_gated`).
pub(crate) fn push_gated_entry(stmt: &mut Statement, event: &DomainEvent, gate: &str) {
    let ctx = request_context::current();
    let row = entry(
        ctx.as_deref(),
        event.organization_id,
        actor_of(event, on_behalf_of(ctx.as_deref())),
        AuditChange::from_event(event),
    );
    stmt.push(
        ", audit_entry AS (INSERT INTO audit_log (organization_id, id, actor_type, actor_user_id, \
         actor_api_key_id, ip, user_agent, action, entity_type, entity_id, changes) SELECT ",
    );
    let binds = [
        Bind::Uuid(row.organization_id),
        Bind::Uuid(row.id),
        Bind::Text(row.actor_type.to_owned()),
        Bind::OptUuid(row.actor_user_id),
        Bind::OptUuid(row.actor_api_key_id),
        Bind::OptText(row.ip.map(str::to_owned)),
        Bind::OptText(row.user_agent.map(str::to_owned)),
        Bind::Text(row.action),
        Bind::Text(row.entity_type),
        Bind::OptText(row.entity_id),
        Bind::Json(row.changes),
    ];
    stmt.bind_list(binds);
    stmt.push(&format!(" FROM {gate})"));
}
