//! Webhooks end to end: the real app, a real PostgreSQL, and a real HTTP receiver that the
//! test starts on loopback. Nothing here sends a packet anywhere but 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod webhook_receiver;

use std::collections::HashSet;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use nexus_app::config::Config;
use nexus_app::testing::{TestApp, TestUser};
use nexus_domain::webhook::{Allowlist, RetrySchedule};
use serde_json::{Value, json};
use webhook_receiver::{Hit, Receiver};

struct Res {
    status: u16,
    body: Value,
}

async fn call(
    app_url: &str,
    user: &TestUser,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Res {
    let client = reqwest::Client::new();
    let url = format!("{app_url}{path}");
    let mut req = client
        .request(method.parse().unwrap(), url)
        .bearer_auth(&user.access_token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    Res {
        status,
        body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
    }
}

fn fast(config: &mut Config) {
    config.webhooks.allowlist = Allowlist::parse("127.0.0.0/8").unwrap();
    config.webhooks.retry_schedule = RetrySchedule::new(vec![Duration::from_millis(200); 4]);
    config.webhooks.workers = 2;
}

async fn spawn() -> TestApp {
    TestApp::spawn_with(fast, None).await
}

async fn subscribe(app: &str, user: &TestUser, url: &str, events: &[&str]) -> (String, String) {
    let res = call(
        app,
        user,
        "POST",
        "/api/v1/webhooks",
        Some(json!({"url": url, "eventTypes": events, "description": "test receiver"})),
    )
    .await;
    assert_eq!(res.status, 201, "{}", res.body);
    (
        res.body["webhook"]["id"].as_str().unwrap().to_owned(),
        res.body["secret"].as_str().unwrap().to_owned(),
    )
}

async fn create_contact(app: &TestApp, user: &TestUser, n: usize) -> String {
    let res = call(
        &app.address,
        user,
        "POST",
        "/api/v1/contacts",
        Some(json!({"firstName": "Ada", "lastName": format!("Number{n}"), "email": format!("ada{n}@example.com")})),
    )
    .await;
    assert_eq!(res.status, 201, "{}", res.body);
    res.body["id"].as_str().unwrap().to_owned()
}

/// Polls until `done` holds, for at most 20 s.
async fn eventually<F: std::future::Future<Output = bool>>(
    what: &str,
    mut done: impl FnMut() -> F,
) {
    for _ in 0..200 {
        if done().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Verifies a Standard Webhooks signature with `ring`, independently of the server's
/// `hmac`/`sha2` implementation.
fn verifies(secret: &str, hit: &Hit) -> bool {
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key);
    let signed = format!(
        "{}.{}.{}",
        hit.header("webhook-id"),
        hit.header("webhook-timestamp"),
        hit.body
    );
    hit.header("webhook-signature").split(' ').any(|entry| {
        entry
            .strip_prefix("v1,")
            .and_then(|sig| STANDARD.decode(sig).ok())
            .is_some_and(|sig| ring::hmac::verify(&key, signed.as_bytes(), &sig).is_ok())
    })
}

/// The `data` of a page the user may read.
async fn page(app: &TestApp, user: &TestUser, path: &str) -> Vec<Value> {
    let (status, body) = app.get_json(&user.access_token, path).await;
    assert_eq!(status, 200, "{body}");
    body["data"].as_array().unwrap().clone()
}

async fn deliveries(app: &TestApp, user: &TestUser, webhook: &str) -> Vec<Value> {
    page(app, user, &format!("/api/v1/webhooks/{webhook}/deliveries")).await
}

#[tokio::test]
async fn an_event_arrives_signed_per_the_standard_and_verifies_independently() {
    let app = spawn().await;
    let owner = app.signup("owner@hooks.test").await;
    let receiver = Receiver::start(|_| 204).await;
    let (_, secret) = subscribe(&app.address, &owner, &receiver.url, &["contact.created"]).await;
    assert!(secret.starts_with("whsec_"));
    let contact = create_contact(&app, &owner, 1).await;

    eventually("the delivery", || async { receiver.hits().len() == 1 }).await;
    let hit = receiver.hits().remove(0);
    assert!(verifies(&secret, &hit), "signature must verify: {hit:?}");
    assert!(!verifies(
        "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        &hit
    ));
    let body: Value = serde_json::from_str(&hit.body).unwrap();
    assert_eq!(body["type"], "contact.created");
    assert_eq!(body["data"]["contact"]["id"], contact.as_str());
    assert_eq!(body["data"]["contact"]["email"], "ada1@example.com");
    assert_eq!(body["id"], hit.header("webhook-id"));
    assert!(body["timestamp"].as_str().unwrap().ends_with('Z'));
    let sent_at: i64 = hit.header("webhook-timestamp").parse().unwrap();
    assert!((chrono::Utc::now().timestamp() - sent_at).abs() < 60);
    assert_eq!(hit.header("content-type"), "application/json");
    let raw = format!("{:?}{}", hit.headers, hit.body);
    assert!(
        !raw.contains(secret.trim_start_matches("whsec_")),
        "the secret is never sent"
    );

    // Events the subscription did not ask for are not sent.
    let patch = call(
        &app.address,
        &owner,
        "PATCH",
        &format!("/api/v1/contacts/{contact}"),
        Some(json!({"company": "Analytical Engines"})),
    )
    .await;
    assert_eq!(patch.status, 200, "{}", patch.body);
    create_contact(&app, &owner, 2).await;
    eventually("the second delivery", || async {
        receiver.hits().len() == 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let types: Vec<String> = receiver
        .hits()
        .iter()
        .map(|h| {
            serde_json::from_str::<Value>(&h.body).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(types, ["contact.created", "contact.created"]);
}

#[tokio::test]
async fn a_receiver_failing_twice_gets_one_success_after_three_attempts() {
    let app = spawn().await;
    let owner = app.signup("owner@retry.test").await;
    let receiver = Receiver::start(|n| if n < 2 { 500 } else { 200 }).await;
    let (webhook, _) = subscribe(&app.address, &owner, &receiver.url, &["*"]).await;
    create_contact(&app, &owner, 1).await;

    eventually("three attempts", || async { receiver.hits().len() >= 3 }).await;
    eventually("the success recorded", || async {
        deliveries(&app, &owner, &webhook).await[0]["status"] == "succeeded"
    })
    .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let hits = receiver.hits();
    assert_eq!(hits.len(), 3, "exactly one success, no more attempts");
    let ids: HashSet<_> = hits.iter().map(|h| h.header("webhook-id")).collect();
    assert_eq!(ids.len(), 1, "every retry carries the same webhook-id");

    let list = deliveries(&app, &owner, &webhook).await;
    assert_eq!(list.len(), 1);
    let d = &list[0];
    assert_eq!(d["attempts"], 3);
    assert_eq!(d["lastStatusCode"], 200);
    assert_eq!(d["nextAttemptAt"], Value::Null);
    let detail = call(
        &app.address,
        &owner,
        "GET",
        &format!(
            "/api/v1/webhooks/{webhook}/deliveries/{}",
            d["id"].as_str().unwrap()
        ),
        None,
    )
    .await;
    assert_eq!(detail.status, 200, "{}", detail.body);
    let codes: Vec<i64> = detail.body["attemptLog"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["statusCode"].as_i64().unwrap())
        .collect();
    assert_eq!(codes, [500, 500, 200]);
    assert_eq!(detail.body["attemptLog"][0]["responseBody"], "status 500");
}

#[tokio::test]
async fn deliveries_keep_the_order_of_events_even_through_retries() {
    let app = spawn().await;
    let owner = app.signup("owner@order.test").await;
    // The first message fails once; the others must wait behind it.
    let receiver = Receiver::start(|n| if n == 0 { 503 } else { 200 }).await;
    subscribe(&app.address, &owner, &receiver.url, &["contact.created"]).await;
    let mut created = Vec::new();
    for n in 0..12 {
        created.push(create_contact(&app, &owner, n).await);
    }
    eventually("all deliveries", || async { receiver.hits().len() == 13 }).await;
    let delivered: Vec<String> = receiver
        .hits()
        .iter()
        .filter(|h| h.status == 200)
        .map(|h| {
            serde_json::from_str::<Value>(&h.body).unwrap()["data"]["contact"]["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(delivered, created);
}

#[tokio::test]
async fn gone_disables_the_subscription_and_records_webhook_disabled() {
    let app = spawn().await;
    let owner = app.signup("owner@gone.test").await;
    let gone = Receiver::start(|_| 410).await;
    let watcher = Receiver::start(|_| 200).await;
    let (webhook, _) = subscribe(&app.address, &owner, &gone.url, &["contact.created"]).await;
    subscribe(&app.address, &owner, &watcher.url, &["webhook.disabled"]).await;
    create_contact(&app, &owner, 1).await;

    eventually("the webhook.disabled event", || async {
        watcher.hits().len() == 1
    })
    .await;
    let event: Value = serde_json::from_str(&watcher.hits()[0].body).unwrap();
    assert_eq!(event["type"], "webhook.disabled");
    assert_eq!(event["data"]["id"], webhook.as_str());
    assert_eq!(event["data"]["reason"], "the endpoint answered 410 Gone");
    let w = call(
        &app.address,
        &owner,
        "GET",
        &format!("/api/v1/webhooks/{webhook}"),
        None,
    )
    .await;
    assert_eq!(w.body["active"], false);
    assert_eq!(w.body["disabledReason"], "the endpoint answered 410 Gone");

    // Disabled: new events are not queued for it.
    create_contact(&app, &owner, 2).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(gone.hits().len(), 1);
    assert_eq!(deliveries(&app, &owner, &webhook).await.len(), 1);

    // The audit log names the system as the one that disabled it.
    let entries = audit_of(&app, &owner, &webhook).await;
    assert_eq!(entries[0]["action"], "webhook.disabled");
    assert_eq!(entries[0]["actor"], json!({"kind": "system"}));
}

#[tokio::test]
async fn five_days_of_failures_disable_the_subscription() {
    let app = spawn().await;
    let owner = app.signup("owner@tired.test").await;
    let failing = Receiver::start(|_| 500).await;
    let (webhook, _) = subscribe(&app.address, &owner, &failing.url, &["contact.created"]).await;
    {
        use diesel_async::RunQueryDsl;
        let mut conn = app.pool.get().await.unwrap();
        diesel::sql_query(format!(
            "UPDATE webhooks SET failing_since = now() - interval '5 days 1 minute' WHERE id = '{webhook}'"
        ))
        .execute(&mut conn)
        .await
        .unwrap();
    }
    create_contact(&app, &owner, 1).await;
    eventually("the subscription disabled", || async {
        let w = call(
            &app.address,
            &owner,
            "GET",
            &format!("/api/v1/webhooks/{webhook}"),
            None,
        )
        .await;
        w.body["active"] == false
    })
    .await;
    let w = call(
        &app.address,
        &owner,
        "GET",
        &format!("/api/v1/webhooks/{webhook}"),
        None,
    )
    .await;
    assert_eq!(w.body["disabledReason"], "every attempt failed for 5 days");
    assert_eq!(failing.hits().len(), 1);

    // Re-enabling restarts the clock.
    let res = call(
        &app.address,
        &owner,
        "PATCH",
        &format!("/api/v1/webhooks/{webhook}"),
        Some(json!({"active": true})),
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(res.body["disabledReason"], Value::Null);
    assert_eq!(res.body["failingSince"], Value::Null);
}

#[tokio::test]
async fn loopback_is_refused_unless_allowlisted_and_the_refusal_is_recorded() {
    let app = TestApp::spawn_with(
        |c| {
            fast(c);
            c.webhooks.allowlist = Allowlist::default();
        },
        None,
    )
    .await;
    let owner = app.signup("owner@ssrf.test").await;
    // Not allowlisted: plain http is refused when saving.
    let res = call(
        &app.address,
        &owner,
        "POST",
        "/api/v1/webhooks",
        Some(json!({"url": "http://127.0.0.1:9/x", "eventTypes": ["*"]})),
    )
    .await;
    assert_eq!(res.status, 422, "{}", res.body);
    assert_eq!(res.body["errors"][0]["code"], "insecure_url");

    let (literal, _) = subscribe(&app.address, &owner, "https://127.0.0.1/hook", &["*"]).await;
    let (named, _) = subscribe(&app.address, &owner, "https://localhost/hook", &["*"]).await;
    let (mapped, _) = subscribe(
        &app.address,
        &owner,
        "https://[::ffff:127.0.0.1]/hook",
        &["*"],
    )
    .await;
    let (decimal, _) = subscribe(&app.address, &owner, "https://2130706433/hook", &["*"]).await;
    create_contact(&app, &owner, 1).await;
    for webhook in [&literal, &named, &mapped, &decimal] {
        eventually("the refusal", || async {
            deliveries(&app, &owner, webhook).await[0]["status"] == "failed"
        })
        .await;
        let d = &deliveries(&app, &owner, webhook).await[0];
        let error = d["lastError"].as_str().unwrap();
        assert!(error.starts_with("refused: "), "{error}");
        assert!(error.contains("loopback"), "{error}");
        assert_eq!(d["lastStatusCode"], Value::Null);
        assert_eq!(d["attempts"], 1);
    }
}

#[tokio::test]
async fn a_worker_killed_mid_delivery_leads_to_redelivery_not_loss() {
    let receiver = Receiver::start_slow_first().await;
    let app = TestApp::spawn_with(
        |c| {
            fast(c);
            c.webhooks.workers = 1;
            c.webhooks.lease = Duration::from_secs(1);
            c.webhooks.timeout = Duration::from_secs(30);
        },
        None,
    )
    .await;
    let owner = app.signup("owner@crash.test").await;
    let (webhook, _) = subscribe(&app.address, &owner, &receiver.url, &["contact.created"]).await;
    create_contact(&app, &owner, 1).await;
    eventually("the first attempt in flight", || async {
        receiver.hits().len() == 1
    })
    .await;

    app.kill().await;
    let other = app
        .spawn_sibling(|c| {
            fast(c);
            c.webhooks.workers = 1;
            c.webhooks.lease = Duration::from_secs(1);
        })
        .await;
    eventually("the redelivery", || async { receiver.hits().len() == 2 }).await;
    let hits = receiver.hits();
    assert_eq!(hits[0].header("webhook-id"), hits[1].header("webhook-id"));
    eventually("the success recorded", || async {
        deliveries_at(&other.address, &owner, &webhook).await[0]["status"] == "succeeded"
    })
    .await;
    other.handle.stop(false).await;
}

async fn deliveries_at(address: &str, user: &TestUser, webhook: &str) -> Vec<Value> {
    let res = call(
        address,
        user,
        "GET",
        &format!("/api/v1/webhooks/{webhook}/deliveries"),
        None,
    )
    .await;
    res.body["data"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn two_instances_deliver_each_event_once_per_subscription_in_order() {
    let app = spawn().await;
    let other = app.spawn_sibling(fast).await;
    let owner = app.signup("owner@twins.test").await;
    let first = Receiver::start(|_| 200).await;
    let second = Receiver::start(|_| 200).await;
    subscribe(&app.address, &owner, &first.url, &["contact.created"]).await;
    subscribe(&app.address, &owner, &second.url, &["*"]).await;
    let mut created = Vec::new();
    for n in 0..20 {
        created.push(create_contact(&app, &owner, n).await);
    }
    eventually("all deliveries", || async {
        first.hits().len() >= 20 && second.hits().len() >= 20
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    for receiver in [&first, &second] {
        let hits = receiver.hits();
        assert_eq!(hits.len(), 20, "each event exactly once");
        let ids: Vec<String> = hits
            .iter()
            .map(|h| {
                serde_json::from_str::<Value>(&h.body).unwrap()["data"]["contact"]["id"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(ids, created);
    }
    other.handle.stop(false).await;
}

#[tokio::test]
async fn rotation_signs_with_both_secrets_during_the_overlap() {
    let app = spawn().await;
    let owner = app.signup("owner@rotate.test").await;
    let receiver = Receiver::start(|_| 200).await;
    let (webhook, old) = subscribe(&app.address, &owner, &receiver.url, &["*"]).await;
    let rotated = call(
        &app.address,
        &owner,
        "POST",
        &format!("/api/v1/webhooks/{webhook}/rotate-secret"),
        Some(json!({"overlapSeconds": 3600})),
    )
    .await;
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    let new = rotated.body["secret"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    assert!(rotated.body["webhook"]["previousSecretExpiresAt"].is_string());

    let ping = call(
        &app.address,
        &owner,
        "POST",
        &format!("/api/v1/webhooks/{webhook}/test"),
        None,
    )
    .await;
    assert_eq!(ping.status, 202, "{}", ping.body);
    assert_eq!(ping.body["eventType"], "ping");
    eventually("the ping", || async { receiver.hits().len() == 1 }).await;
    let hit = receiver.hits().remove(0);
    assert_eq!(hit.header("webhook-signature").split(' ').count(), 2);
    assert!(verifies(&old, &hit) && verifies(&new, &hit));
    assert_eq!(
        serde_json::from_str::<Value>(&hit.body).unwrap()["type"],
        "ping"
    );

    // Redelivery sends the same message again, same webhook-id.
    let again = call(
        &app.address,
        &owner,
        "POST",
        &format!(
            "/api/v1/webhooks/{webhook}/deliveries/{}/redeliver",
            ping.body["id"].as_str().unwrap()
        ),
        None,
    )
    .await;
    assert_eq!(again.status, 202, "{}", again.body);
    assert_eq!(again.body["messageId"], ping.body["messageId"]);
    eventually("the redelivery", || async { receiver.hits().len() == 2 }).await;
    assert_eq!(
        receiver.hits()[1].header("webhook-id"),
        hit.header("webhook-id")
    );

    // No overlap: the old secret stops signing at once.
    let rotated = call(
        &app.address,
        &owner,
        "POST",
        &format!("/api/v1/webhooks/{webhook}/rotate-secret"),
        Some(json!({"overlapSeconds": 0})),
    )
    .await;
    let newest = rotated.body["secret"].as_str().unwrap().to_owned();
    call(
        &app.address,
        &owner,
        "POST",
        &format!("/api/v1/webhooks/{webhook}/test"),
        None,
    )
    .await;
    eventually("the second ping", || async { receiver.hits().len() == 3 }).await;
    let hit = receiver.hits().remove(2);
    assert_eq!(hit.header("webhook-signature").split(' ').count(), 1);
    assert!(verifies(&newest, &hit) && !verifies(&new, &hit));

    let too_long = call(
        &app.address,
        &owner,
        "POST",
        &format!("/api/v1/webhooks/{webhook}/rotate-secret"),
        Some(json!({"overlapSeconds": 604_801})),
    )
    .await;
    assert_eq!(too_long.status, 422, "{}", too_long.body);
}

#[tokio::test]
async fn crud_validation_rbac_and_tenant_isolation() {
    let app = spawn().await;
    let owner = app.signup("owner@crud.test").await;
    let admin = app.add_member(&owner, "admin@crud.test", "ADMIN").await;
    let member = app.add_member(&owner, "member@crud.test", "MEMBER").await;
    let viewer = app.add_member(&owner, "viewer@crud.test", "VIEWER").await;
    let stranger = app.signup("stranger@elsewhere.test").await;
    let a = &app.address;

    let (webhook, secret) = subscribe(
        a,
        &admin,
        "https://hooks.example.com/in",
        &["deal.won", "contact.created"],
    )
    .await;
    let got = call(
        a,
        &owner,
        "GET",
        &format!("/api/v1/webhooks/{webhook}"),
        None,
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(
        got.body["eventTypes"],
        json!(["deal.won", "contact.created"])
    );
    assert!(
        !got.body
            .to_string()
            .contains(secret.trim_start_matches("whsec_"))
    );

    // Bad input: nothing written.
    for (body, status, code) in [
        (
            json!({"url": "https://x.example/", "eventTypes": ["deal.exploded"]}),
            422,
            "validation_failed",
        ),
        (
            json!({"url": "https://x.example/", "eventTypes": []}),
            422,
            "validation_failed",
        ),
        (
            json!({"url": "ftp://x.example/", "eventTypes": ["*"]}),
            422,
            "validation_failed",
        ),
        (
            json!({"url": "https://user:pw@x.example/", "eventTypes": ["*"]}),
            422,
            "validation_failed",
        ),
        (
            json!({"url": "https://x.example/", "eventTypes": ["*"], "secret": "mine"}),
            400,
            "invalid_body",
        ),
        (json!({"eventTypes": ["*"]}), 400, "invalid_body"),
    ] {
        let res = call(a, &owner, "POST", "/api/v1/webhooks", Some(body.clone())).await;
        assert_eq!(res.status, status, "{body}: {}", res.body);
        assert_eq!(res.body["code"], code, "{body}: {}", res.body);
    }
    let list = call(a, &owner, "GET", "/api/v1/webhooks", None).await;
    assert_eq!(list.body["data"].as_array().unwrap().len(), 1);

    // MEMBER and VIEWER may not touch integrations.
    for user in [&member, &viewer] {
        assert_eq!(
            call(a, user, "GET", "/api/v1/webhooks", None).await.status,
            403
        );
        let res = call(
            a,
            user,
            "POST",
            "/api/v1/webhooks",
            Some(json!({"url": "https://x.example/", "eventTypes": ["*"]})),
        )
        .await;
        assert_eq!(res.status, 403);
        assert_eq!(
            call(
                a,
                user,
                "POST",
                &format!("/api/v1/webhooks/{webhook}/test"),
                None
            )
            .await
            .status,
            403
        );
    }

    // Another organization sees nothing of it: 404 on every verb.
    for (method, path, body) in [
        ("GET", format!("/api/v1/webhooks/{webhook}"), None),
        (
            "PATCH",
            format!("/api/v1/webhooks/{webhook}"),
            Some(json!({"active": false})),
        ),
        ("DELETE", format!("/api/v1/webhooks/{webhook}"), None),
        (
            "GET",
            format!("/api/v1/webhooks/{webhook}/deliveries"),
            None,
        ),
        ("POST", format!("/api/v1/webhooks/{webhook}/test"), None),
        (
            "POST",
            format!("/api/v1/webhooks/{webhook}/rotate-secret"),
            Some(json!({})),
        ),
    ] {
        let res = call(a, &stranger, method, &path, body).await;
        assert_eq!(res.status, 404, "{method} {path}: {}", res.body);
    }
    assert_eq!(
        call(a, &stranger, "GET", "/api/v1/webhooks", None)
            .await
            .body["data"],
        json!([])
    );

    // Stale If-Match → 412, nothing changed; then update and delete.
    let client = reqwest::Client::new();
    let stale = client
        .patch(format!("{a}/api/v1/webhooks/{webhook}"))
        .bearer_auth(&owner.access_token)
        .header("If-Match", "\"7\"")
        .json(&json!({"description": "changed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status().as_u16(), 412);
    let res = call(
        a,
        &owner,
        "PATCH",
        &format!("/api/v1/webhooks/{webhook}"),
        Some(json!({"description": null, "eventTypes": ["*"]})),
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(res.body["description"], Value::Null);
    assert_eq!(res.body["eventTypes"], json!(["*"]));
    assert_eq!(res.body["version"], 2);
    let res = call(
        a,
        &owner,
        "DELETE",
        &format!("/api/v1/webhooks/{webhook}"),
        None,
    )
    .await;
    assert_eq!(res.status, 204);
    assert_eq!(
        call(
            a,
            &owner,
            "GET",
            &format!("/api/v1/webhooks/{webhook}"),
            None
        )
        .await
        .status,
        404
    );
}

#[tokio::test]
async fn events_of_one_organization_never_reach_another_organizations_webhooks() {
    let app = spawn().await;
    let mine = app.signup("mine@iso.test").await;
    let theirs = app.signup("theirs@iso.test").await;
    let receiver = Receiver::start(|_| 200).await;
    subscribe(&app.address, &mine, &receiver.url, &["*"]).await;
    create_contact(&app, &theirs, 1).await;
    let own = create_contact(&app, &mine, 2).await;
    eventually("my delivery", || async { receiver.hits().len() == 1 }).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let hits = receiver.hits();
    assert_eq!(hits.len(), 1);
    let body: Value = serde_json::from_str(&hits[0].body).unwrap();
    assert_eq!(body["data"]["contact"]["id"], own.as_str());
    assert_eq!(body["organizationId"], mine.org_id.to_string());
}

#[tokio::test]
async fn delivery_log_pages_with_signed_cursors() {
    let app = spawn().await;
    let owner = app.signup("owner@pages.test").await;
    let receiver = Receiver::start(|_| 200).await;
    let (webhook, _) = subscribe(&app.address, &owner, &receiver.url, &["contact.created"]).await;
    for n in 0..5 {
        create_contact(&app, &owner, n).await;
    }
    eventually("five deliveries", || async { receiver.hits().len() == 5 }).await;
    let page = call(
        &app.address,
        &owner,
        "GET",
        &format!("/api/v1/webhooks/{webhook}/deliveries?limit=3&status=succeeded"),
        None,
    )
    .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(page.body["data"].as_array().unwrap().len(), 3);
    let cursor = page.body["nextCursor"].as_str().unwrap().to_owned();
    let next = call(
        &app.address,
        &owner,
        "GET",
        &format!("/api/v1/webhooks/{webhook}/deliveries?limit=3&status=succeeded&cursor={cursor}"),
        None,
    )
    .await;
    assert_eq!(next.body["data"].as_array().unwrap().len(), 2);
    assert_eq!(next.body["nextCursor"], Value::Null);
    let forged = format!("{}x", &cursor[..cursor.len() - 1]);
    let bad = call(
        &app.address,
        &owner,
        "GET",
        &format!("/api/v1/webhooks/{webhook}/deliveries?cursor={forged}"),
        None,
    )
    .await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.body["code"], "invalid_cursor");
    let unknown = call(
        &app.address,
        &owner,
        "GET",
        &format!("/api/v1/webhooks/{webhook}/deliveries?status=lost"),
        None,
    )
    .await;
    assert_eq!(unknown.status, 400);
}

async fn audit_of(app: &TestApp, user: &TestUser, webhook: &str) -> Vec<Value> {
    let path = format!("/api/v1/audit-log?entityType=webhook&entityId={webhook}&limit=100");
    page(app, user, &path).await
}

#[tokio::test]
async fn subscription_changes_are_audited_without_their_secrets() {
    let app = spawn().await;
    let owner = app.signup("owner@audit-hooks.test").await;
    let receiver = Receiver::start(|_| 200).await;
    let (webhook, first_secret) =
        subscribe(&app.address, &owner, &receiver.url, &["deal.won"]).await;
    let path = format!("/api/v1/webhooks/{webhook}");

    let updated = call(
        &app.address,
        &owner,
        "PATCH",
        &path,
        Some(json!({"eventTypes": ["deal.won", "deal.lost"], "active": false})),
    )
    .await;
    assert_eq!(updated.status, 200, "{}", updated.body);
    // A refused update leaves no entry.
    let refused = call(
        &app.address,
        &owner,
        "PATCH",
        &path,
        Some(json!({"url": "ftp://nope"})),
    )
    .await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    let rotated = call(
        &app.address,
        &owner,
        "POST",
        &format!("{path}/rotate-secret"),
        Some(json!({"overlapSeconds": 60})),
    )
    .await;
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    let second_secret = rotated.body["secret"].as_str().unwrap().to_owned();
    let ping = call(&app.address, &owner, "POST", &format!("{path}/test"), None).await;
    assert_eq!(ping.status, 202, "{}", ping.body);

    let entries = audit_of(&app, &owner, &webhook).await;
    let actions: Vec<&str> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "webhook.delivery_enqueued",
            "webhook.secret_rotated",
            "webhook.updated",
            "webhook.created"
        ],
        "newest first"
    );
    assert_eq!(entries[0]["changes"]["eventType"], "ping");
    assert_eq!(entries[0]["changes"]["deliveryId"], ping.body["id"]);
    assert_eq!(
        entries[2]["changes"],
        json!({
            "active": {"from": true, "to": false},
            "eventTypes": {"from": ["deal.won"], "to": ["deal.won", "deal.lost"]},
        }),
        "only the changed fields, before and after"
    );
    assert_eq!(entries[3]["changes"]["after"]["url"], receiver.url);
    assert_eq!(
        entries[3]["actor"],
        json!({ "kind": "user", "userId": owner.user_id })
    );

    let deleted = call(&app.address, &owner, "DELETE", &path, None).await;
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    let entries = audit_of(&app, &owner, &webhook).await;
    assert_eq!(entries[0]["action"], "webhook.deleted");
    assert_eq!(
        entries[0]["changes"]["before"]["eventTypes"],
        json!(["deal.won", "deal.lost"])
    );

    let everything = serde_json::to_string(&entries).unwrap();
    for secret in [&first_secret, &second_secret] {
        assert!(
            !everything.contains(secret.as_str()),
            "a secret reached the audit log"
        );
        let raw = secret.strip_prefix("whsec_").unwrap();
        assert!(!everything.contains(raw), "a secret reached the audit log");
    }

    // Another organization sees none of it.
    let other = app.signup("owner@audit-hooks-other.test").await;
    assert!(audit_of(&app, &other, &webhook).await.is_empty());
}
