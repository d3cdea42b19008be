//! The event feed, the stream's messages and the audit log on the wire.

use chrono::{DateTime, Utc};
use nexus_domain::audit::AuditActor;
use nexus_domain::{EventActor, EventType, StoredEvent};
use nexus_ports::audit::AuditEntry;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

/// Every event name, for the schema's enum: generated from the domain's list, so the
/// spec cannot fall behind it.
pub struct EventTypeDto;

impl utoipa::PartialSchema for EventTypeDto {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some("Every event name, for the schema's enum."))
            .enum_values(Some(schema_names()))
            .into()
    }
}

impl ToSchema for EventTypeDto {}

/// Who caused an event.
#[derive(Debug, Serialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventActorDto {
    User { id: Uuid },
    ApiKey { id: Uuid },
    System,
}

impl From<&EventActor> for EventActorDto {
    fn from(a: &EventActor) -> Self {
        match a {
            EventActor::User { id } => Self::User { id: id.as_uuid() },
            EventActor::ApiKey { id } => Self::ApiKey { id: *id },
            EventActor::System => Self::System,
        }
    }
}

/// Something that happened in the organization.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventDto {
    pub id: Uuid,
    #[serde(rename = "type")]
    #[schema(value_type = EventTypeDto)]
    pub event_type: &'static str,
    pub occurred_at: DateTime<Utc>,
    pub organization_id: Uuid,
    pub actor: EventActorDto,
    /// The resource as it is after the change; for updates, `changes` lists the changed
    /// fields.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

impl From<&StoredEvent> for EventDto {
    fn from(s: &StoredEvent) -> Self {
        let e = &s.event;
        Self {
            id: e.id.as_uuid(),
            event_type: e.event_type.as_str(),
            occurred_at: e.occurred_at,
            organization_id: e.organization_id.as_uuid(),
            actor: (&e.actor).into(),
            data: e.payload.clone(),
        }
    }
}

/// Keeps the schema's enum in step with the domain's list.
#[must_use]
pub fn schema_names() -> Vec<&'static str> {
    EventType::ALL.iter().map(|t| t.as_str()).collect()
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FeedQuery {
    /// Resume after this position: a `nextCursor` of the feed or an `id` of the stream.
    /// Without it, the feed starts at the oldest retained event.
    pub after: Option<String>,
    /// Comma-separated event types to keep, e.g. `deal.won,deal.lost` (default: all).
    pub types: Option<String>,
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// Comma-separated event types to keep (default: all).
    pub types: Option<String>,
    /// For clients that cannot set the `Last-Event-ID` header (browsers' `EventSource`
    /// sets it on reconnects by itself); the header wins when both are sent.
    pub last_event_id: Option<String>,
}

/// Who made an audited change.
#[derive(Debug, Serialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AuditActorDto {
    User {
        #[serde(rename = "userId")]
        user_id: Uuid,
    },
    /// An API key, acting on behalf of the user who created it.
    ApiKey {
        #[serde(rename = "apiKeyId")]
        api_key_id: Uuid,
        #[serde(rename = "onBehalfOf")]
        #[schema(required = true)]
        on_behalf_of: Option<Uuid>,
    },
    System,
}

impl From<AuditActor> for AuditActorDto {
    fn from(a: AuditActor) -> Self {
        match a {
            AuditActor::User { user_id } => Self::User {
                user_id: user_id.as_uuid(),
            },
            AuditActor::ApiKey {
                api_key_id,
                on_behalf_of,
            } => Self::ApiKey {
                api_key_id: api_key_id.as_uuid(),
                on_behalf_of: on_behalf_of.map(|u| u.as_uuid()),
            },
            AuditActor::System => Self::System,
        }
    }
}

/// One audited change.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntryDto {
    pub id: Uuid,
    pub occurred_at: DateTime<Utc>,
    pub actor: AuditActorDto,
    /// The client address the request came from (`null` for background jobs).
    #[schema(required = true)]
    pub ip: Option<String>,
    #[schema(required = true)]
    pub user_agent: Option<String>,
    /// e.g. `contact.updated`, `api_key.created`.
    #[schema(example = "contact.updated")]
    pub action: String,
    #[schema(example = "contact")]
    pub entity_type: String,
    #[schema(required = true)]
    pub entity_id: Option<String>,
    /// For updates `{ field: { from, to } }`; otherwise the state created or removed.
    /// Secrets, password hashes and token digests are never recorded.
    #[schema(value_type = Object)]
    pub changes: serde_json::Value,
}

impl From<AuditEntry> for AuditEntryDto {
    fn from(e: AuditEntry) -> Self {
        Self {
            id: e.id,
            occurred_at: e.occurred_at,
            actor: e.actor.into(),
            ip: e.ip,
            user_agent: e.user_agent,
            action: e.action,
            entity_type: e.entity_type,
            entity_id: e.entity_id,
            changes: e.changes,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// A user id or an API key id.
    pub actor: Option<Uuid>,
    #[param(example = "contact")]
    pub entity_type: Option<String>,
    pub entity_id: Option<String>,
    #[param(example = "contact.updated")]
    pub action: Option<String>,
    /// Entries at or after this instant (RFC 3339).
    pub from: Option<DateTime<Utc>>,
    /// Entries before this instant (RFC 3339).
    pub to: Option<DateTime<Utc>>,
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_enum_lists_every_event_type() {
        let schema =
            serde_json::to_value(<EventTypeDto as utoipa::PartialSchema>::schema()).unwrap();
        let listed: Vec<&str> = schema["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let domain: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
        assert_eq!(listed, domain);
        assert!(listed.contains(&"webhook.disabled"));
    }
}
