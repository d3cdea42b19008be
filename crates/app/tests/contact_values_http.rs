//! Values at the edges of what a contact can hold, over HTTP against the real database:
//! whatever is accepted reads back (lower-casing must not turn an accepted value into
//! one the server refuses to read), text PostgreSQL cannot store is refused up front,
//! an owner who left the organization does not freeze their contacts, and a cursor
//! belongs to exactly one set of filters.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod contact_api;

use contact_api::{assert_problem, call, count, create};
use nexus_app::testing::TestApp;
use serde_json::json;

const CONTACTS: &str = "SELECT count(*) AS n FROM contacts";

#[tokio::test]
async fn what_lower_casing_lengthens_is_checked_as_stored_and_reads_back() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@casing.io").await;

    // `İ` lower-cases to two characters: 25 make a 50-character tag, 26 are too many.
    let fits = "İ".repeat(25);
    let created = create(
        &app,
        &owner,
        json!({"firstName": "Ilk", "lastName": "Yılmaz", "tags": [fits, "vip"]}),
    )
    .await;
    let id = created["id"].as_str().unwrap();
    let one = call(&app, &owner, "GET", &format!("/api/v1/contacts/{id}"), None).await;
    assert_eq!(one.status, 200, "{}", one.body);
    assert_eq!(one.body["tags"][0].as_str().unwrap().chars().count(), 50);
    let page = call(&app, &owner, "GET", "/api/v1/contacts", None).await;
    assert_eq!(page.status, 200, "{}", page.body);

    let long = "İ".repeat(26);
    let res = call(
        &app,
        &owner,
        "POST",
        "/api/v1/contacts",
        Some(json!({"firstName": "A", "lastName": "B", "tags": [long]})),
    )
    .await;
    assert_problem(&res, 422, "validation_failed");
    assert_eq!(res.body["errors"][0]["code"], "too_long", "{}", res.body);
    for email in ["İ@example.com", &format!("{}@example.com", "İ".repeat(32))] {
        let res = call(
            &app,
            &owner,
            "POST",
            "/api/v1/contacts",
            Some(json!({"firstName": "A", "lastName": "B", "email": email})),
        )
        .await;
        assert_problem(&res, 422, "validation_failed");
    }
    // A rename is held to the same rule, or it would break every contact with the tag.
    let res = call(
        &app,
        &owner,
        "PATCH",
        "/api/v1/tags/vip",
        Some(json!({"name": "İ".repeat(26)})),
    )
    .await;
    assert_eq!(res.status, 422, "{}", res.body);
    assert_eq!(count(&app, CONTACTS).await, 1);
    let page = call(&app, &owner, "GET", "/api/v1/contacts", None).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(page.body["data"][0]["tags"][1], "vip");
}

#[tokio::test]
async fn text_with_a_nul_is_refused_and_writes_nothing() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@nul.io").await;
    let res = call(
        &app,
        &owner,
        "POST",
        "/api/v1/custom-fields",
        Some(json!({"key": "notes", "label": "Notes", "type": "text"})),
    )
    .await;
    assert_eq!(res.status, 201, "{}", res.body);
    let ada = create(
        &app,
        &owner,
        json!({"firstName": "Ada", "lastName": "Lovelace"}),
    )
    .await;

    for (body, field) in [
        (
            json!({"firstName": "A\u{0}da", "lastName": "L"}),
            "firstName",
        ),
        (
            json!({"firstName": "Ada", "lastName": "L", "company": "Acme\u{0}"}),
            "company",
        ),
        (
            json!({"firstName": "Ada", "lastName": "L", "customFields": {"notes": "a\u{0}b"}}),
            "customFields.notes",
        ),
    ] {
        let res = call(&app, &owner, "POST", "/api/v1/contacts", Some(body)).await;
        assert_problem(&res, 422, "validation_failed");
        assert_eq!(res.body["errors"][0]["field"], field, "{}", res.body);
        assert_eq!(res.body["errors"][0]["code"], "invalid_format");
    }
    let url = format!("/api/v1/contacts/{}", ada["id"].as_str().unwrap());
    let res = call(
        &app,
        &owner,
        "PATCH",
        &url,
        Some(json!({"lastName": "Love\u{0}lace"})),
    )
    .await;
    assert_problem(&res, 422, "validation_failed");
    assert_eq!(count(&app, CONTACTS).await, 1);
    assert_eq!(
        count(&app, "SELECT count(*) AS n FROM contacts WHERE version = 1").await,
        1
    );

    for query in ["q=a%00", "customFields.notes=a%00b", "tag=a%00"] {
        let res = call(
            &app,
            &owner,
            "GET",
            &format!("/api/v1/contacts?{query}"),
            None,
        )
        .await;
        assert_problem(&res, 400, "invalid_query");
    }
}

