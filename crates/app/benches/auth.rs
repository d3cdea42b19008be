//! Authentication under load, on this machine, against the real app and database
//! (loopback only, bounded in time):
//! - login throughput and latency with 16 concurrent clients at bcrypt cost 12, next to
//!   the physical limit (cores / one verification's time), and `/health/live` p99 during
//!   it (bcrypt must not block the async executor);
//! - the cost of authenticating one request (JWT verification + session lookup).
//!
//! Run with `just bench` (or `cargo bench -p nexus-app --bench auth`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::cast_precision_loss)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nexus_app::testing::{TEST_PASSWORD, TestApp};
use nexus_ports::security::TokenCodec;
use serde_json::json;

const CLIENTS: usize = 16;
const LOGIN_PHASE: Duration = Duration::from_secs(20);
const AUTH_ITERATIONS: u32 = 5_000;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[tokio::main]
async fn main() {
    nexus_adapters_postgres::testing::use_bench_cluster();
    let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
    let app = TestApp::spawn_with(
        |c| {
            c.bcrypt_cost = 12;
            c.workers = cores;
            c.db_pool_size = 10;
            c.db_acquire_timeout = Duration::from_secs(2);
        },
        None,
    )
    .await;
    let user = app.signup("bench@example.com").await;

    // The physical limit: one cost-12 verification on one core, measured here.
    let hash = bcrypt::hash(TEST_PASSWORD, 12).unwrap();
    let started = Instant::now();
    for _ in 0..5 {
        assert!(bcrypt::verify(TEST_PASSWORD, &hash).unwrap());
    }
    let verify = started.elapsed() / 5;
    let limit = cores as f64 / verify.as_secs_f64();

    // Login load plus a liveness prober.
    let stop = Arc::new(AtomicBool::new(false));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CLIENTS)
        .build()
        .unwrap();
    let mut workers = Vec::new();
    for _ in 0..CLIENTS {
        let (client, url, stop) = (client.clone(), app.url("/api/v1/auth/login"), stop.clone());
        workers.push(tokio::spawn(async move {
            let mut ok = Vec::new();
            let mut failed = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let res = client
                    .post(&url)
                    .json(&json!({"email": "bench@example.com", "password": TEST_PASSWORD}))
                    .send()
                    .await
                    .unwrap();
                let ok_status = res.status() == 200;
                let _ = res.bytes().await;
                if ok_status {
                    ok.push(t.elapsed());
                } else {
                    failed += 1;
                }
            }
            (ok, failed)
        }));
    }
    let prober = {
        let (client, url, stop) = (client.clone(), app.url("/health/live"), stop.clone());
        tokio::spawn(async move {
            let mut samples = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let res = client.get(&url).send().await.unwrap();
                assert_eq!(res.status(), 200);
                res.bytes().await.unwrap();
                samples.push(t.elapsed());
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            samples
        })
    };
    let started = Instant::now();
    tokio::time::sleep(LOGIN_PHASE).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    let mut failed = 0;
    for w in workers {
        let (ok, f) = w.await.unwrap();
        latencies.extend(ok);
        failed += f;
    }
    let elapsed = started.elapsed();
    let mut health = prober.await.unwrap();
    latencies.sort();
    health.sort();
    let rate = latencies.len() as f64 / elapsed.as_secs_f64();

    println!(
        "== login, {CLIENTS} concurrent clients, bcrypt cost 12, {} s, {cores} cores",
        elapsed.as_secs()
    );
    println!(
        "one verification: {:.0} ms on one core -> physical limit {limit:.2} logins/s",
        ms(verify)
    );
    println!(
        "logins: {} ok, {failed} failed, {rate:.2}/s = {:.0}% of the limit; p50 {:.0} ms, p99 {:.0} ms",
        latencies.len(),
        100.0 * rate / limit,
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99))
    );
    println!(
        "GET /health/live during it: {} probes, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        health.len(),
        ms(percentile(&health, 0.5)),
        ms(percentile(&health, 0.99)),
        ms(health.last().copied().unwrap_or_default())
    );

    // Authenticating a request, in-process: JWT verification + the session lookup.
    let codec = nexus_app::crypto::JwtCodec::new(
        b"test-secret-that-is-long-enough-for-hs256",
        Duration::from_secs(900),
    );
    let started = Instant::now();
    for _ in 0..AUTH_ITERATIONS {
        codec.verify(&user.access_token).unwrap();
    }
    let jwt = started.elapsed() / AUTH_ITERATIONS;
    let started = Instant::now();
    for _ in 0..AUTH_ITERATIONS {
        app.auth
            .authenticate(user.access_token.clone())
            .await
            .unwrap();
    }
    let full = started.elapsed() / AUTH_ITERATIONS;
    println!("== authenticating one request ({AUTH_ITERATIONS} sequential)");
    println!(
        "JWT verify: {:.1} us; JWT + session lookup (one primary-key join): {:.1} us",
        jwt.as_secs_f64() * 1e6,
        full.as_secs_f64() * 1e6
    );
}
