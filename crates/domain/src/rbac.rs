//! Roles and the permission matrix of DOMAIN.md, as one table.

use serde::{Deserialize, Serialize};

/// A member's role in an organization, highest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Role {
    Owner,
    Admin,
    Member,
    Viewer,
}

impl Role {
    pub const ALL: [Self; 4] = [Self::Owner, Self::Admin, Self::Member, Self::Viewer];

    /// Higher is more powerful.
    #[must_use]
    pub const fn rank(self) -> u8 {
        match self {
            Self::Owner => 3,
            Self::Admin => 2,
            Self::Member => 1,
            Self::Viewer => 0,
        }
    }

    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "OWNER",
            Self::Admin => "ADMIN",
            Self::Member => "MEMBER",
            Self::Viewer => "VIEWER",
        }
    }

    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Whether this role is at least as powerful as `other`.
    #[must_use]
    pub const fn covers(self, other: Self) -> bool {
        self.rank() >= other.rank()
    }
}

/// What is being acted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resource {
    OrganizationSettings,
    /// Team members and invitations.
    Members,
    /// Contacts, their custom field values, tags.
    Contacts,
    /// Deals, deals in pipelines, activities.
    Deals,
    /// Pipeline definitions and custom field definitions.
    Pipelines,
    Campaigns,
    Analytics,
    Billing,
    /// API keys, webhooks, the audit log.
    Integrations,
    /// The organization's event feed and stream: reading what happened to its data,
    /// which every member may read (the events carry nothing a VIEWER cannot see).
    Events,
}

impl Resource {
    pub const ALL: [Self; 10] = [
        Self::OrganizationSettings,
        Self::Members,
        Self::Contacts,
        Self::Deals,
        Self::Pipelines,
        Self::Campaigns,
        Self::Analytics,
        Self::Billing,
        Self::Integrations,
        Self::Events,
    ];
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Create,
    Read,
    Update,
    Delete,
}

impl Action {
    pub const ALL: [Self; 4] = [Self::Create, Self::Read, Self::Update, Self::Delete];

    const fn letter(self) -> char {
        match self {
            Self::Create => 'C',
            Self::Read => 'R',
            Self::Update => 'U',
            Self::Delete => 'D',
        }
    }
}

/// DOMAIN.md's matrix: per resource, the actions of OWNER, ADMIN, MEMBER, VIEWER.
const MATRIX: [(Resource, [&str; 4]); 10] = [
    (Resource::OrganizationSettings, ["CRUD", "RU", "R", "R"]),
    (Resource::Members, ["CRUD", "CRU", "R", "R"]),
    (Resource::Contacts, ["CRUD", "CRUD", "CRUD", "R"]),
    (Resource::Deals, ["CRUD", "CRUD", "CRUD", "R"]),
    (Resource::Pipelines, ["CRUD", "CRUD", "R", "R"]),
    (Resource::Campaigns, ["CRUD", "CRUD", "CRU", "R"]),
    (Resource::Analytics, ["R", "R", "R", "R"]),
    (Resource::Billing, ["CRUD", "R", "", ""]),
    (Resource::Integrations, ["CRUD", "CRUD", "", ""]),
    // Not in DOMAIN.md's table: events are written by the server only, read by all.
    (Resource::Events, ["R", "R", "R", "R"]),
];

/// May `role` perform `action` on `resource`?
#[must_use]
pub fn can(role: Role, resource: Resource, action: Action) -> bool {
    let column = match role {
        Role::Owner => 0,
        Role::Admin => 1,
        Role::Member => 2,
        Role::Viewer => 3,
    };
    MATRIX
        .iter()
        .find(|(r, _)| *r == resource)
        .is_some_and(|(_, cells)| cells[column].contains(action.letter()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The matrix of DOMAIN.md, transcribed independently, cell by cell.
    fn expected(role: Role, resource: Resource, action: Action) -> bool {
        use Action::{Create as C, Delete as D, Read as R, Update as U};
        use Resource as Res;
        use Role::{Admin, Member, Owner, Viewer};
        match (resource, role) {
            (Res::OrganizationSettings, Owner) => true,
            (Res::OrganizationSettings, Admin) => matches!(action, R | U),
            (Res::OrganizationSettings, Member | Viewer) => action == R,
            (Res::Members, Owner) => true,
            (Res::Members, Admin) => matches!(action, C | R | U),
            (Res::Members, Member | Viewer) => action == R,
            (Res::Contacts | Res::Deals, Owner | Admin | Member) => true,
            (Res::Contacts | Res::Deals, Viewer) => action == R,
            (Res::Pipelines, Owner | Admin) => true,
            (Res::Pipelines, Member | Viewer) => action == R,
            (Res::Campaigns, Owner | Admin) => true,
            (Res::Campaigns, Member) => action != D,
            (Res::Campaigns, Viewer) => action == R,
            (Res::Analytics | Res::Events, _) => action == R,
            (Res::Billing, Owner) => true,
            (Res::Billing, Admin) => action == R,
            (Res::Billing | Res::Integrations, Member | Viewer) => false,
            (Res::Integrations, Owner | Admin) => true,
        }
    }

    #[test]
    fn every_cell_of_the_matrix() {
        let mut cells = 0;
        for role in Role::ALL {
            for resource in Resource::ALL {
                for action in Action::ALL {
                    assert_eq!(
                        can(role, resource, action),
                        expected(role, resource, action),
                        "{role:?} {action:?} {resource:?}"
                    );
                    cells += 1;
                }
            }
        }
        assert_eq!(cells, 4 * 10 * 4);
    }

    #[test]
    fn roles_order_and_round_trip() {
        assert!(Role::Owner.covers(Role::Admin) && Role::Admin.covers(Role::Admin));
        assert!(!Role::Viewer.covers(Role::Member));
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Some(r));
            assert_eq!(
                serde_json::to_string(&r).unwrap(),
                format!("\"{}\"", r.as_str())
            );
        }
        assert_eq!(Role::parse("owner"), None);
    }
}
