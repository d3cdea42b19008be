//! Idempotency keys against a real PostgreSQL: one winner per key, replays, mismatches,
//! expiry, abandoned claims, and concurrent claims.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use chrono::{DateTime, Utc};
use nexus_adapters_postgres::pool::{PoolSettings, build_pool};
use nexus_adapters_postgres::repo::PgIdempotencyStore;
use nexus_adapters_postgres::testing::TestDatabase;
use nexus_ports::idempotency::{Claim, IdempotencyStore, StoredResponse};

fn at(minutes: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).unwrap() + chrono::Duration::minutes(minutes)
}

/// Claims as the service does at `now`: 24 h of memory, 5 min before an unfinished claim is abandoned.
async fn claim(
    store: &PgIdempotencyStore,
    scope: &str,
    key: &str,
    hash: &[u8],
    now: DateTime<Utc>,
) -> Claim {
    store
        .claim(
            scope,
            key,
            hash,
            now,
            now - chrono::Duration::hours(24),
            now - chrono::Duration::minutes(5),
        )
        .await
        .unwrap()
}

#[tokio::test]
async fn claim_complete_replay_mismatch_expire_and_release() {
    let db = TestDatabase::create().await;
    let pool = build_pool(
        db.url(),
        &PoolSettings {
            max_size: 4,
            ..PoolSettings::default()
        },
    )
    .unwrap();
    let store = PgIdempotencyStore::new(pool, Duration::from_secs(2));
    let response = StoredResponse {
        status: 201,
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("location".into(), "/x/1".into()),
        ],
        body: br#"{"id":1}"#.to_vec(),
    };

    assert_eq!(
        claim(&store, "org:user", "k", b"h1", at(0)).await,
        Claim::Fresh
    );
    assert_eq!(
        claim(&store, "org:user", "k", b"h1", at(1)).await,
        Claim::InFlight
    );
    assert_eq!(
        claim(&store, "org:user", "k", b"h2", at(1)).await,
        Claim::Mismatch
    );
    // Another caller's identical key is independent.
    assert_eq!(
        claim(&store, "org:other", "k", b"h1", at(1)).await,
        Claim::Fresh
    );

    store.complete("org:user", "k", &response).await.unwrap();
    assert_eq!(
        claim(&store, "org:user", "k", b"h1", at(2)).await,
        Claim::Replay(response.clone())
    );
    assert_eq!(
        claim(&store, "org:user", "k", b"h1", at(23 * 60)).await,
        Claim::Replay(response.clone())
    );
    assert_eq!(
        claim(&store, "org:user", "k", b"h2", at(23 * 60)).await,
        Claim::Mismatch
    );
    // After 24 hours the key is new again, whatever the request.
    assert_eq!(
        claim(&store, "org:user", "k", b"h2", at(24 * 60 + 1)).await,
        Claim::Fresh
    );

    // An unfinished claim is taken over once abandoned (its process died)...
    assert_eq!(
        claim(&store, "org:other", "k", b"h1", at(3)).await,
        Claim::InFlight
    );
    assert_eq!(
        claim(&store, "org:other", "k", b"h1", at(7)).await,
        Claim::Fresh
    );
    // ...and a released one (the request failed with a 5xx) is free at once.
    store.release("org:other", "k").await.unwrap();
    assert_eq!(
        claim(&store, "org:other", "k", b"h1", at(8)).await,
        Claim::Fresh
    );
    // Releasing never forgets a completed response.
    store.complete("org:other", "k", &response).await.unwrap();
    store.release("org:other", "k").await.unwrap();
    assert_eq!(
        claim(&store, "org:other", "k", b"h1", at(9)).await,
        Claim::Replay(response)
    );
}

#[tokio::test]
async fn concurrent_claims_have_exactly_one_winner() {
    let db = TestDatabase::create().await;
    let pool = build_pool(
        db.url(),
        &PoolSettings {
            max_size: 8,
            ..PoolSettings::default()
        },
    )
    .unwrap();
    let store = PgIdempotencyStore::new(pool, Duration::from_secs(5));
    let claims =
        futures_util::future::join_all((0..8).map(|_| claim(&store, "s", "race", b"h", at(0))))
            .await;
    assert_eq!(
        claims.iter().filter(|c| **c == Claim::Fresh).count(),
        1,
        "{claims:?}"
    );
    assert_eq!(claims.iter().filter(|c| **c == Claim::InFlight).count(), 7);
}
