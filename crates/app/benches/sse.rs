//! Memory per open event stream: the `nexus` binary runs as its own process (so the
//! figure is the server's alone) on a fresh database; the bench opens 1,000 SSE streams
//! to it over loopback, compares the server's resident memory before and after, then
//! commits one event and times its fan-out to every stream. Bounded: at most 1,000
//! connections, every wait has a timeout, the server is killed at the end.
//! `NEXUS_BENCH_STREAMS` changes the number of streams.
//!
//! Run with `just bench` (or `cargo bench -p nexus-app --bench sse`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::cast_precision_loss)]

use std::time::{Duration, Instant};

use nexus_adapters_postgres::testing::TestDatabase;
use nexus_app::sse_client::SseClient;
use serde_json::{Value, json};

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn open(client: &reqwest::Client, url: &str, token: &str) -> SseClient {
    let res = client.get(url).bearer_auth(token).send().await.unwrap();
    let mut sse = SseClient::new(res);
    assert_eq!(sse.next_frame().await.comments, vec!["connected"]);
    sse
}

#[tokio::main]
async fn main() {
    nexus_adapters_postgres::testing::use_bench_cluster();
    let streams: usize = std::env::var("NEXUS_BENCH_STREAMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000)
        .min(1_000);
    let db = TestDatabase::create().await;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut server = tokio::process::Command::new(env!("CARGO_BIN_EXE_nexus"))
        .arg("serve")
        .env("DATABASE_URL", db.url())
        .env("NEXUS_BIND", format!("127.0.0.1:{port}"))
        .env(
            "NEXUS_JWT_SECRET",
            "bench-secret-that-is-long-enough-for-hs256",
        )
        .env("NEXUS_BCRYPT_COST", "10")
        .env("NEXUS_WORKERS", "2")
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = server.id().unwrap();
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while client
        .get(format!("{base}/health/ready"))
        .send()
        .await
        .map(|r| r.status().is_success())
        .ok()
        != Some(true)
    {
        assert!(Instant::now() < deadline, "the server did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let res = client
        .post(format!("{base}/api/v1/auth/register"))
        .json(
            &json!({ "email": "sse@bench.io", "password": "correct-horse-battery",
                       "name": "Bench", "organizationName": "SSE bench" }),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 201);
    let token = res.json::<Value>().await.unwrap()["accessToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let url = format!("{base}/api/v1/events/stream");

    // Warm-up: one stream and one event, so one-time allocations (the fan-out channel,
    // worker buffers) are in the baseline.
    let mut warm = open(&client, &url, &token).await;
    let create = || async {
        let res = client
            .post(format!("{base}/api/v1/contacts"))
            .bearer_auth(&token)
            .json(&json!({ "firstName": "Fan", "lastName": "Out" }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 201);
    };
    create().await;
    warm.next_event().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_kib(pid);

    // Each stream is its own HTTP/1.1 connection (a client per stream: no pooling).
    let started = Instant::now();
    let mut open_streams = Vec::with_capacity(streams);
    for chunk in (0..streams).collect::<Vec<_>>().chunks(100) {
        let batch = chunk.iter().map(|_| {
            let client = reqwest::Client::new();
            let (url, token) = (url.clone(), token.clone());
            tokio::spawn(async move { open(&client, &url, &token).await })
        });
        for handle in batch.collect::<Vec<_>>() {
            open_streams.push(handle.await.unwrap());
        }
    }
    let opened_in = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_kib(pid);
    let per_stream = (after.saturating_sub(before)) as f64 * 1024.0 / streams as f64;

    // One event, fanned out to every stream.
    let t = Instant::now();
    create().await;
    let mut received = Vec::with_capacity(streams);
    for mut sse in open_streams {
        received.push(tokio::spawn(async move {
            sse.next_event().await;
            (Instant::now(), sse)
        }));
    }
    let mut last = t;
    let mut kept = Vec::new();
    for r in received {
        let (at, sse) = r.await.unwrap();
        last = last.max(at);
        kept.push(sse);
    }
    let fan_out = last - t;
    let after_event = rss_kib(pid);

    println!(
        "open SSE streams:            {streams} (opened in {:.2} s)",
        opened_in.as_secs_f64()
    );
    println!(
        "server RSS before:           {:.1} MiB",
        before as f64 / 1024.0
    );
    println!(
        "server RSS with the streams: {:.1} MiB",
        after as f64 / 1024.0
    );
    println!(
        "memory per open stream:      {:.1} KiB",
        per_stream / 1024.0
    );
    println!(
        "one event to every stream:   {:.1} ms (commit included); RSS then {:.1} MiB",
        fan_out.as_secs_f64() * 1e3,
        after_event as f64 / 1024.0
    );
    drop(kept);
    drop(warm);
    server.kill().await.ok();
}
