//! Idempotency keys against a real PostgreSQL: one winner per key, replays, mismatches,
//! expiry, abandoned claims, and concurrent claims.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use chrono::{DateTime, Utc};
use nexus_adapters_postgres::pool::{PoolSettings, build_pool};
use nexus_adapters_postgres::repo::PgIdempotencyStore;
use nexus_adapters_postgres::testing::TestDatabase;
use nexus_ports::idempotency::{Claim, ClaimToken, IdempotencyStore, StoredResponse};

fn at(minutes: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).unwrap() + chrono::Duration::minutes(minutes)
}

fn store(db: &TestDatabase, max_size: usize) -> PgIdempotencyStore {
    let pool = build_pool(
        db.url(),
        &PoolSettings {
            max_size,
            ..PoolSettings::default()
        },
    )
    .unwrap();
    PgIdempotencyStore::new(pool, Duration::from_secs(5))
}

fn response() -> StoredResponse {
    StoredResponse {
        status: 201,
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("location".into(), "/x/1".into()),
        ],
        body: br#"{"id":1}"#.to_vec(),
    }
}

fn fresh(claim: Claim) -> ClaimToken {
    match claim {
        Claim::Fresh(token) => token,
        other => panic!("expected a fresh claim, got {other:?}"),
    }
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
    let store = store(&db, 4);
    let response = response();

    let first = fresh(claim(&store, "org:user", "k", b"h1", at(0)).await);
    assert_eq!(
        claim(&store, "org:user", "k", b"h1", at(1)).await,
        Claim::InFlight
    );
    assert_eq!(
        claim(&store, "org:user", "k", b"h2", at(1)).await,
        Claim::Mismatch
    );
    // Another caller's identical key is independent.
    let other = fresh(claim(&store, "org:other", "k", b"h1", at(1)).await);

    assert!(
        store
            .complete("org:user", "k", first, &response)
            .await
            .unwrap()
    );
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
    fresh(claim(&store, "org:user", "k", b"h2", at(24 * 60 + 1)).await);

    // An unfinished claim is taken over once abandoned (its process died)...
    assert_eq!(
        claim(&store, "org:other", "k", b"h1", at(3)).await,
        Claim::InFlight
    );
    let taken_over = fresh(claim(&store, "org:other", "k", b"h1", at(7)).await);
    assert_ne!(taken_over, other);
    // ...and a released one (the request failed with a 5xx) is free at once.
    store.release("org:other", "k", taken_over).await.unwrap();
    let last = fresh(claim(&store, "org:other", "k", b"h1", at(8)).await);
    // Releasing never forgets a completed response.
    assert!(
        store
            .complete("org:other", "k", last, &response)
            .await
            .unwrap()
    );
    store.release("org:other", "k", last).await.unwrap();
    assert_eq!(
        claim(&store, "org:other", "k", b"h1", at(9)).await,
        Claim::Replay(response)
    );
}

/// A request that ran past the abandonment delay was taken over: whatever it reports
/// afterwards (its response, or a release after a 5xx) leaves its successor's claim alone.
#[tokio::test]
async fn a_request_that_outlived_its_claim_cannot_touch_its_successors() {
    let db = TestDatabase::create().await;
    let store = store(&db, 4);
    let late = fresh(claim(&store, "s", "k", b"h", at(0)).await);
    let current = fresh(claim(&store, "s", "k", b"h", at(6)).await);

    assert!(!store.complete("s", "k", late, &response()).await.unwrap());
    store.release("s", "k", late).await.unwrap();
    assert_eq!(
        claim(&store, "s", "k", b"h", at(7)).await,
        Claim::InFlight,
        "the successor still holds the key"
    );

    let mut own = response();
    own.body = br#"{"id":2}"#.to_vec();
    assert!(store.complete("s", "k", current, &own).await.unwrap());
    store.release("s", "k", late).await.unwrap();
    assert_eq!(
        claim(&store, "s", "k", b"h", at(8)).await,
        Claim::Replay(own)
    );
}

#[tokio::test]
async fn concurrent_claims_have_exactly_one_winner() {
    let db = TestDatabase::create().await;
    let store = store(&db, 8);
    let claims =
        futures_util::future::join_all((0..8).map(|_| claim(&store, "s", "race", b"h", at(0))))
            .await;
    assert_eq!(
        claims
            .iter()
            .filter(|c| matches!(c, Claim::Fresh(_)))
            .count(),
        1,
        "{claims:?}"
    );
    assert_eq!(claims.iter().filter(|c| **c == Claim::InFlight).count(), 7);
}

#[tokio::test]
async fn the_sweep_removes_keys_past_their_day_and_keeps_the_rest() {
    use nexus_adapters_postgres::pool::Db;
    use nexus_adapters_postgres::retention::purge_idempotency_keys;

    let db = TestDatabase::create().await;
    let store = store(&db, 4);
    let now = Utc::now();
    // Two answered and one abandoned in flight, all claimed a day and more ago; one
    // answered an hour ago; one in flight now.
    for (key, hours) in [
        ("old-1", 25),
        ("old-2", 30),
        ("old-flight", 26),
        ("recent", 1),
    ] {
        let token = fresh(
            claim(
                &store,
                "org:user",
                key,
                b"h",
                now - chrono::Duration::hours(hours),
            )
            .await,
        );
        if key != "old-flight" {
            store
                .complete("org:user", key, token, &response())
                .await
                .unwrap();
        }
    }
    fresh(claim(&store, "org:user", "running", b"h", now).await);

    let sweeper = Db::new(
        build_pool(db.url(), &PoolSettings::default()).unwrap(),
        Duration::from_secs(5),
    );
    // A batch of one, so the loop runs more than once.
    let day = Duration::from_secs(24 * 3600);
    assert_eq!(purge_idempotency_keys(&sweeper, day, 1).await.unwrap(), 3);
    assert_eq!(purge_idempotency_keys(&sweeper, day, 1).await.unwrap(), 0);
    assert_eq!(
        claim(&store, "org:user", "recent", b"h", now).await,
        Claim::Replay(response())
    );
    assert_eq!(
        claim(&store, "org:user", "running", b"h", now).await,
        Claim::InFlight
    );
}