#[tokio::test]
async fn an_owner_who_left_does_not_freeze_their_contacts() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@leavers.io").await;
    let rep = app.add_member(&owner, "rep@leavers.io", "MEMBER").await;
    let contact = create(
        &app,
        &owner,
        json!({"firstName": "Ada", "lastName": "Lovelace", "ownerId": rep.user_id}),
    )
    .await;
    let url = format!("/api/v1/contacts/{}", contact["id"].as_str().unwrap());
    let res = call(
        &app,
        &owner,
        "DELETE",
        &format!("/api/v1/members/{}", rep.user_id),
        None,
    )
    .await;
    assert_eq!(res.status, 204, "{}", res.body);

    let res = call(
        &app,
        &owner,
        "PATCH",
        &url,
        Some(json!({"company": "Engines"})),
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(res.body["ownerId"], json!(rep.user_id));
    // Naming the one who left as a new owner is still refused.
    let other = create(&app, &owner, json!({"firstName": "Bo", "lastName": "B"})).await;
    let other_url = format!("/api/v1/contacts/{}", other["id"].as_str().unwrap());
    let res = call(
        &app,
        &owner,
        "PATCH",
        &other_url,
        Some(json!({"ownerId": rep.user_id})),
    )
    .await;
    assert_problem(&res, 422, "validation_failed");
    assert_eq!(res.body["errors"][0]["code"], "not_a_member");

    let res = call(&app, &owner, "DELETE", &url, None).await;
    assert_eq!(res.status, 204, "{}", res.body);
    let res = call(&app, &owner, "POST", &format!("{url}/restore"), None).await;
    assert_eq!(res.status, 200, "{}", res.body);
}

#[tokio::test]
async fn a_cursor_belongs_to_one_set_of_filters_whatever_their_characters() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@cursors.io").await;
    for name in ["One", "Two"] {
        create(
            &app,
            &owner,
            json!({"firstName": name, "lastName": "X", "company": "a&tag=b", "tags": ["b"]}),
        )
        .await;
    }
    let first = call(
        &app,
        &owner,
        "GET",
        "/api/v1/contacts?q=a%26tag%3Db&limit=1",
        None,
    )
    .await;
    assert_eq!(first.status, 200, "{}", first.body);
    let cursor = first.body["nextCursor"].as_str().unwrap().to_owned();
    let next = call(
        &app,
        &owner,
        "GET",
        &format!("/api/v1/contacts?q=a%26tag%3Db&limit=1&cursor={cursor}"),
        None,
    )
    .await;
    assert_eq!(next.status, 200, "{}", next.body);
    // `q=a&tag=b` once joined into one string looked the same as the query above.
    let other = call(
        &app,
        &owner,
        "GET",
        &format!("/api/v1/contacts?q=a&tag=b&limit=1&cursor={cursor}"),
        None,
    )
    .await;
    assert_problem(&other, 400, "invalid_cursor");
}

#[tokio::test]
async fn a_select_field_becomes_text_without_its_options_being_named() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@retype.io").await;
    let res = call(
        &app,
        &owner,
        "POST",
        "/api/v1/custom-fields",
        Some(json!({"key": "tier", "label": "Tier", "type": "select", "options": ["gold", "silver"]})),
    )
    .await;
    assert_eq!(res.status, 201, "{}", res.body);
    let url = res.location.unwrap();

    let res = call(&app, &owner, "PATCH", &url, Some(json!({"type": "text"}))).await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(
        (&res.body["type"], &res.body["options"]),
        (&json!("text"), &json!([]))
    );
    // Back to select, options must be named again: the old ones are gone.
    let res = call(&app, &owner, "PATCH", &url, Some(json!({"type": "select"}))).await;
    assert_problem(&res, 422, "validation_failed");
    assert_eq!(res.body["errors"][0]["field"], "options");

    for body in [
        json!({"label": "Ti\u{0}er"}),
        json!({"type": "select", "options": ["go\u{0}ld"]}),
    ] {
        let res = call(&app, &owner, "PATCH", &url, Some(body)).await;
        assert_problem(&res, 422, "validation_failed");
    }
    let res = call(&app, &owner, "GET", &url, None).await;
    assert_eq!(
        (&res.body["label"], &res.body["version"]),
        (&json!("Tier"), &json!(2)),
        "{}",
        res.body
    );
}

