//! The audit log: who changed what, when and from where. Entries are derived from the
//! domain events of a change, or written explicitly for changes that emit none; either
//! way secrets never enter them.

use serde_json::{Map, Value, json};

use crate::event::{DomainEvent, EventActor};
use crate::ids::{ApiKeyId, UserId};

/// Who made a change. An API key acts on behalf of the user who created it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditActor {
    User {
        user_id: UserId,
    },
    ApiKey {
        api_key_id: ApiKeyId,
        on_behalf_of: Option<UserId>,
    },
    System,
}

impl AuditActor {
    #[must_use]
    pub const fn kind(&self) -> &'static str {
        match self {
            Self::User { .. } => "user",
            Self::ApiKey { .. } => "api_key",
            Self::System => "system",
        }
    }
}

/// What an entry says happened, before the writer adds who, when and from where.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditChange {
    /// `contact.updated`, `api_key.created`, ...
    pub action: String,
    /// `contact`, `api_key`, ...
    pub entity_type: String,
    pub entity_id: Option<String>,
    /// `{ field: { from, to } }` for updates, the created or deleted state otherwise.
    pub changes: Value,
}

impl AuditChange {
    /// A change with its secrets removed (see [`redact`]).
    #[must_use]
    pub fn new(
        action: impl Into<String>,
        entity_type: impl Into<String>,
        entity_id: Option<String>,
        changes: &Value,
    ) -> Self {
        Self::owned(action, entity_type, entity_id, changes.clone())
    }

    /// As [`AuditChange::new`], redacting `changes` in place: every create and update
    /// records one, and a second deep copy of the resource was a tenth of a create's
    /// server instructions.
    fn owned(
        action: impl Into<String>,
        entity_type: impl Into<String>,
        entity_id: Option<String>,
        mut changes: Value,
    ) -> Self {
        redact_in_place(&mut changes);
        Self {
            action: action.into(),
            entity_type: entity_type.into(),
            entity_id,
            changes,
        }
    }

    /// The audit view of a domain event: its name, the resource it names, and its
    /// field-level changes for updates (the whole resource otherwise: `before` a
    /// deletion, `after` anything else).
    #[must_use]
    pub fn from_event(event: &DomainEvent) -> Self {
        let action = event.event_type.as_str();
        let entity_type = action.split('.').next().unwrap_or(action);
        let payload = &event.payload;
        let resource = payload.get(entity_type).unwrap_or(payload);
        let entity_id = [&resource["id"], &payload["id"], &payload["userId"]]
            .into_iter()
            .find_map(|v| v.as_str().map(str::to_owned));
        let changes = match payload.get("changes") {
            Some(c @ Value::Object(_)) => c.clone(),
            // What was removed is what the entry keeps of a deletion.
            _ if action.ends_with(".deleted") => json!({ "before": resource }),
            _ => json!({ "after": resource }),
        };
        Self::owned(action, entity_type, entity_id, changes)
    }
}

/// The actor recorded with an event, completed with the user an API key acts for.
#[must_use]
pub fn actor_of(event: &DomainEvent, on_behalf_of: Option<UserId>) -> AuditActor {
    match &event.actor {
        EventActor::User { id } => AuditActor::User { user_id: *id },
        EventActor::ApiKey { id } => AuditActor::ApiKey {
            api_key_id: ApiKeyId::from_uuid(*id),
            on_behalf_of,
        },
        EventActor::System => AuditActor::System,
    }
}

