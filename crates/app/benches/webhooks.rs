//! Webhook delivery from commit to receiver, against the real app and a receiver on
//! loopback (bounded in count and time):
//! - throughput: 1,500 events committed at once to an organization with 4 subscriptions
//!   (6,000 deliveries), delivered by one instance running 1, then 2 delivery workers;
//! - lag: 100 events/s committed for 20 s to one subscription; median and p99 from the
//!   commit returning to the receiver getting the request.
//!
//! Run with `just bench` (or `cargo bench -p nexus-app --bench webhooks`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::cast_precision_loss)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use diesel::sql_types::Uuid as SqlUuid;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use nexus_app::testing::{TestApp, TestUser};
use serde_json::json;

const EVENTS: i64 = 1_500;
const SUBSCRIPTIONS: usize = 4;
const LAG_RATE: u64 = 100;
const LAG_PHASE: Duration = Duration::from_secs(20);

type Arrivals = Arc<Mutex<Vec<(String, Instant)>>>;

async fn receive(req: HttpRequest, arrivals: web::Data<Arrivals>) -> HttpResponse {
    let id = req
        .headers()
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    arrivals.lock().unwrap().push((id, Instant::now()));
    HttpResponse::NoContent().finish()
}

async fn receiver() -> (String, Arrivals) {
    let arrivals: Arrivals = Arc::default();
    let shared = arrivals.clone();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(shared.clone()))
            .default_service(web::to(receive))
    })
    .workers(1)
    .disable_signals()
    .bind(("127.0.0.1", 0))
    .unwrap();
    let port = server.addrs()[0].port();
    tokio::spawn(server.run());
    (format!("http://127.0.0.1:{port}/hook"), arrivals)
}

