//! Who is calling: the identity every use case authorizes.

use crate::ids::{ApiKeyId, OrgId, SessionId, UserId};
use crate::rbac::{Action, Resource, Role, can};

/// The authenticated principal behind a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Principal {
    User {
        user_id: UserId,
        session_id: SessionId,
    },
    ApiKey {
        api_key_id: ApiKeyId,
        created_by: UserId,
    },
}

/// A caller acting inside one organization with one role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Actor {
    pub principal: Principal,
    pub org_id: OrgId,
    pub role: Role,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the role {role:?} may not {action:?} {resource:?}")]
pub struct Forbidden {
    pub role: Role,
    pub resource: Resource,
    pub action: Action,
}

impl Actor {
    /// # Errors
    /// [`Forbidden`] when the matrix says no.
    pub fn authorize(&self, resource: Resource, action: Action) -> Result<(), Forbidden> {
        if can(self.role, resource, action) {
            Ok(())
        } else {
            Err(Forbidden {
                role: self.role,
                resource,
                action,
            })
        }
    }

    /// The user acting, or on whose behalf an API key acts.
    #[must_use]
    pub const fn user_id(&self) -> UserId {
        match self.principal {
            Principal::User { user_id, .. } => user_id,
            Principal::ApiKey { created_by, .. } => created_by,
        }
    }

    #[must_use]
    pub const fn session_id(&self) -> Option<SessionId> {
        match self.principal {
            Principal::User { session_id, .. } => Some(session_id),
            Principal::ApiKey { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    #[test]
    fn authorize_follows_the_matrix() {
        let viewer = Actor {
            principal: Principal::User {
                user_id: UserId::from_uuid(Uuid::now_v7()),
                session_id: SessionId::from_uuid(Uuid::now_v7()),
            },
            org_id: OrgId::from_uuid(Uuid::now_v7()),
            role: Role::Viewer,
        };
        assert!(viewer.authorize(Resource::Contacts, Action::Read).is_ok());
        let err = viewer
            .authorize(Resource::Contacts, Action::Create)
            .unwrap_err();
        assert_eq!(err.role, Role::Viewer);
        assert!(viewer.session_id().is_some());
    }
}
