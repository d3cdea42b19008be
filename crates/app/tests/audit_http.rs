//! The audit log against the real database and app: field-level changes with the client's
//! address and user agent, API-key actors, no secrets, RBAC, tenant isolation, filters,
//! and a table that refuses to be edited.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use diesel_async::RunQueryDsl;
use nexus_app::testing::{TestApp, TestUser};
use serde_json::{Value, json};

const UA: &str = "audit-test/1.0";

fn client() -> reqwest::Client {
    reqwest::Client::builder().user_agent(UA).build().unwrap()
}

async fn send(
    app: &TestApp,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = client()
        .request(method.parse().unwrap(), app.url(path))
        .bearer_auth(token);
    if let Some(body) = body {
        req = if method == "PATCH" {
            req.header("content-type", "application/merge-patch+json")
                .body(body.to_string())
        } else {
            req.json(&body)
        };
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn audit(app: &TestApp, user: &TestUser, query: &str) -> Vec<Value> {
    let (status, page) = send(
        app,
        &user.access_token,
        "GET",
        &format!("/api/v1/audit-log{query}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{page}");
    page["data"].as_array().unwrap().clone()
}

async fn contact(app: &TestApp, token: &str, first: &str) -> String {
    let (status, body) = send(
        app,
        token,
        "POST",
        "/api/v1/contacts",
        Some(json!({ "firstName": first, "lastName": "Audit", "email": format!("{first}@x.io") })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_contact_update_is_recorded_field_by_field_with_its_origin() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@audit.io").await;
    let id = contact(&app, &owner.access_token, "Ada").await;
    let (status, _) = send(
        &app,
        &owner.access_token,
        "PATCH",
        &format!("/api/v1/contacts/{id}"),
        Some(json!({ "firstName": "Augusta", "company": "Engines" })),
    )
    .await;
    assert_eq!(status, 200);

    let entries = audit(&app, &owner, &format!("?entityType=contact&entityId={id}")).await;
    let actions: Vec<&str> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["contact.updated", "contact.created"],
        "newest first"
    );
    let update = &entries[0];
    assert_eq!(
        update["changes"]["firstName"],
        json!({ "from": "Ada", "to": "Augusta" })
    );
    assert_eq!(
        update["changes"]["company"],
        json!({ "from": null, "to": "Engines" })
    );
    assert!(
        update["changes"].get("lastName").is_none(),
        "unchanged fields are not listed"
    );
    assert_eq!(
        update["actor"],
        json!({ "kind": "user", "userId": owner.user_id })
    );
    assert_eq!(update["ip"], "127.0.0.1");
    assert_eq!(update["userAgent"], UA);
    assert_eq!(update["entityType"], "contact");
    assert_eq!(update["entityId"], id);
    assert!(update["occurredAt"].is_string());
}

#[tokio::test]
async fn api_key_actors_are_recorded_and_secrets_never_are() {
    let app = TestApp::spawn().await;
    let owner = app.signup("keys@audit.io").await;
    let (status, created) = send(
        &app,
        &owner.access_token,
        "POST",
        "/api/v1/api-keys",
        Some(json!({ "name": "sync", "role": "ADMIN" })),
    )
    .await;
    assert_eq!(status, 201);
    let secret = created["secret"].as_str().unwrap().to_owned();
    let key_id = created["apiKey"]["id"].as_str().unwrap().to_owned();

    // The key's creation is audited without its secret or its hash.
    let entries = audit(&app, &owner, "?action=api_key.created").await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["entityId"], key_id);
    assert_eq!(entries[0]["changes"]["after"]["name"], "sync");
    let everything = serde_json::to_string(&audit(&app, &owner, "?limit=200").await).unwrap();
    assert!(
        !everything.contains(&secret),
        "the secret leaked into the audit log"
    );
    assert!(!everything.to_lowercase().contains("secrethash"));

    // A change made with the key names the key and the user it acts for.
    let id = contact(&app, &secret, "Keyed").await;
    let entries = audit(&app, &owner, &format!("?actor={key_id}")).await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["entityId"], id);
    assert_eq!(
        entries[0]["actor"],
        json!({ "kind": "api_key", "apiKeyId": key_id, "onBehalfOf": owner.user_id })
    );
    // An ADMIN key may read the audit log itself.
    let (status, _) = send(&app, &secret, "GET", "/api/v1/audit-log", None).await;
    assert_eq!(status, 200);

    // Revoking is audited too.
    let (status, _) = send(
        &app,
        &owner.access_token,
        "DELETE",
        &format!("/api/v1/api-keys/{key_id}"),
        None,
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(
        audit(&app, &owner, "?action=api_key.revoked").await.len(),
        1
    );
}

#[tokio::test]
async fn only_owners_and_admins_read_it_and_only_their_own_organization() {
    let app = TestApp::spawn().await;
    let owner = app.signup("rbac@audit.io").await;
    let admin = app.add_member(&owner, "admin@audit.io", "ADMIN").await;
    let member = app.add_member(&owner, "member@audit.io", "MEMBER").await;
    let viewer = app.add_member(&owner, "viewer@audit.io", "VIEWER").await;
    let id = contact(&app, &owner.access_token, "Mine").await;

    for user in [&member, &viewer] {
        let (status, problem) =
            send(&app, &user.access_token, "GET", "/api/v1/audit-log", None).await;
        assert_eq!((status, problem["code"].as_str()), (403, Some("forbidden")));
    }
    assert!(!audit(&app, &admin, "").await.is_empty());
    let res = reqwest::Client::new()
        .get(app.url("/api/v1/audit-log"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 401);

    // Joining members were audited (member.joined) in the owner's organization.
    assert_eq!(audit(&app, &owner, "?action=member.joined").await.len(), 4);

    let stranger = app.signup("stranger@other.io").await;
    assert!(
        audit(&app, &stranger, &format!("?entityId={id}"))
            .await
            .is_empty()
    );
    let theirs = audit(&app, &stranger, "?limit=200").await;
    assert!(theirs.iter().all(|e| e["entityId"] != id.as_str()));
    assert!(
        !serde_json::to_string(&theirs)
            .unwrap()
            .contains("rbac@audit.io")
    );
}

#[tokio::test]
async fn changes_without_events_are_audited_and_filters_and_pages_work() {
    let app = TestApp::spawn().await;
    let owner = app.signup("filters@audit.io").await;
    let viewer = app.add_member(&owner, "v@audit.io", "VIEWER").await;
    let t = &owner.access_token;

    let (status, _) = send(
        &app,
        t,
        "PATCH",
        "/api/v1/organizations/current",
        Some(json!({ "name": "Renamed Org" })),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = send(
        &app,
        t,
        "PATCH",
        &format!("/api/v1/members/{}", viewer.user_id),
        Some(json!({ "role": "MEMBER" })),
    )
    .await;
    assert_eq!(status, 200);
    let (status, field) = send(
        &app,
        t,
        "POST",
        "/api/v1/custom-fields",
        Some(json!({ "key": "tier", "label": "Tier", "type": "text" })),
    )
    .await;
    assert_eq!(status, 201, "{field}");

    let org = audit(&app, &owner, "?action=organization.updated").await;
    assert_eq!(org[0]["changes"]["name"]["to"], "Renamed Org");
    assert!(org[0]["changes"].get("settings").is_none());
    let role = audit(&app, &owner, "?action=member.role_changed").await;
    assert_eq!(role[0]["entityId"], viewer.user_id.to_string());
    assert_eq!(
        role[0]["changes"]["role"],
        json!({ "from": "VIEWER", "to": "MEMBER" })
    );
    let created = audit(&app, &owner, "?entityType=custom_field").await;
    assert_eq!(created[0]["action"], "custom_field.created");
    assert_eq!(created[0]["changes"]["after"]["key"], "tier");
    // A deletion keeps what was removed, as `before`.
    let (status, _) = send(
        &app,
        t,
        "DELETE",
        &format!("/api/v1/custom-fields/{}", field["id"].as_str().unwrap()),
        None,
    )
    .await;
    assert_eq!(status, 204);
    let deleted = audit(&app, &owner, "?action=custom_field.deleted").await;
    assert_eq!(deleted[0]["changes"]["before"]["key"], "tier");
    assert_eq!(deleted[0]["changes"]["before"]["label"], "Tier");
    assert!(deleted[0]["changes"].get("after").is_none());

    // Pages, newest first, with a signed cursor.
    for n in 0..3 {
        contact(&app, t, &format!("Page{n}")).await;
    }
    let (_, first) = send(
        &app,
        t,
        "GET",
        "/api/v1/audit-log?entityType=contact&limit=2",
        None,
    )
    .await;
    assert_eq!(first["data"].as_array().unwrap().len(), 2);
    let cursor = first["nextCursor"].as_str().unwrap();
    let (_, second) = send(
        &app,
        t,
        "GET",
        &format!("/api/v1/audit-log?entityType=contact&limit=2&cursor={cursor}"),
        None,
    )
    .await;
    let second = second["data"].as_array().unwrap();
    assert_eq!(second.len(), 1);
    assert_eq!(second[0]["changes"]["after"]["firstName"], "Page0");
    // A cursor is bound to its filters, and forged ones are refused.
    for q in [
        format!("?entityType=tag&cursor={cursor}"),
        "?cursor=forged.cursor".to_owned(),
        "?limit=0".to_owned(),
        "?actor=not-a-uuid".to_owned(),
        "?from=yesterday".to_owned(),
        "?unknown=1".to_owned(),
    ] {
        let (status, _) = send(&app, t, "GET", &format!("/api/v1/audit-log{q}"), None).await;
        assert_eq!(status, 400, "{q}");
    }
    let (status, _) = send(
        &app,
        t,
        "GET",
        &format!("/api/v1/audit-log?entityType={}", "x".repeat(201)),
        None,
    )
    .await;
    assert_eq!(status, 422);

    // Date range: nothing in the future, everything since an hour ago.
    let future = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let past = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let enc = |s: &str| s.replace('+', "%2B");
    assert!(
        audit(&app, &owner, &format!("?from={}", enc(&future)))
            .await
            .is_empty()
    );
    assert_eq!(
        audit(
            &app,
            &owner,
            &format!(
                "?from={}&to={}&entityType=contact",
                enc(&past),
                enc(&future)
            )
        )
        .await
        .len(),
        3
    );
    let (status, problem) = send(
        &app,
        t,
        "GET",
        &format!("/api/v1/audit-log?from={}&to={}", enc(&future), enc(&past)),
        None,
    )
    .await;
    assert_eq!(status, 422, "an empty range is a mistake: {problem}");
    let c = contact(&app, t, "Gone").await;
    let (status, _) = send(&app, t, "DELETE", &format!("/api/v1/contacts/{c}"), None).await;
    assert_eq!(status, 204);
    let gone = audit(&app, &owner, "?action=contact.deleted").await;
    assert_eq!(gone[0]["changes"]["before"]["firstName"], "Gone");
}

#[tokio::test]
async fn the_database_refuses_to_edit_or_delete_audit_entries() {
    let app = TestApp::spawn().await;
    let owner = app.signup("immutable@audit.io").await;
    contact(&app, &owner.access_token, "Fixed").await;
    let mut conn = app.pool.get().await.unwrap();
    for sql in [
        "UPDATE audit_log SET action = 'forged'",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
    ] {
        let err = diesel::sql_query(sql).execute(&mut conn).await.unwrap_err();
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    assert!(
        !audit(&app, &owner, "?action=contact.created")
            .await
            .is_empty()
    );
    // The retention function is the one way to delete, and only what is old enough.
    #[derive(diesel::QueryableByName)]
    struct Removed {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        removed: i64,
    }
    let r: Removed =
        diesel::sql_query("SELECT audit_log_purge(now() - interval '1 day', 1000) AS removed")
            .get_result(&mut conn)
            .await
            .unwrap();
    assert_eq!(r.removed, 0);
    let r: Removed =
        diesel::sql_query("SELECT audit_log_purge(now() + interval '1 day', 1000) AS removed")
            .get_result(&mut conn)
            .await
            .unwrap();
    assert!(r.removed > 0);
    // The guard is back on after the purge, also on the same connection.
    contact(&app, &owner.access_token, "Later").await;
    let err = diesel::sql_query("DELETE FROM audit_log")
        .execute(&mut conn)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("append-only"));
}

#[tokio::test]
async fn retention_removes_only_events_and_entries_past_their_days() {
    use nexus_adapters_postgres::pool::Db;
    use nexus_adapters_postgres::retention::{purge_audit, purge_events};

    let app = TestApp::spawn().await;
    let owner = app.signup("retention@audit.io").await;
    let org = owner.org_id;
    let mut conn = app.pool.get().await.unwrap();
    for sql in [
        format!(
            "INSERT INTO events (id, organization_id, type, occurred_at, actor, payload) \
             SELECT gen_random_uuid(), '{org}', 'contact.created', now() - interval '40 days', '{{}}', '{{}}' \
             FROM generate_series(1, 3)"
        ),
        format!(
            "INSERT INTO audit_log (organization_id, id, occurred_at, actor_type, action, entity_type) \
             SELECT '{org}', gen_random_uuid(), now() - interval '400 days', 'system', 'contact.created', 'contact' \
             FROM generate_series(1, 3)"
        ),
    ] {
        diesel::sql_query(sql).execute(&mut conn).await.unwrap();
    }
    // Written after the old ones, so it is numbered last (retention always keeps the last).
    contact(&app, &owner.access_token, "Recent").await;
    let db = Db::new(app.pool.clone(), std::time::Duration::from_secs(2));
    // Retention leaves events alone until they are numbered (the app's numberer would
    // get there within its sweep; the test does not wait for it).
    nexus_adapters_postgres::numberer::number_all(&db)
        .await
        .unwrap();
    // Small batches, so the loops run more than once.
    assert_eq!(purge_events(&db, 30, 2).await.unwrap(), 3);
    assert_eq!(purge_audit(&db, 365, 2).await.unwrap(), 3);
    assert_eq!(purge_audit(&db, 365, 2).await.unwrap(), 0);
    // What is recent stays.
    assert!(
        !audit(&app, &owner, "?action=contact.created")
            .await
            .is_empty()
    );
    let (status, page) = send(
        &app,
        &owner.access_token,
        "GET",
        "/api/v1/events?types=contact.created",
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(page["data"].as_array().unwrap().len(), 1);
}

/// Positions never go back: retention that finds every event old keeps the newest, so
/// the next event is numbered after the last one clients saw.
#[tokio::test]
async fn retention_of_every_event_keeps_positions_going_forward() {
    use nexus_adapters_postgres::numberer::number_all;
    use nexus_adapters_postgres::pool::Db;
    use nexus_adapters_postgres::retention::purge_events;

    #[derive(diesel::QueryableByName)]
    struct Head {
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::BigInt>)]
        seq: Option<i64>,
    }
    async fn head(conn: &mut nexus_adapters_postgres::pool::PgConn) -> Option<i64> {
        diesel::sql_query("SELECT max(seq) AS seq FROM events")
            .get_result::<Head>(conn)
            .await
            .unwrap()
            .seq
    }

    let app = TestApp::spawn().await;
    let owner = app.signup("positions@audit.io").await;
    contact(&app, &owner.access_token, "First").await;
    contact(&app, &owner.access_token, "Second").await;
    let db = Db::new(app.pool.clone(), std::time::Duration::from_secs(2));
    number_all(&db).await.unwrap();
    let mut conn = app.pool.get().await.unwrap();
    diesel::sql_query("UPDATE events SET occurred_at = now() - interval '40 days'")
        .execute(&mut conn)
        .await
        .unwrap();
    let last_seen = head(&mut conn).await.unwrap();

    assert!(purge_events(&db, 30, 2).await.unwrap() >= 1);
    assert_eq!(
        head(&mut conn).await,
        Some(last_seen),
        "the newest event stays"
    );

    contact(&app, &owner.access_token, "Third").await;
    number_all(&db).await.unwrap();
    assert_eq!(head(&mut conn).await, Some(last_seen + 1));
}
