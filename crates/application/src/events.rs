//! Reading what happened: the organization's event feed and live stream (any member),
//! and its audit log (OWNER and ADMIN).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use nexus_domain::{Action, Actor, EventType, Resource, StoredEvent};
use nexus_ports::audit::{AuditEntry, AuditFilter, AuditKeyset, AuditLog};
use nexus_ports::events::{EventBus, EventLog};

use crate::error::AppError;

type Fut<'a, T> = Pin<Box<dyn Future<Output = Result<T, AppError>> + Send + 'a>>;

/// The live fan-out of committed events, every organization's (filter by organization).
pub type LiveEvents = nexus_ports::events::LiveReceiver<Arc<StoredEvent>>;

pub trait EventUseCases: Send + Sync + 'static {
    /// The caller's organization's events after `after`, in order.
    fn feed(
        &self,
        actor: Actor,
        after: i64,
        types: Vec<EventType>,
        limit: i64,
    ) -> Fut<'_, Vec<StoredEvent>>;
    /// A receiver of every new event, once the caller may read events. Subscribe before
    /// replaying from the outbox, so nothing falls between the two.
    ///
    /// # Errors
    /// 403 when the role may not read events.
    fn subscribe(&self, actor: Actor) -> Result<LiveEvents, AppError>;
    /// The caller's organization's audit log, newest first.
    fn audit_log(
        &self,
        actor: Actor,
        filter: AuditFilter,
        before: Option<AuditKeyset>,
        limit: i64,
    ) -> Fut<'_, Vec<AuditEntry>>;
}

pub struct EventService<L, B, A> {
    log: L,
    bus: B,
    audit: A,
}

impl<L: EventLog, B: EventBus, A: AuditLog> EventService<L, B, A> {
    pub const fn new(log: L, bus: B, audit: A) -> Self {
        Self { log, bus, audit }
    }

    /// # Errors
    /// 403 for roles that may not read events; infrastructure failures.
    pub async fn feed(
        &self,
        actor: Actor,
        after: i64,
        types: Vec<EventType>,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, AppError> {
        actor.authorize(Resource::Events, Action::Read)?;
        Ok(self.log.list(actor.org_id, after, types, limit).await?)
    }

    /// # Errors
    /// 403 unless OWNER or ADMIN; infrastructure failures.
    pub async fn audit_log(
        &self,
        actor: Actor,
        filter: AuditFilter,
        before: Option<AuditKeyset>,
        limit: i64,
    ) -> Result<Vec<AuditEntry>, AppError> {
        actor.authorize(Resource::Integrations, Action::Read)?;
        Ok(self.audit.list(actor.org_id, filter, before, limit).await?)
    }
}

impl<L: EventLog, B: EventBus, A: AuditLog> EventUseCases for EventService<L, B, A> {
    fn feed(
        &self,
        actor: Actor,
        after: i64,
        types: Vec<EventType>,
        limit: i64,
    ) -> Fut<'_, Vec<StoredEvent>> {
        Box::pin(Self::feed(self, actor, after, types, limit))
    }

    fn subscribe(&self, actor: Actor) -> Result<LiveEvents, AppError> {
        actor.authorize(Resource::Events, Action::Read)?;
        Ok(self.bus.subscribe())
    }

    fn audit_log(
        &self,
        actor: Actor,
        filter: AuditFilter,
        before: Option<AuditKeyset>,
        limit: i64,
    ) -> Fut<'_, Vec<AuditEntry>> {
        Box::pin(Self::audit_log(self, actor, filter, before, limit))
    }
}
