//! Events are numbered after they commit (migration 000013, `numberer`): the order a
//! reader sees, the fan-out and wake-up that follow numbering, and the commit bell that
//! triggers it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use diesel::pg::PgNotification;
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use futures_util::StreamExt;
use nexus_adapters_postgres::numberer::{CommitBell, number_pending};
use nexus_adapters_postgres::pool::{Db, PoolSettings, build_pool};
use nexus_adapters_postgres::repo::events::PgEventLog;
use nexus_adapters_postgres::testing::TestDatabase;
use nexus_domain::OrgId;
use nexus_ports::events::EventLog;

const ORG: &str = "0190f0e0-0000-7000-8000-0000000000aa";

#[derive(diesel::QueryableByName, Debug, PartialEq, Eq)]
struct Numbered {
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Nullable<BigInt>)]
    seq: Option<i64>,
}

fn insert(name: &str) -> String {
    format!(
        "INSERT INTO events (id, organization_id, type, actor, payload)
         VALUES (gen_random_uuid(), '{ORG}', 'contact.created', '{{}}', '{{\"name\":\"{name}\"}}')"
    )
}

async fn numbers(conn: &mut AsyncPgConnection) -> Vec<(String, Option<i64>)> {
    diesel::sql_query("SELECT payload->>'name' AS name, seq FROM events ORDER BY append_seq")
        .load::<Numbered>(conn)
        .await
        .unwrap()
        .into_iter()
        .map(|n| (n.name, n.seq))
        .collect()
}

async fn notified(
    stream: &mut (impl futures_util::Stream<Item = diesel::QueryResult<PgNotification>> + Unpin),
    what: &str,
) -> PgNotification {
    tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
        .unwrap()
        .unwrap()
}

/// The organization `ORG` with one webhook subscribed to `types` (a comma list, or `*`).
async fn subscribe(conn: &mut AsyncPgConnection, types: &str) {
    conn.batch_execute(&format!(
        "INSERT INTO organizations (id, name, slug) VALUES ('{ORG}', 'Acme', 'acme');
         INSERT INTO webhooks (organization_id, id, url, event_types, secret)
         VALUES ('{ORG}', gen_random_uuid(), 'https://hooks.example.com/in', '{{{types}}}', 's')"
    ))
    .await
    .unwrap();
}

/// A pool of `size` connections whose commits ring the returned bell.
fn ringing_pool(
    db: &TestDatabase,
    size: usize,
) -> (CommitBell, nexus_adapters_postgres::pool::PgPool) {
    let bell = CommitBell::default();
    let settings = PoolSettings {
        max_size: size,
        commits: bell.clone(),
        ..PoolSettings::default()
    };
    (bell, build_pool(db.url(), &settings).unwrap())
}

async fn connect(db: &TestDatabase) -> AsyncPgConnection {
    AsyncPgConnection::establish(db.url()).await.unwrap()
}

#[tokio::test]
async fn an_event_is_numbered_after_its_commit_so_a_late_commit_comes_after_the_cursor() {
    let db = TestDatabase::create().await;
    let (mut slow, mut quick, mut numberer) =
        (connect(&db).await, connect(&db).await, connect(&db).await);

    // "slow" writes first and commits last.
    slow.batch_execute(&format!("BEGIN; {}", insert("slow")))
        .await
        .unwrap();
    quick.batch_execute(&insert("quick")).await.unwrap();
    assert_eq!(number_pending(&mut numberer).await.unwrap(), 1);
    assert_eq!(
        numbers(&mut numberer).await,
        [("quick".to_owned(), Some(1))],
        "the uncommitted event is neither visible nor numbered"
    );

    slow.batch_execute("COMMIT").await.unwrap();
    assert_eq!(number_pending(&mut numberer).await.unwrap(), 1);
    assert_eq!(
        numbers(&mut numberer).await,
        [("slow".to_owned(), Some(2)), ("quick".to_owned(), Some(1))],
        "numbered after the reader's cursor (1), not before it"
    );

    // A rolled-back write leaves no gap; nothing is numbered twice.
    slow.batch_execute(&format!("BEGIN; {}; ROLLBACK", insert("never")))
        .await
        .unwrap();
    quick.batch_execute(&insert("third")).await.unwrap();
    assert_eq!(number_pending(&mut numberer).await.unwrap(), 1);
    assert_eq!(number_pending(&mut numberer).await.unwrap(), 0);
    let seqs: Vec<Option<i64>> = numbers(&mut numberer)
        .await
        .into_iter()
        .map(|n| n.1)
        .collect();
    assert_eq!(seqs, [Some(2), Some(1), Some(3)]);
}

