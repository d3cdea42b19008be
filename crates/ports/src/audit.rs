//! Reading the audit log. Writing happens inside the adapters' transactions (derived from
//! the outbox events, or explicitly for changes that emit none).

use std::future::Future;

use chrono::{DateTime, Utc};
use nexus_domain::OrgId;
use nexus_domain::audit::AuditActor;

use crate::StoreError;

/// One audit entry as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    pub id: uuid::Uuid,
    pub occurred_at: DateTime<Utc>,
    pub actor: AuditActor,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub action: String,
    pub entity_type: String,
    pub entity_id: Option<String>,
    pub changes: serde_json::Value,
}

/// Filters of the audit log, all optional and combined with AND.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// A user id or an API key id.
    pub actor: Option<uuid::Uuid>,
    pub entity_type: Option<String>,
    pub entity_id: Option<String>,
    pub action: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

/// Newest first: the next page starts strictly before this (time, id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditKeyset {
    pub occurred_at: DateTime<Utc>,
    pub id: uuid::Uuid,
}

#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait AuditLog: Send + Sync + 'static {
    /// `org`'s entries newest first, at most `limit`.
    ///
    /// # Errors
    /// Infrastructure failures.
    fn list(
        &self,
        org: OrgId,
        filter: AuditFilter,
        before: Option<AuditKeyset>,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<AuditEntry>, StoreError>> + Send;
}
