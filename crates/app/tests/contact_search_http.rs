//! Search and list parameters over HTTP against the real database: letters PostgreSQL and
//! Rust lower-case differently still match, and a parameter given twice, an inverted date
//! range or an overlong search is a 400 instead of a silent choice.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod contact_api;

use contact_api::{assert_problem, call, create};
use nexus_app::testing::TestApp;
use serde_json::{Value, json};

fn names(page: &Value) -> Vec<&str> {
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["lastName"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn a_search_lowers_its_text_as_the_stored_one_was_lowered() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@letters.io").await;
    for last in ["İnce", "ΟΔΥΣΣΕΥΣ", "Émile", "Plain"] {
        create(&app, &owner, json!({"firstName": "A", "lastName": last})).await;
    }
    // Rust lower-cases `İ` to `i̇` and a final `Σ` to `ς`; PostgreSQL's `lower`, which
    // wrote the searched column, gives `i` and `σ`.
    for (q, found) in [
        ("İnce", "İnce"),
        ("ince", "İnce"),
        ("ΟΔΥΣΣΕΥΣ", "ΟΔΥΣΣΕΥΣ"),
        ("δυσσευσ", "ΟΔΥΣΣΕΥΣ"),
        ("ÉMILE", "Émile"),
        ("émi", "Émile"),
    ] {
        let path = format!("/api/v1/contacts?q={}", urlencode(q));
        let page = call(&app, &owner, "GET", &path, None).await;
        assert_eq!(page.status, 200, "{}", page.body);
        assert_eq!(names(&page.body), [found], "q={q}");
        let counted = call(
            &app,
            &owner,
            "GET",
            &format!("{path}&includeTotal=true"),
            None,
        )
        .await;
        assert_eq!(counted.body["total"], 1, "q={q}");
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test]
async fn parameters_given_twice_inverted_ranges_and_overlong_searches_are_refused() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@params.io").await;
    let res = call(
        &app,
        &owner,
        "POST",
        "/api/v1/custom-fields",
        Some(json!({"key": "plan", "label": "Plan", "type": "select", "options": ["pro", "free"]})),
    )
    .await;
    assert_eq!(res.status, 201, "{}", res.body);
    for (last, plan) in [("Jones", "pro"), ("Smith", "free")] {
        create(
            &app,
            &owner,
            json!({"firstName": "A", "lastName": last, "customFields": {"plan": plan}}),
        )
        .await;
    }
    let long = "x".repeat(301);
    for (query, field) in [
        ("q=jones&q=smith", "q"),
        ("sort=lastName&sort=-lastName", "sort"),
        ("limit=1&limit=2", "limit"),
        ("includeTotal=true&includeTotal=false", "includeTotal"),
        (
            "customFields.plan=pro&customFields.plan=free",
            "customFields.plan",
        ),
        (
            "customFields.plan=pro&customFields%5Bplan%5D=free",
            "customFields[plan]",
        ),
        (
            "createdAfter=2026-02-01T00:00:00Z&createdBefore=2026-01-01T00:00:00Z",
            "createdBefore",
        ),
        (&format!("q={long}"), "q"),
    ] {
        let res = call(
            &app,
            &owner,
            "GET",
            &format!("/api/v1/contacts?{query}"),
            None,
        )
        .await;
        assert_problem(&res, 400, "invalid_query");
        assert_eq!(
            res.body["errors"][0]["field"], field,
            "{query}: {}",
            res.body
        );
        // The export reads its filters the same way (and takes no paging at all).
        let res = call(
            &app,
            &owner,
            "GET",
            &format!("/api/v1/contacts/export?{query}"),
            None,
        )
        .await;
        assert_problem(&res, 400, "invalid_query");
    }

    // What stays allowed: tags repeat, two custom fields, an empty range, 300 characters.
    for query in [
        "tag=a&tag=b".to_owned(),
        "customFields.plan=pro&sort=lastName".to_owned(),
        "createdAfter=2026-01-01T00:00:00Z&createdBefore=2026-01-01T00:00:00Z".to_owned(),
        format!("q={}", "x".repeat(300)),
    ] {
        let res = call(
            &app,
            &owner,
            "GET",
            &format!("/api/v1/contacts?{query}"),
            None,
        )
        .await;
        assert_eq!(res.status, 200, "{query}: {}", res.body);
    }
    let res = call(
        &app,
        &owner,
        "GET",
        "/api/v1/contacts?customFields%5Bplan%5D=pro",
        None,
    )
    .await;
    assert_eq!(names(&res.body), ["Jones"]);
}
