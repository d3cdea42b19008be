//! The trash (`GET /contacts/deleted`) over HTTP against the real database: deleted
//! contacts, most recently deleted first, paged by a cursor that belongs to the list and
//! the organization, visible to every role of their organization only.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod contact_api;

use chrono::{DateTime, Duration};
use contact_api::{assert_problem, call, create};
use nexus_app::testing::TestApp;
use serde_json::{Value, json};

fn ids(page: &Value) -> Vec<&str> {
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn deleted_contacts_are_listed_newest_deletion_first_until_restored() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@trash.io").await;
    let viewer = app.add_member(&owner, "viewer@trash.io", "VIEWER").await;
    let other = app.signup("owner@elsewhere.io").await;
    let mut made = Vec::new();
    for name in ["First", "Second", "Kept"] {
        let c = create(
            &app,
            &owner,
            json!({"firstName": name, "lastName": "Trash", "tags": ["a", "b"]}),
        )
        .await;
        made.push(c["id"].as_str().unwrap().to_owned());
    }
    let theirs = create(
        &app,
        &other,
        json!({"firstName": "Their", "lastName": "Own"}),
    )
    .await;
    for id in [&made[0], &made[1]] {
        let res = call(
            &app,
            &owner,
            "DELETE",
            &format!("/api/v1/contacts/{id}"),
            None,
        )
        .await;
        assert_eq!(res.status, 204);
    }
    let res = call(
        &app,
        &other,
        "DELETE",
        &format!("/api/v1/contacts/{}", theirs["id"].as_str().unwrap()),
        None,
    )
    .await;
    assert_eq!(res.status, 204);

    let page = call(&app, &viewer, "GET", "/api/v1/contacts/deleted", None).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(ids(&page.body), [made[1].as_str(), made[0].as_str()]);
    assert!(page.body["nextCursor"].is_null());
    let second = &page.body["data"][0];
    assert_eq!(second["firstName"], "Second");
    let deleted_at = DateTime::parse_from_rfc3339(second["deletedAt"].as_str().unwrap()).unwrap();
    let until = DateTime::parse_from_rfc3339(second["restorableUntil"].as_str().unwrap()).unwrap();
    assert_eq!(until - deleted_at, Duration::days(30));

    // A page at a time, each contact once.
    let first = call(
        &app,
        &owner,
        "GET",
        "/api/v1/contacts/deleted?limit=1",
        None,
    )
    .await;
    assert_eq!(ids(&first.body), [made[1].as_str()]);
    let cursor = first.body["nextCursor"].as_str().unwrap().to_owned();
    let next = call(
        &app,
        &owner,
        "GET",
        &format!("/api/v1/contacts/deleted?limit=1&cursor={cursor}"),
        None,
    )
    .await;
    assert_eq!(next.status, 200, "{}", next.body);
    assert_eq!(ids(&next.body), [made[0].as_str()]);
    assert!(next.body["nextCursor"].is_null());

    // Another organization sees its own trash only, and cannot use this one's cursor.
    let theirs_page = call(&app, &other, "GET", "/api/v1/contacts/deleted", None).await;
    assert_eq!(ids(&theirs_page.body), [theirs["id"].as_str().unwrap()]);
    let res = call(
        &app,
        &other,
        "GET",
        &format!("/api/v1/contacts/deleted?cursor={cursor}"),
        None,
    )
    .await;
    assert_problem(&res, 400, "invalid_cursor");
    // Nor does another list's cursor, a forged one, or a parameter of another list pass.
    let tags = call(&app, &owner, "GET", "/api/v1/tags?limit=1", None).await;
    let tags_cursor = tags.body["nextCursor"].as_str().unwrap();
    let mut forged = cursor.clone();
    forged.replace_range(10..11, if &cursor[10..11] == "A" { "B" } else { "A" });
    for query in [
        format!("cursor={forged}"),
        "cursor=abc".to_owned(),
        "limit=0".to_owned(),
        "q=first".to_owned(),
    ]
    .into_iter()
    .chain([format!("cursor={tags_cursor}")])
    {
        let res = call(
            &app,
            &owner,
            "GET",
            &format!("/api/v1/contacts/deleted?{query}"),
            None,
        )
        .await;
        assert_eq!(res.status, 400, "{query}: {}", res.body);
    }

    // A restored contact leaves the trash.
    let res = call(
        &app,
        &owner,
        "POST",
        &format!("/api/v1/contacts/{}/restore", made[1]),
        None,
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.body);
    let page = call(&app, &owner, "GET", "/api/v1/contacts/deleted", None).await;
    assert_eq!(ids(&page.body), [made[0].as_str()]);
}
