//! Domain events: what happened, to which tenant, by whom. They are appended to the
//! outbox in the same transaction as the change that caused them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{EventId, OrgId, UserId};

/// Every event name NEXUS emits. The wire name is stable: integrators match on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventType {
    #[serde(rename = "contact.created")]
    ContactCreated,
    #[serde(rename = "contact.updated")]
    ContactUpdated,
    #[serde(rename = "contact.deleted")]
    ContactDeleted,
    #[serde(rename = "deal.created")]
    DealCreated,
    #[serde(rename = "deal.updated")]
    DealUpdated,
    #[serde(rename = "deal.stage_changed")]
    DealStageChanged,
    #[serde(rename = "deal.won")]
    DealWon,
    #[serde(rename = "deal.lost")]
    DealLost,
    #[serde(rename = "deal.deleted")]
    DealDeleted,
    #[serde(rename = "activity.created")]
    ActivityCreated,
    #[serde(rename = "campaign.started")]
    CampaignStarted,
    #[serde(rename = "campaign.completed")]
    CampaignCompleted,
    #[serde(rename = "member.joined")]
    MemberJoined,
    #[serde(rename = "member.removed")]
    MemberRemoved,
    /// A webhook subscription stopped receiving events (410 Gone, or days of failures).
    #[serde(rename = "webhook.disabled")]
    WebhookDisabled,
}

impl EventType {
    pub const ALL: [Self; 15] = [
        Self::ContactCreated,
        Self::ContactUpdated,
        Self::ContactDeleted,
        Self::DealCreated,
        Self::DealUpdated,
        Self::DealStageChanged,
        Self::DealWon,
        Self::DealLost,
        Self::DealDeleted,
        Self::ActivityCreated,
        Self::CampaignStarted,
        Self::CampaignCompleted,
        Self::MemberJoined,
        Self::MemberRemoved,
        Self::WebhookDisabled,
    ];

    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ContactCreated => "contact.created",
            Self::ContactUpdated => "contact.updated",
            Self::ContactDeleted => "contact.deleted",
            Self::DealCreated => "deal.created",
            Self::DealUpdated => "deal.updated",
            Self::DealStageChanged => "deal.stage_changed",
            Self::DealWon => "deal.won",
            Self::DealLost => "deal.lost",
            Self::DealDeleted => "deal.deleted",
            Self::ActivityCreated => "activity.created",
            Self::CampaignStarted => "campaign.started",
            Self::CampaignCompleted => "campaign.completed",
            Self::MemberJoined => "member.joined",
            Self::MemberRemoved => "member.removed",
            Self::WebhookDisabled => "webhook.disabled",
        }
    }

    /// Parses a wire name; unknown names are `None` so callers can report them.
    #[must_use]
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

/// Who caused an event, as recorded with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventActor {
    User { id: UserId },
    ApiKey { id: uuid::Uuid },
    System,
}

/// One fact to append to the outbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DomainEvent {
    pub id: EventId,
    pub organization_id: OrgId,
    pub event_type: EventType,
    pub occurred_at: DateTime<Utc>,
    pub actor: EventActor,
    /// The resource as it is after the change (plus `changes` for updates).
    pub payload: serde_json::Value,
}

/// An event as stored in the outbox: its position `seq` orders one organization's log.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub seq: i64,
    pub event: DomainEvent,
}

/// Parses a comma-separated `types=` filter. Empty means every type.
///
/// # Errors
/// The names that are not event types, so the caller can list them all at once.
pub fn parse_type_filter(raw: &str) -> Result<Vec<EventType>, Vec<String>> {
    let mut types = Vec::new();
    let mut unknown = Vec::new();
    for name in raw.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        match EventType::parse(name) {
            Some(t) if !types.contains(&t) => types.push(t),
            Some(_) => {}
            None => unknown.push(name.to_owned()),
        }
    }
    if unknown.is_empty() {
        types.sort_by_key(|t| t.as_str());
        Ok(types)
    } else {
        Err(unknown)
    }
}

/// Whether `event_type` passes a filter from [`parse_type_filter`] (empty = all).
#[must_use]
pub fn type_matches(filter: &[EventType], event_type: EventType) -> bool {
    filter.is_empty() || filter.contains(&event_type)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_filters_parse_dedupe_and_report_every_unknown_name() {
        assert_eq!(parse_type_filter(""), Ok(vec![]));
        assert_eq!(
            parse_type_filter("deal.won, contact.created,deal.won"),
            Ok(vec![EventType::ContactCreated, EventType::DealWon])
        );
        assert_eq!(
            parse_type_filter("contact.created,nope,deal.boom"),
            Err(vec!["nope".to_owned(), "deal.boom".to_owned()])
        );
        assert!(type_matches(&[], EventType::DealLost));
        assert!(!type_matches(&[EventType::DealWon], EventType::DealLost));
    }

    #[test]
    fn wire_names_match_serde_and_parse_back() {
        for t in EventType::ALL {
            let json = serde_json::to_string(&t).unwrap();
            assert_eq!(json, format!("\"{}\"", t.as_str()));
            assert_eq!(EventType::parse(t.as_str()), Some(t));
        }
        assert_eq!(EventType::parse("contact.exploded"), None);
    }

    #[test]
    fn actor_serializes_with_a_kind_tag() {
        let json = serde_json::to_value(EventActor::System).unwrap();
        assert_eq!(json, serde_json::json!({"kind": "system"}));
    }
}
