//! Reads that share one connection (`SharedReader`) against a real PostgreSQL: a burst of
//! contact reads takes one connection, each read still gets its own rows and tenant, an
//! overflow takes pooled connections, and a read that finds the connection dead runs
//! again on a new one.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use diesel::QueryableByName;
use diesel::sql_types::Integer;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use futures_util::FutureExt;
use futures_util::future::join_all;
use nexus_adapters_postgres::PgPool;
use nexus_adapters_postgres::admin::connect_maintenance;
use nexus_adapters_postgres::pool::{Db, PoolSettings, build_pool};
use nexus_adapters_postgres::repo::PgContactRepository;
use nexus_adapters_postgres::shared_reader::{MAX_IN_FLIGHT, SharedReader};
use nexus_adapters_postgres::testing::TestDatabase;
use nexus_domain::{ContactId, OrgId};
use nexus_ports::StoreError;
use nexus_ports::contacts::{ContactFilter, ContactQuery, ContactRepository, Sort};
use uuid::Uuid;

const POOL: usize = 8;

fn pool(db: &TestDatabase) -> PgPool {
    build_pool(
        db.url(),
        &PoolSettings {
            max_size: POOL,
            ..PoolSettings::default()
        },
    )
    .unwrap()
}

#[derive(QueryableByName)]
struct Pid {
    #[diesel(sql_type = Integer)]
    pid: i32,
}

async fn backend_pid(conn: &AsyncPgConnection) -> Result<i32, diesel::result::Error> {
    let row: Pid = diesel::sql_query("SELECT pg_backend_pid() AS pid")
        .get_result(&mut &*conn)
        .await?;
    Ok(row.pid)
}

async fn terminate(db: &TestDatabase, pid: Option<i32>) {
    let mut admin = AsyncPgConnection::establish(db.url()).await.unwrap();
    let which = pid.map_or_else(
        || "pid <> pg_backend_pid()".to_owned(),
        |pid| format!("pid = {pid}"),
    );
    admin
        .batch_execute(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND {which}"
        ))
        .await
        .unwrap();
}

/// Two organizations of `n` seeded contacts each; their ids.
async fn seeded(db: &TestDatabase, n: i64) -> [(OrgId, Vec<Uuid>); 2] {
    let mut conn = AsyncPgConnection::establish(db.url()).await.unwrap();
    let mut orgs = Vec::new();
    for slug in ["acme", "other"] {
        let org = nexus_adapters_postgres::seed::organization(&mut conn, slug)
            .await
            .unwrap();
        nexus_adapters_postgres::seed::contacts(&mut conn, org, n, |_| {})
            .await
            .unwrap();
        #[derive(QueryableByName)]
        struct Id {
            #[diesel(sql_type = diesel::sql_types::Uuid)]
            id: Uuid,
        }
        let ids: Vec<Id> = diesel::sql_query(format!(
            "SELECT id FROM contacts WHERE organization_id = '{org}' ORDER BY id"
        ))
        .load(&mut conn)
        .await
        .unwrap();
        orgs.push((
            OrgId::from_uuid(org),
            ids.into_iter().map(|r| r.id).collect(),
        ));
    }
    orgs.try_into().ok().unwrap()
}

fn first_page() -> ContactQuery {
    ContactQuery {
        filter: ContactFilter::default(),
        sort: Sort::DEFAULT,
        limit: 10,
        after: None,
        include_total: false,
    }
}

#[tokio::test]
async fn a_burst_of_reads_shares_one_connection_and_each_gets_its_own_answer() {
    let db = TestDatabase::create().await;
    let [(org, ids), (other, other_ids)] = seeded(&db, 20).await;
    let pool = pool(&db);
    let repo = PgContactRepository::new(pool.clone(), Duration::from_secs(2));

    // Gets of both tenants' contacts, each also asked of the other tenant, and first
    // pages, all issued at once: fewer than `MAX_IN_FLIGHT`.
    let gets = ids.iter().map(|id| (org, *id, true)).chain(
        other_ids
            .iter()
            .take(5)
            .map(|id| (org, *id, false))
            .chain([(other, ids[0], false)]),
    );
    let gets: Vec<_> = gets.collect();
    assert!(gets.len() + 2 < MAX_IN_FLIGHT);
    let page = first_page();
    let (found, pages) = tokio::join!(
        join_all(
            gets.iter()
                .map(|(o, id, _)| repo.get(*o, ContactId::from_uuid(*id), false))
        ),
        join_all([repo.list(org, &page), repo.list(other, &page)]),
    );
    for ((_, id, visible), got) in gets.iter().zip(found) {
        let got = got.unwrap();
        assert_eq!(got.is_some(), *visible, "{id}");
        if let Some(c) = got {
            assert_eq!(c.id.as_uuid(), *id);
        }
    }
    for ((o, o_ids), page) in [(org, &ids), (other, &other_ids)].into_iter().zip(pages) {
        let page = page.unwrap();
        assert_eq!(page.items.len(), 10);
        assert!(
            page.items.iter().all(|c| o_ids.contains(&c.id.as_uuid())),
            "{o}"
        );
    }
    // One connection was opened and it is still held for the next reads; a checkout
    // per read would have opened the pool's eight.
    let status = pool.status();
    assert_eq!((status.size, status.available), (1, 0), "{status:?}");
}

