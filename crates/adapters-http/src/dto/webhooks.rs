use chrono::{DateTime, Utc};
use nexus_application::webhooks::WebhookWithSecret;
use nexus_ports::webhooks::{AttemptRecord, DeliveryRecord, DeliveryStatus, WebhookRecord};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// A webhook subscription. The signing secret is never shown again after creation or
/// rotation.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookDto {
    pub id: Uuid,
    #[schema(example = "https://hooks.example.com/nexus")]
    pub url: String,
    #[schema(required = true)]
    pub description: Option<String>,
    /// Event names, or `["*"]` for every event.
    #[schema(example = json!(["contact.created", "deal.won"]))]
    pub event_types: Vec<String>,
    /// Inactive subscriptions receive nothing; NEXUS deactivates one on 410 Gone or after
    /// 5 days of failures (see `disabledReason`).
    pub active: bool,
    #[schema(required = true)]
    pub disabled_reason: Option<String>,
    /// Start of the current run of failed attempts.
    #[schema(required = true)]
    pub failing_since: Option<DateTime<Utc>>,
    /// While set, the previous secret also signs (after a rotation).
    #[schema(required = true)]
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    pub version: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<WebhookRecord> for WebhookDto {
    fn from(w: WebhookRecord) -> Self {
        Self {
            id: w.id.as_uuid(),
            url: w.url,
            description: w.description,
            event_types: w.event_types,
            active: w.active,
            disabled_reason: w.disabled_reason,
            failing_since: w.failing_since,
            previous_secret_expires_at: w.previous_secret_expires_at,
            version: w.version,
            created_at: w.created_at,
            updated_at: w.updated_at,
        }
    }
}

/// A subscription with its signing secret: shown in this response only.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookWithSecretDto {
    pub webhook: WebhookDto,
    /// `whsec_` + base64 key; verify `webhook-signature` with it (see docs/webhooks.md).
    #[schema(example = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")]
    pub secret: String,
}

impl From<WebhookWithSecret> for WebhookWithSecretDto {
    fn from(w: WebhookWithSecret) -> Self {
        Self {
            webhook: w.webhook.into(),
            secret: w.secret,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateWebhookRequest {
    /// https, or http for hosts in `NEXUS_WEBHOOK_ALLOWLIST`.
    #[schema(max_length = 2048, example = "https://hooks.example.com/nexus")]
    pub url: String,
    /// Event names, or `["*"]`.
    #[schema(min_items = 1, example = json!(["*"]))]
    pub event_types: Vec<String>,
    #[schema(max_length = 500)]
    pub description: Option<String>,
    /// Whether it receives events from the start (default true).
    pub active: Option<bool>,
}

/// Merge patch: absent fields stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateWebhookRequest {
    #[serde(default, deserialize_with = "crate::dto::common::not_null")]
    #[schema(max_length = 2048, nullable = false)]
    pub url: Option<String>,
    #[serde(default, deserialize_with = "crate::dto::common::not_null")]
    #[schema(min_items = 1, nullable = false)]
    pub event_types: Option<Vec<String>>,
    /// `null` clears it.
    #[serde(default, deserialize_with = "crate::dto::common::present")]
    #[schema(value_type = Option<String>, max_length = 500)]
    pub description: Option<Option<String>>,
    /// `true` re-activates a disabled subscription and restarts its failure clock.
    #[serde(default, deserialize_with = "crate::dto::common::not_null")]
    #[schema(nullable = false)]
    pub active: Option<bool>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RotateSecretRequest {
    /// How long the current secret keeps signing beside the new one (default 86400,
    /// at most 604800; 0 retires it at once).
    #[schema(minimum = 0, maximum = 604_800)]
    pub overlap_seconds: Option<u64>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatusDto {
    Pending,
    Succeeded,
    Failed,
}

impl From<DeliveryStatus> for DeliveryStatusDto {
    fn from(s: DeliveryStatus) -> Self {
        match s {
            DeliveryStatus::Pending => Self::Pending,
            DeliveryStatus::Succeeded => Self::Succeeded,
            DeliveryStatus::Failed => Self::Failed,
        }
    }
}

impl From<DeliveryStatusDto> for DeliveryStatus {
    fn from(s: DeliveryStatusDto) -> Self {
        match s {
            DeliveryStatusDto::Pending => Self::Pending,
            DeliveryStatusDto::Succeeded => Self::Succeeded,
            DeliveryStatusDto::Failed => Self::Failed,
        }
    }
}

/// One message on its way to one subscription, and how its attempts went.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryDto {
    pub id: Uuid,
    pub webhook_id: Uuid,
    /// The `webhook-id` header: the same on every retry and redelivery.
    pub message_id: Uuid,
    /// The event delivered (`null` for a ping).
    #[schema(required = true)]
    pub event_id: Option<Uuid>,
    #[schema(example = "contact.created")]
    pub event_type: String,
    pub status: DeliveryStatusDto,
    pub attempts: i32,
    /// When the next attempt is due (pending deliveries).
    #[schema(required = true)]
    pub next_attempt_at: Option<DateTime<Utc>>,
    #[schema(required = true)]
    pub last_attempt_at: Option<DateTime<Utc>>,
    /// The receiver's last HTTP status, if it answered.
    #[schema(required = true)]
    pub last_status_code: Option<i32>,
    /// Why the last attempt failed without an answer (timeout, refused destination...).
    #[schema(required = true)]
    pub last_error: Option<String>,
    #[schema(required = true)]
    pub last_duration_ms: Option<i32>,
    pub created_at: DateTime<Utc>,
    #[schema(required = true)]
    pub completed_at: Option<DateTime<Utc>>,
}

impl From<DeliveryRecord> for DeliveryDto {
    fn from(d: DeliveryRecord) -> Self {
        Self {
            id: d.id.as_uuid(),
            webhook_id: d.webhook_id.as_uuid(),
            message_id: d.message_id,
            event_id: d.event_id,
            event_type: d.event_type,
            status: d.status.into(),
            attempts: d.attempts,
            next_attempt_at: d.next_attempt_at,
            last_attempt_at: d.last_attempt_at,
            last_status_code: d.last_status_code,
            last_error: d.last_error,
            last_duration_ms: d.last_duration_ms,
            created_at: d.created_at,
            completed_at: d.completed_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttemptDto {
    /// 1 for the first attempt.
    pub attempt: i32,
    pub attempted_at: DateTime<Utc>,
    #[schema(required = true)]
    pub status_code: Option<i32>,
    #[schema(required = true)]
    pub error: Option<String>,
    /// The first 4 KiB of the receiver's answer.
    #[schema(required = true)]
    pub response_body: Option<String>,
    pub duration_ms: i32,
}

impl From<AttemptRecord> for AttemptDto {
    fn from(a: AttemptRecord) -> Self {
        Self {
            attempt: a.attempt,
            attempted_at: a.attempted_at,
            status_code: a.status_code,
            error: a.error,
            response_body: a.response_body,
            duration_ms: a.duration_ms,
        }
    }
}

/// A delivery with every attempt, oldest first.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryDetailDto {
    #[serde(flatten)]
    pub delivery: DeliveryDto,
    pub attempt_log: Vec<AttemptDto>,
}
