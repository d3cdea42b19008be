//! The trash (`GET /contacts/deleted`) over HTTP against the real database: deleted
//! contacts, most recently deleted first, paged by a cursor that belongs to the list and
//! the organization, visible to every role of their organization only.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod contact_api;

use chrono::{DateTime, Duration};
use contact_api::{assert_problem, call, count, create, seats_field, send};
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
    restore(&app, &owner, &made[1]).await;
    let page = call(&app, &owner, "GET", "/api/v1/contacts/deleted", None).await;
    assert_eq!(ids(&page.body), [made[0].as_str()]);
}

/// Restores the contact `id` from the trash, answering 200; the restored contact.
async fn restore(app: &TestApp, owner: &nexus_app::testing::TestUser, id: &str) -> Value {
    let res = call(
        app,
        owner,
        "POST",
        &format!("/api/v1/contacts/{id}/restore"),
        None,
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.body);
    res.body
}

/// Deletes `contact` (soft); its id.
async fn trash(app: &TestApp, owner: &nexus_app::testing::TestUser, contact: &Value) -> String {
    let id = contact["id"].as_str().unwrap().to_owned();
    let res = call(
        app,
        owner,
        "DELETE",
        &format!("/api/v1/contacts/{id}"),
        None,
    )
    .await;
    assert_eq!(res.status, 204);
    id
}

#[tokio::test]
async fn a_tag_only_the_trash_holds_is_not_found_and_trashed_carriers_follow_a_rename() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@trash-tags.io").await;
    for (name, tags) in [("A", json!(["vip"])), ("B", json!(["vip"]))] {
        create(
            &app,
            &owner,
            json!({"firstName": name, "lastName": "Tag", "tags": tags}),
        )
        .await;
    }
    let trashed = create(
        &app,
        &owner,
        json!({"firstName": "C", "lastName": "Tag", "tags": ["old", "vip"]}),
    )
    .await;
    let id = trash(&app, &owner, &trashed).await;
    let tags = call(&app, &owner, "GET", "/api/v1/tags?includeTotal=true", None).await;
    assert_eq!(tags.body["data"], json!([{"name": "vip", "count": 2}]));
    assert_eq!(tags.body["total"], 1, "the trash's tags are not counted");

    // `old` is not listed, so it is not found, and nothing is written.
    let events = "SELECT count(*) AS n FROM events WHERE type = 'contact.updated'";
    let version = format!("SELECT version::bigint AS n FROM contacts WHERE id = '{id}'");
    let trashed_version = count(&app, &version).await;
    let rename = call(
        &app,
        &owner,
        "PATCH",
        "/api/v1/tags/old",
        Some(json!({"name": "new"})),
    )
    .await;
    assert_problem(&rename, 404, "not_found");
    let delete = call(&app, &owner, "DELETE", "/api/v1/tags/old", None).await;
    assert_problem(&delete, 404, "not_found");
    let untouched =
        format!("SELECT count(*) AS n FROM contacts WHERE id = '{id}' AND tags = '{{old,vip}}'");
    assert_eq!(count(&app, &untouched).await, 1);
    assert_eq!(count(&app, &version).await, trashed_version);
    assert_eq!(count(&app, events).await, 0);
    let audited = "SELECT count(*) AS n FROM audit_log WHERE action LIKE 'tag.%'";
    assert_eq!(count(&app, audited).await, 0, "a 404 leaves no audit entry");

    // A listed tag's rename counts the live contacts it changed, as the list counted
    // them, and takes the trashed carrier along, with an event saying it is deleted.
    let rename = call(
        &app,
        &owner,
        "PATCH",
        "/api/v1/tags/vip",
        Some(json!({"name": "gold"})),
    )
    .await;
    assert_eq!(rename.status, 200, "{}", rename.body);
    assert_eq!(rename.body, json!({"name": "gold", "contactsUpdated": 2}));
    assert_eq!(count(&app, events).await, 3);
    let trashed_event = format!(
        "SELECT count(*) AS n FROM events WHERE type = 'contact.updated' \
         AND payload->'contact'->>'id' = '{id}' AND payload->'contact' ? 'deletedAt' \
         AND payload->'changes'->'tags'->'to' = '[\"old\", \"gold\"]'::jsonb"
    );
    assert_eq!(count(&app, &trashed_event).await, 1);
    assert_eq!(count(&app, audited).await, 1);
    let restored = restore(&app, &owner, &id).await;
    assert_eq!(restored["tags"], json!(["old", "gold"]));
}

