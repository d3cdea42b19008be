//! Tenant isolation and roles of contacts, custom fields and tags over HTTP against the
//! real database, on resources that exist: another organization's custom field, tags and
//! soft-deleted contact are not found on every verb and stay as they were; a VIEWER
//! restores nothing; a user of another organization is no contact's owner.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod contact_api;

use contact_api::{assert_problem, call, count, create, send};
use nexus_app::testing::TestApp;
use serde_json::json;

#[tokio::test]
async fn another_organizations_custom_field_is_not_found_while_it_exists() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@fields-one.io").await;
    let stranger = app.signup("stranger@fields-two.io").await;
    let created = call(
        &app,
        &owner,
        "POST",
        "/api/v1/custom-fields",
        Some(json!({"key": "tier", "label": "Tier", "type": "select", "options": ["gold", "silver"]})),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let url = created.location.unwrap();
    // A contact holds a value: a delete would take it away.
    let held = create(
        &app,
        &owner,
        json!({"firstName": "Ada", "lastName": "L", "customFields": {"tier": "gold"}}),
    )
    .await;

    for (method, body, if_match) in [
        ("GET", None, None),
        ("PATCH", Some(json!({"label": "Theirs"})), None),
        ("PATCH", Some(json!({"label": "Theirs"})), Some("\"1\"")),
        ("PATCH", Some(json!({"type": "text"})), None),
        ("DELETE", None, None),
        ("DELETE", None, Some("\"1\"")),
    ] {
        let headers: Vec<(&str, &str)> = if_match.map(|v| ("If-Match", v)).into_iter().collect();
        let res = send(&app, &stranger, method, &url, body, &headers).await;
        assert_problem(&res, 404, "not_found");
    }
    let listed = call(&app, &stranger, "GET", "/api/v1/custom-fields", None).await;
    assert_eq!(listed.body["data"], json!([]), "{}", listed.body);

    let sql = format!(
        "SELECT count(*) AS n FROM custom_field_definitions WHERE organization_id = '{}' \
         AND key = 'tier' AND label = 'Tier' AND field_type = 'select' AND version = 1",
        owner.org_id
    );
    assert_eq!(count(&app, &sql).await, 1, "the definition is unchanged");
    assert_eq!(
        count(&app, "SELECT count(*) AS n FROM custom_field_definitions").await,
        1
    );
    let sql = format!(
        "SELECT count(*) AS n FROM contacts WHERE id = '{}' AND version = 1 \
         AND custom_fields = '{{\"tier\": \"gold\"}}'::jsonb",
        held["id"].as_str().unwrap()
    );
    assert_eq!(count(&app, &sql).await, 1, "the contact keeps its value");
    let mine = call(&app, &owner, "GET", &url, None).await;
    assert_eq!(
        (
            mine.status,
            mine.etag.as_deref(),
            mine.body["label"].as_str()
        ),
        (200, Some("\"1\""), Some("Tier"))
    );
}

#[tokio::test]
async fn another_organizations_tags_are_neither_listed_renamed_nor_deleted() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@tags-one.io").await;
    let stranger = app.signup("stranger@tags-two.io").await;
    create(
        &app,
        &owner,
        json!({"firstName": "A", "lastName": "A", "tags": ["vip", "hot"]}),
    )
    .await;
    create(
        &app,
        &owner,
        json!({"firstName": "B", "lastName": "B", "tags": ["vip"]}),
    )
    .await;
    create(
        &app,
        &stranger,
        json!({"firstName": "S", "lastName": "S", "tags": ["mine"]}),
    )
    .await;

    let theirs = call(&app, &stranger, "GET", "/api/v1/tags", None).await;
    assert_eq!(theirs.status, 200, "{}", theirs.body);
    assert_eq!(theirs.body["data"], json!([{"name": "mine", "count": 1}]));

    for (method, path, body) in [
        ("PATCH", "/api/v1/tags/vip", Some(json!({"name": "gold"}))),
        ("PATCH", "/api/v1/tags/hot", Some(json!({"name": "vip"}))),
        ("PATCH", "/api/v1/tags/hot", Some(json!({"name": "mine"}))),
        // To its own name: no rename, but still only a tag of the caller's contacts.
        ("PATCH", "/api/v1/tags/vip", Some(json!({"name": "VIP"}))),
        ("DELETE", "/api/v1/tags/vip", None),
        ("DELETE", "/api/v1/tags/hot", None),
    ] {
        let res = call(&app, &stranger, method, path, body).await;
        assert_problem(&res, 404, "not_found");
    }

    let sql = format!(
        "SELECT count(*) AS n FROM contacts WHERE organization_id = '{}' AND version = 1 \
         AND tags IN ('{{vip,hot}}', '{{vip}}')",
        owner.org_id
    );
    assert_eq!(count(&app, &sql).await, 2, "the owner's tags are unchanged");
    let sql = format!(
        "SELECT count(*) AS n FROM contacts WHERE organization_id = '{}' AND version = 1 \
         AND tags = '{{mine}}'",
        stranger.org_id
    );
    assert_eq!(count(&app, &sql).await, 1, "and so are the stranger's");
    assert_eq!(
        count(
            &app,
            "SELECT count(*) AS n FROM events WHERE type = 'contact.updated'"
        )
        .await,
        0
    );
    let mine = call(&app, &owner, "GET", "/api/v1/tags", None).await;
    assert_eq!(
        mine.body["data"],
        json!([{"name": "vip", "count": 2}, {"name": "hot", "count": 1}])
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) AS n FROM audit_log WHERE action LIKE 'tag.%'"
        )
        .await,
        0,
        "the refusals left no audit entry"
    );

    // The owner renames to a name only the stranger uses: a plain rename, no merge
    // with the stranger's tag, whose contact stays as it was.
    let res = call(
        &app,
        &owner,
        "PATCH",
        "/api/v1/tags/hot",
        Some(json!({"name": "mine"})),
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(res.body, json!({"name": "mine", "contactsUpdated": 1}));
    let theirs = call(&app, &stranger, "GET", "/api/v1/tags", None).await;
    assert_eq!(theirs.body["data"], json!([{"name": "mine", "count": 1}]));
    let sql = format!(
        "SELECT count(*) AS n FROM contacts WHERE organization_id = '{}' AND version = 1",
        stranger.org_id
    );
    assert_eq!(count(&app, &sql).await, 1);
}

