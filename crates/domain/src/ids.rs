//! Typed identifiers. A `UserId` can never be passed where an `OrgId` is expected.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            #[must_use]
            pub const fn from_uuid(id: Uuid) -> Self {
                Self(id)
            }

            #[must_use]
            pub const fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl From<Uuid> for $name {
            fn from(id: Uuid) -> Self {
                Self(id)
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Self {
                id.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }
    };
}

id_type!(
    /// An organization: the tenant boundary of every owned row.
    OrgId
);
id_type!(
    /// A human user, who may belong to several organizations.
    UserId
);
id_type!(
    /// One entry of the event outbox.
    EventId
);
id_type!(
    /// A login session (one refresh-token family).
    SessionId
);
id_type!(
    /// An organization API key.
    ApiKeyId
);
id_type!(
    /// A pending invitation to join an organization.
    InvitationId
);
id_type!(
    /// A contact (person) of an organization's CRM.
    ContactId
);
id_type!(
    /// A custom field definition of an organization.
    CustomFieldId
);
id_type!(
    /// A CSV import job of contacts.
    ImportId
);
id_type!(
    /// A sales pipeline of an organization.
    PipelineId
);
id_type!(
    /// A stage of a pipeline.
    StageId
);
id_type!(
    /// A deal (opportunity) moving through a pipeline.
    DealId
);
id_type!(
    /// An activity: a call, email, meeting, note, task or a system entry.
    ActivityId
);
id_type!(
    /// A webhook subscription of an organization.
    WebhookId
);
id_type!(
    /// One event (or ping) on its way to one webhook subscription.
    DeliveryId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_strings_and_json() {
        let raw = Uuid::now_v7();
        let org = OrgId::from_uuid(raw);
        assert_eq!(org.to_string().parse::<OrgId>().unwrap(), org);
        assert_eq!(serde_json::to_string(&org).unwrap(), format!("\"{raw}\""));
        assert!("not-a-uuid".parse::<OrgId>().is_err());
    }
}
