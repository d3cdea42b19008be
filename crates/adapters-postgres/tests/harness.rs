//! The database harness itself: cluster bootstrap, migrations, per-test isolation, pool.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use diesel::QueryableByName;
use diesel::sql_types::BigInt;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use nexus_adapters_postgres::cluster::{self, ClusterOptions};
use nexus_adapters_postgres::pool::{PoolSettings, build_pool};
use nexus_adapters_postgres::testing::TestDatabase;
use nexus_adapters_postgres::{PgProbe, migrate};
use nexus_ports::{DatabaseProbe, StoreError};

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

async fn count(url: &str, sql: &str) -> i64 {
    let mut conn = AsyncPgConnection::establish(url).await.unwrap();
    diesel::sql_query(sql)
        .get_result::<Count>(&mut conn)
        .await
        .unwrap()
        .n
}

#[test]
fn bootstrap_starts_a_private_cluster_then_reuses_it_quickly() {
    let dir = tempdir_in_target("bootstrap");
    let opts = ClusterOptions::test(&dir);
    let first = cluster::ensure_running(&opts).unwrap();
    assert!(first.started, "a fresh data dir starts a new server");
    assert!(
        first
            .socket_dir()
            .join(format!(".s.PGSQL.{}", first.port))
            .exists(),
        "unix socket in the data dir"
    );

    let t = Instant::now();
    let second = cluster::ensure_running(&opts).unwrap();
    let reuse = t.elapsed();
    assert!(!second.started, "the running server is reused");
    assert_eq!(second.port, first.port);
    assert!(reuse < Duration::from_secs(1), "reuse took {reuse:?}");
    assert_eq!(
        cluster::status(&opts).unwrap().map(|c| c.port),
        Some(first.port)
    );

    assert!(cluster::stop(&opts).unwrap());
    assert_eq!(cluster::status(&opts).unwrap(), None);
    // A stopped cluster starts again from its existing data (no second initdb).
    let third = cluster::ensure_running(&opts).unwrap();
    assert!(third.started);
    assert!(cluster::stop(&opts).unwrap());
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempdir_in_target(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("nexus-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn migrations_apply_to_an_empty_database_are_idempotent_and_revert() {
    let db = TestDatabase::create().await;
    // The template is already migrated: nothing is pending and a rerun applies nothing.
    assert!(migrate::pending(db.url()).await.unwrap().is_empty());
    assert!(migrate::run_pending(db.url()).await.unwrap().is_empty());

    // Every down.sql reverts cleanly, leaving no table of ours behind...
    let reverted = migrate::revert_all(db.url()).await.unwrap();
    assert!(!reverted.is_empty());
    let ours = "SELECT count(*) AS n FROM pg_tables WHERE schemaname = 'public' \
                AND tablename <> '__diesel_schema_migrations'";
    assert_eq!(count(db.url(), ours).await, 0);
    // ...and an empty database migrates from scratch to the same state.
    let applied = migrate::run_pending(db.url()).await.unwrap();
    assert_eq!(applied.len(), reverted.len());
    assert!(count(db.url(), ours).await > 0);
    assert!(migrate::run_pending(db.url()).await.unwrap().is_empty());
}

#[tokio::test]
async fn each_test_database_is_isolated_and_dropped() {
    let a = TestDatabase::create().await;
    let b = TestDatabase::create().await;
    assert_ne!(a.name(), b.name());
    let mut conn = AsyncPgConnection::establish(a.url()).await.unwrap();
    conn.batch_execute(
        "INSERT INTO events (id, organization_id, type, actor, payload) \
         VALUES (gen_random_uuid(), gen_random_uuid(), 'contact.created', '{}', '{}')",
    )
    .await
    .unwrap();
    drop(conn);
    assert_eq!(count(a.url(), "SELECT count(*) AS n FROM events").await, 1);
    assert_eq!(count(b.url(), "SELECT count(*) AS n FROM events").await, 0);

    let name = a.name().to_owned();
    drop(a);
    assert!(!TestDatabase::exists(&name).await, "dropped with its value");
}

#[tokio::test]
async fn an_exhausted_pool_fails_within_the_acquire_timeout() {
    let db = TestDatabase::create().await;
    let timeout = Duration::from_millis(300);
    let settings = PoolSettings {
        max_size: 1,
        acquire_timeout: timeout,
        ..PoolSettings::default()
    };
    let pool = build_pool(db.url(), &settings).unwrap();
    let probe = PgProbe::new(pool.clone(), timeout);
    probe.ping().await.unwrap();

    let held = pool.get().await.unwrap();
    let t = Instant::now();
    let err = probe.ping().await.unwrap_err();
    let waited = t.elapsed();
    assert!(matches!(err, StoreError::PoolExhausted(_)), "{err:?}");
    assert!(
        waited >= timeout && waited < timeout * 3,
        "waited {waited:?}"
    );
    assert_eq!(probe.pool_stats().waiting, 0);
    drop(held);
    probe.ping().await.unwrap();
}

#[tokio::test]
async fn an_unreachable_database_is_reported_as_unavailable() {
    // A closed loopback port: nothing listens there, and nothing leaves the machine.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let settings = PoolSettings {
        connect_timeout: Duration::from_secs(1),
        ..PoolSettings::default()
    };
    let pool = build_pool(
        &format!("postgres://postgres@127.0.0.1:{port}/nexus"),
        &settings,
    )
    .unwrap();
    let err = PgProbe::new(pool, settings.acquire_timeout)
        .ping()
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
}

/// A deadlock and a statement timeout, as the real server reports them, are told apart
/// from failures: the HTTP layer answers them 503 with `Retry-After`, not 500.
#[tokio::test]
async fn statements_the_server_gave_up_are_known_as_such() {
    use nexus_adapters_postgres::error::from_diesel;

    let db = TestDatabase::create().await;
    let mut setup = AsyncPgConnection::establish(db.url()).await.unwrap();
    setup
        .batch_execute("CREATE TABLE pair (id int PRIMARY KEY); INSERT INTO pair VALUES (1), (2)")
        .await
        .unwrap();

    let mut slow = AsyncPgConnection::establish(db.url()).await.unwrap();
    slow.batch_execute("SET statement_timeout = '50ms'")
        .await
        .unwrap();
    let timed_out = slow.batch_execute("SELECT pg_sleep(5)").await.unwrap_err();
    assert!(
        matches!(from_diesel(timed_out), StoreError::GaveUp(_)),
        "statement timeout"
    );

    // Each takes one row, then waits for the other's: PostgreSQL ends one of them after
    // its `deadlock_timeout` (1 s by default; setting it takes a superuser).
    let (mut a, mut b) = (
        AsyncPgConnection::establish(db.url()).await.unwrap(),
        AsyncPgConnection::establish(db.url()).await.unwrap(),
    );
    for (conn, row) in [(&mut a, 1), (&mut b, 2)] {
        conn.batch_execute(&format!("BEGIN; UPDATE pair SET id = id WHERE id = {row}"))
            .await
            .unwrap();
    }
    let (first, second) = tokio::join!(
        a.batch_execute("UPDATE pair SET id = id WHERE id = 2"),
        b.batch_execute("UPDATE pair SET id = id WHERE id = 1"),
    );
    let failed: Vec<_> = [first, second]
        .into_iter()
        .filter_map(Result::err)
        .collect();
    assert_eq!(failed.len(), 1, "one of the two is chosen");
    let deadlock = failed.into_iter().next().unwrap();
    assert!(
        matches!(from_diesel(deadlock), StoreError::GaveUp(_)),
        "deadlock"
    );
    // A plain failure is still one.
    let missing = setup
        .batch_execute("SELECT * FROM nowhere")
        .await
        .unwrap_err();
    assert!(matches!(from_diesel(missing), StoreError::Other(_)));
}
