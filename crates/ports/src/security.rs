//! Cryptography and abuse control the core relies on.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use nexus_domain::values::Password;
use nexus_domain::{OrgId, Role, SessionId, UserId};

use crate::error::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// Every hashing slot stayed busy: shed load instead of queueing without bound.
    #[error("password hashing is saturated")]
    Busy,
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// Slow password hashing, kept off the async executor by the implementation.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait PasswordHasher: Send + Sync + 'static {
    /// # Errors
    /// [`HashError::Busy`] when saturated.
    fn hash(&self, password: Password) -> impl Future<Output = Result<String, HashError>> + Send;

    /// Verifies against `hash`; with `None` spends the same time on a dummy hash, so an
    /// unknown account answers as slowly as a wrong password.
    ///
    /// # Errors
    /// [`HashError::Busy`] when saturated.
    fn verify(
        &self,
        password: Password,
        hash: Option<String>,
    ) -> impl Future<Output = Result<bool, HashError>> + Send;
}

/// What an access token asserts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessClaims {
    pub user_id: UserId,
    pub org_id: OrgId,
    pub role: Role,
    pub session_id: SessionId,
    pub token_id: uuid::Uuid,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the access token has expired")]
    Expired,
    #[error("the access token is invalid")]
    Invalid,
}

/// Signs and verifies access tokens.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait TokenCodec: Send + Sync + 'static {
    /// How long an issued access token is valid.
    fn access_ttl(&self) -> Duration;

    /// # Errors
    /// Signing failures (a misconfiguration).
    fn issue(&self, claims: &AccessClaims) -> anyhow::Result<String>;

    /// # Errors
    /// [`TokenError`] for anything but a valid, unexpired token of ours.
    fn verify(&self, token: &str) -> Result<AccessClaims, TokenError>;
}

/// Fresh random secrets (refresh tokens, API keys, invitation and reset tokens).
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait SecretGenerator: Send + Sync + 'static {
    /// 256 random bits, URL-safe text.
    fn token(&self) -> String;
}

/// The verdict of a rate limiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateDecision {
    Allowed,
    Limited { retry_after: Duration },
}

/// Fixed-window counters shared by all instances.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait RateLimiter: Send + Sync + 'static {
    /// Counts one hit on `key`; limited once more than `limit` hits fall in `window`.
    ///
    /// # Errors
    /// Storage failures.
    fn hit(
        &self,
        key: &str,
        limit: u32,
        window: Duration,
    ) -> impl Future<Output = Result<RateDecision, StoreError>> + Send;

    /// Whether `key` is over `limit` now, without counting.
    ///
    /// # Errors
    /// Storage failures.
    fn peek(
        &self,
        key: &str,
        limit: u32,
        window: Duration,
    ) -> impl Future<Output = Result<RateDecision, StoreError>> + Send;

    /// Forgets `key` (a successful login clears its failures).
    ///
    /// # Errors
    /// Storage failures.
    fn reset(&self, key: &str) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// A message to a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub body: String,
}

#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait Mailer: Send + Sync + 'static {
    /// # Errors
    /// Delivery failures.
    fn send(&self, mail: Mail) -> impl Future<Output = Result<(), StoreError>> + Send;
}
