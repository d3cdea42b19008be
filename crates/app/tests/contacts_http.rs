//! Contacts, custom fields and tags over HTTP against the real database: the contract
//! (statuses, ETags, problems), RBAC, tenant isolation, validation that writes nothing,
//! optimistic concurrency, keyset cursors that cannot be forged.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod contact_api;

use contact_api::{assert_problem, call, count, create, seats_field, send};
use nexus_app::testing::{TestApp, TestUser};
use serde_json::{Value, json};

#[tokio::test]
async fn crud_with_etags_merge_patch_soft_delete_restore_and_events() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@crud.io").await;
    let res = call(
        &app,
        &owner,
        "POST",
        "/api/v1/contacts",
        Some(json!({"firstName": " Ada ", "lastName": "Lovelace", "email": "ADA@Example.com", "phone": "+44 20 7946 0958",
                    "tags": ["VIP", "vip", "Math"], "ownerId": owner.user_id})),
    )
    .await;
    assert_eq!(res.status, 201, "{}", res.body);
    let id = res.body["id"].as_str().unwrap().to_owned();
    assert_eq!(
        res.location.as_deref(),
        Some(format!("/api/v1/contacts/{id}").as_str())
    );
    assert_eq!(res.etag.as_deref(), Some("\"1\""));
    assert_eq!(res.body["firstName"], "Ada");
    assert_eq!(res.body["email"], "ada@example.com");
    assert_eq!(res.body["phoneE164"], "+442079460958");
    assert_eq!(res.body["tags"], json!(["vip", "math"]));
    assert_eq!(res.body["lifecycleStage"], "lead");
    assert_eq!(res.body["leadScore"], 30);

    let got = call(&app, &owner, "GET", &format!("/api/v1/contacts/{id}"), None).await;
    assert_eq!((got.status, got.etag.as_deref()), (200, Some("\"1\"")));
    assert_eq!(
        got.body, res.body,
        "a read shows exactly what the create returned"
    );

    // Merge patch: null clears, absent stays, customFields would merge per key.
    let url = format!("/api/v1/contacts/{id}");
    let patched = send(
        &app,
        &owner,
        "PATCH",
        &url,
        Some(json!({"phone": null, "lifecycleStage": "customer"})),
        &[("If-Match", "\"1\"")],
    )
    .await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(patched.etag.as_deref(), Some("\"2\""));
    assert_eq!(patched.body["phone"], Value::Null);
    assert_eq!(patched.body["email"], "ada@example.com");
    assert_eq!(patched.body["leadScore"], 60);

    // A stale If-Match changes nothing.
    let stale = send(
        &app,
        &owner,
        "PATCH",
        &url,
        Some(json!({"company": "Nope"})),
        &[("If-Match", "\"1\"")],
    )
    .await;
    assert_problem(&stale, 412, "version_mismatch");
    assert_problem(
        &send(&app, &owner, "DELETE", &url, None, &[("If-Match", "\"1\"")]).await,
        412,
        "version_mismatch",
    );
    assert_eq!(count(&app, "SELECT count(*) AS n FROM contacts WHERE company IS NULL AND version = 2 AND deleted_at IS NULL").await, 1);

    // application/merge-patch+json is accepted; other media types are not.
    let typed = reqwest::Client::new()
        .patch(app.url(&url))
        .bearer_auth(&owner.access_token)
        .header("content-type", "application/merge-patch+json")
        .body(r#"{"company": "Analytical Engines"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(typed.status().as_u16(), 200);
    let text = reqwest::Client::new()
        .patch(app.url(&url))
        .bearer_auth(&owner.access_token)
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(text.status().as_u16(), 415);

    let deleted = send(&app, &owner, "DELETE", &url, None, &[("If-Match", "\"3\"")]).await;
    assert_eq!(deleted.status, 204);
    assert_problem(
        &call(&app, &owner, "GET", &url, None).await,
        404,
        "not_found",
    );
    let list = call(&app, &owner, "GET", "/api/v1/contacts", None).await;
    assert_eq!(list.body["data"], json!([]), "deleted contacts leave lists");

    let restored = call(&app, &owner, "POST", &format!("{url}/restore"), None).await;
    assert_eq!(
        (restored.status, restored.etag.as_deref()),
        (200, Some("\"5\""))
    );
    assert_problem(
        &call(&app, &owner, "POST", &format!("{url}/restore"), None).await,
        409,
        "not_deleted",
    );
    assert_eq!(call(&app, &owner, "GET", &url, None).await.status, 200);

    let types = count(
        &app,
        "SELECT count(*) AS n FROM events WHERE type LIKE 'contact.%'",
    )
    .await;
    assert_eq!(types, 5, "created, 2 updates, deleted, restored");
    assert_eq!(
        count(
            &app,
            "SELECT count(*) AS n FROM events WHERE type = 'contact.deleted'"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn another_organizations_contact_is_not_found_on_every_verb() {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice@one.io").await;
    let bob = app.signup("bob@two.io").await;
    let theirs = create(
        &app,
        &alice,
        json!({"firstName": "Secret", "lastName": "Contact"}),
    )
    .await;
    let url = format!("/api/v1/contacts/{}", theirs["id"].as_str().unwrap());
    for (method, path, body) in [
        ("GET", url.clone(), None),
        ("PATCH", url.clone(), Some(json!({"firstName": "Hacked"}))),
        ("DELETE", url.clone(), None),
        ("POST", format!("{url}/restore"), None),
        ("GET", format!("{url}/timeline"), None),
    ] {
        assert_problem(
            &call(&app, &bob, method, &path, body).await,
            404,
            "not_found",
        );
    }
    let batch = call(
        &app,
        &bob,
        "POST",
        "/api/v1/contacts/batch",
        Some(json!({"items": [
            {"op": "delete", "id": theirs["id"]},
            {"op": "update", "id": theirs["id"], "data": {"firstName": "Mine"}}
        ]})),
    )
    .await;
    assert_eq!(batch.body["results"][0]["status"], 404, "{}", batch.body);
    assert_eq!(batch.body["results"][1]["status"], 404, "{}", batch.body);
    assert_eq!(
        call(&app, &bob, "GET", "/api/v1/contacts?q=secret", None)
            .await
            .body["data"],
        json!([])
    );
    assert_eq!(count(&app, "SELECT count(*) AS n FROM contacts WHERE first_name = 'Secret' AND version = 1 AND deleted_at IS NULL").await, 1);
    // Garbage ids are simply not found.
    assert_problem(
        &call(&app, &bob, "GET", "/api/v1/contacts/not-a-uuid", None).await,
        404,
        "not_found",
    );
}

#[tokio::test]
async fn viewers_read_and_every_write_is_forbidden() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@rbac.io").await;
    let viewer = app.add_member(&owner, "viewer@rbac.io", "VIEWER").await;
    let member = app.add_member(&owner, "member@rbac.io", "MEMBER").await;
    let c = create(
        &app,
        &member,
        json!({"firstName": "Ada", "lastName": "L", "tags": ["vip"]}),
    )
    .await;
    let url = format!("/api/v1/contacts/{}", c["id"].as_str().unwrap());
    assert_eq!(call(&app, &viewer, "GET", &url, None).await.status, 200);
    assert_eq!(
        call(&app, &viewer, "GET", "/api/v1/contacts", None)
            .await
            .status,
        200
    );
    for (method, path, body) in [
        (
            "POST",
            "/api/v1/contacts".to_owned(),
            Some(json!({"firstName": "V", "lastName": "V"})),
        ),
        ("PATCH", url.clone(), Some(json!({"firstName": "V"}))),
        ("DELETE", url.clone(), None),
        ("POST", format!("{url}/restore"), None),
        (
            "POST",
            "/api/v1/custom-fields".to_owned(),
            Some(json!({"key": "k", "label": "K", "type": "text"})),
        ),
        (
            "PATCH",
            "/api/v1/tags/vip".to_owned(),
            Some(json!({"name": "gold"})),
        ),
        ("DELETE", "/api/v1/tags/vip".to_owned(), None),
    ] {
        assert_problem(
            &call(&app, &viewer, method, &path, body).await,
            403,
            "forbidden",
        );
    }
    // The role is decided before the request's headers and body are read: a malformed
    // If-Match or a body of the wrong type is still a 403 for a VIEWER (a MEMBER for a
    // custom field), not a 400 or 415.
    let field = seats_field(&app, &owner).await;
    let field_url = field.location.clone().unwrap();
    let no_body = None;
    let label = Some(json!({"label": "Places"}));
    for (who, method, path, body, headers) in [
        (
            &viewer,
            "PATCH",
            url.clone(),
            no_body.clone(),
            [("if-match", "3"), ("content-type", "text/plain")],
        ),
        (
            &viewer,
            "DELETE",
            url.clone(),
            no_body.clone(),
            [("if-match", "3"), ("x-nothing", "")],
        ),
        (
            &viewer,
            "POST",
            format!("{url}/restore"),
            no_body.clone(),
            [("if-match", "3"), ("x-nothing", "")],
        ),
        (
            &member,
            "PATCH",
            field_url.clone(),
            label,
            [("if-match", "3"), ("x-nothing", "")],
        ),
        (
            &member,
            "DELETE",
            field_url.clone(),
            no_body,
            [("if-match", "3"), ("x-nothing", "")],
        ),
    ] {
        let res = send(&app, who, method, &path, body, &headers).await;
        assert_problem(&res, 403, "forbidden");
    }
    // Bodies too: whatever they hold, the role is answered first.
    for (who, method, path) in [
        (&member, "POST", "/api/v1/custom-fields".to_owned()),
        (&member, "PATCH", field_url.clone()),
        (&viewer, "PATCH", "/api/v1/tags/vip".to_owned()),
        (&viewer, "POST", "/api/v1/contacts".to_owned()),
    ] {
        for content_type in ["text/plain", "application/json"] {
            let res = reqwest::Client::new()
                .request(method.parse().unwrap(), app.url(&path))
                .bearer_auth(&who.access_token)
                .header("content-type", content_type)
                .body("{not json")
                .send()
                .await
                .unwrap();
            assert_eq!(res.status().as_u16(), 403, "{method} {path} {content_type}");
        }
    }
    // Custom field definitions are OWNER/ADMIN only.
    let res = call(
        &app,
        &member,
        "POST",
        "/api/v1/custom-fields",
        Some(json!({"key": "k", "label": "K", "type": "text"})),
    )
    .await;
    assert_problem(&res, 403, "forbidden");
    let batch = call(
        &app,
        &viewer,
        "POST",
        "/api/v1/contacts/batch",
        Some(json!({"items": [{"op": "create", "data": {"firstName": "V", "lastName": "V"}}]})),
    )
    .await;
    assert_problem(&batch, 403, "forbidden");
    // Refused whole before its items are read: an empty batch or a malformed body too.
    for body in [
        json!({"items": []}),
        json!({"items": [{"op": "explode"}]}),
        json!([1]),
    ] {
        let batch = call(&app, &viewer, "POST", "/api/v1/contacts/batch", Some(body)).await;
        assert_problem(&batch, 403, "forbidden");
    }
    assert_eq!(count(&app, "SELECT count(*) AS n FROM contacts").await, 1);
    assert_eq!(
        count(
            &app,
            "SELECT count(*) AS n FROM contacts WHERE version = 1 AND tags = '{vip}'"
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) AS n FROM custom_field_definitions WHERE label = 'Seats' AND version = 1"
        )
        .await,
        1,
        "the owner's one, unchanged"
    );
    assert_eq!(
        count(&app, "SELECT count(*) AS n FROM custom_field_definitions").await,
        1
    );
    // No token at all: 401.
    let anon = reqwest::Client::new()
        .get(app.url("/api/v1/contacts"))
        .send()
        .await
        .unwrap();
    assert_eq!(anon.status().as_u16(), 401);
}

#[tokio::test]
async fn invalid_input_writes_nothing() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@valid.io").await;
    let res = seats_field(&app, &owner).await;
    assert_eq!(res.status, 201, "{}", res.body);
    create(
        &app,
        &owner,
        json!({"firstName": "Taken", "lastName": "Email", "email": "taken@x.io"}),
    )
    .await;
    let many_tags: Vec<String> = (0..51).map(|i| format!("t{i}")).collect();
    for (body, status, code, field) in [
        (
            json!({"firstName": "A", "lastName": "B", "email": "not-an-email"}),
            422,
            "validation_failed",
            "email",
        ),
        (
            json!({"firstName": "  ", "lastName": "B"}),
            422,
            "validation_failed",
            "firstName",
        ),
        (
            json!({"lastName": "B"}),
            422,
            "validation_failed",
            "firstName",
        ),
        (
            json!({"firstName": "A", "lastName": "B", "customFields": {"colour": "red"}}),
            422,
            "validation_failed",
            "customFields.colour",
        ),
        (
            json!({"firstName": "A", "lastName": "B", "customFields": {"seats": "twelve"}}),
            422,
            "validation_failed",
            "customFields.seats",
        ),
        (
            json!({"firstName": "A", "lastName": "B", "tags": many_tags}),
            422,
            "validation_failed",
            "tags",
        ),
        (
            json!({"firstName": "A", "lastName": "B", "leadScore": 100}),
            422,
            "validation_failed",
            "leadScore",
        ),
        (
            json!({"firstName": "A", "lastName": "B", "nickname": "x"}),
            400,
            "invalid_body",
            "nickname",
        ),
        (
            json!({"firstName": "A", "lastName": "B", "ownerId": uuid::Uuid::now_v7()}),
            422,
            "validation_failed",
            "ownerId",
        ),
        (
            json!({"firstName": "A", "lastName": "B", "email": "TAKEN@x.io"}),
            409,
            "duplicate_email",
            "",
        ),
    ] {
        let res = call(&app, &owner, "POST", "/api/v1/contacts", Some(body.clone())).await;
        assert_problem(&res, status, code);
        if !field.is_empty() {
            assert!(
                res.body["errors"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|e| e["field"] == field),
                "{body} → {}",
                res.body
            );
        }
    }
    let not_json = reqwest::Client::new()
        .post(app.url("/api/v1/contacts"))
        .bearer_auth(&owner.access_token)
        .header("content-type", "application/json")
        .body("{oops")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status().as_u16(), 400);

    // Same rules on PATCH.
    let c = create(
        &app,
        &owner,
        json!({"firstName": "Ok", "lastName": "Contact"}),
    )
    .await;
    let url = format!("/api/v1/contacts/{}", c["id"].as_str().unwrap());
    assert_problem(
        &call(&app, &owner, "PATCH", &url, Some(json!({"email": "bad@"}))).await,
        422,
        "validation_failed",
    );
    assert_problem(
        &call(&app, &owner, "PATCH", &url, Some(json!({"lastName": null}))).await,
        422,
        "validation_failed",
    );
    assert_problem(
        &call(&app, &owner, "PATCH", &url, Some(json!({"shoeSize": 9}))).await,
        400,
        "invalid_body",
    );
    for (body, field) in [
        (
            json!({"customFields": {"colour": "red"}}),
            "customFields.colour",
        ),
        (
            json!({"customFields": {"seats": "twelve"}}),
            "customFields.seats",
        ),
        (json!({"tags": many_tags}), "tags"),
        (json!({"firstName": "  "}), "firstName"),
    ] {
        let res = call(&app, &owner, "PATCH", &url, Some(body.clone())).await;
        assert_problem(&res, 422, "validation_failed");
        assert!(
            res.body["errors"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["field"] == field),
            "{body} → {}",
            res.body
        );
    }
    assert_problem(
        &call(
            &app,
            &owner,
            "PATCH",
            &url,
            Some(json!({"email": "taken@X.io"})),
        )
        .await,
        409,
        "duplicate_email",
    );
    assert_problem(
        &send(
            &app,
            &owner,
            "PATCH",
            &url,
            Some(json!({})),
            &[("If-Match", "three")],
        )
        .await,
        400,
        "invalid_if_match",
    );

    assert_eq!(count(&app, "SELECT count(*) AS n FROM contacts").await, 2);
    assert_eq!(
        count(&app, "SELECT count(*) AS n FROM contacts WHERE version = 1").await,
        2
    );
    assert_eq!(
        count(&app, "SELECT count(*) AS n FROM contacts WHERE first_name = 'Ok' AND version = 1 AND tags = '{}' AND custom_fields = '{}'::jsonb").await,
        1
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) AS n FROM events WHERE type LIKE 'contact.%'"
        )
        .await,
        2
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) AS n FROM events WHERE type = 'contact.updated'"
        )
        .await,
        0
    );
}

