//! Reading the outbox (the pollable feed, replay) and hearing about new rows (SSE, the
//! webhook worker), across every app instance.

use std::future::Future;
use std::sync::Arc;

use nexus_domain::{EventType, OrgId, StoredEvent};

use crate::StoreError;

/// Re-exported so that use cases can name the receiver without depending on tokio.
pub use tokio::sync::broadcast::Receiver as LiveReceiver;
pub use tokio::sync::broadcast::error::RecvError as LiveRecvError;
pub use tokio::sync::watch::Receiver as WakeReceiver;

/// The outbox as a log to read, one organization at a time or all of them in order.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait EventLog: Send + Sync + 'static {
    /// `org`'s events with `seq > after`, in `seq` order, at most `limit`, only `types`
    /// when that is not empty.
    ///
    /// # Errors
    /// Infrastructure failures.
    fn list(
        &self,
        org: OrgId,
        after: i64,
        types: Vec<EventType>,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<StoredEvent>, StoreError>> + Send;

    /// Every organization's events with `seq > after`, in `seq` order. Numbers become
    /// visible in order, so a reader that moves its cursor to the last row it read
    /// misses nothing.
    ///
    /// # Errors
    /// Infrastructure failures.
    fn since(
        &self,
        after: i64,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<StoredEvent>, StoreError>> + Send;

    /// The highest `seq` written so far (0 when none), of `org` or of every organization.
    ///
    /// # Errors
    /// Infrastructure failures.
    fn head(&self, org: Option<OrgId>) -> impl Future<Output = Result<i64, StoreError>> + Send;
}

/// Wake-ups for outbox readers: the receiver changes whenever new events may have been
/// committed (PostgreSQL `NOTIFY` from any app instance). Its value is the highest `seq`
/// announced; a reader re-reads the outbox from its own cursor, never trusting the value
/// alone, because a reconnect of the listener also bumps it (notifications sent while it
/// was disconnected are lost).
pub trait EventNotifier: Send + Sync + 'static {
    fn subscribe(&self) -> tokio::sync::watch::Receiver<i64>;
}

/// Committed events of every organization, read once per app instance and fanned out.
/// Receivers filter by organization and type. A receiver that falls behind gets
/// `RecvError::Lagged` and must re-read the outbox from its cursor.
pub trait EventBus: Send + Sync + 'static {
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Arc<StoredEvent>>;
}