#[tokio::test]
async fn numbering_in_batches_keeps_the_write_order_and_notifies_once_per_pass() {
    let db = TestDatabase::create().await;
    let mut writer = connect(&db).await;
    let mut listener = connect(&db).await;
    listener.batch_execute("LISTEN nexus_events").await.unwrap();
    writer
        .batch_execute(&format!(
            "INSERT INTO events (id, organization_id, type, actor, payload)
             SELECT gen_random_uuid(), '{ORG}', 'contact.created', '{{}}', jsonb_build_object('name', n::text)
             FROM generate_series(1, 7) AS n"
        ))
        .await
        .unwrap();

    // Two passes of 5 and 2.
    let pass = |batch: i32| format!("SELECT events_number({batch})");
    writer.batch_execute(&pass(5)).await.unwrap();
    writer.batch_execute(&pass(5)).await.unwrap();
    let order: Vec<(String, Option<i64>)> = numbers(&mut writer).await;
    let expected: Vec<(String, Option<i64>)> = (1..=7).map(|n| (n.to_string(), Some(n))).collect();
    assert_eq!(order, expected);

    let mut stream = std::pin::pin!(listener.notifications_stream());
    for head in [5, 7] {
        let n = notified(&mut stream, "a notification per pass").await;
        assert_eq!(n.payload, format!("{ORG}:{head}"));
    }
}

#[tokio::test]
async fn the_pool_rings_its_bell_after_a_commit_and_not_after_a_rollback_or_savepoint() {
    let db = TestDatabase::create().await;
    let (bell, pool) = ringing_pool(&db, 1);
    let mut conn = pool.get().await.unwrap();
    let silent = |bell: CommitBell| async move {
        tokio::time::timeout(Duration::from_millis(200), bell.rung())
            .await
            .is_err()
    };

    let rolled_back = conn
        .transaction::<(), diesel::result::Error, _>(async |c| {
            diesel::sql_query(insert("rolled back")).execute(c).await?;
            Err(diesel::result::Error::RollbackTransaction)
        })
        .await;
    assert!(rolled_back.is_err());
    assert!(silent(bell.clone()).await, "a rollback does not ring");

    let inner_bell = bell.clone();
    conn.transaction::<(), diesel::result::Error, _>(async |c| {
        c.transaction::<(), diesel::result::Error, _>(async |c| {
            diesel::sql_query(insert("nested"))
                .execute(c)
                .await
                .map(drop)
        })
        .await?;
        assert!(
            silent(inner_bell).await,
            "releasing a savepoint is not a commit"
        );
        Ok(())
    })
    .await
    .unwrap();
    tokio::time::timeout(Duration::from_secs(5), bell.rung())
        .await
        .expect("the commit rings");
    assert!(silent(bell.clone()).await, "one ring per commit");
}

/// The pass (its transaction) that numbered `name`.
async fn pass_of(conn: &mut AsyncPgConnection, name: &str) -> Option<String> {
    #[derive(diesel::QueryableByName)]
    struct Pass {
        #[diesel(sql_type = Nullable<Text>)]
        pass: Option<String>,
    }
    diesel::sql_query(format!(
        "SELECT CASE WHEN seq IS NULL THEN NULL ELSE xmin::text END AS pass
           FROM events WHERE payload->>'name' = '{name}'"
    ))
    .get_result::<Pass>(conn)
    .await
    .unwrap()
    .pass
}

