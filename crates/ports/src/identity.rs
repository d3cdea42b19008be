//! Storage of users, their sessions and password resets.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use nexus_domain::values::EmailAddress;
use nexus_domain::{DomainEvent, OrgId, Role, SessionId, UserId};

use crate::error::StoreError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub id: UserId,
    pub email: String,
    pub name: String,
    pub password_hash: String,
    pub created_at: DateTime<Utc>,
}

/// A user's membership, with enough of the organization to list it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembershipRecord {
    pub org_id: OrgId,
    pub org_name: String,
    pub org_slug: String,
    pub role: Role,
    pub joined_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    pub id: UserId,
    pub email: EmailAddress,
    pub name: String,
    pub password_hash: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSession {
    pub id: SessionId,
    pub user_id: UserId,
    pub org_id: OrgId,
    pub expires_at: DateTime<Utc>,
    /// Digest of the first refresh token of the family.
    pub refresh_hash: Vec<u8>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// Everything registration writes, in one transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct Registration {
    pub user: NewUser,
    pub org_id: OrgId,
    pub org_name: String,
    /// The adapter tries `stem`, `stem-2`, ... until one is free.
    pub slug_stem: String,
    pub session: NewSession,
    pub events: Vec<DomainEvent>,
    /// The organization's first pipeline, created in the same transaction.
    pub default_pipeline: nexus_domain::pipeline::Pipeline,
}

#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error("the email address is already registered")]
    EmailTaken,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What presenting a refresh token did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotateOutcome {
    /// This caller won: the token is spent, the new one stored.
    Rotated {
        session_id: SessionId,
        user_id: UserId,
        org_id: OrgId,
    },
    /// Rotated moments ago by a concurrent request (within the grace period): refused,
    /// but the family stays valid.
    Superseded,
    /// An old token came back: the whole family has been revoked.
    Reused,
    /// Unknown, expired or revoked.
    Invalid,
}

#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait IdentityStore: Send + Sync + 'static {
    /// Creates user, organization (unique slug), OWNER membership and first session.
    /// Returns the slug chosen.
    ///
    /// # Errors
    /// [`RegisterError::EmailTaken`] with nothing written.
    fn register(
        &self,
        registration: Registration,
    ) -> impl Future<Output = Result<String, RegisterError>> + Send;

    /// # Errors
    /// Storage failures.
    fn user_by_email(
        &self,
        email: &EmailAddress,
    ) -> impl Future<Output = Result<Option<UserRecord>, StoreError>> + Send;

    /// # Errors
    /// Storage failures.
    fn user(
        &self,
        id: UserId,
    ) -> impl Future<Output = Result<Option<UserRecord>, StoreError>> + Send;

    /// The user's memberships, oldest first.
    ///
    /// # Errors
    /// Storage failures.
    fn memberships(
        &self,
        user: UserId,
    ) -> impl Future<Output = Result<Vec<MembershipRecord>, StoreError>> + Send;

    /// # Errors
    /// Storage failures.
    fn create_session(
        &self,
        session: NewSession,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Spends `presented` and stores `replacement` in one conditional update: among
    /// concurrent callers exactly one wins.
    ///
    /// # Errors
    /// Storage failures.
    fn rotate_refresh(
        &self,
        presented: Vec<u8>,
        replacement: Vec<u8>,
        grace: Duration,
    ) -> impl Future<Output = Result<RotateOutcome, StoreError>> + Send;

    /// The per-request check: the caller's current role when the session is live, still
    /// in `org`, and the user still a member there.
    ///
    /// # Errors
    /// Storage failures.
    fn session_role(
        &self,
        session: SessionId,
        user: UserId,
        org: OrgId,
    ) -> impl Future<Output = Result<Option<Role>, StoreError>> + Send;

    /// Points a live session at another organization.
    ///
    /// # Errors
    /// Storage failures.
    fn switch_session(
        &self,
        session: SessionId,
        org: OrgId,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// # Errors
    /// Storage failures.
    fn revoke_session(
        &self,
        session: SessionId,
        reason: &'static str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Revokes the user's live sessions (in `org` only, when given), sparing `except`.
    ///
    /// # Errors
    /// Storage failures.
    fn revoke_sessions(
        &self,
        user: UserId,
        org: Option<OrgId>,
        except: Option<SessionId>,
        reason: &'static str,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// # Errors
    /// Storage failures.
    fn set_password(
        &self,
        user: UserId,
        hash: String,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// # Errors
    /// Storage failures.
    fn create_password_reset(
        &self,
        user: UserId,
        token_hash: Vec<u8>,
        expires_at: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Marks an unexpired, unused reset token used and names its user.
    ///
    /// # Errors
    /// Storage failures.
    fn consume_password_reset(
        &self,
        token_hash: Vec<u8>,
    ) -> impl Future<Output = Result<Option<UserId>, StoreError>> + Send;
}
