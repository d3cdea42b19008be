//! `Idempotency-Key` for every POST: the same key with the same request within 24 hours
//! replays the first response; with another request it is refused; while the first is
//! still running, a duplicate is told so. Transport-agnostic: the HTTP adapter supplies
//! the scope (tenant and principal), the request fingerprint and the response.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use nexus_domain::{Actor, Principal};
use nexus_ports::Clock;
use nexus_ports::idempotency::{Claim, ClaimToken, IdempotencyStore, StoredResponse};

use crate::error::AppError;

type Fut<'a, T> = Pin<Box<dyn Future<Output = Result<T, AppError>> + Send + 'a>>;

/// How long a key is remembered.
pub const KEY_TTL: Duration = Duration::from_secs(24 * 3600);
/// After this long an unfinished request is presumed dead (its process crashed), and a
/// retry may run again.
pub const ABANDON_AFTER: Duration = Duration::from_secs(5 * 60);
/// Longest accepted key.
pub const MAX_KEY_LEN: usize = 255;

/// What a keyed request does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begun {
    /// Run it, then [`IdempotencyUseCases::finish`] or [`IdempotencyUseCases::abandon`]
    /// with this token.
    Run(ClaimToken),
    /// Answer with the first response.
    Replay(StoredResponse),
}

pub trait IdempotencyUseCases: Send + Sync + 'static {
    /// # Errors
    /// 400 for a malformed key, 422 `idempotency_key_reused`, 409 `idempotency_key_in_flight`.
    fn begin(&self, actor: Actor, key: String, request_hash: Vec<u8>) -> Fut<'_, Begun>;
    /// Borrows the response, so that a caller may try again with it.
    fn finish<'a>(
        &'a self,
        actor: Actor,
        key: &'a str,
        token: ClaimToken,
        response: &'a StoredResponse,
    ) -> Fut<'a, ()>;
    fn abandon(&self, actor: Actor, key: String, token: ClaimToken) -> Fut<'_, ()>;
}

pub struct IdempotencyService<S, C> {
    store: S,
    clock: C,
}

/// Keys are per caller: the organization plus the user or API key acting in it.
fn scope(actor: &Actor) -> String {
    match actor.principal {
        Principal::User { user_id, .. } => format!("{}:user:{user_id}", actor.org_id),
        Principal::ApiKey { api_key_id, .. } => format!("{}:key:{api_key_id}", actor.org_id),
    }
}

fn check_key(key: &str) -> Result<(), AppError> {
    if key.is_empty() || key.len() > MAX_KEY_LEN || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(AppError::invalid(
            "Idempotency-Key",
            "invalid_format",
            "an Idempotency-Key has 1 to 255 visible ASCII characters",
        ));
    }
    Ok(())
}

