//! `Idempotency-Key` over HTTP: replay of the first response, a different body refused,
//! a concurrent duplicate told to wait, server errors released, keys per caller.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use actix_web::{HttpResponse, web};
use diesel::QueryableByName;
use diesel::sql_types::BigInt;
use diesel_async::RunQueryDsl;
use nexus_adapters_http::auth::Auth;
use nexus_app::testing::{TestApp, TestUser};
use serde_json::{Value, json};

static FLAKY_CALLS: AtomicUsize = AtomicUsize::new(0);

fn test_routes(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/__test/slow",
        web::post().to(|_auth: Auth| async {
            tokio::time::sleep(Duration::from_millis(700)).await;
            HttpResponse::Created().json(json!({"done": true}))
        }),
    )
    .route(
        "/__test/conditional",
        web::post().to(|_auth: Auth, req: actix_web::HttpRequest| async move {
            let version = req
                .headers()
                .get("if-match")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            HttpResponse::Ok().json(json!({"ifMatch": version}))
        }),
    )
    .route(
        "/__test/flaky",
        web::post().to(|_auth: Auth| async {
            if FLAKY_CALLS.fetch_add(1, Ordering::SeqCst) == 0 {
                HttpResponse::ServiceUnavailable().finish()
            } else {
                HttpResponse::Ok().json(json!({"attempt": std::sync::atomic::AtomicUsize::load(&FLAKY_CALLS, Ordering::SeqCst)}))
            }
        }),
    );
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    let mut conn = app.pool.get().await.unwrap();
    diesel::sql_query(sql)
        .get_result::<Count>(&mut conn)
        .await
        .unwrap()
        .n
}

async fn post(
    app: &TestApp,
    user: &TestUser,
    path: &str,
    key: &str,
    body: &Value,
) -> reqwest::Response {
    reqwest::Client::new()
        .post(app.url(path))
        .bearer_auth(&user.access_token)
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn same_key_same_body_replays_the_first_response() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@idem.io").await;
    let body = json!({"firstName": "Ada", "lastName": "Lovelace", "email": "ada@idem.io"});
    let first = post(&app, &owner, "/api/v1/contacts", "create-ada", &body).await;
    assert_eq!(first.status().as_u16(), 201);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let (location, etag) = (
        first.headers()["location"].clone(),
        first.headers()["etag"].clone(),
    );
    let first_body = first.bytes().await.unwrap();

    let again = post(&app, &owner, "/api/v1/contacts", "create-ada", &body).await;
    assert_eq!(again.status().as_u16(), 201);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.headers()["location"], location);
    assert_eq!(again.headers()["etag"], etag);
    assert_eq!(again.headers()["content-type"], "application/json");
    assert_eq!(
        again.bytes().await.unwrap(),
        first_body,
        "byte-identical body"
    );
    assert_eq!(count(&app, "SELECT count(*) AS n FROM contacts").await, 1);
    assert_eq!(
        count(
            &app,
            "SELECT count(*) AS n FROM events WHERE type = 'contact.created'"
        )
        .await,
        1
    );

    // The same key with another body: 422, nothing written.
    let other = post(
        &app,
        &owner,
        "/api/v1/contacts",
        "create-ada",
        &json!({"firstName": "Bob", "lastName": "B"}),
    )
    .await;
    assert_eq!(other.status().as_u16(), 422);
    assert_eq!(other.headers()["content-type"], "application/problem+json");
    let problem: Value = other.json().await.unwrap();
    assert_eq!(problem["code"], "idempotency_key_reused");
    assert_eq!(count(&app, "SELECT count(*) AS n FROM contacts").await, 1);

    // Errors below 500 are answers too, and replay as such.
    let dup = json!({"firstName": "Ada", "lastName": "Again", "email": "ada@idem.io"});
    let conflict = post(&app, &owner, "/api/v1/contacts", "dup-1", &dup).await;
    assert_eq!(conflict.status().as_u16(), 409);
    let replayed = post(&app, &owner, "/api/v1/contacts", "dup-1", &dup).await;
    assert_eq!(
        (
            replayed.status().as_u16(),
            replayed.headers()["idempotent-replayed"].to_str().unwrap()
        ),
        (409, "true")
    );

    // Keys belong to their caller: another user's identical key is a new request.
    let other_user = app.signup("other@idem.io").await;
    let theirs = post(&app, &other_user, "/api/v1/contacts", "create-ada", &body).await;
    assert_eq!(theirs.status().as_u16(), 201);
    assert!(theirs.headers().get("idempotent-replayed").is_none());

    // Malformed keys are refused before anything runs.
    let long = post(
        &app,
        &owner,
        "/api/v1/contacts",
        &"k".repeat(256),
        &json!({"firstName": "L", "lastName": "K"}),
    )
    .await;
    assert_eq!(long.status().as_u16(), 400);
    assert_eq!(
        long.json::<Value>().await.unwrap()["code"],
        "invalid_idempotency_key"
    );
    assert_eq!(count(&app, "SELECT count(*) AS n FROM contacts").await, 2);

    // Without a key, nothing changes: each POST is its own.
    let plain = reqwest::Client::new()
        .post(app.url("/api/v1/contacts"))
        .bearer_auth(&owner.access_token)
        .json(&json!({"firstName": "N", "lastName": "K"}))
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status().as_u16(), 201);
}

