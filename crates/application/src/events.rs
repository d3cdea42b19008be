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
    /// The position of the organization's latest event (0 when none): where a stream
    /// opened without `Last-Event-ID` starts.
    fn head(&self, actor: Actor) -> Fut<'_, i64>;
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

    fn head(&self, actor: Actor) -> Fut<'_, i64> {
        Box::pin(async move {
            actor.authorize(Resource::Events, Action::Read)?;
            Ok(self.log.head(Some(actor.org_id)).await?)
        })
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use nexus_domain::{OrgId, Principal, Role, SessionId, UserId};
    use nexus_ports::audit::MockAuditLog;
    use nexus_ports::events::MockEventLog;
    use uuid::Uuid;

    use super::*;

    struct Bus(tokio::sync::broadcast::Sender<Arc<StoredEvent>>);

    impl EventBus for Bus {
        fn subscribe(&self) -> LiveEvents {
            self.0.subscribe()
        }
    }

    fn actor(role: Role) -> Actor {
        Actor {
            principal: Principal::User {
                user_id: UserId::from_uuid(Uuid::now_v7()),
                session_id: SessionId::from_uuid(Uuid::now_v7()),
            },
            org_id: OrgId::from_uuid(Uuid::now_v7()),
            role,
        }
    }

    fn service(
        log: MockEventLog,
        audit: MockAuditLog,
    ) -> EventService<MockEventLog, Bus, MockAuditLog> {
        EventService::new(log, Bus(tokio::sync::broadcast::channel(16).0), audit)
    }

    #[tokio::test]
    async fn every_role_reads_its_own_organizations_events() {
        for role in Role::ALL {
            let a = actor(role);
            let mut log = MockEventLog::new();
            let org = a.org_id;
            log.expect_list()
                .withf(move |o, after, types, limit| {
                    *o == org && *after == 7 && types.is_empty() && *limit == 10
                })
                .returning(|_, _, _, _| Box::pin(async { Ok(vec![]) }));
            let s = service(log, MockAuditLog::new());
            assert!(s.feed(a, 7, vec![], 10).await.unwrap().is_empty());
            assert!(EventUseCases::subscribe(&s, a).is_ok());
        }
    }

    #[tokio::test]
    async fn only_owners_and_admins_read_the_audit_log() {
        for role in [Role::Member, Role::Viewer] {
            // No expectation: the store must not be asked.
            let s = service(MockEventLog::new(), MockAuditLog::new());
            let err = s
                .audit_log(actor(role), AuditFilter::default(), None, 10)
                .await
                .unwrap_err();
            assert!(matches!(err, AppError::Forbidden(_)), "{role:?}: {err:?}");
        }
        for role in [Role::Owner, Role::Admin] {
            let a = actor(role);
            let org = a.org_id;
            let mut audit = MockAuditLog::new();
            audit
                .expect_list()
                .withf(move |o, _, _, _| *o == org)
                .returning(|_, _, _, _| Box::pin(async { Ok(vec![]) }));
            let s = service(MockEventLog::new(), audit);
            assert!(
                s.audit_log(a, AuditFilter::default(), None, 10)
                    .await
                    .is_ok()
            );
        }
    }
}