#[tokio::test]
async fn lists_search_filter_sort_and_page_with_unforgeable_cursors() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@list.io").await;
    let other = app.signup("owner@elsewhere.io").await;
    let res = call(&app, &owner, "POST", "/api/v1/custom-fields", Some(json!({"key": "industry", "label": "Industry", "type": "select", "options": ["saas", "retail"]}))).await;
    assert_eq!(res.status, 201);
    let industry = res.location.unwrap();
    for i in 0..7 {
        let industry = if i % 2 == 0 { "saas" } else { "retail" };
        let tags = if i < 3 {
            json!(["vip", "hot"])
        } else {
            json!(["vip"])
        };
        create(&app, &owner, json!({"firstName": format!("Person{i}"), "lastName": format!("Smithson{i}"), "email": format!("p{i}@corp.io"),
            "tags": tags, "lifecycleStage": if i == 6 { "customer" } else { "lead" }, "customFields": {"industry": industry}})).await;
    }
    create(
        &app,
        &owner,
        json!({"firstName": "Grace", "lastName": "Hopper", "company": "Navy"}),
    )
    .await;
    create(
        &app,
        &other,
        json!({"firstName": "Other", "lastName": "Smithson"}),
    )
    .await;

    // Walk `?q=smith&limit=3` newest first through every page.
    let mut seen = Vec::new();
    let mut next: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &next {
            Some(c) => format!("/api/v1/contacts?q=SMITH&limit=3&cursor={c}"),
            None => "/api/v1/contacts?q=SMITH&limit=3".to_owned(),
        };
        let page = call(&app, &owner, "GET", &path, None).await;
        assert_eq!(page.status, 200, "{}", page.body);
        assert!(page.body.get("total").is_none(), "no count by default");
        pages += 1;
        seen.extend(
            page.body["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["firstName"].as_str().unwrap().to_owned()),
        );
        match page.body["nextCursor"].as_str() {
            Some(c) => next = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(
        seen,
        (0..7)
            .rev()
            .map(|i| format!("Person{i}"))
            .collect::<Vec<_>>()
    );

    let first = call(
        &app,
        &owner,
        "GET",
        "/api/v1/contacts?q=smith&limit=3&includeTotal=true",
        None,
    )
    .await;
    assert_eq!(first.body["total"], 7);
    let cursor = first.body["nextCursor"].as_str().unwrap().to_owned();

    // Forged, altered, or replayed against another query or tenant: 400, never rows.
    let mut flipped = cursor.clone().into_bytes();
    flipped[3] = if flipped[3] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    for path in [
        "/api/v1/contacts?cursor=not-a-cursor".to_owned(),
        format!("/api/v1/contacts?q=smith&limit=3&cursor={flipped}"),
        format!("/api/v1/contacts?q=other&limit=3&cursor={cursor}"),
        format!("/api/v1/contacts?q=smith&sort=lastName&cursor={cursor}"),
    ] {
        assert_problem(
            &call(&app, &owner, "GET", &path, None).await,
            400,
            "invalid_cursor",
        );
    }
    assert_problem(
        &call(
            &app,
            &other,
            "GET",
            &format!("/api/v1/contacts?q=smith&limit=3&cursor={cursor}"),
            None,
        )
        .await,
        400,
        "invalid_cursor",
    );

    let names = async |path: &str| -> Vec<String> {
        let res = call(&app, &owner, "GET", path, None).await;
        assert_eq!(res.status, 200, "{path}: {}", res.body);
        res.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["firstName"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(names("/api/v1/contacts?q=navy").await, ["Grace"]);
    assert_eq!(names("/api/v1/contacts?q=grace%20hop").await, ["Grace"]);
    assert_eq!(
        names("/api/v1/contacts?tag=hot&sort=createdAt").await,
        ["Person0", "Person1", "Person2"]
    );
    assert_eq!(
        names("/api/v1/contacts?tag=HOT&tag=vip&tagMode=all&sort=-createdAt&limit=2").await,
        ["Person2", "Person1"]
    );
    assert_eq!(
        names("/api/v1/contacts?lifecycleStage=customer").await,
        ["Person6"]
    );
    assert_eq!(
        names("/api/v1/contacts?customFields.industry=retail&sort=createdAt").await,
        ["Person1", "Person3", "Person5"]
    );
    // As generated clients send it (OpenAPI deepObject); a cursor of one spelling serves
    // the other.
    assert_eq!(
        names("/api/v1/contacts?customFields%5Bindustry%5D=retail&sort=createdAt").await,
        ["Person1", "Person3", "Person5"]
    );
    let first = call(
        &app,
        &owner,
        "GET",
        "/api/v1/contacts?customFields[industry]=retail&sort=createdAt&limit=2",
        None,
    )
    .await;
    let cursor = first.body["nextCursor"].as_str().unwrap().to_owned();
    assert_eq!(
        names(&format!(
            "/api/v1/contacts?customFields.industry=retail&sort=createdAt&limit=2&cursor={cursor}"
        ))
        .await,
        ["Person5"]
    );
    // Narrowed to one option, the contacts still holding the other are found by it.
    let res = call(
        &app,
        &owner,
        "PATCH",
        &industry,
        Some(json!({"options": ["saas"]})),
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(
        names("/api/v1/contacts?customFields.industry=retail&sort=createdAt").await,
        ["Person1", "Person3", "Person5"]
    );
    assert_eq!(
        names("/api/v1/contacts?customFields.industry=mining").await,
        Vec::<String>::new()
    );
    assert_eq!(
        names("/api/v1/contacts?sort=lastName&limit=1").await,
        ["Grace"]
    );
    assert_eq!(
        names("/api/v1/contacts?sort=-leadScore&limit=1").await,
        ["Person6"]
    );
    assert_eq!(
        names(&format!("/api/v1/contacts?ownerId={}", owner.user_id)).await,
        Vec::<String>::new()
    );
    assert_eq!(
        names("/api/v1/contacts?createdBefore=2000-01-01T00:00:00Z").await,
        Vec::<String>::new()
    );
    assert_eq!(
        names("/api/v1/contacts?createdAfter=2000-01-01T00:00:00Z&limit=200")
            .await
            .len(),
        8
    );
    // An offset's `+` sent unencoded (form decoding makes it a space) is read as `+`;
    // encoded or negative offsets as they are.
    for bound in [
        "2000-01-01T02:00:00+02:00",
        "2000-01-01T02:00:00.5%2B02:00",
        "1999-12-31T19:00:00-05:00",
    ] {
        assert_eq!(
            names(&format!("/api/v1/contacts?createdAfter={bound}&limit=200"))
                .await
                .len(),
            8,
            "{bound}"
        );
    }
    assert_eq!(
        names("/api/v1/contacts?createdBefore=2000-01-01T02:00:00+02:00").await,
        Vec::<String>::new()
    );

    for path in [
        "/api/v1/contacts?limit=0",
        "/api/v1/contacts?limit=201",
        "/api/v1/contacts?sort=email",
        "/api/v1/contacts?lifecycleStage=prospect",
        "/api/v1/contacts?createdAfter=yesterday",
        "/api/v1/contacts?createdAfter=2000-01-01T02:00:00+2:00",
        "/api/v1/contacts?createdAfter=2000-01-01 02:00:00",
        "/api/v1/contacts?colour=red",
        "/api/v1/contacts?customFields.colour=red",
        "/api/v1/contacts?customFields.industry=",
        "/api/v1/contacts?customFields%5Bindustry=retail",
        "/api/v1/contacts?customFields%5B%5D=retail",
        "/api/v1/contacts?customFields=retail",
        "/api/v1/contacts?tagMode=some",
    ] {
        assert_problem(
            &call(&app, &owner, "GET", path, None).await,
            400,
            "invalid_query",
        );
    }
}

#[tokio::test]
async fn custom_field_definitions_lifecycle() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@fields.io").await;
    let admin = app.add_member(&owner, "admin@fields.io", "ADMIN").await;
    let member = app.add_member(&owner, "member@fields.io", "MEMBER").await;
    let created = seats_field(&app, &admin).await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.etag.as_deref(), Some("\"1\""));
    let url = created.location.clone().unwrap();
    assert_problem(
        &call(
            &app,
            &admin,
            "POST",
            "/api/v1/custom-fields",
            Some(json!({"key": "seats", "label": "Again", "type": "text"})),
        )
        .await,
        409,
        "duplicate_key",
    );
    assert_problem(
        &call(
            &app,
            &admin,
            "POST",
            "/api/v1/custom-fields",
            Some(json!({"key": "Bad Key", "label": "X", "type": "text"})),
        )
        .await,
        422,
        "validation_failed",
    );
    assert_problem(
        &call(
            &app,
            &admin,
            "POST",
            "/api/v1/custom-fields",
            Some(json!({"key": "pick", "label": "X", "type": "select"})),
        )
        .await,
        422,
        "validation_failed",
    );
    assert_problem(
        &call(
            &app,
            &admin,
            "POST",
            "/api/v1/custom-fields",
            Some(json!({"key": "x", "label": "X", "type": "colour"})),
        )
        .await,
        400,
        "invalid_body",
    );
    // Unknown properties are refused, not ignored: nothing is created or changed.
    assert_problem(
        &call(
            &app,
            &admin,
            "POST",
            "/api/v1/custom-fields",
            Some(json!({"key": "plan", "label": "Plan", "type": "text", "colour": "red"})),
        )
        .await,
        400,
        "invalid_body",
    );
    for body in [
        json!({"label": "Renamed", "colour": "red"}),
        json!({"label": "Renamed", "key": "renamed"}),
    ] {
        assert_problem(
            &call(&app, &admin, "PATCH", &url, Some(body)).await,
            400,
            "invalid_body",
        );
    }
    assert_eq!(
        count(&app, "SELECT count(*) AS n FROM custom_field_definitions").await,
        1
    );
    assert_eq!(
        count(&app, "SELECT count(*) AS n FROM custom_field_definitions WHERE key = 'seats' AND label = 'Seats' AND version = 1").await,
        1
    );
    assert_eq!(
        call(&app, &member, "GET", "/api/v1/custom-fields", None)
            .await
            .body["data"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // While no contact holds a value the type may change; afterwards it may not.
    let retyped = call(
        &app,
        &admin,
        "PATCH",
        &url,
        Some(json!({"type": "text", "label": "Seat count"})),
    )
    .await;
    assert_eq!(
        (retyped.status, retyped.etag.as_deref()),
        (200, Some("\"2\"")),
        "{}",
        retyped.body
    );
    let c = create(
        &app,
        &member,
        json!({"firstName": "A", "lastName": "B", "customFields": {"seats": "a dozen"}}),
    )
    .await;
    assert_problem(
        &call(&app, &admin, "PATCH", &url, Some(json!({"type": "number"}))).await,
        409,
        "field_type_in_use",
    );
    assert_problem(
        &send(
            &app,
            &admin,
            "PATCH",
            &url,
            Some(json!({"label": "L"})),
            &[("If-Match", "\"1\"")],
        )
        .await,
        412,
        "version_mismatch",
    );

    // MEMBERs and VIEWERs read definitions but neither change nor delete them.
    let viewer = app.add_member(&owner, "viewer@fields.io", "VIEWER").await;
    for who in [&member, &viewer] {
        assert_problem(
            &call(&app, who, "PATCH", &url, Some(json!({"label": "Mine"}))).await,
            403,
            "forbidden",
        );
        assert_problem(
            &call(&app, who, "DELETE", &url, None).await,
            403,
            "forbidden",
        );
    }
    // A stale or malformed If-Match deletes nothing (the contact's value and version
    // stay: see below).
    assert_problem(
        &send(&app, &owner, "DELETE", &url, None, &[("If-Match", "\"1\"")]).await,
        412,
        "version_mismatch",
    );
    assert_problem(
        &send(&app, &owner, "DELETE", &url, None, &[("If-Match", "one")]).await,
        400,
        "invalid_if_match",
    );
    // Another organization neither reads, changes nor deletes it while it exists.
    let stranger = app.signup("stranger@else.io").await;
    for (method, body) in [
        ("GET", None),
        ("PATCH", Some(json!({"label": "Theirs"}))),
        ("DELETE", None),
    ] {
        assert_problem(
            &call(&app, &stranger, method, &url, body).await,
            404,
            "not_found",
        );
    }
    assert_eq!(
        count(&app, "SELECT count(*) AS n FROM custom_field_definitions WHERE label = 'Seat count' AND version = 2").await,
        1
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) AS n FROM contacts WHERE version = 1 AND custom_fields ? 'seats'"
        )
        .await,
        1
    );
    let kept = call(&app, &owner, "GET", &url, None).await;
    assert_eq!(
        (kept.status, kept.body["label"].as_str()),
        (200, Some("Seat count"))
    );

    // Deleting the definition removes every value.
    let current = kept.etag.unwrap();
    assert_eq!(
        send(
            &app,
            &owner,
            "DELETE",
            &url,
            None,
            &[("If-Match", current.as_str())]
        )
        .await
        .status,
        204
    );
    let contact = call(
        &app,
        &member,
        "GET",
        &format!("/api/v1/contacts/{}", c["id"].as_str().unwrap()),
        None,
    )
    .await;
    assert_eq!(contact.body["customFields"], json!({}));
    assert_eq!(contact.etag.as_deref(), Some("\"2\""));
    assert_problem(
        &call(&app, &owner, "GET", &url, None).await,
        404,
        "not_found",
    );
    assert_problem(
        &call(&app, &stranger, "DELETE", &url, None).await,
        404,
        "not_found",
    );
}

#[tokio::test]
async fn tags_counts_rename_merge_and_delete() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@tags.io").await;
    let a = create(
        &app,
        &owner,
        json!({"firstName": "A", "lastName": "A", "tags": ["hot", "vip"]}),
    )
    .await;
    create(
        &app,
        &owner,
        json!({"firstName": "B", "lastName": "B", "tags": ["hot"]}),
    )
    .await;
    create(
        &app,
        &owner,
        json!({"firstName": "C", "lastName": "C", "tags": ["vip"]}),
    )
    .await;
    let list = call(&app, &owner, "GET", "/api/v1/tags", None).await;
    assert_eq!(
        list.body["data"],
        json!([{"name": "hot", "count": 2}, {"name": "vip", "count": 2}])
    );
    assert_eq!(list.body["nextCursor"], Value::Null);
    // A page at a time, with a cursor no other query or organization accepts.
    let first = call(&app, &owner, "GET", "/api/v1/tags?limit=1", None).await;
    assert_eq!(first.body["data"], json!([{"name": "hot", "count": 2}]));
    let cursor = first.body["nextCursor"].as_str().unwrap().to_owned();
    let second = call(
        &app,
        &owner,
        "GET",
        &format!("/api/v1/tags?limit=1&cursor={cursor}"),
        None,
    )
    .await;
    assert_eq!(second.body["data"], json!([{"name": "vip", "count": 2}]));
    assert_eq!(second.body["nextCursor"], Value::Null);
    let stranger = app.signup("tags-stranger@acme.io").await;
    for (who, query, code) in [
        (&stranger, format!("?cursor={cursor}"), "invalid_cursor"),
        (&owner, format!("?cursor=x{cursor}"), "invalid_cursor"),
        (&owner, "?limit=0".to_owned(), "invalid_query"),
        (&owner, "?sort=name".to_owned(), "invalid_query"),
    ] {
        let res = call(&app, who, "GET", &format!("/api/v1/tags{query}"), None).await;
        assert_problem(&res, 400, code);
    }
    let renamed = call(
        &app,
        &owner,
        "PATCH",
        "/api/v1/tags/hot",
        Some(json!({"name": "VIP"})),
    )
    .await;
    assert_eq!(renamed.status, 200, "{}", renamed.body);
    assert_eq!(renamed.body, json!({"name": "vip", "contactsUpdated": 2}));
    assert_eq!(
        call(&app, &owner, "GET", "/api/v1/tags", None).await.body["data"],
        json!([{"name": "vip", "count": 3}])
    );
    let a = call(
        &app,
        &owner,
        "GET",
        &format!("/api/v1/contacts/{}", a["id"].as_str().unwrap()),
        None,
    )
    .await;
    assert_eq!(a.body["tags"], json!(["vip"]));
    assert_problem(
        &call(
            &app,
            &owner,
            "PATCH",
            "/api/v1/tags/nope",
            Some(json!({"name": "x"})),
        )
        .await,
        404,
        "not_found",
    );
    // Renaming to the same name changes nothing, and still needs the tag to exist.
    assert_problem(
        &call(
            &app,
            &owner,
            "PATCH",
            "/api/v1/tags/nope",
            Some(json!({"name": "NOPE"})),
        )
        .await,
        404,
        "not_found",
    );
    let same = call(
        &app,
        &owner,
        "PATCH",
        "/api/v1/tags/vip",
        Some(json!({"name": "Vip"})),
    )
    .await;
    assert_eq!(same.body, json!({"name": "vip", "contactsUpdated": 0}));
    assert_problem(
        &call(
            &app,
            &owner,
            "PATCH",
            "/api/v1/tags/vip",
            Some(json!({"name": " "})),
        )
        .await,
        422,
        "validation_failed",
    );
    // A body of another shape is refused as such (docs/errors.md: `invalid_body`).
    for body in [json!({"name": "gold", "colour": "red"}), json!({})] {
        assert_problem(
            &call(&app, &owner, "PATCH", "/api/v1/tags/vip", Some(body)).await,
            400,
            "invalid_body",
        );
    }
    // None of the refused renames touched a contact: all three carry `vip` alone, at
    // the versions the one real rename (two contacts) left.
    assert_eq!(
        count(
            &app,
            "SELECT count(*) AS n FROM contacts WHERE tags = '{vip}'"
        )
        .await,
        3
    );
    assert_eq!(
        count(&app, "SELECT coalesce(sum(version), 0) AS n FROM contacts").await,
        5
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) AS n FROM events WHERE type = 'contact.updated'"
        )
        .await,
        2
    );
    assert_eq!(
        call(&app, &owner, "DELETE", "/api/v1/tags/vip", None)
            .await
            .status,
        204
    );
    assert_eq!(
        call(&app, &owner, "GET", "/api/v1/tags", None).await.body["data"],
        json!([])
    );
    assert_problem(
        &call(&app, &owner, "DELETE", "/api/v1/tags/vip", None).await,
        404,
        "not_found",
    );
}

