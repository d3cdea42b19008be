//! Merge patches of attributes that cannot be cleared: `null` is refused with 400
//! `invalid_body` and changes nothing, instead of passing for an absent field (which kept
//! the old value under a 200).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use nexus_app::testing::{TestApp, TestUser};
use nexus_domain::webhook::Allowlist;
use serde_json::{Value, json};

async fn call(
    app: &TestApp,
    user: &TestUser,
    method: &str,
    path: &str,
    body: Value,
) -> (u16, Value) {
    let res = reqwest::Client::new()
        .request(method.parse().unwrap(), app.url(path))
        .bearer_auth(&user.access_token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn nulls_for_what_cannot_be_cleared_are_refused_and_change_nothing() {
    let app = TestApp::spawn_with(
        |c| c.webhooks.allowlist = Allowlist::parse("127.0.0.0/8").unwrap(),
        None,
    )
    .await;
    let owner = app.signup("owner@nulls-everywhere.io").await;
    let (status, hook) = call(
        &app,
        &owner,
        "POST",
        "/api/v1/webhooks",
        json!({"url": "http://127.0.0.1:9/hook", "eventTypes": ["contact.created"]}),
    )
    .await;
    assert_eq!(status, 201, "{hook}");
    let hook = format!(
        "/api/v1/webhooks/{}",
        hook["webhook"]["id"].as_str().unwrap()
    );
    let (_, pipelines) = app.get_json(&owner.access_token, "/api/v1/pipelines").await;
    let pipeline = format!(
        "/api/v1/pipelines/{}",
        pipelines["data"][0]["id"].as_str().unwrap()
    );
    let organization = "/api/v1/organizations/current";

    for (path, field) in [
        (organization, "name"),
        (organization, "defaultCurrency"),
        (organization, "settings"),
        (pipeline.as_str(), "name"),
        (pipeline.as_str(), "stages"),
        (hook.as_str(), "url"),
        (hook.as_str(), "eventTypes"),
        (hook.as_str(), "active"),
    ] {
        let (_, before) = app.get_json(&owner.access_token, path).await;
        let (status, problem) = call(&app, &owner, "PATCH", path, json!({ field: null })).await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (400, Some("invalid_body")),
            "{path} {field}: {problem}"
        );
        let (_, after) = app.get_json(&owner.access_token, path).await;
        assert_eq!(before, after, "{path} {field}");
    }
}
