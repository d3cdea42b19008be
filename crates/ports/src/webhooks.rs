//! Webhook subscriptions, their delivery queue, and the outbound side of delivery:
//! name resolution and the HTTP call, both injectable so tests never leave loopback.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use chrono::{DateTime, Utc};
use nexus_domain::webhook::AttemptDecision;
use nexus_domain::{DeliveryId, DomainEvent, OrgId, UserId, WebhookId};

use crate::error::StoreError;

/// A subscription as shown to its organization (never the secrets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookRecord {
    pub id: WebhookId,
    pub url: String,
    pub description: Option<String>,
    /// Event names, or `["*"]`.
    pub event_types: Vec<String>,
    pub active: bool,
    pub disabled_reason: Option<String>,
    pub failing_since: Option<DateTime<Utc>>,
    /// Until when the rotated-out secret still signs, if a rotation is overlapping.
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    pub version: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewWebhook {
    pub id: WebhookId,
    pub url: String,
    pub description: Option<String>,
    pub event_types: Vec<String>,
    pub active: bool,
    pub secret: String,
    pub created_by: UserId,
}

/// Merge patch: `None` leaves a field unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WebhookPatch {
    pub url: Option<String>,
    pub description: Option<Option<String>>,
    pub event_types: Option<Vec<String>>,
    /// Re-activating also ends the failing streak and clears the disabled reason.
    pub active: Option<bool>,
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookWriteError {
    #[error("not found")]
    NotFound,
    #[error("stale version")]
    VersionMismatch,
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    Pending,
    Succeeded,
    Failed,
}

impl DeliveryStatus {
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }

    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Pending, Self::Succeeded, Self::Failed]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRecord {
    pub id: DeliveryId,
    pub webhook_id: WebhookId,
    /// The position in the subscription's queue; the log's cursor.
    pub seq: i64,
    pub message_id: uuid::Uuid,
    pub event_id: Option<uuid::Uuid>,
    pub event_type: String,
    pub status: DeliveryStatus,
    pub attempts: i32,
    /// When the next attempt is due (pending deliveries only).
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    pub last_status_code: Option<i32>,
    pub last_error: Option<String>,
    pub last_duration_ms: Option<i32>,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRecord {
    pub attempt: i32,
    pub attempted_at: DateTime<Utc>,
    pub status_code: Option<i32>,
    pub error: Option<String>,
    pub response_body: Option<String>,
    pub duration_ms: i32,
}

/// A delivery queued by hand: a test ping or a redelivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery {
    pub id: DeliveryId,
    pub message_id: uuid::Uuid,
    pub event_id: Option<uuid::Uuid>,
    pub event_type: String,
    pub body: String,
}

/// A delivery a worker holds a lease on, with what it needs to send it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedDelivery {
    pub org: OrgId,
    pub id: DeliveryId,
    pub webhook_id: WebhookId,
    pub message_id: uuid::Uuid,
    pub body: String,
    pub url: String,
    /// The current secret first, then the previous one while its overlap lasts.
    pub secrets: Vec<String>,
    /// Attempts made before this one.
    pub attempts: i32,
    pub failing_since: Option<DateTime<Utc>>,
    /// Proves the lease is still this worker's when the outcome is recorded.
    pub lease_token: uuid::Uuid,
}

/// One attempt as it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptReport {
    pub attempted_at: DateTime<Utc>,
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub response_body: Option<String>,
    pub duration_ms: i32,
}