#[tokio::test]
async fn reads_beyond_the_limit_take_pooled_connections_and_the_next_shares_again() {
    let db = TestDatabase::create().await;
    let pool = pool(&db);
    let reader = SharedReader::new(Db::new(pool.clone(), Duration::from_secs(2)));

    let mut in_flight = Vec::new();
    for _ in 0..MAX_IN_FLIGHT {
        in_flight.push(reader.conn().await.unwrap());
    }
    assert!(in_flight.iter().all(|c| Arc::ptr_eq(c, &in_flight[0])));
    let overflow = reader.conn().await.unwrap();
    assert!(!Arc::ptr_eq(&overflow, &in_flight[0]));
    assert_ne!(
        backend_pid(&overflow).await.unwrap(),
        backend_pid(&in_flight[0]).await.unwrap()
    );
    assert_eq!(pool.status().size, 2);

    drop(overflow);
    in_flight.pop();
    let next = reader.conn().await.unwrap();
    assert!(Arc::ptr_eq(&next, &in_flight[0]));
    // The overflow connection went back to the pool.
    assert_eq!(pool.status().available, 1);
}

#[tokio::test]
async fn a_dead_shared_connection_is_closed_and_the_read_runs_on_a_new_one() {
    let db = TestDatabase::create().await;
    let pool = pool(&db);
    let reader = SharedReader::new(Db::new(pool.clone(), Duration::from_secs(2)));
    let pid = || async {
        reader
            .read(|conn| async move { backend_pid(&conn).await }.boxed())
            .await
            .unwrap()
    };

    let first = pid().await;
    assert_eq!(pid().await, first, "shared between reads");
    terminate(&db, Some(first)).await;
    let second = pid().await;
    assert_ne!(second, first);
    // The dead one was closed, not put back in the pool.
    assert_eq!(pool.status().size, 1);
    assert_eq!(pid().await, second);
}

#[tokio::test]
async fn a_read_that_finds_its_connection_lost_runs_once_more_on_a_new_one() {
    let db = TestDatabase::create().await;
    let [(org, ids), _] = seeded(&db, 3).await;
    let repo = PgContactRepository::new(pool(&db), Duration::from_secs(2));
    let id = ContactId::from_uuid(ids[0]);
    assert!(repo.get(org, id, false).await.unwrap().is_some());

    // The database ends the shared connection's backend (as a restart would): the next
    // get and the next page still succeed, each on a new connection.
    terminate(&db, None).await;
    assert!(repo.get(org, id, false).await.unwrap().is_some());
    terminate(&db, None).await;
    assert_eq!(repo.list(org, &first_page()).await.unwrap().items.len(), 3);

    // With the database refusing connections too, a read fails as the database being
    // away does (503), after one more try, not a loop; and recovers when it is back.
    set_connections_allowed(&db, false).await;
    let failed = repo.get(org, id, false).await;
    assert!(
        matches!(failed, Err(StoreError::Unavailable(_))),
        "{failed:?}"
    );
    let failed = repo.list(org, &first_page()).await;
    assert!(
        matches!(failed, Err(StoreError::Unavailable(_))),
        "{:?}",
        failed.map(|p| p.items.len())
    );
    set_connections_allowed(&db, true).await;
    assert!(repo.get(org, id, false).await.unwrap().is_some());
    assert_eq!(repo.list(org, &first_page()).await.unwrap().items.len(), 3);
}

async fn set_connections_allowed(db: &TestDatabase, allowed: bool) {
    let mut admin = connect_maintenance(db.url()).await.unwrap();
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {} WITH ALLOW_CONNECTIONS {allowed}",
            db.name()
        ))
        .await
        .unwrap();
    if !allowed {
        admin
            .batch_execute(&format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{}'",
                db.name()
            ))
            .await
            .unwrap();
    }
}

#[derive(QueryableByName)]
struct Setting {
    #[diesel(sql_type = diesel::sql_types::Text)]
    mode: String,
}

async fn plan_cache_mode(conn: &AsyncPgConnection) -> Result<String, diesel::result::Error> {
    let row: Setting = diesel::sql_query("SELECT current_setting('plan_cache_mode') AS mode")
        .get_result(&mut &*conn)
        .await?;
    Ok(row.mode)
}

#[tokio::test]
async fn the_shared_connection_keeps_generic_plans_to_itself() {
    let db = TestDatabase::create().await;
    let pool = pool(&db);
    let reader = SharedReader::new(Db::new(pool.clone(), Duration::from_secs(2)));
    let mode = reader
        .read(|conn| async move { plan_cache_mode(&conn).await }.boxed())
        .await
        .unwrap();
    assert_eq!(mode, "force_generic_plan");

    // An overflow read runs on a pooled connection as it is, and gives it back.
    let in_flight: Vec<_> = join_all((0..MAX_IN_FLIGHT).map(|_| reader.conn()))
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let overflow = reader.conn().await.unwrap();
    assert!(!overflow.is_shared() && in_flight[0].is_shared());
    assert_eq!(plan_cache_mode(&overflow).await.unwrap(), "auto");
    drop((overflow, in_flight));
    // The shared one stays with the reader; the overflow one is back in the pool.
    assert_eq!((pool.status().size, pool.status().available), (2, 1));

    // A read that fails closes the shared connection (and the one it retried on) rather
    // than pooling them: no other request gets a connection in the shared mode.
    let failed = reader
        .read(|conn| {
            async move {
                diesel::sql_query("SELECT 1 / 0 AS pid")
                    .get_result::<Pid>(&mut &**conn)
                    .await
                    .map(|p| p.pid)
            }
            .boxed()
        })
        .await;
    assert!(failed.is_err());
    // The first attempt took the pooled one back into the shared mode; both attempts'
    // connections are gone.
    assert_eq!(pool.status().size, 0, "{:?}", pool.status());
    let pooled = pool.get().await.unwrap();
    assert_eq!(plan_cache_mode(&pooled).await.unwrap(), "auto");
}
