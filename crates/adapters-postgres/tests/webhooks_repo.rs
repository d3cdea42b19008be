//! The webhook queue against a real PostgreSQL: fan-out in the event's transaction, one
//! lease per subscription head, takeover after expiry, stale leases cannot record, purge.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use chrono::Utc;
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use nexus_adapters_postgres::pool::{Db, PoolSettings, build_pool};
use nexus_adapters_postgres::repo::webhooks::PgWebhookStore;
use nexus_adapters_postgres::testing::TestDatabase;
use nexus_domain::webhook::{AttemptDecision, DeliveryNext};
use nexus_domain::{OrgId, UserId, WebhookId};
use nexus_ports::webhooks::{AttemptReport, DeliveryStatus, NewWebhook, WebhookStore};
use uuid::Uuid;

const LEASE: Duration = Duration::from_secs(60);

async fn setup() -> (TestDatabase, PgWebhookStore, AsyncPgConnection, OrgId) {
    let db = TestDatabase::create().await;
    let pool = build_pool(
        db.url(),
        &PoolSettings {
            max_size: 6,
            ..PoolSettings::default()
        },
    )
    .unwrap();
    let store = PgWebhookStore::new(Db::new(pool, Duration::from_secs(2)));
    let org = OrgId::from_uuid(Uuid::now_v7());
    let mut conn = AsyncPgConnection::establish(db.url()).await.unwrap();
    conn.batch_execute(&format!(
        "INSERT INTO organizations (id, name, slug) VALUES ('{org}', 'Acme', 'acme')"
    ))
    .await
    .unwrap();
    (db, store, conn, org)
}

async fn subscribe(store: &PgWebhookStore, org: OrgId, events: &[&str]) -> WebhookId {
    store
        .create(
            org,
            NewWebhook {
                id: WebhookId::from_uuid(Uuid::now_v7()),
                url: "https://hooks.example.com/in".into(),
                description: None,
                event_types: events.iter().map(|e| (*e).to_owned()).collect(),
                active: true,
                secret: "whsec_dGVzdA==".into(),
                created_by: UserId::from_uuid(Uuid::now_v7()),
            },
        )
        .await
        .unwrap()
        .id
}

async fn emit(conn: &mut AsyncPgConnection, org: OrgId, event_type: &str, n: usize) {
    conn.batch_execute(&format!(
        "INSERT INTO events (id, organization_id, type, actor, payload)
         SELECT gen_random_uuid(), '{org}', '{event_type}', '{{\"kind\":\"system\"}}', jsonb_build_object('n', n)
         FROM generate_series(1, {n}) AS n"
    ))
    .await
    .unwrap();
    // Deliveries fan out when the committed events are numbered.
    conn.batch_execute("SELECT events_number(5000)")
        .await
        .unwrap();
}

fn ok_report() -> (AttemptReport, AttemptDecision) {
    (
        AttemptReport {
            attempted_at: Utc::now(),
            status_code: Some(200),
            error: None,
            response_body: Some("ok".into()),
            duration_ms: 3,
        },
        AttemptDecision {
            delivery: DeliveryNext::Succeeded,
            failing_since: None,
            disable: None,
        },
    )
}

#[tokio::test]
async fn events_fan_out_to_matching_active_subscriptions_in_their_transaction() {
    let (_db, store, mut conn, org) = setup().await;
    let all = subscribe(&store, org, &["*"]).await;
    let deals = subscribe(&store, org, &["deal.won"]).await;
    emit(&mut conn, org, "contact.created", 3).await;
    emit(&mut conn, org, "deal.won", 1).await;
    // A rolled-back event leaves no delivery behind.
    conn.batch_execute(&format!(
        "BEGIN; INSERT INTO events (id, organization_id, type, actor, payload)
         VALUES (gen_random_uuid(), '{org}', 'deal.won', '{{}}', '{{}}'); ROLLBACK;"
    ))
    .await
    .unwrap();

    let everything = store.deliveries(org, all, None, None, 50).await.unwrap();
    assert_eq!(everything.len(), 4);
    assert!(
        everything
            .iter()
            .all(|d| d.status == DeliveryStatus::Pending)
    );
    let won = store.deliveries(org, deals, None, None, 50).await.unwrap();
    assert_eq!(won.len(), 1);
    assert_eq!(won[0].event_type, "deal.won");
    assert_eq!(won[0].message_id, won[0].event_id.unwrap());

    // Another organization's subscription shows nothing to this one.
    let other = OrgId::from_uuid(Uuid::now_v7());
    assert!(
        store
            .deliveries(other, all, None, None, 50)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.get(other, all).await.unwrap().is_none());
}