fn ago(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

impl<S: IdempotencyStore, C: Clock> IdempotencyService<S, C> {
    pub const fn new(store: S, clock: C) -> Self {
        Self { store, clock }
    }

    /// # Errors
    /// See [`IdempotencyUseCases::begin`].
    pub async fn begin(
        &self,
        actor: Actor,
        key: String,
        request_hash: Vec<u8>,
    ) -> Result<Begun, AppError> {
        check_key(&key)?;
        let now = self.clock.now();
        let claim = self
            .store
            .claim(
                &scope(&actor),
                &key,
                &request_hash,
                now,
                now - ago(KEY_TTL),
                now - ago(ABANDON_AFTER),
            )
            .await?;
        match claim {
            Claim::Fresh(token) => Ok(Begun::Run(token)),
            Claim::Replay(response) => Ok(Begun::Replay(response)),
            Claim::Mismatch => Err(AppError::Validation(vec![crate::error::FieldIssue::new(
                "Idempotency-Key",
                "idempotency_key_reused",
                "this key was used with a different request",
            )])),
            // With `Retry-After`: the first request may finish in a moment.
            Claim::InFlight => Err(AppError::contended(
                "idempotency_key_in_flight",
                "A request with this Idempotency-Key is still being processed; retry shortly.",
            )),
        }
    }

    /// # Errors
    /// Storage failures.
    pub async fn finish(
        &self,
        actor: Actor,
        key: &str,
        token: ClaimToken,
        response: &StoredResponse,
    ) -> Result<(), AppError> {
        let kept = self
            .store
            .complete(&scope(&actor), key, token, response)
            .await?;
        if !kept {
            // The request outlived its claim and another took the key over: that one's
            // response is what the key replays.
            tracing::warn!(key = %key, "an idempotency key was taken over before its request finished");
        }
        Ok(())
    }

    /// # Errors
    /// Storage failures.
    pub async fn abandon(
        &self,
        actor: Actor,
        key: String,
        token: ClaimToken,
    ) -> Result<(), AppError> {
        Ok(self.store.release(&scope(&actor), &key, token).await?)
    }
}

impl<S: IdempotencyStore, C: Clock> IdempotencyUseCases for IdempotencyService<S, C> {
    fn begin(&self, actor: Actor, key: String, request_hash: Vec<u8>) -> Fut<'_, Begun> {
        Box::pin(Self::begin(self, actor, key, request_hash))
    }
    fn finish<'a>(
        &'a self,
        actor: Actor,
        key: &'a str,
        token: ClaimToken,
        response: &'a StoredResponse,
    ) -> Fut<'a, ()> {
        Box::pin(Self::finish(self, actor, key, token, response))
    }
    fn abandon(&self, actor: Actor, key: String, token: ClaimToken) -> Fut<'_, ()> {
        Box::pin(Self::abandon(self, actor, key, token))
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use nexus_domain::{OrgId, Role, SessionId, UserId};
    use nexus_ports::clock::MockClock;
    use nexus_ports::idempotency::MockIdempotencyStore;
    use uuid::Uuid;

    use super::*;

    fn actor() -> Actor {
        Actor {
            principal: Principal::User {
                user_id: UserId::from_uuid(Uuid::now_v7()),
                session_id: SessionId::from_uuid(Uuid::now_v7()),
            },
            org_id: OrgId::from_uuid(Uuid::now_v7()),
            role: Role::Member,
        }
    }

    fn service(store: MockIdempotencyStore) -> IdempotencyService<MockIdempotencyStore, MockClock> {
        let mut clock = MockClock::new();
        clock.expect_now().returning(Utc::now);
        IdempotencyService::new(store, clock)
    }

    #[tokio::test]
    async fn claims_map_to_replays_and_errors_scoped_per_caller() {
        let a = actor();
        let expected_scope = format!("{}:user:{}", a.org_id, a.user_id());
        let mut store = MockIdempotencyStore::new();
        let mut answers = vec![
            Claim::InFlight,
            Claim::Mismatch,
            Claim::Replay(StoredResponse {
                status: 201,
                headers: vec![],
                body: b"{}".to_vec(),
            }),
            Claim::Fresh(ClaimToken(Uuid::nil())),
        ];
        store
            .expect_claim()
            .withf(move |scope, key, hash, now, expires, abandoned| {
                scope == expected_scope
                    && key == "k-1"
                    && hash == b"h"
                    && *now - *expires == chrono::Duration::hours(24)
                    && *now - *abandoned == chrono::Duration::minutes(5)
            })
            .times(4)
            .returning(move |_, _, _, _, _, _| {
                let answer = answers.pop().unwrap_or(Claim::Mismatch);
                Box::pin(async move { Ok(answer) })
            });
        let s = service(store);
        let begin = || s.begin(a, "k-1".into(), b"h".to_vec());
        assert_eq!(begin().await.unwrap(), Begun::Run(ClaimToken(Uuid::nil())));
        let Begun::Replay(replayed) = begin().await.unwrap() else {
            panic!("a stored response is replayed")
        };
        assert_eq!(replayed.status, 201);
        let Err(AppError::Validation(issues)) = begin().await else {
            panic!("mismatch is a 422")
        };
        assert_eq!(issues[0].code, "idempotency_key_reused");
        // A conflict to retry shortly (`Retry-After`), not a final one.
        assert!(matches!(
            begin().await,
            Err(AppError::Contended {
                code: "idempotency_key_in_flight",
                ..
            })
        ));
    }

    #[tokio::test]
    async fn the_claims_token_goes_with_its_response_and_its_release() {
        let a = actor();
        let token = ClaimToken(Uuid::now_v7());
        let mut store = MockIdempotencyStore::new();
        store
            .expect_claim()
            .times(1)
            .returning(move |_, _, _, _, _, _| Box::pin(async move { Ok(Claim::Fresh(token)) }));
        store
            .expect_complete()
            .withf(move |_, key, t, response| key == "k" && *t == token && response.status == 201)
            .times(1)
            .returning(|_, _, _, _| Box::pin(async { Ok(false) }));
        store
            .expect_release()
            .withf(move |_, key, t| key == "k" && *t == token)
            .times(1)
            .returning(|_, _, _| Box::pin(async { Ok(()) }));
        let s = service(store);
        let Begun::Run(run) = s.begin(a, "k".into(), b"h".to_vec()).await.unwrap() else {
            panic!("a fresh claim runs")
        };
        let response = StoredResponse {
            status: 201,
            headers: vec![],
            body: vec![],
        };
        // A claim lost to a takeover is not the caller's error: the client has its answer.
        s.finish(a, "k", run, &response).await.unwrap();
        s.abandon(a, "k".into(), run).await.unwrap();
    }

    #[tokio::test]
    async fn malformed_keys_never_reach_the_store() {
        let s = service(MockIdempotencyStore::new());
        for bad in [
            String::new(),
            "x".repeat(256),
            "with space".into(),
            "ünïcode".into(),
        ] {
            assert!(matches!(
                s.begin(actor(), bad, vec![]).await,
                Err(AppError::Validation(_))
            ));
        }
    }
}
