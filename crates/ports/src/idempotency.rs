//! Remembering the responses to `Idempotency-Key`ed requests, so a retry replays the
//! first answer instead of repeating the effect.

use std::future::Future;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::error::StoreError;

/// A response as it was sent, to be replayed byte for byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    pub status: u16,
    /// The headers worth replaying (`Content-Type`, `Location`, `ETag`).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Names one claim of a key. A request that outlived its claim (taken over after the
/// abandonment delay) holds a stale token, and the store ignores what it then reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimToken(pub Uuid);

/// What the store says about a key being claimed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// First use (or the previous use expired or was abandoned): go ahead, then complete
    /// or release with this token.
    Fresh(ClaimToken),
    /// Used before with the same request: here is the response.
    Replay(StoredResponse),
    /// Used before with a different request.
    Mismatch,
    /// The first request with this key is still being processed.
    InFlight,
}

#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait IdempotencyStore: Send + Sync + 'static {
    /// Claims `key` within `scope` (the caller's tenant and principal) for a request whose
    /// fingerprint is `request_hash`. Entries older than `expires_before` count as
    /// unused; an unfinished claim older than `abandoned_before` is taken over.
    ///
    /// # Errors
    /// Storage failures.
    fn claim(
        &self,
        scope: &str,
        key: &str,
        request_hash: &[u8],
        now: DateTime<Utc>,
        expires_before: DateTime<Utc>,
        abandoned_before: DateTime<Utc>,
    ) -> impl Future<Output = Result<Claim, StoreError>> + Send;

    /// Records the response of a claimed key; `false` when `token` no longer holds the
    /// claim (it was taken over), and nothing is recorded.
    ///
    /// # Errors
    /// Storage failures.
    fn complete(
        &self,
        scope: &str,
        key: &str,
        token: ClaimToken,
        response: &StoredResponse,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Forgets a claim whose request failed in a way worth retrying (a 5xx), unless
    /// `token` no longer holds it.
    ///
    /// # Errors
    /// Storage failures.
    fn release(
        &self,
        scope: &str,
        key: &str,
        token: ClaimToken,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}