#[tokio::test]
async fn batches_report_each_item_and_timelines_exist() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@batch.io").await;
    let existing = create(&app, &owner, json!({"firstName": "Old", "lastName": "One"})).await;
    let id = existing["id"].clone();
    let res = call(
        &app,
        &owner,
        "POST",
        "/api/v1/contacts/batch",
        Some(json!({"items": [
            {"op": "create", "data": {"firstName": "New", "lastName": "One", "email": "new@one.io"}},
            {"op": "create", "data": {"firstName": "", "lastName": "Bad"}},
            {"op": "create", "data": {"firstName": "Dup", "lastName": "Email", "email": "NEW@one.io"}},
            {"op": "update", "id": id, "data": {"company": "Acme"}, "ifMatch": 1},
            {"op": "update", "id": id, "data": {"company": "Stale"}, "ifMatch": 1},
            {"op": "delete", "id": uuid::Uuid::now_v7()},
        ]})),
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.body);
    let statuses: Vec<u64> = res.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [201, 422, 409, 200, 412, 404]);
    assert_eq!(res.body["results"][3]["data"]["company"], "Acme");
    assert_eq!(res.body["results"][1]["error"]["code"], "validation_failed");
    assert_eq!(res.body["results"][4]["error"]["code"], "version_mismatch");
    assert_eq!(count(&app, "SELECT count(*) AS n FROM contacts").await, 2);
    // The stale update wrote nothing: the contact holds the first update alone.
    assert_eq!(
        count(&app, "SELECT count(*) AS n FROM contacts WHERE first_name = 'Old' AND company = 'Acme' AND version = 2").await,
        1
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) AS n FROM events WHERE type = 'contact.updated'"
        )
        .await,
        1
    );

    let too_many: Vec<Value> = (0..101)
        .map(|i| json!({"op": "create", "data": {"firstName": format!("N{i}"), "lastName": "X"}}))
        .collect();
    assert_problem(
        &call(
            &app,
            &owner,
            "POST",
            "/api/v1/contacts/batch",
            Some(json!({"items": too_many})),
        )
        .await,
        422,
        "validation_failed",
    );
    assert_problem(
        &call(
            &app,
            &owner,
            "POST",
            "/api/v1/contacts/batch",
            Some(json!({"items": [{"op": "explode"}]})),
        )
        .await,
        400,
        "invalid_body",
    );
    assert_eq!(count(&app, "SELECT count(*) AS n FROM contacts").await, 2);

    let timeline = call(
        &app,
        &owner,
        "GET",
        &format!("/api/v1/contacts/{}/timeline", id.as_str().unwrap()),
        None,
    )
    .await;
    assert_eq!(timeline.status, 200);
    assert_eq!(timeline.body, json!({"data": [], "nextCursor": null}));
    let forged = call(
        &app,
        &owner,
        "GET",
        &format!(
            "/api/v1/contacts/{}/timeline?cursor=abc.def",
            id.as_str().unwrap()
        ),
        None,
    )
    .await;
    assert_problem(&forged, 400, "invalid_cursor");
    let missing = call(
        &app,
        &owner,
        "GET",
        &format!("/api/v1/contacts/{}/timeline", uuid::Uuid::now_v7()),
        None,
    )
    .await;
    assert_problem(&missing, 404, "not_found");

    // Activities logged on the contact appear on its timeline, newest first, in pages.
    let contact_id = id.as_str().unwrap();
    for (i, kind) in ["CALL", "NOTE", "MEETING"].iter().enumerate() {
        let logged = call(
            &app,
            &owner,
            "POST",
            "/api/v1/activities",
            Some(
                json!({"type": kind, "subject": format!("step {i}"), "contactId": contact_id,
                        "occurredAt": format!("2026-01-0{}T10:00:00Z", i + 1)}),
            ),
        )
        .await;
        assert_eq!(logged.status, 201, "{}", logged.body);
    }
    let url = format!("/api/v1/contacts/{contact_id}/timeline?limit=2");
    let first = call(&app, &owner, "GET", &url, None).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let subjects = |page: &Value| -> Vec<String> {
        page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["subject"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(subjects(&first.body), ["step 2", "step 1"]);
    let cursor = first.body["nextCursor"].as_str().unwrap();
    let second = call(&app, &owner, "GET", &format!("{url}&cursor={cursor}"), None).await;
    assert_eq!(subjects(&second.body), ["step 0"]);
    assert_eq!(second.body["nextCursor"], Value::Null);
    // Another organization sees neither the contact nor its timeline.
    let stranger = app.signup("stranger@batch.io").await;
    assert_problem(
        &call(&app, &stranger, "GET", &url, None).await,
        404,
        "not_found",
    );
}

#[tokio::test]
async fn batch_items_that_fail_change_nothing() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@batch-refusals.io").await;
    let kept = create(
        &app,
        &owner,
        json!({"firstName": "Kept", "lastName": "As Is", "email": "kept@one.io"}),
    )
    .await;
    let live = create(
        &app,
        &owner,
        json!({"firstName": "Still", "lastName": "Live"}),
    )
    .await;
    let (kept_id, live_id) = (kept["id"].as_str().unwrap(), live["id"].as_str().unwrap());
    let unchanged = format!(
        "SELECT count(*) AS n FROM contacts WHERE id = '{kept_id}' AND version = 1 \
         AND email = 'kept@one.io' AND company IS NULL AND deleted_at IS NULL"
    );
    let still_live = format!(
        "SELECT count(*) AS n FROM contacts WHERE id = '{live_id}' AND version = 1 \
         AND deleted_at IS NULL"
    );

    let res = call(
        &app,
        &owner,
        "POST",
        "/api/v1/contacts/batch",
        Some(json!({"items": [
            {"op": "update", "id": kept_id, "data": {"email": "nope"}},
            {"op": "update", "id": kept_id, "data": {"company": "Acme", "nickname": "x"}},
            {"op": "delete", "id": live_id, "ifMatch": 2},
        ]})),
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.body);
    let outcome = |i: usize| {
        let r = &res.body["results"][i];
        (r["status"].as_u64().unwrap(), r["error"]["code"].clone())
    };
    assert_eq!(
        outcome(0),
        (422, json!("validation_failed")),
        "{}",
        res.body
    );
    assert_eq!(
        res.body["results"][0]["error"]["errors"][0]["field"],
        "email"
    );
    // An unknown contact field in an item's data is refused as a patch's is (400).
    assert_eq!(outcome(1), (400, json!("invalid_body")), "{}", res.body);
    assert_eq!(
        res.body["results"][1]["error"]["errors"][0]["field"],
        "nickname"
    );
    assert_eq!(outcome(2), (412, json!("version_mismatch")), "{}", res.body);
    assert_eq!(count(&app, &unchanged).await, 1);
    assert_eq!(count(&app, &still_live).await, 1);

    // An unknown key of an item (not of its data) fails the whole batch: even its valid
    // items write nothing.
    let res = call(
        &app,
        &owner,
        "POST",
        "/api/v1/contacts/batch",
        Some(json!({"items": [
            {"op": "create", "data": {"firstName": "New", "lastName": "One"}},
            {"op": "update", "id": kept_id, "data": {"company": "Acme"}, "colour": "red"},
        ]})),
    )
    .await;
    assert_problem(&res, 400, "invalid_body");
    let res = call(
        &app,
        &owner,
        "POST",
        "/api/v1/contacts/batch",
        Some(json!({"items": [
            {"op": "delete", "id": live_id, "force": true},
        ]})),
    )
    .await;
    assert_problem(&res, 400, "invalid_body");
    assert_eq!(count(&app, "SELECT count(*) AS n FROM contacts").await, 2);
    assert_eq!(count(&app, &unchanged).await, 1);
    assert_eq!(count(&app, &still_live).await, 1);
    assert_eq!(
        count(
            &app,
            "SELECT count(*) AS n FROM events WHERE type LIKE 'contact.%'"
        )
        .await,
        2,
        "the two creates alone"
    );
}

