//! Storage of organizations, members, invitations and API keys.

use std::future::Future;

use chrono::{DateTime, Utc};
use nexus_domain::membership::{MemberRef, MembershipError};
use nexus_domain::{ApiKeyId, DomainEvent, InvitationId, OrgId, Role, UserId};

use crate::error::StoreError;
use crate::identity::{NewSession, NewUser};

#[derive(Debug, Clone, PartialEq)]
pub struct OrganizationRecord {
    pub id: OrgId,
    pub name: String,
    pub slug: String,
    pub default_currency: String,
    pub settings: serde_json::Value,
    pub version: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Merge-patch of the organization: `None` leaves a field unchanged.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OrganizationPatch {
    pub name: Option<String>,
    pub default_currency: Option<String>,
    pub settings: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRecord {
    pub user_id: UserId,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub joined_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvitationRecord {
    pub id: InvitationId,
    pub org_id: OrgId,
    pub org_name: String,
    pub email: String,
    pub role: Role,
    pub invited_by: UserId,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub accepted_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewInvitation {
    pub id: InvitationId,
    pub org_id: OrgId,
    pub email: String,
    pub role: Role,
    pub token_hash: Vec<u8>,
    pub invited_by: UserId,
    pub expires_at: DateTime<Utc>,
}

/// Who accepts an invitation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invitee {
    Existing(UserId),
    New(NewUser),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    pub id: ApiKeyId,
    pub org_id: OrgId,
    pub name: String,
    pub prefix: String,
    pub role: Role,
    pub created_by: UserId,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A key presented by a request, with its creator's role now (`None` once the creator
/// has left the organization): a key never acts above the member who made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsedApiKey {
    pub key: ApiKeyRecord,
    pub creator_role: Option<Role>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewApiKey {
    pub id: ApiKeyId,
    pub org_id: OrgId,
    pub name: String,
    pub prefix: String,
    pub secret_hash: Vec<u8>,
    pub role: Role,
    pub created_by: UserId,
    pub expires_at: Option<DateTime<Utc>>,
}

/// A domain rule run inside the adapter's transaction, on freshly locked rows, so two
/// concurrent changes cannot both pass it (e.g. the last two owners demoting each other).
pub type RoleChangeRule = fn(MemberRef, MemberRef, Role, usize) -> Result<(), MembershipError>;
pub type RemovalRule = fn(MemberRef, MemberRef, usize) -> Result<(), MembershipError>;

#[derive(Debug, thiserror::Error)]
pub enum MemberChangeError {
    #[error("no such member")]
    NotFound,
    #[error(transparent)]
    Rule(MembershipError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    #[error("not found")]
    NotFound,
    #[error("the resource changed since version {expected}")]
    VersionMismatch { expected: i32 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    #[error("the invitation is unknown, expired, revoked or used")]
    Invalid,
    #[error("already a member of this organization")]
    AlreadyMember,
    #[error("the email address is already registered")]
    EmailTaken,
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait TeamStore: Send + Sync + 'static {
    /// # Errors
    /// Storage failures.
    fn organization(
        &self,
        org: OrgId,
    ) -> impl Future<Output = Result<Option<OrganizationRecord>, StoreError>> + Send;

    /// Applies the patch when the version matches (any version when `None`).
    ///
    /// # Errors
    /// [`UpdateError`].
    fn update_organization(
        &self,
        org: OrgId,
        patch: OrganizationPatch,
        expected_version: Option<i32>,
    ) -> impl Future<Output = Result<OrganizationRecord, UpdateError>> + Send;

    /// Members ordered by join time then id, after the `after` member, at most `limit`.
    ///
    /// # Errors
    /// Storage failures.
    fn members(
        &self,
        org: OrgId,
        after: Option<(DateTime<Utc>, UserId)>,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<MemberRecord>, StoreError>> + Send;

    /// Changes a role after `rule` approves it on locked rows.
    ///
    /// # Errors
    /// [`MemberChangeError`].
    fn change_role(
        &self,
        org: OrgId,
        actor: UserId,
        target: UserId,
        role: Role,
        rule: RoleChangeRule,
    ) -> impl Future<Output = Result<MemberRecord, MemberChangeError>> + Send;

    /// Removes a member after `rule` approves, revokes their sessions in `org`, and
    /// records `events`, all in one transaction.
    ///
    /// # Errors
    /// [`MemberChangeError`].
    fn remove_member(
        &self,
        org: OrgId,
        actor: UserId,
        target: UserId,
        rule: RemovalRule,
        events: Vec<DomainEvent>,
    ) -> impl Future<Output = Result<(), MemberChangeError>> + Send;

    /// # Errors
    /// Storage failures.
    fn create_invitation(
        &self,
        invitation: NewInvitation,
    ) -> impl Future<Output = Result<InvitationRecord, StoreError>> + Send;

    /// Pending invitations (not accepted, not revoked), newest first.
    ///
    /// # Errors
    /// Storage failures.
    fn invitations(
        &self,
        org: OrgId,
    ) -> impl Future<Output = Result<Vec<InvitationRecord>, StoreError>> + Send;

    /// # Errors
    /// Storage failures.
    fn revoke_invitation(
        &self,
        org: OrgId,
        id: InvitationId,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// A pending, unexpired invitation by token digest.
    ///
    /// # Errors
    /// Storage failures.
    fn invitation_by_token(
        &self,
        token_hash: Vec<u8>,
    ) -> impl Future<Output = Result<Option<InvitationRecord>, StoreError>> + Send;

    /// Spends the invitation (single use), adds the membership (creating the user when
    /// new), opens `session`, records `events`; one transaction.
    ///
    /// # Errors
    /// [`AcceptError`] with nothing written.
    fn accept_invitation(
        &self,
        token_hash: Vec<u8>,
        invitee: Invitee,
        session: NewSession,
        events: Vec<DomainEvent>,
    ) -> impl Future<Output = Result<InvitationRecord, AcceptError>> + Send;

    /// # Errors
    /// Storage failures.
    fn create_api_key(
        &self,
        key: NewApiKey,
    ) -> impl Future<Output = Result<ApiKeyRecord, StoreError>> + Send;

    /// Live and revoked keys, newest first.
    ///
    /// # Errors
    /// Storage failures.
    fn api_keys(
        &self,
        org: OrgId,
    ) -> impl Future<Output = Result<Vec<ApiKeyRecord>, StoreError>> + Send;

    /// # Errors
    /// Storage failures.
    fn revoke_api_key(
        &self,
        org: OrgId,
        id: ApiKeyId,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// The key with this secret digest and its creator's role in the key's organization
    /// now, recording its use (at most once a minute).
    ///
    /// # Errors
    /// Storage failures.
    fn use_api_key(
        &self,
        secret_hash: Vec<u8>,
    ) -> impl Future<Output = Result<Option<UsedApiKey>, StoreError>> + Send;
}