#[tokio::test]
async fn null_in_a_definition_patch_clears_options_and_is_refused_for_the_rest() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@nulls.io").await;
    let res = call(
        &app,
        &owner,
        "POST",
        "/api/v1/custom-fields",
        Some(json!({"key": "tier", "label": "Tier", "type": "select", "required": true, "options": ["gold"]})),
    )
    .await;
    assert_eq!(res.status, 201, "{}", res.body);
    let url = res.location.unwrap();

    // What every definition has cannot be cleared, and a refused patch changes nothing.
    for field in ["label", "type", "required"] {
        let res = call(&app, &owner, "PATCH", &url, Some(json!({ field: null }))).await;
        assert_problem(&res, 422, "validation_failed");
        assert_eq!(
            (
                &res.body["errors"][0]["field"],
                &res.body["errors"][0]["code"]
            ),
            (&json!(field), &json!("required")),
            "{}",
            res.body
        );
    }
    // Every null is named at once; a role that may not change definitions hears that first.
    let res = call(
        &app,
        &owner,
        "PATCH",
        &url,
        Some(json!({"label": null, "required": null})),
    )
    .await;
    assert_problem(&res, 422, "validation_failed");
    assert_eq!(
        (
            &res.body["errors"][0]["field"],
            &res.body["errors"][1]["field"]
        ),
        (&json!("label"), &json!("required")),
        "{}",
        res.body
    );
    let viewer = app.add_member(&owner, "viewer@nulls.io", "VIEWER").await;
    let res = call(&app, &viewer, "PATCH", &url, Some(json!({"label": null}))).await;
    assert_problem(&res, 403, "forbidden");
    // Clearing a select's options leaves it unusable: refused.
    let res = call(&app, &owner, "PATCH", &url, Some(json!({"options": null}))).await;
    assert_problem(&res, 422, "validation_failed");
    assert_eq!(res.body["errors"][0]["field"], "options");
    let res = call(&app, &owner, "GET", &url, None).await;
    assert_eq!(
        (
            &res.body["label"],
            &res.body["type"],
            &res.body["required"],
            &res.body["options"],
            &res.body["version"]
        ),
        (
            &json!("Tier"),
            &json!("select"),
            &json!(true),
            &json!(["gold"]),
            &json!(1)
        ),
        "{}",
        res.body
    );

    // Turned into text in the same patch, the cleared options are accepted.
    let res = call(
        &app,
        &owner,
        "PATCH",
        &url,
        Some(json!({"type": "text", "options": null, "required": false})),
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(
        (
            &res.body["type"],
            &res.body["options"],
            &res.body["required"]
        ),
        (&json!("text"), &json!([]), &json!(false))
    );
}