#[tokio::test]
async fn deleting_a_definition_versions_and_announces_trashed_holders_too() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@trash-fields.io").await;
    let field = seats_field(&app, &owner).await;
    assert_eq!(field.status, 201, "{}", field.body);
    let with_seats =
        |name: &str| json!({"firstName": name, "lastName": "Seat", "customFields": {"seats": 3}});
    create(&app, &owner, with_seats("Live")).await;
    let trashed = create(&app, &owner, with_seats("Gone")).await;
    let id = trash(&app, &owner, &trashed).await;

    let url = format!(
        "/api/v1/custom-fields/{}",
        field.body["id"].as_str().unwrap()
    );
    assert_eq!(call(&app, &owner, "DELETE", &url, None).await.status, 204);
    let events = "SELECT count(*) AS n FROM events WHERE type = 'contact.updated' \
         AND payload->'changes'->'customFields'->'to' = '{}'::jsonb";
    assert_eq!(
        count(&app, events).await,
        2,
        "one event per contact changed"
    );
    let trashed_event = format!(
        "SELECT count(*) AS n FROM events WHERE type = 'contact.updated' \
         AND payload->'contact'->>'id' = '{id}' AND payload->'contact'->>'version' = '3' \
         AND payload->'contact' ? 'deletedAt'"
    );
    assert_eq!(count(&app, &trashed_event).await, 1);
}

#[tokio::test]
async fn a_deleted_contacts_activities_leave_the_activity_list_filtered_by_it() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@trash-activities.io").await;
    let contact = create(&app, &owner, json!({"firstName": "Call", "lastName": "Me"})).await;
    let id = contact["id"].as_str().unwrap().to_owned();
    let logged = call(
        &app,
        &owner,
        "POST",
        "/api/v1/activities",
        Some(json!({"type": "CALL", "subject": "First call", "contactId": id})),
    )
    .await;
    assert_eq!(logged.status, 201, "{}", logged.body);
    let url = format!("/api/v1/activities?contactId={id}");
    let listed = || async {
        let page = call(&app, &owner, "GET", &url, None).await;
        assert_eq!(page.status, 200, "{}", page.body);
        page.body["data"].as_array().unwrap().len()
    };
    assert_eq!(listed().await, 1);
    trash(&app, &owner, &contact).await;
    assert_eq!(listed().await, 0, "gone with its contact");
    restore(&app, &owner, &id).await;
    assert_eq!(listed().await, 1, "back with it");
}

#[tokio::test]
async fn a_restore_honours_if_match_and_refuses_an_email_taken_meanwhile() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@restore.io").await;
    let made = create(
        &app,
        &owner,
        json!({"firstName": "Back", "lastName": "Again", "email": "back@restore.io"}),
    )
    .await;
    let id = trash(&app, &owner, &made).await;
    let listed = call(&app, &owner, "GET", "/api/v1/contacts/deleted", None).await;
    let version = listed.body["data"][0]["version"].as_i64().unwrap();
    let restore = |etag: String| {
        let (app, owner, path) = (&app, &owner, format!("/api/v1/contacts/{id}/restore"));
        async move { send(app, owner, "POST", &path, None, &[("if-match", &etag)]).await }
    };

    // Stale: nothing restored.
    let stale = restore(format!("\"{}\"", version - 1)).await;
    assert_problem(&stale, 412, "version_mismatch");
    let malformed = restore("three".to_owned()).await;
    assert_problem(&malformed, 400, "invalid_if_match");
    let still = call(&app, &owner, "GET", &format!("/api/v1/contacts/{id}"), None).await;
    assert_eq!(still.status, 404, "still in the trash");

    // Its email taken by a new contact meanwhile: a clear conflict, still nothing restored.
    create(
        &app,
        &owner,
        json!({"firstName": "New", "lastName": "Owner", "email": "BACK@restore.io"}),
    )
    .await;
    let taken = restore(format!("\"{version}\"")).await;
    assert_problem(&taken, 409, "duplicate_email");
    let deleted =
        format!("SELECT count(*) AS n FROM contacts WHERE id = '{id}' AND deleted_at IS NOT NULL");
    assert_eq!(count(&app, &deleted).await, 1);

    // Once the other lets it go, the current version restores it.
    let other = call(&app, &owner, "GET", "/api/v1/contacts?q=new", None).await;
    let other_id = other.body["data"][0]["id"].as_str().unwrap().to_owned();
    let res = call(
        &app,
        &owner,
        "DELETE",
        &format!("/api/v1/contacts/{other_id}"),
        None,
    )
    .await;
    assert_eq!(res.status, 204);
    let back = restore(format!("\"{version}\"")).await;
    assert_eq!(back.status, 200, "{}", back.body);
    assert_eq!(
        back.etag.as_deref(),
        Some(format!("\"{}\"", version + 1).as_str())
    );
}