#[tokio::test]
async fn export_streams_the_filtered_list_as_csv() {
    use diesel_async::AsyncConnection;
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@export.io").await;
    let viewer = app.add_member(&owner, "viewer@export.io", "VIEWER").await;
    let res = call(
        &app,
        &owner,
        "POST",
        "/api/v1/custom-fields",
        Some(json!({"key": "channels", "label": "Channels", "type": "multiselect", "options": ["email", "sms"]})),
    )
    .await;
    assert_eq!(res.status, 201);
    create(
        &app,
        &owner,
        json!({"firstName": "Ada", "lastName": "Love, \"the\" Countess", "email": "ada@export.io",
               "company": "=cmd()", "tags": ["vip", "math"], "customFields": {"channels": ["sms", "email"]}}),
    )
    .await;
    // Enough rows for several pages of the stream.
    let mut conn = diesel_async::AsyncPgConnection::establish(app.db.url())
        .await
        .unwrap();
    nexus_adapters_postgres::seed::contacts(&mut conn, owner.org_id, 450, |_| {})
        .await
        .unwrap();

    let get = async |user: &TestUser, query: &str| {
        let res = reqwest::Client::new()
            .get(app.url(&format!("/api/v1/contacts/export{query}")))
            .bearer_auth(&user.access_token)
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        let content_type = res
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (status, content_type, res.text().await.unwrap())
    };
    let (status, content_type, body) = get(&viewer, "").await;
    assert_eq!(status, 200);
    assert_eq!(content_type, "text/csv; charset=utf-8");
    let lines: Vec<&str> = body.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 1 + 451, "header and every contact, once");
    assert!(lines[0].starts_with("id,firstName,lastName,email,phone,phoneE164,company,lifecycleStage,leadScore,ownerId,tags,createdAt,updatedAt,customFields.channels"));
    let ids: std::collections::BTreeSet<&str> = lines[1..].iter().map(|l| &l[..36]).collect();
    assert_eq!(ids.len(), 451);

    let (_, _, ada) = get(&owner, "?q=countess").await;
    let ada: Vec<&str> = ada.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(ada.len(), 2);
    assert!(
        ada[1].contains(r#","Ada","Love, ""the"" Countess","#)
            || ada[1].contains(r#",Ada,"Love, ""the"" Countess",ada@export.io,"#),
        "{}",
        ada[1]
    );
    assert!(
        ada[1].contains(r#","'=cmd()","#),
        "formulas are defused: {}",
        ada[1]
    );
    assert!(ada[1].contains(",vip;math,"), "{}", ada[1]);
    assert!(ada[1].ends_with(",sms;email"), "{}", ada[1]);

    let (_, _, vip) = get(&owner, "?tag=vip&sort=lastName").await;
    let expected = count(
        &app,
        "SELECT count(*) AS n FROM contacts WHERE tags && ARRAY['vip']",
    )
    .await;
    assert_eq!(
        vip.split("\r\n").filter(|l| !l.is_empty()).count() as i64,
        1 + expected
    );

    // Paging belongs to lists: refused, not ignored.
    for paging in [
        "?cursor=abc",
        "?limit=5",
        "?includeTotal=true",
        "?q=a&limit=5",
    ] {
        assert_eq!(get(&owner, paging).await.0, 400, "{paging}");
    }
    assert_eq!(get(&owner, "?lifecycleStage=prospect").await.0, 400);
    let stranger = app.signup("stranger@export.io").await;
    let (_, _, theirs) = get(&stranger, "").await;
    assert_eq!(
        theirs.split("\r\n").filter(|l| !l.is_empty()).count(),
        1,
        "another tenant exports nothing of ours"
    );
}

/// A request to an explicit address (another instance of the app): status and body.
async fn send_at(method: &str, url: String, user: &TestUser, body: Value) -> (u16, Value) {
    let res = reqwest::Client::new()
        .request(method.parse().unwrap(), url)
        .bearer_auth(&user.access_token)
        .json(&body)
        .send()
        .await
        .unwrap();
    (
        res.status().as_u16(),
        res.json().await.unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn an_instance_validates_against_definitions_another_instance_changed() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@instances.io").await;
    let other = app.spawn_instance().await;
    // This instance keeps the (empty) definitions after its first create.
    create(&app, &owner, json!({"firstName": "A", "lastName": "One"})).await;

    let (status, body) = send_at(
        "POST",
        other.url("/api/v1/custom-fields"),
        &owner,
        json!({"key": "plan", "label": "Plan", "type": "select", "options": ["free", "pro"]}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    // Unknown under the kept definitions, known under the ones read again.
    let made = create(
        &app,
        &owner,
        json!({"firstName": "B", "lastName": "Two", "customFields": {"plan": "pro"}}),
    )
    .await;
    assert_eq!(made["customFields"], json!({"plan": "pro"}));

    // The other instance adds an option: under this instance's kept definitions "team"
    // is invalid, so the validation is repeated under fresh ones before any refusal.
    let id = body["id"].as_str().unwrap().to_owned();
    let field = other.url(&format!("/api/v1/custom-fields/{id}"));
    let options = json!({"options": ["free", "pro", "team"]});
    let (status, changed) = send_at("PATCH", field.clone(), &owner, options).await;
    assert_eq!(status, 200, "{changed}");
    let made = create(
        &app,
        &owner,
        json!({"firstName": "C", "lastName": "Three", "customFields": {"plan": "team"}}),
    )
    .await;
    assert_eq!(made["customFields"], json!({"plan": "team"}));

    // The other instance narrows the options. This instance's kept definitions still
    // accept "free": the database refuses the write validated under them (their
    // generation moved on), and it is validated again under the narrowed set.
    let (status, changed) =
        send_at("PATCH", field, &owner, json!({"options": ["pro", "team"]})).await;
    assert_eq!(status, 200, "{changed}");
    let before = count(&app, "SELECT count(*) AS n FROM contacts").await;
    let res = call(
        &app,
        &owner,
        "POST",
        "/api/v1/contacts",
        Some(json!({"firstName": "D", "lastName": "Four", "customFields": {"plan": "free"}})),
    )
    .await;
    assert_problem(&res, 422, "validation_failed");
    assert_eq!(
        count(&app, "SELECT count(*) AS n FROM contacts").await,
        before
    );
}