#[tokio::test]
async fn a_timeline_cursor_belongs_to_its_contact_and_cannot_be_edited() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@timeline-cursors.io").await;
    let a = create(&app, &owner, json!({"firstName": "Ada", "lastName": "A"})).await;
    let b = create(&app, &owner, json!({"firstName": "Bo", "lastName": "B"})).await;
    let (a, b) = (a["id"].as_str().unwrap(), b["id"].as_str().unwrap());
    for (contact, day) in [(a, 1), (a, 2), (a, 3), (b, 1), (b, 2)] {
        let logged = call(
            &app,
            &owner,
            "POST",
            "/api/v1/activities",
            Some(
                json!({"type": "NOTE", "subject": format!("{contact} {day}"), "contactId": contact,
                        "occurredAt": format!("2026-01-0{day}T10:00:00Z")}),
            ),
        )
        .await;
        assert_eq!(logged.status, 201, "{}", logged.body);
    }
    let timeline = |id: &str| format!("/api/v1/contacts/{id}/timeline?limit=1");
    let first = call(&app, &owner, "GET", &timeline(a), None).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let cursor = first.body["nextCursor"].as_str().unwrap().to_owned();
    // The cursor is good where it was issued.
    let next = call(
        &app,
        &owner,
        "GET",
        &format!("{}&cursor={cursor}", timeline(a)),
        None,
    )
    .await;
    assert_eq!(next.status, 200, "{}", next.body);
    assert_eq!(next.body["data"][0]["subject"], format!("{a} 2"));

    // One character flipped: in the middle of the cursor (its position), and in the
    // middle of its signature (which only the signature check can notice).
    let flipped = |at: usize| {
        let mut edited = cursor.clone().into_bytes();
        edited[at] = if edited[at] == b'A' { b'B' } else { b'A' };
        String::from_utf8(edited).unwrap()
    };
    let dot = cursor.find('.').unwrap();
    let middle = if cursor.len() / 2 == dot {
        dot + 1
    } else {
        cursor.len() / 2
    };
    let in_signature = dot + (cursor.len() - dot) / 2;
    for path in [
        format!("{}&cursor={cursor}", timeline(b)),
        format!("{}&cursor={}", timeline(a), flipped(middle)),
        format!("{}&cursor={}", timeline(a), flipped(in_signature)),
    ] {
        let res = call(&app, &owner, "GET", &path, None).await;
        assert_problem(&res, 400, "invalid_cursor");
    }
}

#[tokio::test]
async fn custom_fields_and_tags_page_and_count_like_every_list() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@lists.io").await;
    for key in ["plan", "seats", "region"] {
        let res = call(
            &app,
            &owner,
            "POST",
            "/api/v1/custom-fields",
            Some(json!({"key": key, "label": key, "type": "text"})),
        )
        .await;
        assert_eq!(res.status, 201, "{}", res.body);
    }
    let keys = |body: &serde_json::Value| -> Vec<String> {
        body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["key"].as_str().unwrap().to_owned())
            .collect()
    };
    // `limit` is honoured, in creation order, with a cursor to the rest.
    let first = call(
        &app,
        &owner,
        "GET",
        "/api/v1/custom-fields?limit=2&includeTotal=true",
        None,
    )
    .await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(keys(&first.body), ["plan", "seats"]);
    assert_eq!(first.body["total"], 3);
    let cursor = first.body["nextCursor"].as_str().unwrap().to_owned();
    let second = call(
        &app,
        &owner,
        "GET",
        &format!("/api/v1/custom-fields?limit=2&cursor={cursor}"),
        None,
    )
    .await;
    assert_eq!(keys(&second.body), ["region"]);
    assert_eq!(second.body["nextCursor"], serde_json::Value::Null);
    assert!(second.body.get("total").is_none(), "{}", second.body);

    create(
        &app,
        &owner,
        json!({"firstName": "A", "lastName": "A", "tags": ["hot", "vip"]}),
    )
    .await;
    create(
        &app,
        &owner,
        json!({"firstName": "B", "lastName": "B", "tags": ["hot", "cold"]}),
    )
    .await;
    let tags = call(
        &app,
        &owner,
        "GET",
        "/api/v1/tags?limit=1&includeTotal=true",
        None,
    )
    .await;
    assert_eq!(tags.body["data"], json!([{"name": "hot", "count": 2}]));
    assert_eq!(tags.body["total"], 3);
    let tags_cursor = tags.body["nextCursor"].as_str().unwrap().to_owned();

    // Another organization sees its own (empty) lists and cannot use these cursors; a
    // cursor of one list is refused by the other; bad parameters are refused.
    let stranger = app.signup("stranger@lists.io").await;
    let theirs = call(
        &app,
        &stranger,
        "GET",
        "/api/v1/tags?includeTotal=true",
        None,
    )
    .await;
    assert_eq!(
        theirs.body,
        json!({"data": [], "nextCursor": null, "total": 0})
    );
    let theirs = call(
        &app,
        &stranger,
        "GET",
        "/api/v1/custom-fields?includeTotal=true",
        None,
    )
    .await;
    assert_eq!(
        theirs.body,
        json!({"data": [], "nextCursor": null, "total": 0})
    );
    for (who, path, code) in [
        (
            &stranger,
            format!("/api/v1/custom-fields?cursor={cursor}"),
            "invalid_cursor",
        ),
        (
            &owner,
            format!("/api/v1/custom-fields?cursor={tags_cursor}"),
            "invalid_cursor",
        ),
        (
            &owner,
            format!("/api/v1/tags?cursor={cursor}"),
            "invalid_cursor",
        ),
        (
            &owner,
            "/api/v1/custom-fields?cursor=abc".to_owned(),
            "invalid_cursor",
        ),
        (
            &owner,
            "/api/v1/custom-fields?limit=0".to_owned(),
            "invalid_query",
        ),
        (
            &owner,
            "/api/v1/custom-fields?limit=201".to_owned(),
            "invalid_query",
        ),
        (
            &owner,
            "/api/v1/custom-fields?sort=key".to_owned(),
            "invalid_query",
        ),
        (
            &owner,
            "/api/v1/custom-fields?includeTotal=yes".to_owned(),
            "invalid_query",
        ),
        (
            &owner,
            "/api/v1/tags?includeTotal=1".to_owned(),
            "invalid_query",
        ),
    ] {
        assert_problem(&call(&app, who, "GET", &path, None).await, 400, code);
    }
}