#[tokio::test]
async fn a_concurrent_duplicate_gets_409_and_server_errors_release_the_key() {
    let app = TestApp::spawn_with(|c| c.workers = 2, Some(test_routes)).await;
    let owner = app.signup("owner@race.io").await;
    let body = json!({"x": 1});
    let (a, b) = tokio::join!(post(&app, &owner, "/__test/slow", "race", &body), async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        post(&app, &owner, "/__test/slow", "race", &body).await
    });
    assert_eq!(a.status().as_u16(), 201);
    assert_eq!(b.status().as_u16(), 409);
    assert_eq!(b.headers()["retry-after"], "1");
    assert_eq!(
        b.json::<Value>().await.unwrap()["code"],
        "idempotency_key_in_flight"
    );
    // Once finished, the duplicate replays.
    let c = post(&app, &owner, "/__test/slow", "race", &body).await;
    assert_eq!(
        (
            c.status().as_u16(),
            c.headers()["idempotent-replayed"].to_str().unwrap()
        ),
        (201, "true")
    );

    let first = post(&app, &owner, "/__test/flaky", "retry-me", &body).await;
    assert_eq!(first.status().as_u16(), 503);
    let second = post(&app, &owner, "/__test/flaky", "retry-me", &body).await;
    assert_eq!(
        second.status().as_u16(),
        200,
        "a 5xx is not remembered: the retry runs"
    );
    assert!(second.headers().get("idempotent-replayed").is_none());
    assert_eq!(AtomicUsize::load(&FLAKY_CALLS, Ordering::SeqCst), 2);
}

/// Responses that show a secret once are not kept for replay: a retry is refused with
/// the first response's `Location`, and nothing runs twice.
#[tokio::test]
async fn a_secret_shown_once_is_never_stored_and_its_retry_is_not_run_again() {
    let app = TestApp::spawn_with(
        |c| {
            c.webhooks.allowlist = nexus_domain::webhook::Allowlist::parse("127.0.0.0/8").unwrap();
        },
        None,
    )
    .await;
    let owner = app.signup("owner@secrets.io").await;
    let hook = json!({"url": "http://127.0.0.1:9/hook", "eventTypes": ["contact.created"]});
    let first = post(&app, &owner, "/api/v1/webhooks", "hook", &hook).await;
    assert_eq!(first.status().as_u16(), 201);
    let hook_location = first.headers()["location"].to_str().unwrap().to_owned();
    let created: Value = first.json().await.unwrap();
    let hook_id = created["webhook"]["id"].as_str().unwrap().to_owned();
    let rotate = format!("/api/v1/webhooks/{hook_id}/rotate-secret");
    let cases = [
        (
            "/api/v1/api-keys",
            json!({"name": "Zapier", "role": "MEMBER"}),
            "/secret",
        ),
        (rotate.as_str(), json!({}), "/secret"),
        (
            "/api/v1/auth/switch-organization",
            json!({"organizationId": owner.org_id}),
            "/accessToken",
        ),
    ];
    let mut secrets = vec![(
        "/api/v1/webhooks".to_owned(),
        created["secret"].as_str().unwrap().to_owned(),
        Some(hook_location),
        hook,
    )];
    for (path, body, pointer) in cases {
        let res = post(&app, &owner, path, path, &body).await;
        assert!(res.status().is_success(), "{path}: {}", res.status());
        let location = res
            .headers()
            .get("location")
            .map(|v| v.to_str().unwrap().to_owned());
        let json: Value = res.json().await.unwrap();
        let secret = json.pointer(pointer).and_then(Value::as_str).unwrap();
        secrets.push((path.to_owned(), secret.to_owned(), location, body));
    }
    for (path, secret, location, body) in &secrets {
        assert!(secret.len() > 20, "{path}: {secret}");
        let stored = format!(
            "SELECT count(*) AS n FROM idempotency_keys \
             WHERE position(convert_to('{secret}', 'UTF8') IN response_body) > 0"
        );
        assert_eq!(count(&app, &stored).await, 0, "{path} kept its secret");
        let key = if path == "/api/v1/webhooks" {
            "hook"
        } else {
            path
        };
        let retry = post(&app, &owner, path, key, body).await;
        assert_eq!(retry.status().as_u16(), 409, "{path}");
        assert_eq!(retry.headers()["idempotent-replayed"], "true");
        assert_eq!(
            retry
                .headers()
                .get("location")
                .map(|v| v.to_str().unwrap().to_owned()),
            *location,
            "{path}"
        );
        let problem: Value = retry.json().await.unwrap();
        assert_eq!(problem["code"], "idempotency_secret_not_replayed", "{path}");
        assert!(!problem.to_string().contains(secret.as_str()));
    }
    // Nothing ran twice: one key, one subscription, and the secret rotated once.
    let org = owner.org_id;
    assert_eq!(
        count(
            &app,
            &format!("SELECT count(*) AS n FROM api_keys WHERE organization_id = '{org}'")
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &app,
            &format!("SELECT count(*) AS n FROM webhooks WHERE organization_id = '{org}'")
        )
        .await,
        1
    );
    let rotated = &secrets[2].1;
    assert_eq!(
        count(
            &app,
            &format!("SELECT count(*) AS n FROM webhooks WHERE secret = '{rotated}'")
        )
        .await,
        1
    );
}

