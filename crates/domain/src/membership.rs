//! Rules about who may change whose membership.

use crate::ids::UserId;
use crate::rbac::{Action, Resource, Role, can};

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MembershipError {
    #[error("your role does not allow this")]
    Forbidden,
    #[error("nobody changes their own role")]
    OwnRole,
    #[error("only an owner grants, changes or removes an owner")]
    OwnerOnly,
    #[error("an organization always keeps at least one owner")]
    LastOwner,
}

/// A member as the rules need to see them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberRef {
    pub user_id: UserId,
    pub role: Role,
}

/// May `actor` give `target` the role `new_role`? `owners` counts the organization's owners.
///
/// # Errors
/// The rule that forbids it.
pub fn check_role_change(
    actor: MemberRef,
    target: MemberRef,
    new_role: Role,
    owners: usize,
) -> Result<(), MembershipError> {
    if !can(actor.role, Resource::Members, Action::Update) {
        return Err(MembershipError::Forbidden);
    }
    if actor.user_id == target.user_id {
        return Err(MembershipError::OwnRole);
    }
    if (new_role == Role::Owner || target.role == Role::Owner) && actor.role != Role::Owner {
        return Err(MembershipError::OwnerOnly);
    }
    if target.role == Role::Owner && new_role != Role::Owner && owners <= 1 {
        return Err(MembershipError::LastOwner);
    }
    Ok(())
}

/// May `actor` remove `target`? Anyone may leave; removing others needs the matrix's D.
///
/// # Errors
/// The rule that forbids it.
pub fn check_removal(
    actor: MemberRef,
    target: MemberRef,
    owners: usize,
) -> Result<(), MembershipError> {
    let leaving = actor.user_id == target.user_id;
    if !leaving && !can(actor.role, Resource::Members, Action::Delete) {
        return Err(MembershipError::Forbidden);
    }
    if target.role == Role::Owner && !leaving && actor.role != Role::Owner {
        return Err(MembershipError::OwnerOnly);
    }
    if target.role == Role::Owner && owners <= 1 {
        return Err(MembershipError::LastOwner);
    }
    Ok(())
}

/// May someone of `inviter` role invite with `role`?
///
/// # Errors
/// Inviting is not allowed for the role, or the role is above the inviter's.
pub fn check_invitation(inviter: Role, role: Role) -> Result<(), MembershipError> {
    if !can(inviter, Resource::Members, Action::Create) {
        return Err(MembershipError::Forbidden);
    }
    if role == Role::Owner && inviter != Role::Owner {
        return Err(MembershipError::OwnerOnly);
    }
    if !inviter.covers(role) {
        return Err(MembershipError::Forbidden);
    }
    Ok(())
}

/// An API key carries a role no higher than its creator's.
///
/// # Errors
/// The creator may not manage keys, or asks for a higher role.
pub fn check_api_key_role(creator: Role, key_role: Role) -> Result<(), MembershipError> {
    if !can(creator, Resource::Integrations, Action::Create) || !creator.covers(key_role) {
        return Err(MembershipError::Forbidden);
    }
    Ok(())
}

/// The role a key acts with at each use: its own, capped at its creator's role now (the
/// creator may have been demoted since the key was made).
#[must_use]
pub const fn api_key_acts_as(key_role: Role, creator_now: Role) -> Role {
    if creator_now.covers(key_role) {
        key_role
    } else {
        creator_now
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    #[test]
    fn a_key_acts_with_its_own_role_capped_at_its_creators_now() {
        assert_eq!(api_key_acts_as(Role::Admin, Role::Owner), Role::Admin);
        assert_eq!(api_key_acts_as(Role::Admin, Role::Admin), Role::Admin);
        assert_eq!(api_key_acts_as(Role::Admin, Role::Viewer), Role::Viewer);
        assert_eq!(api_key_acts_as(Role::Member, Role::Viewer), Role::Viewer);
    }

    fn m(role: Role) -> MemberRef {
        MemberRef {
            user_id: UserId::from_uuid(Uuid::now_v7()),
            role,
        }
    }

    #[test]
    fn nobody_changes_their_own_role() {
        let owner = m(Role::Owner);
        assert_eq!(
            check_role_change(owner, owner, Role::Admin, 2),
            Err(MembershipError::OwnRole)
        );
    }

    #[test]
    fn only_owners_touch_owners() {
        let (admin, owner, member) = (m(Role::Admin), m(Role::Owner), m(Role::Member));
        assert_eq!(
            check_role_change(admin, member, Role::Owner, 1),
            Err(MembershipError::OwnerOnly)
        );
        assert_eq!(
            check_role_change(admin, owner, Role::Member, 2),
            Err(MembershipError::OwnerOnly)
        );
        assert_eq!(check_role_change(owner, member, Role::Owner, 1), Ok(()));
        assert_eq!(check_role_change(admin, member, Role::Viewer, 1), Ok(()));
    }

    #[test]
    fn the_last_owner_stays() {
        let (owner, other_owner) = (m(Role::Owner), m(Role::Owner));
        assert_eq!(
            check_role_change(owner, other_owner, Role::Admin, 1),
            Err(MembershipError::LastOwner)
        );
        assert_eq!(
            check_role_change(owner, other_owner, Role::Admin, 2),
            Ok(())
        );
        assert_eq!(
            check_removal(owner, owner, 1),
            Err(MembershipError::LastOwner)
        );
        assert_eq!(check_removal(owner, owner, 2), Ok(()));
    }

    #[test]
    fn members_and_viewers_cannot_manage_the_team() {
        for role in [Role::Member, Role::Viewer] {
            assert_eq!(
                check_role_change(m(role), m(Role::Viewer), Role::Member, 1),
                Err(MembershipError::Forbidden)
            );
            assert_eq!(
                check_removal(m(role), m(Role::Viewer), 1),
                Err(MembershipError::Forbidden)
            );
            assert_eq!(
                check_invitation(role, Role::Viewer),
                Err(MembershipError::Forbidden)
            );
        }
    }

    #[test]
    fn removal_rules() {
        // ADMIN has no D on members in the matrix; anyone may leave.
        assert_eq!(
            check_removal(m(Role::Admin), m(Role::Member), 1),
            Err(MembershipError::Forbidden)
        );
        let viewer = m(Role::Viewer);
        assert_eq!(check_removal(viewer, viewer, 1), Ok(()));
        assert_eq!(check_removal(m(Role::Owner), m(Role::Admin), 1), Ok(()));
    }

    #[test]
    fn invitations_never_exceed_the_inviter() {
        assert_eq!(check_invitation(Role::Admin, Role::Admin), Ok(()));
        assert_eq!(
            check_invitation(Role::Admin, Role::Owner),
            Err(MembershipError::OwnerOnly)
        );
        assert_eq!(check_invitation(Role::Owner, Role::Owner), Ok(()));
    }

    #[test]
    fn api_keys_never_exceed_their_creator() {
        assert_eq!(check_api_key_role(Role::Admin, Role::Admin), Ok(()));
        assert_eq!(
            check_api_key_role(Role::Admin, Role::Owner),
            Err(MembershipError::Forbidden)
        );
        assert_eq!(check_api_key_role(Role::Owner, Role::Viewer), Ok(()));
        assert_eq!(
            check_api_key_role(Role::Member, Role::Viewer),
            Err(MembershipError::Forbidden)
        );
    }
}