#[tokio::test]
async fn a_tag_holding_the_csv_separator_is_refused_but_one_stored_before_is_found_and_renamed() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@separator.io").await;
    // `;` separates tags in a CSV cell: such a tag would come back from an export as two.
    let res = call(
        &app,
        &owner,
        "POST",
        "/api/v1/contacts",
        Some(json!({"firstName": "A", "lastName": "A", "tags": ["ok", "x;y"]})),
    )
    .await;
    assert_problem(&res, 422, "validation_failed");
    assert_eq!(res.body["errors"][0]["field"], "tags[1]");
    assert_eq!(res.body["errors"][0]["code"], "invalid_format");
    assert_eq!(count(&app, CONTACTS).await, 0);

    let kept = create(
        &app,
        &owner,
        json!({"firstName": "B", "lastName": "B", "tags": ["legacy"]}),
    )
    .await;
    let id = kept["id"].as_str().unwrap();
    let res = call(
        &app,
        &owner,
        "PATCH",
        &format!("/api/v1/contacts/{id}"),
        Some(json!({"tags": ["a;b"]})),
    )
    .await;
    assert_problem(&res, 422, "validation_failed");
    let res = call(
        &app,
        &owner,
        "PATCH",
        "/api/v1/tags/legacy",
        Some(json!({"name": "x;y"})),
    )
    .await;
    assert_problem(&res, 422, "validation_failed");

    // A tag written before the rule (here by hand) is still read, filtered on and renamed.
    let mut conn = app.pool.get().await.unwrap();
    diesel_async::RunQueryDsl::execute(
        diesel::sql_query(format!(
            "UPDATE contacts SET tags = '{{\"old;tag\"}}' WHERE id = '{id}'"
        )),
        &mut conn,
    )
    .await
    .unwrap();
    let one = call(&app, &owner, "GET", &format!("/api/v1/contacts/{id}"), None).await;
    assert_eq!(one.body["tags"], json!(["old;tag"]));
    // It does not block its contact's updates, and stays unless the patch drops it.
    for (patch, tags) in [
        (json!({"firstName": "Bo"}), json!(["old;tag"])),
        (
            json!({"tags": ["old;tag", "new"]}),
            json!(["old;tag", "new"]),
        ),
    ] {
        let res = call(
            &app,
            &owner,
            "PATCH",
            &format!("/api/v1/contacts/{id}"),
            Some(patch),
        )
        .await;
        assert_eq!(res.status, 200, "{}", res.body);
        assert_eq!(res.body["tags"], tags);
    }
    let found = call(&app, &owner, "GET", "/api/v1/contacts?tag=old%3Btag", None).await;
    assert_eq!(found.body["data"][0]["id"], id);
    let renamed = call(
        &app,
        &owner,
        "PATCH",
        "/api/v1/tags/old%3Btag",
        Some(json!({"name": "old-tag"})),
    )
    .await;
    assert_eq!(renamed.status, 200, "{}", renamed.body);
    assert_eq!(renamed.body["contactsUpdated"], 1);
    let one = call(&app, &owner, "GET", &format!("/api/v1/contacts/{id}"), None).await;
    assert_eq!(one.body["tags"], json!(["old-tag", "new"]));
}