async fn numbered_within(conn: &mut AsyncPgConnection, name: &str, within: Duration) -> String {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(pass) = pass_of(conn, name).await {
            return pass;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} not numbered within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn the_numbering_task_numbers_lone_events_at_once_and_gathers_a_busy_moments() {
    let db = TestDatabase::create().await;
    let (bell, pool) = ringing_pool(&db, 2);
    let pace = Duration::from_secs(3);
    let task = tokio::spawn(nexus_adapters_postgres::numberer::run(
        Db::new(pool.clone(), Duration::from_secs(5)),
        bell.clone(),
        pace,
    ));
    let mut conn = connect(&db).await;
    // The task's first pass finds nothing; it then waits for the bell.
    tokio::time::sleep(Duration::from_millis(100)).await;

    // One at a time, events are numbered at once.
    for name in ["quiet 1", "quiet 2"] {
        conn.batch_execute(&insert(name)).await.unwrap();
        bell.ring();
        numbered_within(&mut conn, name, Duration::from_secs(1)).await;
    }
    // Two in one pass: the next pass waits for the pause, and gathers what comes in it.
    // One commit, so that no sweep can number them apart.
    conn.batch_execute(&format!(
        "BEGIN; {}; {}; COMMIT",
        insert("pair 1"),
        insert("pair 2")
    ))
    .await
    .unwrap();
    bell.ring();
    numbered_within(&mut conn, "pair 2", Duration::from_secs(1)).await;
    conn.batch_execute(&insert("busy 1")).await.unwrap();
    bell.ring();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        pass_of(&mut conn, "busy 1").await,
        None,
        "not numbered during the pause"
    );
    conn.batch_execute(&insert("busy 2")).await.unwrap();
    bell.ring();
    let second = numbered_within(&mut conn, "busy 2", pace * 2).await;
    assert_eq!(
        pass_of(&mut conn, "busy 1").await,
        Some(second),
        "one pass numbered both"
    );
    let names = ["quiet 1", "quiet 2", "pair 1", "pair 2", "busy 1", "busy 2"];
    assert_eq!(
        numbers(&mut conn).await,
        names
            .iter()
            .zip(1..)
            .map(|(n, s)| ((*n).to_owned(), Some(s)))
            .collect::<Vec<_>>()
    );
    task.abort();
}

#[tokio::test]
async fn webhook_workers_are_notified_only_when_deliveries_are_queued() {
    let db = TestDatabase::create().await;
    let mut writer = connect(&db).await;
    let mut listener = connect(&db).await;
    listener
        .batch_execute("LISTEN nexus_deliveries")
        .await
        .unwrap();
    subscribe(&mut writer, "deal.won").await;

    // No subscription wants this event: numbered, no delivery, no wake-up.
    writer.batch_execute(&insert("unwatched")).await.unwrap();
    assert_eq!(number_pending(&mut writer).await.unwrap(), 1);
    writer
        .batch_execute(&format!(
            "INSERT INTO events (id, organization_id, type, actor, payload)
             VALUES (gen_random_uuid(), '{ORG}', 'deal.won', '{{}}', '{{}}')"
        ))
        .await
        .unwrap();
    assert_eq!(number_pending(&mut writer).await.unwrap(), 1);

    let mut stream = std::pin::pin!(listener.notifications_stream());
    let first = notified(&mut stream, "the deal.won delivery wakes the workers").await;
    assert_eq!(first.channel, "nexus_deliveries");
    assert!(
        tokio::time::timeout(Duration::from_millis(300), stream.next())
            .await
            .is_err(),
        "one notification, for the pass that queued a delivery"
    );

    // A ping or a redelivery is queued without an event: it wakes the workers too.
    writer
        .batch_execute(&format!(
            "INSERT INTO webhook_deliveries (organization_id, id, webhook_id, message_id, event_type, body)
             SELECT '{ORG}', gen_random_uuid(), id, gen_random_uuid(), 'webhook.ping', '{{}}' FROM webhooks"
        ))
        .await
        .unwrap();
    let ping = notified(&mut stream, "the ping wakes the workers").await;
    assert_eq!(ping.channel, "nexus_deliveries");
}