#[tokio::test]
async fn a_soft_deleted_contact_is_restored_by_no_stranger_and_no_viewer() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@restore-one.io").await;
    let viewer = app
        .add_member(&owner, "viewer@restore-one.io", "VIEWER")
        .await;
    let stranger = app.signup("stranger@restore-two.io").await;
    let c = create(
        &app,
        &owner,
        json!({"firstName": "Gone", "lastName": "Soon"}),
    )
    .await;
    let id = c["id"].as_str().unwrap().to_owned();
    let url = format!("/api/v1/contacts/{id}");
    assert_eq!(call(&app, &owner, "DELETE", &url, None).await.status, 204);
    let still_deleted = format!(
        "SELECT count(*) AS n FROM contacts WHERE id = '{id}' AND version = 2 \
         AND deleted_at IS NOT NULL"
    );
    assert_eq!(count(&app, &still_deleted).await, 1);

    let restore = format!("{url}/restore");
    assert_problem(
        &call(&app, &stranger, "POST", &restore, None).await,
        404,
        "not_found",
    );
    assert_eq!(count(&app, &still_deleted).await, 1);
    assert_problem(
        &call(&app, &viewer, "POST", &restore, None).await,
        403,
        "forbidden",
    );
    assert_eq!(count(&app, &still_deleted).await, 1);
    // A restore is recorded as a `contact.updated` event; none was written.
    let updates = "SELECT count(*) AS n FROM events WHERE type = 'contact.updated'";
    assert_eq!(count(&app, updates).await, 0);
    // The contact was restorable all along: its owner restores it, with its event.
    let restored = call(&app, &owner, "POST", &restore, None).await;
    assert_eq!(restored.status, 200, "{}", restored.body);
    assert_eq!(count(&app, updates).await, 1);
}

#[tokio::test]
async fn a_user_of_another_organization_owns_no_contact_here() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@owners-one.io").await;
    let outsider = app.signup("outsider@owners-two.io").await;
    let not_a_member = |res: &contact_api::Res| {
        assert_problem(res, 422, "validation_failed");
        assert_eq!(res.body["errors"][0]["field"], "ownerId", "{}", res.body);
        assert_eq!(
            res.body["errors"][0]["code"], "not_a_member",
            "{}",
            res.body
        );
    };

    let res = call(
        &app,
        &owner,
        "POST",
        "/api/v1/contacts",
        Some(json!({"firstName": "A", "lastName": "B", "ownerId": outsider.user_id})),
    )
    .await;
    not_a_member(&res);
    assert_eq!(count(&app, "SELECT count(*) AS n FROM contacts").await, 0);

    let c = create(
        &app,
        &owner,
        json!({"firstName": "Mine", "lastName": "Own", "ownerId": owner.user_id}),
    )
    .await;
    let url = format!("/api/v1/contacts/{}", c["id"].as_str().unwrap());
    let res = call(
        &app,
        &owner,
        "PATCH",
        &url,
        Some(json!({"ownerId": outsider.user_id})),
    )
    .await;
    not_a_member(&res);
    let sql = format!(
        "SELECT count(*) AS n FROM contacts WHERE version = 1 AND owner_id = '{}'",
        owner.user_id
    );
    assert_eq!(count(&app, &sql).await, 1, "the owner is unchanged");
    assert_eq!(count(&app, "SELECT count(*) AS n FROM contacts").await, 1);
    assert_eq!(
        count(
            &app,
            "SELECT count(*) AS n FROM events WHERE type LIKE 'contact.%'"
        )
        .await,
        1,
        "only the one create"
    );
}
