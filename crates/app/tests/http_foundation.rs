//! The HTTP foundation through the real actix app on a real database: problem+json for
//! every error, request ids, security headers, health, metrics, docs, pool limits.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use std::sync::atomic::{AtomicUsize, Ordering};

use actix_web::{HttpResponse, web};
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use nexus_adapters_http::problem::ApiError;
use nexus_adapters_postgres::admin::{connect_maintenance, with_database};
use nexus_adapters_postgres::testing::server_url;
use nexus_app::testing::TestApp;
use nexus_application::AppError;
use reqwest::StatusCode;
use serde_json::Value;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Echo {
    name: String,
}

static CONTENDED_CALLS: AtomicUsize = AtomicUsize::new(0);

fn test_routes(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/__test/contended",
        // Loses its race the first time, as a write that kept meeting concurrent ones.
        web::post().to(|| async {
            if CONTENDED_CALLS.fetch_add(1, Ordering::SeqCst) == 0 {
                Err(ApiError::from(AppError::contended(
                    "concurrent_moves",
                    "The deal kept changing; retry.",
                )))
            } else {
                Ok(HttpResponse::Created().body("written"))
            }
        }),
    )
    .route(
        "/__test/echo",
        web::post()
            .to(|body: web::Json<Echo>| async move { HttpResponse::Ok().body(body.name.clone()) }),
    )
    .route(
        "/__test/panic",
        web::get().to(|| async {
            if std::hint::black_box(true) {
                panic!("boom: secret internals");
            }
            HttpResponse::Ok().finish()
        }),
    )
    .route(
        "/__test/panic-post",
        web::post().to(|| async {
            if std::hint::black_box(true) {
                panic!("boom: a keyed write");
            }
            HttpResponse::Ok().finish()
        }),
    )
    .route(
        "/__test/slow",
        web::get().to(|| async {
            tokio::time::sleep(Duration::from_millis(800)).await;
            HttpResponse::Ok().body("finished")
        }),
    );
}