#[tokio::test]
async fn the_head_counts_every_event_committed_before_it_was_asked() {
    // A stream without a position starts at the head: an event committed before it
    // asked but not numbered yet must fall below it, not arrive later as new.
    let db = TestDatabase::create().await;
    let mut conn = connect(&db).await;
    conn.batch_execute(&insert("committed")).await.unwrap();
    let pool = build_pool(db.url(), &PoolSettings::default()).unwrap();
    let log = PgEventLog::new(Db::new(pool, Duration::from_secs(2)));
    let org = OrgId::from_uuid(ORG.parse().unwrap());
    assert_eq!(log.head(Some(org)).await.unwrap(), 1);
    assert_eq!(log.head(None).await.unwrap(), 1);
    assert_eq!(
        numbers(&mut conn).await,
        [("committed".to_owned(), Some(1))]
    );
}

#[tokio::test]
async fn a_bulk_append_is_numbered_in_its_order_published_and_holds_passes_until_it_commits() {
    let db = TestDatabase::create().await;
    let (mut bulk, mut writer, mut listener) =
        (connect(&db).await, connect(&db).await, connect(&db).await);
    listener.batch_execute("LISTEN nexus_events").await.unwrap();
    subscribe(&mut writer, "*").await;
    writer.batch_execute(&insert("before")).await.unwrap();
    assert_eq!(number_pending(&mut writer).await.unwrap(), 1);

    let batch = |names: &[&str]| {
        let events: Vec<serde_json::Value> = names
            .iter()
            .map(|n| {
                serde_json::json!({"id": uuid::Uuid::now_v7(), "type": "contact.created",
                    "occurred_at": "2026-12-04T00:00:00Z", "actor": {}, "payload": {"name": n}})
            })
            .collect();
        format!(
            "SELECT events_append_numbered('{ORG}', '{}')",
            serde_json::Value::Array(events)
        )
    };
    bulk.batch_execute(&format!("BEGIN; {}", batch(&["b1", "b2", "b3"])))
        .await
        .unwrap();
    // A single write commits meanwhile; its pass must wait for the bulk commit, or it
    // would draw the same numbers (or let 5 be seen before 2).
    writer.batch_execute(&insert("single")).await.unwrap();
    let pass = tokio::spawn(async move {
        let n = number_pending(&mut writer).await.unwrap();
        (n, writer)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!pass.is_finished(), "the pass waits for the bulk writer");
    bulk.batch_execute("COMMIT").await.unwrap();
    let (n, mut writer) = pass.await.unwrap();
    assert_eq!(n, 1);

    let order: Vec<(String, Option<i64>)> = numbers(&mut writer).await;
    let expected: Vec<(String, Option<i64>)> = [
        ("before", 1),
        ("b1", 2),
        ("b2", 3),
        ("b3", 4),
        ("single", 5),
    ]
    .into_iter()
    .map(|(name, seq)| (name.to_owned(), Some(seq)))
    .collect();
    assert_eq!(
        order, expected,
        "in write order, a pass's numbers after the bulk's"
    );

    #[derive(diesel::QueryableByName)]
    struct Delivered {
        #[diesel(sql_type = Text)]
        name: String,
    }
    let delivered: Vec<String> = diesel::sql_query(
        "SELECT (d.body::jsonb)->'data'->>'name' AS name
         FROM webhook_deliveries d JOIN events e ON e.id = d.event_id ORDER BY e.seq",
    )
    .load::<Delivered>(&mut writer)
    .await
    .unwrap()
    .into_iter()
    .map(|d| d.name)
    .collect();
    assert_eq!(
        delivered,
        ["before", "b1", "b2", "b3", "single"],
        "every numbered event has its delivery"
    );

    let mut stream = std::pin::pin!(listener.notifications_stream());
    for head in [1, 4, 5] {
        let n = notified(&mut stream, "a notification per numbering").await;
        assert_eq!(n.payload, format!("{ORG}:{head}"));
    }

    // A bulk append that rolls back leaves no number behind it.
    bulk.batch_execute(&format!("BEGIN; {}; ROLLBACK", batch(&["never"])))
        .await
        .unwrap();
    bulk.batch_execute(&batch(&["after"])).await.unwrap();
    let last = numbers(&mut bulk).await.pop().unwrap();
    assert_eq!(last, ("after".to_owned(), Some(6)));
}
