//! The served OpenAPI document against the server that serves it: every query parameter
//! the document declares is one the route's parser knows by that name.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use nexus_app::testing::{TestApp, TestUser};
use serde_json::Value;

/// A value of the parameter's schema that its parser takes (or refuses for its value, not
/// its name).
fn sample(spec: &Value, schema: &Value, name: &str) -> String {
    if let Some(target) = schema["$ref"].as_str() {
        let key = target.rsplit('/').next().unwrap_or_default();
        return sample(spec, &spec["components"]["schemas"][key], name);
    }
    if let Some(first) = schema["enum"].as_array().and_then(|e| e.first()) {
        return first
            .as_str()
            .map_or_else(|| first.to_string(), str::to_owned);
    }
    if let Some(one) = schema["oneOf"].as_array().and_then(|o| o.first()) {
        return sample(spec, one, name);
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    let format = schema["format"].as_str().unwrap_or_default();
    if types.contains(&"array") {
        return sample(spec, &schema["items"], name);
    }
    if types.contains(&"integer") || types.contains(&"number") {
        return schema["minimum"].as_i64().unwrap_or(1).to_string();
    }
    if types.contains(&"boolean") {
        return "true".into();
    }
    match (format, name) {
        ("uuid", _) => uuid::Uuid::new_v4().to_string(),
        ("date-time", _) => "2024-01-01T00:00:00Z".into(),
        ("date", _) => "2024-01-01".into(),
        (_, "tagMode") => "any".into(),
        (_, "sort") => "-createdAt".into(),
        _ => "x".into(),
    }
}

/// The request with `name=value` only, and whether the answer refused `name` as unknown.
async fn refused_as_unknown(
    app: &TestApp,
    user: &TestUser,
    path: &str,
    name: &str,
    value: &str,
) -> (bool, u16, String) {
    let res = reqwest::Client::new()
        .get(app.url(path))
        .query(&[(name, value)])
        .bearer_auth(&user.access_token)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    if status != 400 {
        // Streams (CSV, SSE) are not read.
        return (false, status, String::new());
    }
    let body = res.text().await.unwrap_or_default();
    let problem: Value = serde_json::from_str(&body).unwrap_or_default();
    let detail = problem["detail"].as_str().unwrap_or_default();
    // The three parsers: the contacts list's, the activities', serde's (`web::Query`).
    let unknown = problem["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|e| e["field"] == name && e["code"] == "unknown_parameter")
        || detail.contains(&format!("unknown parameter {name}"))
        || detail.contains(&format!("unknown field `{name}`"));
    (unknown, status, body)
}

#[tokio::test]
async fn every_documented_query_parameter_is_read_under_its_documented_name() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@params.io").await;
    let (status, spec) = app
        .get_json(&owner.access_token, "/api/v1/openapi.json")
        .await;
    assert_eq!(status, 200);
    let mut checked = 0;
    for (template, item) in spec["paths"].as_object().unwrap() {
        let Some(op) = item.get("get") else { continue };
        let params = op["parameters"].as_array().cloned().unwrap_or_default();
        let query: Vec<&Value> = params.iter().filter(|p| p["in"] == "query").collect();
        if query.is_empty() {
            continue;
        }
        let mut path = template.clone();
        for p in params.iter().filter(|p| p["in"] == "path") {
            let name = p["name"].as_str().unwrap();
            path = path.replace(&format!("{{{name}}}"), &uuid::Uuid::new_v4().to_string());
        }
        let id = op["operationId"].as_str().unwrap_or(template);
        // The parser refuses names it does not know, or this test could not fail.
        let (control, status, body) =
            refused_as_unknown(&app, &owner, &path, "not_a_parameter", "1").await;
        assert!(
            control,
            "{id}: an unknown parameter is not refused as such ({status} {body})"
        );
        for p in query {
            let name = p["name"].as_str().unwrap();
            let value = sample(&spec, &p["schema"], name);
            // A deepObject parameter goes on the wire as `name[property]=value`.
            let wire = if p["style"] == "deepObject" {
                format!("{name}[key]")
            } else {
                name.to_owned()
            };
            let (unknown, status, body) =
                refused_as_unknown(&app, &owner, &path, &wire, &value).await;
            assert!(
                !unknown,
                "{id} documents `{name}` but refuses it as unknown ({status} {body})"
            );
            checked += 1;
        }
    }
    assert!(checked > 40, "only {checked} parameters checked");
}