async fn spawn() -> TestApp {
    TestApp::spawn_with(|c| c.body_limit = 2048, Some(test_routes)).await
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn problem(res: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(res.status().as_u16(), status);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let request_id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], status);
    assert_eq!(body["code"], code);
    assert_eq!(body["type"], format!("urn:nexus:problem:{code}"));
    assert!(body["title"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(body["detail"].as_str().is_some_and(|t| !t.is_empty()));
    assert_eq!(
        body["requestId"], request_id,
        "the body quotes the header's request id"
    );
    body
}

#[tokio::test]
async fn every_error_is_problem_json_with_a_stable_code() {
    let app = spawn().await;
    let c = client();

    problem(
        c.get(app.url("/no/such/route")).send().await.unwrap(),
        404,
        "not_found",
    )
    .await;

    let res = c.delete(app.url("/health/live")).send().await.unwrap();
    assert_eq!(res.headers()["allow"], "GET, HEAD");
    problem(res, 405, "method_not_allowed").await;

    let res = c
        .post(app.url("/__test/echo"))
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();
    problem(res, 400, "malformed_request").await;

    let res = c
        .post(app.url("/__test/echo"))
        .json(&serde_json::json!({"name": "a", "extra": 1}))
        .send()
        .await
        .unwrap();
    let body = problem(res, 400, "invalid_body").await;
    assert!(
        body["detail"].as_str().unwrap().contains("extra"),
        "names the unknown field: {body}"
    );

    let res = c
        .post(app.url("/__test/echo"))
        .header("content-type", "text/plain")
        .body("hi")
        .send()
        .await
        .unwrap();
    problem(res, 415, "unsupported_media_type").await;

    let big = serde_json::json!({"name": "x".repeat(4096)});
    let res = c
        .post(app.url("/__test/echo"))
        .json(&big)
        .send()
        .await
        .unwrap();
    problem(res, 413, "payload_too_large").await;

    let ok = c
        .post(app.url("/__test/echo"))
        .json(&serde_json::json!({"name": "ok"}))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_panicking_handler_answers_500_without_internals_and_the_server_lives_on() {
    let app = spawn().await;
    let c = client();
    let res = c
        .get(app.url("/__test/panic"))
        .header("x-request-id", "panic-req-1")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "panic-req-1");
    let body = problem(res, 500, "internal_error").await;
    assert!(
        !body.to_string().contains("boom"),
        "no panic message in the body: {body}"
    );
    // The worker survived: the same single-worker app still answers.
    for _ in 0..3 {
        let res = c.get(app.url("/health/live")).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
}

/// A panic is a 500 like any other: the key it ran under is released, so the retry
/// runs instead of finding the key "in flight" for minutes.
#[tokio::test]
async fn a_panicking_keyed_post_releases_its_idempotency_key() {
    let app = spawn().await;
    let user = app.signup("panic@keys.io").await;
    for _ in 0..2 {
        let res = client()
            .post(app.url("/__test/panic-post"))
            .bearer_auth(&user.access_token)
            .header("idempotency-key", "panic-key-1")
            .send()
            .await
            .unwrap();
        problem(res, 500, "internal_error").await;
    }
}

/// A 409 that says to retry (`Retry-After`) is not stored under the key: the retry runs
/// and gets the write's own answer, not the first attempt's 409 for a day.
#[tokio::test]
async fn a_contended_write_is_not_replayed_to_its_retry() {
    let app = spawn().await;
    let user = app.signup("contended@keys.io").await;
    let send = || {
        client()
            .post(app.url("/__test/contended"))
            .bearer_auth(&user.access_token)
            .header("idempotency-key", "contended-key-1")
            .send()
    };
    let first = send().await.unwrap();
    assert_eq!(first.headers()["retry-after"], "1");
    problem(first, 409, "concurrent_moves").await;
    let retry = send().await.unwrap();
    assert_eq!(retry.status().as_u16(), 201);
    assert_eq!(retry.text().await.unwrap(), "written");
    // The write's answer is the one kept for the key.
    let replay = send().await.unwrap();
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(CONTENDED_CALLS.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn request_ids_are_echoed_or_generated_and_unsafe_ones_replaced() {
    let app = spawn().await;
    let c = client();
    let res = c
        .get(app.url("/health/live"))
        .header("x-request-id", "client-abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "client-abc-123");

    let a = c.get(app.url("/health/live")).send().await.unwrap();
    let b = c.get(app.url("/health/live")).send().await.unwrap();
    let (a, b) = (
        a.headers()["x-request-id"].to_str().unwrap(),
        b.headers()["x-request-id"].to_str().unwrap(),
    );
    assert_eq!(a.len(), 32);
    assert_ne!(a, b);

    let res = c
        .get(app.url("/health/live"))
        .header("x-request-id", "evil\tid")
        .send()
        .await
        .unwrap();
    assert_ne!(res.headers()["x-request-id"], "evil\tid");
}

#[tokio::test]
async fn api_responses_carry_security_headers() {
    let app = spawn().await;
    let res = client().get(app.url("/health/live")).send().await.unwrap();
    assert_eq!(res.headers()["x-content-type-options"], "nosniff");
    assert_eq!(res.headers()["referrer-policy"], "no-referrer");
    assert_eq!(res.headers()["cache-control"], "no-store");
    assert!(
        res.headers().get("strict-transport-security").is_none(),
        "no HSTS unless TLS is configured"
    );

    let tls = TestApp::spawn_with(|c| c.hsts = true, None).await;
    let res = client().get(tls.url("/health/live")).send().await.unwrap();
    assert!(
        res.headers()["strict-transport-security"]
            .to_str()
            .unwrap()
            .starts_with("max-age=")
    );
}

#[tokio::test]
async fn an_exhausted_pool_answers_503_within_the_acquire_timeout() {
    let timeout = Duration::from_millis(300);
    let app = TestApp::spawn_with(
        |c| {
            c.db_pool_size = 1;
            c.db_acquire_timeout = timeout;
        },
        None,
    )
    .await;
    let c = client();
    assert_eq!(
        c.get(app.url("/health/ready"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );

    let held = app.pool.get().await.unwrap();
    let started = Instant::now();
    let res = c.get(app.url("/health/ready")).send().await.unwrap();
    let waited = started.elapsed();
    assert_eq!(res.headers()["retry-after"], "1");
    problem(res, 503, "database_busy").await;
    assert!(
        waited >= timeout && waited < timeout + Duration::from_secs(1),
        "waited {waited:?}"
    );

    drop(held);
    assert_eq!(
        c.get(app.url("/health/ready"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
}

async fn set_connections_allowed(db_name: &str, allowed: bool) {
    let mut admin = connect_maintenance(server_url()).await.unwrap();
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {db_name} WITH ALLOW_CONNECTIONS {allowed}"
        ))
        .await
        .unwrap();
    if !allowed {
        admin
            .batch_execute(&format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db_name}'"
            ))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn readiness_flips_to_503_while_the_database_is_gone_and_back_without_restart() {
    let app = spawn().await;
    let c = client();
    assert_eq!(
        c.get(app.url("/health/ready"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );

    // The database goes away: new connections are refused, open ones are killed.
    set_connections_allowed(app.db.name(), false).await;
    let res = c.get(app.url("/health/ready")).send().await.unwrap();
    assert!(
        res.headers().contains_key("retry-after"),
        "{:?}",
        res.status()
    );
    problem(res, 503, "database_unavailable").await;
    // Liveness does not depend on the database.
    assert_eq!(
        c.get(app.url("/health/live"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );

    set_connections_allowed(app.db.name(), true).await;
    let mut status = StatusCode::SERVICE_UNAVAILABLE;
    for _ in 0..20 {
        status = c
            .get(app.url("/health/ready"))
            .send()
            .await
            .unwrap()
            .status();
        if status == StatusCode::OK {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        status,
        StatusCode::OK,
        "ready again once the database is back"
    );
    // The app's own pool talks to the database again too.
    let url = with_database(server_url(), app.db.name()).unwrap();
    AsyncPgConnection::establish(&url).await.unwrap();
}

#[tokio::test]
async fn metrics_count_requests_by_route_template_and_show_the_pool() {
    let app = spawn().await;
    let c = client();
    c.get(app.url("/health/live")).send().await.unwrap();
    c.get(app.url("/nowhere/at/all")).send().await.unwrap();
    // A route inside its group's scope is counted under its whole template.
    let contact = app.url(&format!("/api/v1/contacts/{}", uuid::Uuid::now_v7()));
    let unauthenticated = c.get(contact).send().await.unwrap();
    assert_eq!(unauthenticated.status(), StatusCode::UNAUTHORIZED);
    let res = c.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = res.text().await.unwrap();
    assert!(
        text.contains(
            r#"nexus_http_requests_total{method="GET",route="/health/live",status="200"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains(
            r#"nexus_http_requests_total{method="GET",route="unmatched",status="404"} 1"#
        )
    );
    assert!(
        text.contains(
            r#"nexus_http_requests_total{method="GET",route="/api/v1/contacts/{id}",status="401"} 1"#
        ),
        "{text}"
    );
    assert!(text.contains(r#"nexus_http_request_duration_seconds_bucket{method="GET",route="/health/live",status="200",le="0.001"}"#));
    assert!(text.contains("nexus_db_pool_max_connections 4"));
    assert!(text.contains("nexus_db_pool_connections_in_use "));
    assert!(text.contains("nexus_db_pool_waiting "));
}

#[tokio::test]
async fn the_spec_and_swagger_ui_are_served_from_the_binary() {
    let app = spawn().await;
    let c = client();
    let spec: Value = c
        .get(app.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(spec["openapi"], "3.1.0");
    assert_eq!(
        spec,
        serde_json::to_value(nexus_adapters_http::openapi::spec()).unwrap()
    );

    let redirect = c.get(app.url("/docs")).send().await.unwrap();
    assert_eq!(redirect.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(redirect.headers()["location"], "/docs/");
    let page = c.get(app.url("/docs/")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.unwrap().contains("swagger-ui"));
    let asset = c
        .get(app.url("/docs/swagger-ui-bundle.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        asset.status(),
        StatusCode::OK,
        "assets are compiled in, not fetched from a CDN"
    );
}

#[tokio::test]
async fn graceful_stop_lets_in_flight_requests_finish() {
    let app = spawn().await;
    let url = app.url("/__test/slow");
    let live = app.url("/health/live");
    let in_flight = tokio::spawn(async move { client().get(url).send().await.unwrap() });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stopping = app.handle.stop(true);
    let res = in_flight.await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.text().await.unwrap(), "finished");
    stopping.await;
    app.server.await.unwrap().unwrap();
    assert!(
        client().get(live).send().await.is_err(),
        "no longer accepting"
    );
    assert!(app.pool.is_closed(), "the pool is closed on the way out");
}