#[tokio::test]
async fn one_lease_per_subscription_head_in_order_and_takeover_after_expiry() {
    let (_db, store, mut conn, org) = setup().await;
    let webhook = subscribe(&store, org, &["*"]).await;
    emit(&mut conn, org, "contact.created", 2).await;

    // Concurrent claimers: exactly one gets the head; the second event waits behind it.
    let claims =
        futures_util::future::join_all((0..4).map(|_| store.claim(LEASE, Uuid::now_v7()))).await;
    let won: Vec<_> = claims.into_iter().filter_map(|c| c.unwrap()).collect();
    assert_eq!(won.len(), 1);
    let first = won.into_iter().next().unwrap();
    assert_eq!(first.webhook_id, webhook);
    assert!(first.body.contains("\"n\": 1"), "{}", first.body);
    assert!(store.claim(LEASE, Uuid::now_v7()).await.unwrap().is_none());

    // The lease expires (the worker died): another worker takes the same head over, and
    // the dead worker's late outcome is not recorded.
    conn.batch_execute("UPDATE webhook_deliveries SET lease_until = now() - interval '1 second' WHERE lease_until IS NOT NULL")
        .await
        .unwrap();
    let again = store.claim(LEASE, Uuid::now_v7()).await.unwrap().unwrap();
    assert_eq!(again.id, first.id);
    let (report, decision) = ok_report();
    assert!(
        !store
            .finish(first, report.clone(), decision, None)
            .await
            .unwrap()
    );
    assert!(
        store
            .finish(again.clone(), report, decision, None)
            .await
            .unwrap()
    );

    let next = store.claim(LEASE, Uuid::now_v7()).await.unwrap().unwrap();
    assert!(next.body.contains("\"n\": 2"), "{}", next.body);
    let (delivery, attempts) = store
        .delivery(org, webhook, again.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(delivery.status, DeliveryStatus::Succeeded);
    assert_eq!(delivery.attempts, 1);
    assert_eq!(attempts.len(), 1);
}

#[tokio::test]
async fn inactive_subscriptions_get_nothing_and_old_deliveries_are_purged() {
    let (_db, store, mut conn, org) = setup().await;
    let webhook = subscribe(&store, org, &["*"]).await;
    emit(&mut conn, org, "contact.created", 2).await;
    store
        .update(
            org,
            webhook,
            nexus_ports::webhooks::WebhookPatch {
                active: Some(false),
                ..Default::default()
            },
            Some(1),
        )
        .await
        .unwrap();
    emit(&mut conn, org, "contact.created", 1).await;
    assert_eq!(
        store
            .deliveries(org, webhook, None, None, 50)
            .await
            .unwrap()
            .len(),
        2
    );
    assert!(
        store.claim(LEASE, Uuid::now_v7()).await.unwrap().is_none(),
        "paused"
    );

    conn.batch_execute(
        "UPDATE webhook_deliveries SET created_at = now() - interval '31 days'
         WHERE seq = (SELECT min(seq) FROM webhook_deliveries)",
    )
    .await
    .unwrap();
    let purged = store
        .purge_deliveries(Utc::now() - chrono::TimeDelta::days(30))
        .await
        .unwrap();
    assert_eq!(purged, 1);
    assert_eq!(
        store
            .deliveries(org, webhook, None, None, 50)
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn claims_are_not_stopped_by_events_in_flight_nor_by_each_other() {
    let (_db, store, mut conn, org) = setup().await;
    let mut hooks = Vec::new();
    for _ in 0..4 {
        hooks.push(subscribe(&store, org, &["*"]).await);
    }
    emit(&mut conn, org, "contact.created", 1).await;

    // An event being committed holds a key-share lock on each subscription (its new
    // delivery's foreign key): a claim must not skip the subscriptions for it.
    conn.batch_execute("BEGIN").await.unwrap();
    emit(&mut conn, org, "contact.updated", 1).await;
    let first = store
        .claim(LEASE, Uuid::now_v7())
        .await
        .unwrap()
        .expect("a due head despite the event in flight");

    // Concurrent claimers each get a different subscription's head; none comes back
    // empty-handed while heads are due.
    let claims = futures_util::future::join_all(
        (0..3).map(|_| async { store.claim(LEASE, Uuid::now_v7()).await.unwrap() }),
    )
    .await;
    conn.batch_execute("COMMIT").await.unwrap();
    let mut leased: Vec<WebhookId> = claims
        .into_iter()
        .map(|c| c.expect("every claimer gets a head").webhook_id)
        .chain([first.webhook_id])
        .collect();
    leased.sort_by_key(|w| w.as_uuid());
    leased.dedup();
    assert_eq!(leased.len(), 4, "one head per subscription, none twice");
    assert!(store.claim(LEASE, Uuid::now_v7()).await.unwrap().is_none());
}