#[tokio::test]
async fn a_compressed_body_is_keyed_decoded_and_replayed() {
    use std::io::Write;
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@gzip.io").await;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(br#"{"firstName":"Zip","lastName":"Ped","email":"zip@gzip.io"}"#)
        .unwrap();
    let body = gz.finish().unwrap();
    let send = || {
        reqwest::Client::new()
            .post(app.url("/api/v1/contacts"))
            .bearer_auth(&owner.access_token)
            .header("Idempotency-Key", "gz-1")
            .header("content-type", "application/json")
            .header("content-encoding", "gzip")
            .body(body.clone())
            .send()
    };
    let first = send().await.unwrap();
    assert_eq!(first.status().as_u16(), 201);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let created: Value = first.json().await.unwrap();
    assert_eq!(created["email"], "zip@gzip.io");
    let again = send().await.unwrap();
    assert_eq!(
        (
            again.status().as_u16(),
            again.headers()["idempotent-replayed"].to_str().unwrap()
        ),
        (201, "true")
    );
    assert_eq!(again.json::<Value>().await.unwrap()["id"], created["id"]);
    assert_eq!(count(&app, "SELECT count(*) AS n FROM contacts").await, 1);
}

#[tokio::test]
async fn if_match_is_part_of_the_request_and_a_replayed_405_keeps_its_allow() {
    let app = TestApp::spawn_with(|_| {}, Some(test_routes)).await;
    let owner = app.signup("owner@ifmatch.io").await;
    let send = |version: &'static str| {
        reqwest::Client::new()
            .post(app.url("/__test/conditional"))
            .bearer_auth(&owner.access_token)
            .header("Idempotency-Key", "move-1")
            .header("if-match", version)
            .json(&json!({"stageId": 1}))
            .send()
    };
    let first = send("\"3\"").await.unwrap();
    assert_eq!(first.status().as_u16(), 200);
    assert_eq!(first.json::<Value>().await.unwrap()["ifMatch"], "\"3\"");
    // A newer version under the same key is another request, not the first's replay.
    let newer = send("\"5\"").await.unwrap();
    assert_eq!(newer.status().as_u16(), 422);
    assert_eq!(
        newer.json::<Value>().await.unwrap()["code"],
        "idempotency_key_reused"
    );
    let same = send("\"3\"").await.unwrap();
    assert_eq!(same.headers()["idempotent-replayed"], "true");

    // A keyed POST to a route that takes none is a 405 naming what it allows, replayed alike.
    let contact: Value = post(
        &app,
        &owner,
        "/api/v1/contacts",
        "create-a",
        &json!({"firstName": "A", "lastName": "B"}),
    )
    .await
    .json()
    .await
    .unwrap();
    let path = format!("/api/v1/contacts/{}", contact["id"].as_str().unwrap());
    let first = post(&app, &owner, &path, "wrong-verb", &json!({})).await;
    assert_eq!(first.status().as_u16(), 405);
    let allow = first.headers()["allow"].to_str().unwrap().to_owned();
    assert!(allow.contains("PATCH"), "{allow}");
    let replayed = post(&app, &owner, &path, "wrong-verb", &json!({})).await;
    assert_eq!(replayed.status().as_u16(), 405);
    assert_eq!(replayed.headers()["idempotent-replayed"], "true");
    assert_eq!(replayed.headers()["allow"].to_str().unwrap(), allow);
}