/// `{ field: { from, to } }` for every top-level field that differs between two states.
#[must_use]
pub fn field_changes(before: &Value, after: &Value) -> Value {
    let empty = Map::new();
    let b = before.as_object().unwrap_or(&empty);
    let a = after.as_object().unwrap_or(&empty);
    let mut keys: Vec<&String> = b.keys().chain(a.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut out = Map::new();
    for key in keys {
        let (from, to) = (
            b.get(key).unwrap_or(&Value::Null),
            a.get(key).unwrap_or(&Value::Null),
        );
        if from != to {
            out.insert(key.clone(), json!({ "from": from, "to": to }));
        }
    }
    let mut out = Value::Object(out);
    redact_in_place(&mut out);
    out
}

/// Whether a field name may hold a credential (secrets, password hashes, token digests),
/// in any letter case; compared in place, since every key of every audited resource is
/// asked.
fn is_secret(key: &str) -> bool {
    const SECRETS: [&[u8]; 7] = [
        b"secret",
        b"password",
        b"hash",
        b"digest",
        b"token",
        b"apikey",
        b"key_value",
    ];
    let key = key.as_bytes();
    SECRETS
        .iter()
        .any(|s| key.windows(s.len()).any(|w| w.eq_ignore_ascii_case(s)))
}

/// The value with every field that may hold a credential replaced by `"[redacted]"`, at
/// any depth. Redacting by name errs on the side of hiding: a field called `token` in a
/// payload is dropped even when it is harmless.
#[must_use]
pub fn redact(value: &Value) -> Value {
    let mut value = value.clone();
    redact_in_place(&mut value);
    value
}

/// [`redact`] without a copy.
fn redact_in_place(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if is_secret(k) {
                    *v = Value::String("[redacted]".into());
                } else {
                    redact_in_place(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_in_place),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use uuid::Uuid;

    use super::*;
    use crate::event::EventType;
    use crate::ids::{EventId, OrgId};

    fn event(event_type: EventType, actor: EventActor, payload: Value) -> DomainEvent {
        DomainEvent {
            id: EventId::from_uuid(Uuid::now_v7()),
            organization_id: OrgId::from_uuid(Uuid::now_v7()),
            event_type,
            occurred_at: Utc::now(),
            actor,
            payload,
        }
    }

    #[test]
    fn an_update_event_becomes_field_level_changes_of_its_resource() {
        let id = Uuid::now_v7().to_string();
        let e = event(
            EventType::ContactUpdated,
            EventActor::System,
            json!({ "contact": { "id": id, "firstName": "Ada" },
                    "changes": { "firstName": { "from": "Ad", "to": "Ada" } } }),
        );
        let change = AuditChange::from_event(&e);
        assert_eq!(change.action, "contact.updated");
        assert_eq!(change.entity_type, "contact");
        assert_eq!(change.entity_id, Some(id));
        assert_eq!(
            change.changes,
            json!({ "firstName": { "from": "Ad", "to": "Ada" } })
        );
    }

    #[test]
    fn a_deletion_keeps_what_was_removed_as_before() {
        let id = Uuid::now_v7().to_string();
        let e = event(
            EventType::ContactDeleted,
            EventActor::System,
            json!({ "contact": { "id": id, "firstName": "Ada" } }),
        );
        let change = AuditChange::from_event(&e);
        assert_eq!(change.entity_id, Some(id));
        assert_eq!(change.changes["before"]["firstName"], "Ada");
        assert!(change.changes.get("after").is_none(), "{}", change.changes);
    }

    #[test]
    fn flat_payloads_and_members_name_their_entity() {
        let user = Uuid::now_v7();
        let e = event(
            EventType::MemberJoined,
            EventActor::User {
                id: UserId::from_uuid(user),
            },
            json!({ "userId": user, "role": "ADMIN" }),
        );
        let change = AuditChange::from_event(&e);
        assert_eq!(change.entity_type, "member");
        assert_eq!(change.entity_id, Some(user.to_string()));
        assert_eq!(change.changes["after"]["role"], "ADMIN");
        assert_eq!(
            actor_of(&e, None),
            AuditActor::User {
                user_id: UserId::from_uuid(user)
            }
        );
    }

    #[test]
    fn api_key_actors_keep_the_user_they_act_for() {
        let (key, user) = (Uuid::now_v7(), UserId::from_uuid(Uuid::now_v7()));
        let e = event(
            EventType::DealCreated,
            EventActor::ApiKey { id: key },
            json!({ "id": "d" }),
        );
        assert_eq!(
            actor_of(&e, Some(user)),
            AuditActor::ApiKey {
                api_key_id: ApiKeyId::from_uuid(key),
                on_behalf_of: Some(user)
            }
        );
        assert_eq!(actor_of(&e, Some(user)).kind(), "api_key");
    }

    #[test]
    fn field_changes_list_only_differences() {
        let before = json!({ "name": "A", "settings": { "x": 1 }, "gone": true });
        let after = json!({ "name": "B", "settings": { "x": 1 }, "new": 2 });
        assert_eq!(
            field_changes(&before, &after),
            json!({
                "gone": { "from": true, "to": null },
                "name": { "from": "A", "to": "B" },
                "new": { "from": null, "to": 2 },
            })
        );
    }

    #[test]
    fn secrets_are_redacted_at_any_depth() {
        let v = json!({
            "name": "ci", "secret": "nx_live_abc", "keyHash": "h",
            "nested": [{ "passwordHash": "$2b$", "refreshToken": "t", "role": "ADMIN" }],
        });
        let r = redact(&v);
        assert_eq!(r["name"], "ci");
        assert_eq!(r["secret"], "[redacted]");
        assert_eq!(r["keyHash"], "[redacted]");
        assert_eq!(r["nested"][0]["passwordHash"], "[redacted]");
        assert_eq!(r["nested"][0]["refreshToken"], "[redacted]");
        assert_eq!(r["nested"][0]["role"], "ADMIN");
        assert!(!r.to_string().contains("nx_live_abc"));
        let changes = field_changes(&json!({ "secret": "a" }), &json!({ "secret": "b" }));
        assert_eq!(changes["secret"], "[redacted]");
        // In any letter case, and in what an event's entry records.
        let r = redact(&json!({ "APIKEY": "k", "Key_Value": "v", "tokenless": "t", "hasp": 1 }));
        assert_eq!(
            r,
            json!({ "APIKEY": "[redacted]", "Key_Value": "[redacted]", "tokenless": "[redacted]", "hasp": 1 })
        );
        let created = event(
            EventType::ContactCreated,
            EventActor::System,
            json!({ "contact": { "id": "c1", "customFields": { "portalPassword": "p", "plan": "pro" } } }),
        );
        let entry = AuditChange::from_event(&created);
        assert_eq!(
            entry.changes,
            json!({ "after": { "id": "c1", "customFields": { "portalPassword": "[redacted]", "plan": "pro" } } })
        );
    }
}