async fn subscribe(app: &TestApp, user: &TestUser, url: &str) {
    let res = reqwest::Client::new()
        .post(app.url("/api/v1/webhooks"))
        .bearer_auth(&user.access_token)
        .json(&json!({"url": url, "eventTypes": ["*"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 201);
}

async fn wait_for(arrivals: &Arrivals, n: usize, limit: Duration) -> bool {
    let started = Instant::now();
    while arrivals.lock().unwrap().len() < n {
        if started.elapsed() > limit {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1e3
}

const INSERT_ONE: &str = "INSERT INTO events (id, organization_id, type, actor, payload)
     VALUES (gen_random_uuid(), $1, 'contact.updated', '{\"kind\":\"system\"}',
             jsonb_build_object('contact', jsonb_build_object('id', gen_random_uuid())))
     RETURNING id";

#[derive(diesel::QueryableByName)]
struct Inserted {
    #[diesel(sql_type = SqlUuid)]
    id: uuid::Uuid,
}

#[tokio::main]
async fn main() {
    nexus_adapters_postgres::testing::use_bench_cluster();
    // The API instance delivers nothing; delivery instances are started per phase.
    let app = TestApp::spawn_with(|c| c.webhooks.workers = 0, None).await;
    let mut conn = AsyncPgConnection::establish(app.db.url()).await.unwrap();

    println!("webhook delivery, commit → loopback receiver ({SUBSCRIPTIONS} subscriptions):");
    for workers in [1usize, 2] {
        let owner = app.signup(&format!("throughput{workers}@bench.test")).await;
        let (url, arrivals) = receiver().await;
        for _ in 0..SUBSCRIPTIONS {
            subscribe(&app, &owner, &url).await;
        }
        diesel::sql_query(
            "INSERT INTO events (id, organization_id, type, actor, payload)
             SELECT gen_random_uuid(), $1, 'contact.updated', '{\"kind\":\"system\"}',
                    jsonb_build_object('contact', jsonb_build_object('n', n))
             FROM generate_series(1, $2) AS n",
        )
        .bind::<SqlUuid, _>(owner.org_id)
        .bind::<diesel::sql_types::BigInt, _>(EVENTS)
        .execute(&mut conn)
        .await
        .unwrap();
        // Fan-out happens as the events are numbered: done here, before the clock starts.
        nexus_adapters_postgres::numberer::number_pending(&mut conn)
            .await
            .unwrap();
        let expected = EVENTS as usize * SUBSCRIPTIONS;
        let started = Instant::now();
        let deliverer = app.spawn_sibling(|c| c.webhooks.workers = workers).await;
        let complete = wait_for(&arrivals, expected, Duration::from_secs(180)).await;
        let secs = started.elapsed().as_secs_f64();
        deliverer.handle.stop(false).await;
        let got = arrivals.lock().unwrap().len();
        println!(
            "  {workers} worker(s): {got}/{expected} deliveries in {secs:.1} s = {:.0} deliveries/s ({:.0} events/s × {SUBSCRIPTIONS}){}",
            got as f64 / secs,
            got as f64 / secs / SUBSCRIPTIONS as f64,
            if complete {
                ""
            } else {
                " (stopped at the time limit)"
            }
        );
    }

    let owner = app.signup("lag@bench.test").await;
    let (url, arrivals) = receiver().await;
    subscribe(&app, &owner, &url).await;
    let deliverer = app.spawn_sibling(|_| {}).await;
    // Written through the API instance's pool, as its handlers write: the commit rings
    // that instance's numberer, whose numbering fans out and notifies the deliverer.
    let mut writer = app.pool.get().await.unwrap();
    let mut committed: HashMap<String, Instant> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / LAG_RATE));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let until = Instant::now() + LAG_PHASE;
    while Instant::now() < until {
        tick.tick().await;
        let org = owner.org_id;
        let row: Inserted = writer
            .transaction(async |c| {
                diesel::sql_query(INSERT_ONE)
                    .bind::<SqlUuid, _>(org)
                    .get_result(c)
                    .await
            })
            .await
            .unwrap();
        committed.insert(row.id.to_string(), Instant::now());
    }
    wait_for(&arrivals, committed.len(), Duration::from_secs(60)).await;
    deliverer.handle.stop(false).await;
    let mut lags: Vec<Duration> = arrivals
        .lock()
        .unwrap()
        .iter()
        .filter_map(|(id, at)| committed.get(id).map(|c| at.saturating_duration_since(*c)))
        .collect();
    lags.sort();
    {
        // A message that arrived twice: when each copy arrived, from the phase's start.
        let arrivals = arrivals.lock().unwrap();
        let mut seen: HashMap<&str, Instant> = HashMap::new();
        for (id, at) in arrivals.iter() {
            if let Some(first) = seen.get(id.as_str()) {
                let started = until - LAG_PHASE;
                println!(
                    "    {id} arrived twice: at {:.3} s and {:.3} s",
                    first.saturating_duration_since(started).as_secs_f64(),
                    at.saturating_duration_since(started).as_secs_f64()
                );
            }
            seen.insert(id, *at);
        }
    }
    // A retried or re-leased delivery explains a long tail; show them.
    #[derive(diesel::QueryableByName)]
    struct Attempt {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        attempt: i32,
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Integer>)]
        status_code: Option<i32>,
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
        error: Option<String>,
        #[diesel(sql_type = diesel::sql_types::Integer)]
        duration_ms: i32,
    }
    let odd: Vec<Attempt> = diesel::sql_query(
        "SELECT a.attempt, a.status_code, a.error, a.duration_ms FROM webhook_attempts a
         WHERE a.organization_id = $1 AND (a.attempt > 1 OR a.status_code IS DISTINCT FROM 204)
         ORDER BY a.attempted_at LIMIT 20",
    )
    .bind::<SqlUuid, _>(owner.org_id)
    .load(&mut conn)
    .await
    .unwrap();
    for a in &odd {
        println!(
            "    attempt {} answered {:?} in {} ms: {}",
            a.attempt,
            a.status_code,
            a.duration_ms,
            a.error.as_deref().unwrap_or("")
        );
    }
    println!(
        "  lag at {LAG_RATE} events/s for {} s (default workers): {} delivered of {}, median {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        LAG_PHASE.as_secs(),
        lags.len(),
        committed.len(),
        pct(&lags, 0.5),
        pct(&lags, 0.99),
        pct(&lags, 1.0)
    );
}
