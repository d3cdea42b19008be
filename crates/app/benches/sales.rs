//! The board and deal moves with 200,000 deals across 3 pipelines in one organization,
//! on this machine, against the real app (loopback only, bounded in time). Moves are
//! also compared with pgbench running the same statements at the same concurrency.
//!
//! Run with `just bench` (or `cargo bench -p nexus-app --bench sales`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::cast_precision_loss)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use diesel::sql_types::Uuid as SqlUuid;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use nexus_app::testing::TestApp;
use serde_json::{Value, json};

const DEALS: i64 = 200_000;
const CONNECTIONS: usize = 8;
const PHASE: Duration = Duration::from_secs(15);

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1e3
}

async fn load<F, Fut>(make: F) -> (f64, Vec<Duration>)
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let make = Arc::new(make);
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for worker in 0..CONNECTIONS {
        let (make, stop) = (make.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut i = 0u64;
            while !AtomicBool::load(&stop, Ordering::Relaxed) {
                let t = Instant::now();
                assert!(make(worker, i).await, "request failed");
                lat.push(t.elapsed());
                i += 1;
            }
            lat
        }));
    }
    let started = Instant::now();
    tokio::time::sleep(PHASE).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort();
    (all.len() as f64 / elapsed, all)
}

#[tokio::main]
async fn main() {
    nexus_adapters_postgres::testing::use_bench_cluster();
    let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
    let app = TestApp::spawn_with(
        |c| {
            c.workers = cores;
            c.db_pool_size = 16;
            c.db_acquire_timeout = Duration::from_secs(5);
        },
        None,
    )
    .await;
    let owner = app.signup("bench@example.com").await;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(CONNECTIONS)
        .build()
        .unwrap();
    for name in ["Enterprise", "Partners"] {
        let body = json!({"name": name, "stages": [
            {"name": "Open", "probability": 20, "kind": "open"}, {"name": "Demo", "probability": 40, "kind": "open"},
            {"name": "Contract", "probability": 80, "kind": "open"}, {"name": "Won", "probability": 100, "kind": "won"},
            {"name": "Lost", "probability": 0, "kind": "lost"}]});
        let res = http
            .post(app.url("/api/v1/pipelines"))
            .bearer_auth(&owner.access_token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
    }

    // Seed set-based: 2,000 contacts and 200,000 deals spread over every stage.
    let seeded = Instant::now();
    let mut conn = AsyncPgConnection::establish(app.db.url()).await.unwrap();
    let org = owner.org_id;
    conn.batch_execute(&format!(
        "INSERT INTO contacts (organization_id, id, first_name, last_name)
         SELECT '{org}', gen_random_uuid(), 'Bench', 'Contact ' || g FROM generate_series(1, 2000) g;
         CREATE TABLE bench_stages AS SELECT id, pipeline_id, kind, probability,
             row_number() OVER (ORDER BY pipeline_id, position) - 1 AS rn FROM pipeline_stages WHERE organization_id = '{org}';
         CREATE TABLE bench_contacts AS SELECT id, row_number() OVER (ORDER BY id) - 1 AS rn FROM contacts WHERE organization_id = '{org}';
         INSERT INTO deals (organization_id, id, pipeline_id, stage_id, contact_id, title, value_minor, currency, status,
                            probability, position, stage_entered_at)
         SELECT '{org}', gen_random_uuid(), s.pipeline_id, s.id, c.id, 'Deal ' || g, (random() * 10000000)::bigint, 'USD',
                CASE s.kind WHEN 'won' THEN 'WON' WHEN 'lost' THEN 'LOST' ELSE 'OPEN' END, s.probability, g, now()
         FROM generate_series(0, {last}) g
         JOIN bench_stages s ON s.rn = g % (SELECT count(*) FROM bench_stages)
         JOIN bench_contacts c ON c.rn = g % 2000;
         CREATE TABLE bench_deals AS SELECT row_number() OVER (ORDER BY id) AS n, id, pipeline_id FROM deals
             WHERE organization_id = '{org}' AND status = 'OPEN'
             AND pipeline_id = (SELECT id FROM pipelines WHERE organization_id = '{org}' AND is_default);
         CREATE UNIQUE INDEX ON bench_deals (n);
         ANALYZE;",
        last = DEALS - 1
    ))
    .await
    .unwrap();
    println!(
        "seeded {DEALS} deals in {:.1} s",
        seeded.elapsed().as_secs_f64()
    );

    let pipelines: Value = http
        .get(app.url("/api/v1/pipelines"))
        .bearer_auth(&owner.access_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let default = pipelines["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["isDefault"] == true)
        .unwrap()
        .clone();
    let pid = default["id"].as_str().unwrap().to_owned();
    let open_stages: Vec<String> = default["stages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["kind"] == "open")
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect();

    // Board.
    let (url, token, client) = (
        app.url(&format!("/api/v1/pipelines/{pid}/board")),
        owner.access_token.clone(),
        http.clone(),
    );
    let (rate, lat) = load(move |_, _| {
        let (url, token, client) = (url.clone(), token.clone(), client.clone());
        async move {
            // Read the body: a dropped, unread body closes the connection instead of reusing it.
            let res = client.get(url).bearer_auth(token).send().await.unwrap();
            res.status() == 200 && res.bytes().await.is_ok()
        }
    })
    .await;
    println!(
        "== board (default pipeline, {} deals in it), {CONNECTIONS} connections: {rate:.0} req/s, p50 {:.1} ms, p99 {:.1} ms",
        DEALS / 3,
        pct(&lat, 0.5),
        pct(&lat, 0.99)
    );

    // Moves of open deals of the default pipeline between its open stages.
    #[derive(diesel::QueryableByName)]
    struct Id {
        #[diesel(sql_type = SqlUuid)]
        id: uuid::Uuid,
    }
    let ids: Vec<Id> = diesel::sql_query(format!(
        "SELECT id FROM bench_deals WHERE pipeline_id = '{pid}' ORDER BY n"
    ))
    .load(&mut conn)
    .await
    .unwrap();
    let ids: Arc<Vec<String>> = Arc::new(ids.into_iter().map(|i| i.id.to_string()).collect());
    let stages = Arc::new(open_stages);
    let stage_list = stages
        .iter()
        .map(|s| format!("'{s}'"))
        .collect::<Vec<_>>()
        .join(",");
    let stage_count = stages.len();
    let (base, token, client) = (
        app.url("/api/v1/deals"),
        owner.access_token.clone(),
        http.clone(),
    );
    let (move_rate, lat) = load(move |worker, i| {
        let (base, token, client, ids, stages) = (
            base.clone(),
            token.clone(),
            client.clone(),
            ids.clone(),
            stages.clone(),
        );
        async move {
            let n = (worker as u64 * 7919 + i * 104_729) as usize;
            let id = &ids[n % ids.len()];
            let stage = &stages[(n / 3) % stages.len()];
            let res = client
                .post(format!("{base}/{id}/move"))
                .bearer_auth(token)
                .json(&json!({"stageId": stage}))
                .send()
                .await
                .unwrap();
            res.status() == 200 && res.bytes().await.is_ok()
        }
    })
    .await;
    println!(
        "== move, {CONNECTIONS} connections: {move_rate:.0} req/s, p50 {:.1} ms, p99 {:.1} ms",
        pct(&lat, 0.5),
        pct(&lat, 0.99)
    );

    // pgbench running the statements one move sends, at the same concurrency.
    let script = std::env::temp_dir().join(format!("nexus-move-{}.sql", std::process::id()));
    std::fs::write(
        &script,
        format!(
            "\\set n random(1, {count})
\\set s random(0, {last_stage})
SELECT m.role FROM sessions s JOIN memberships m ON m.organization_id = s.organization_id AND m.user_id = s.user_id LIMIT 1;
SELECT settings FROM organizations WHERE id = '{org}';
SELECT * FROM deals WHERE organization_id = '{org}' AND id = (SELECT id FROM bench_deals WHERE n = :n);
SELECT * FROM pipelines WHERE organization_id = '{org}' AND id = '{pid}';
SELECT * FROM pipeline_stages WHERE organization_id = '{org}' AND pipeline_id = '{pid}' ORDER BY position;
BEGIN;
SELECT max(position) FROM deals WHERE organization_id = '{org}' AND stage_id = (ARRAY[{stage_list}]::uuid[])[:s + 1];
UPDATE deals SET stage_id = (ARRAY[{stage_list}]::uuid[])[:s + 1], version = version + 1, updated_at = now(), position = position + 1
  WHERE organization_id = '{org}' AND id = (SELECT id FROM bench_deals WHERE n = :n) RETURNING *;
UPDATE deal_stage_history SET left_at = now() WHERE organization_id = '{org}' AND deal_id = (SELECT id FROM bench_deals WHERE n = :n) AND left_at IS NULL;
INSERT INTO deal_stage_history (organization_id, deal_id, stage_id, entered_at) VALUES ('{org}', (SELECT id FROM bench_deals WHERE n = :n), (ARRAY[{stage_list}]::uuid[])[:s + 1], clock_timestamp());
INSERT INTO activities (organization_id, id, type, subject, metadata, deal_id, occurred_at) VALUES ('{org}', gen_random_uuid(), 'DEAL_STAGE_CHANGED', 'moved', '{{}}', (SELECT id FROM bench_deals WHERE n = :n), now());
INSERT INTO events (id, organization_id, type, actor, payload) VALUES (gen_random_uuid(), '{org}', 'deal.stage_changed', '{{}}', '{{}}');
COMMIT;
",
            count = ids_len(&mut conn, &pid).await,
            last_stage = stage_count - 1,
        ),
    )
    .unwrap();
    let url = app.db.url().to_owned();
    let (host, rest) = url
        .trim_start_matches("postgres://postgres@")
        .split_once(':')
        .unwrap();
    let (port, db) = rest.split_once('/').unwrap();
    let bin = nexus_adapters_postgres::cluster::find_bin_dir()
        .unwrap()
        .join("pgbench");
    let bin = if bin.exists() {
        bin
    } else {
        std::path::PathBuf::from("/usr/lib/postgresql/15/bin/pgbench")
    };
    let out = std::process::Command::new(bin)
        .args([
            "-h",
            host,
            "-p",
            port,
            "-U",
            "postgres",
            "-n",
            "-c",
            &CONNECTIONS.to_string(),
            "-j",
            "2",
        ])
        .args(["-T", &PHASE.as_secs().to_string(), "-f"])
        .arg(&script)
        .arg(db)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let tps: f64 = text
        .lines()
        .find(|l| l.starts_with("tps = "))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN);
    let _ = std::fs::remove_file(&script);
    println!(
        "pgbench, same statements, {CONNECTIONS} connections: {tps:.0} tps -> API/pgbench = {:.2}",
        move_rate / tps
    );
}

async fn ids_len(conn: &mut AsyncPgConnection, pid: &str) -> i64 {
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let row: N = diesel::sql_query(format!(
        "SELECT max(n) AS n FROM bench_deals WHERE pipeline_id = '{pid}'"
    ))
    .get_result(conn)
    .await
    .unwrap();
    row.n
}
