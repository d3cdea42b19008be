//! Reading the audit log, newest first, one tenant at a time.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use nexus_domain::audit::AuditActor;
use nexus_domain::{ApiKeyId, OrgId, UserId};
use nexus_ports::StoreError;
use nexus_ports::audit::{AuditEntry, AuditFilter, AuditKeyset, AuditLog};

use crate::error::from_diesel;
use crate::pool::Db;
use crate::schema::audit_log;

#[derive(Clone)]
pub struct PgAuditLog {
    db: Db,
}

impl PgAuditLog {
    #[must_use]
    pub const fn new(db: Db) -> Self {
        Self { db }
    }
}

#[derive(Queryable)]
struct Row {
    id: uuid::Uuid,
    occurred_at: chrono::DateTime<chrono::Utc>,
    actor_type: String,
    actor_user_id: Option<uuid::Uuid>,
    actor_api_key_id: Option<uuid::Uuid>,
    ip: Option<String>,
    user_agent: Option<String>,
    action: String,
    entity_type: String,
    entity_id: Option<String>,
    changes: serde_json::Value,
}

impl TryFrom<Row> for AuditEntry {
    type Error = StoreError;

    fn try_from(r: Row) -> Result<Self, StoreError> {
        let actor = match (r.actor_type.as_str(), r.actor_user_id, r.actor_api_key_id) {
            ("user", Some(u), _) => AuditActor::User {
                user_id: UserId::from_uuid(u),
            },
            ("api_key", u, Some(k)) => AuditActor::ApiKey {
                api_key_id: ApiKeyId::from_uuid(k),
                on_behalf_of: u.map(UserId::from_uuid),
            },
            ("system", _, _) => AuditActor::System,
            (other, ..) => {
                return Err(StoreError::Other(anyhow::anyhow!(
                    "audit entry {} has an unusable actor {other:?}",
                    r.id
                )));
            }
        };
        Ok(Self {
            id: r.id,
            occurred_at: r.occurred_at,
            actor,
            ip: r.ip,
            user_agent: r.user_agent,
            action: r.action,
            entity_type: r.entity_type,
            entity_id: r.entity_id,
            changes: r.changes,
        })
    }
}

impl AuditLog for PgAuditLog {
    async fn list(
        &self,
        org: OrgId,
        filter: AuditFilter,
        before: Option<AuditKeyset>,
        limit: i64,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let mut conn = self.db.conn().await?;
        let mut q = audit_log::table
            .filter(audit_log::organization_id.eq(org.as_uuid()))
            .select((
                audit_log::id,
                audit_log::occurred_at,
                audit_log::actor_type,
                audit_log::actor_user_id,
                audit_log::actor_api_key_id,
                audit_log::ip,
                audit_log::user_agent,
                audit_log::action,
                audit_log::entity_type,
                audit_log::entity_id,
                audit_log::changes,
            ))
            .order((audit_log::occurred_at.desc(), audit_log::id.desc()))
            .limit(limit)
            .into_boxed();
        if let Some(actor) = filter.actor {
            q = q.filter(
                audit_log::actor_user_id
                    .eq(actor)
                    .or(audit_log::actor_api_key_id.eq(actor)),
            );
        }
        if let Some(t) = filter.entity_type {
            q = q.filter(audit_log::entity_type.eq(t));
        }
        if let Some(id) = filter.entity_id {
            q = q.filter(audit_log::entity_id.eq(id));
        }
        if let Some(a) = filter.action {
            q = q.filter(audit_log::action.eq(a));
        }
        if let Some(from) = filter.from {
            q = q.filter(audit_log::occurred_at.ge(from));
        }
        if let Some(to) = filter.to {
            q = q.filter(audit_log::occurred_at.lt(to));
        }
        if let Some(k) = before {
            q = q.filter(
                audit_log::occurred_at
                    .lt(k.occurred_at)
                    .or(audit_log::occurred_at
                        .eq(k.occurred_at)
                        .and(audit_log::id.lt(k.id))),
            );
        }
        let rows: Vec<Row> = q.load(&mut conn).await.map_err(from_diesel)?;
        rows.into_iter().map(AuditEntry::try_from).collect()
    }
}