#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait WebhookStore: Send + Sync + 'static {
    /// # Errors
    /// Storage failures.
    fn create(
        &self,
        org: OrgId,
        webhook: NewWebhook,
    ) -> impl Future<Output = Result<WebhookRecord, StoreError>> + Send;

    /// Subscriptions by id (creation order), after `after`, at most `limit`.
    ///
    /// # Errors
    /// Storage failures.
    fn list(
        &self,
        org: OrgId,
        after: Option<WebhookId>,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<WebhookRecord>, StoreError>> + Send;

    /// # Errors
    /// Storage failures.
    fn get(
        &self,
        org: OrgId,
        id: WebhookId,
    ) -> impl Future<Output = Result<Option<WebhookRecord>, StoreError>> + Send;

    /// # Errors
    /// [`WebhookWriteError`].
    fn update(
        &self,
        org: OrgId,
        id: WebhookId,
        patch: WebhookPatch,
        expected_version: Option<i32>,
    ) -> impl Future<Output = Result<WebhookRecord, WebhookWriteError>> + Send;

    /// Deletes the subscription and its delivery log.
    ///
    /// # Errors
    /// [`WebhookWriteError`].
    fn delete(
        &self,
        org: OrgId,
        id: WebhookId,
        expected_version: Option<i32>,
    ) -> impl Future<Output = Result<(), WebhookWriteError>> + Send;

    /// Installs `secret`; the current one keeps signing until `previous_expires_at`.
    ///
    /// # Errors
    /// [`WebhookWriteError`].
    fn rotate_secret(
        &self,
        org: OrgId,
        id: WebhookId,
        secret: String,
        previous_expires_at: DateTime<Utc>,
    ) -> impl Future<Output = Result<WebhookRecord, WebhookWriteError>> + Send;

    /// The subscription's deliveries newest first, below `before_seq`, at most `limit`.
    ///
    /// # Errors
    /// Storage failures.
    fn deliveries(
        &self,
        org: OrgId,
        webhook: WebhookId,
        status: Option<DeliveryStatus>,
        before_seq: Option<i64>,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<DeliveryRecord>, StoreError>> + Send;

    /// One delivery with its attempts, oldest first.
    ///
    /// # Errors
    /// Storage failures.
    fn delivery(
        &self,
        org: OrgId,
        webhook: WebhookId,
        id: DeliveryId,
    ) -> impl Future<Output = Result<Option<(DeliveryRecord, Vec<AttemptRecord>)>, StoreError>> + Send;

    /// The body of a delivery, to send it again.
    ///
    /// # Errors
    /// Storage failures.
    fn delivery_body(
        &self,
        org: OrgId,
        webhook: WebhookId,
        id: DeliveryId,
    ) -> impl Future<Output = Result<Option<NewDelivery>, StoreError>> + Send;

    /// Queues a delivery at the end of the subscription's queue, due now.
    ///
    /// # Errors
    /// [`WebhookWriteError::NotFound`] when the subscription is gone.
    fn enqueue(
        &self,
        org: OrgId,
        webhook: WebhookId,
        delivery: NewDelivery,
    ) -> impl Future<Output = Result<DeliveryRecord, WebhookWriteError>> + Send;

    /// Leases the due head of some active subscription's queue for `lease`, skipping
    /// subscriptions another worker is claiming or whose head is leased.
    ///
    /// # Errors
    /// Storage failures.
    fn claim(
        &self,
        lease: Duration,
        token: uuid::Uuid,
    ) -> impl Future<Output = Result<Option<ClaimedDelivery>, StoreError>> + Send;

    /// Records an attempt and its consequences in one transaction, if the lease is still
    /// `claimed.lease_token`'s; `disabled` is the `webhook.disabled` event to append when
    /// the decision disables the subscription. Answers whether the lease was still held.
    ///
    /// # Errors
    /// Storage failures.
    fn finish(
        &self,
        claimed: ClaimedDelivery,
        report: AttemptReport,
        decision: AttemptDecision,
        disabled: Option<DomainEvent>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Deletes finished deliveries created before `before`; answers how many.
    ///
    /// # Errors
    /// Storage failures.
    fn purge_deliveries(
        &self,
        before: DateTime<Utc>,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
}

/// Name resolution at send time.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait HostResolver: Send + Sync + 'static {
    /// # Errors
    /// A message saying why the name did not resolve.
    fn resolve(
        &self,
        host: String,
        port: u16,
    ) -> impl Future<Output = Result<Vec<IpAddr>, String>> + Send;
}

/// One signed webhook request, pinned to addresses the guard approved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundRequest {
    pub url: String,
    /// The only addresses the sender may connect to.
    pub addrs: Vec<SocketAddr>,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundResponse {
    pub status: u16,
    /// At most 4 KiB of the body.
    pub body: String,
}

/// The HTTP call of a delivery: no redirects followed, bounded by the timeout.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait WebhookSender: Send + Sync + 'static {
    /// # Errors
    /// A message saying why no answer came (timeout, connection refused...).
    fn send(
        &self,
        request: OutboundRequest,
    ) -> impl Future<Output = Result<OutboundResponse, String>> + Send;
}
