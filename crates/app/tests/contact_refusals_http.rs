//! Bad requests to the contacts endpoints, over HTTP against the real database: each is
//! refused with a problem naming what is wrong, by a caller allowed to write, and writes
//! nothing (no contact, no definition, no event, no audit entry).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod contact_api;

use contact_api::{assert_problem, call, count, create, send};
use nexus_app::testing::TestApp;
use serde_json::{Value, json};

const WRITTEN: &str = "SELECT (SELECT count(*) FROM contacts) + (SELECT count(*) FROM events) \
     + (SELECT count(*) FROM custom_field_definitions) + (SELECT count(*) FROM audit_log) \
     + (SELECT sum(version) FROM contacts) AS n";

#[tokio::test]
async fn malformed_reads_and_writes_are_refused_and_write_nothing() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@refusals.io").await;
    let contact = create(
        &app,
        &owner,
        json!({"firstName": "Ada", "lastName": "Lovelace"}),
    )
    .await;
    let id = contact["id"].as_str().unwrap();
    let long = |n: usize| "x".repeat(n);
    let person = |extra: Value| {
        let mut body = json!({"firstName": "Grace", "lastName": "Hopper"});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    let options: Vec<String> = (0..101).map(|i| format!("o{i}")).collect();
    let cases: Vec<(&str, String, Option<Value>, u16, &str)> = vec![
        // Lists: every parameter checked, whatever list.
        (
            "GET",
            "/api/v1/contacts?tag=".into(),
            None,
            400,
            "invalid_query",
        ),
        (
            "GET",
            format!("/api/v1/contacts?tag={}", long(51)),
            None,
            400,
            "invalid_query",
        ),
        (
            "GET",
            "/api/v1/contacts?limit=100000".into(),
            None,
            400,
            "invalid_query",
        ),
        (
            "GET",
            "/api/v1/contacts?limit=abc".into(),
            None,
            400,
            "invalid_query",
        ),
        (
            "GET",
            "/api/v1/contacts?limit=-1".into(),
            None,
            400,
            "invalid_query",
        ),
        (
            "GET",
            "/api/v1/contacts/export?tag=".into(),
            None,
            400,
            "invalid_query",
        ),
        (
            "GET",
            "/api/v1/contacts/export?limit=5".into(),
            None,
            400,
            "invalid_query",
        ),
        (
            "GET",
            format!("/api/v1/contacts/{id}/timeline?limit=0"),
            None,
            400,
            "invalid_query",
        ),
        (
            "GET",
            format!("/api/v1/contacts/{id}/timeline?limit=201"),
            None,
            400,
            "invalid_query",
        ),
        (
            "GET",
            format!("/api/v1/contacts/{id}/timeline?foo=1"),
            None,
            400,
            "invalid_query",
        ),
        // Ids that are not ids name nothing.
        (
            "GET",
            "/api/v1/contacts/imports/not-a-uuid".into(),
            None,
            404,
            "not_found",
        ),
        (
            "GET",
            "/api/v1/custom-fields/not-a-uuid".into(),
            None,
            404,
            "not_found",
        ),
        (
            "POST",
            "/api/v1/contacts/not-a-uuid/restore".into(),
            None,
            404,
            "not_found",
        ),
        // Bodies of the wrong types or sizes.
        (
            "POST",
            "/api/v1/contacts".into(),
            Some(person(json!({"firstName": 123}))),
            422,
            "validation_failed",
        ),
        (
            "POST",
            "/api/v1/contacts".into(),
            Some(person(json!({"tags": "vip"}))),
            422,
            "validation_failed",
        ),
        (
            "POST",
            "/api/v1/contacts".into(),
            Some(person(json!({"customFields": []}))),
            422,
            "validation_failed",
        ),
        (
            "POST",
            "/api/v1/contacts".into(),
            Some(person(json!({"lifecycleStage": 5}))),
            422,
            "validation_failed",
        ),
        (
            "POST",
            "/api/v1/contacts".into(),
            Some(person(json!({"firstName": long(101)}))),
            422,
            "validation_failed",
        ),
        (
            "POST",
            "/api/v1/contacts".into(),
            Some(person(json!({"company": long(201)}))),
            422,
            "validation_failed",
        ),
        (
            "POST",
            "/api/v1/contacts".into(),
            Some(person(json!({"phone": "1".repeat(51)}))),
            422,
            "validation_failed",
        ),
        (
            "POST",
            "/api/v1/contacts".into(),
            Some(person(json!({"notes": long(2 << 20)}))),
            413,
            "payload_too_large",
        ),
        (
            "PATCH",
            format!("/api/v1/contacts/{id}"),
            Some(json!({"firstName": 123})),
            422,
            "validation_failed",
        ),
        (
            "PATCH",
            format!("/api/v1/contacts/{id}"),
            Some(json!({"tags": {"a": 1}})),
            422,
            "validation_failed",
        ),
        (
            "POST",
            "/api/v1/contacts/batch".into(),
            Some(json!({"items": []})),
            422,
            "validation_failed",
        ),
        (
            "POST",
            "/api/v1/contacts/imports?foo=1".into(),
            None,
            400,
            "invalid_query",
        ),
        (
            "POST",
            "/api/v1/custom-fields".into(),
            Some(json!({"key": "plan", "label": long(101), "type": "text"})),
            422,
            "validation_failed",
        ),
        (
            "POST",
            "/api/v1/custom-fields".into(),
            Some(json!({"key": "plan", "label": "Plan", "type": "select", "options": options})),
            422,
            "validation_failed",
        ),
    ];
    let before = count(&app, WRITTEN).await;
    for (method, path, body, status, code) in cases {
        let res = call(&app, &owner, method, &path, body).await;
        assert_eq!(
            (res.status, res.body["code"].as_str()),
            (status, Some(code)),
            "{method} {path}: {}",
            res.body
        );
        assert_eq!(
            res.content_type, "application/problem+json",
            "{method} {path}"
        );
        assert_eq!(count(&app, WRITTEN).await, before, "{method} {path} wrote");
    }
    // What is wrong with a limit is told apart: not a number, or out of range.
    for (limit, code) in [
        ("abc", "invalid_type"),
        ("1.5", "invalid_type"),
        ("-1", "out_of_range"),
        ("201", "out_of_range"),
        ("99999999999999999999", "out_of_range"),
    ] {
        let res = call(
            &app,
            &owner,
            "GET",
            &format!("/api/v1/contacts?limit={limit}"),
            None,
        )
        .await;
        assert_eq!(
            res.body["errors"],
            json!([{"field": "limit", "code": code, "message": "expected an integer from 1 to 200"}]),
            "{limit}"
        );
    }
    // A malformed If-Match from a caller who may delete is a 400, not a delete.
    let url = format!("/api/v1/contacts/{id}");
    for (method, path) in [("DELETE", url.clone()), ("POST", format!("{url}/restore"))] {
        let res = send(&app, &owner, method, &path, None, &[("if-match", "three")]).await;
        assert_problem(&res, 400, "invalid_if_match");
    }
    assert_eq!(count(&app, WRITTEN).await, before);
}
