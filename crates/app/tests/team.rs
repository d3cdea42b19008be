//! Organizations, members, invitations and API keys over HTTP: RBAC, tenant isolation
//! and the membership rules, against the real database.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use diesel::QueryableByName;
use diesel::sql_types::BigInt;
use diesel_async::RunQueryDsl;
use nexus_app::testing::{TEST_PASSWORD, TestApp, TestUser};
use serde_json::{Value, json};

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    let mut conn = app.pool.get().await.unwrap();
    diesel::sql_query(sql)
        .get_result::<Count>(&mut conn)
        .await
        .unwrap()
        .n
}

async fn call(
    app: &TestApp,
    user: &TestUser,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = client()
        .request(method.parse().unwrap(), app.url(path))
        .bearer_auth(&user.access_token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

struct Team {
    app: TestApp,
    owner: TestUser,
    admin: TestUser,
    member: TestUser,
    viewer: TestUser,
}

async fn team() -> Team {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@a.io").await;
    let admin = app.add_member(&owner, "admin@a.io", "ADMIN").await;
    let member = app.add_member(&owner, "member@a.io", "MEMBER").await;
    let viewer = app.add_member(&owner, "viewer@a.io", "VIEWER").await;
    Team {
        app,
        owner,
        admin,
        member,
        viewer,
    }
}

#[tokio::test]
async fn organization_settings_follow_the_matrix_and_if_match() {
    let t = team().await;
    let res = client()
        .get(t.app.url("/api/v1/organizations/current"))
        .bearer_auth(&t.viewer.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["etag"], "\"1\"");

    let patch = json!({"name": "Renamed"});
    assert_eq!(
        call(
            &t.app,
            &t.member,
            "PATCH",
            "/api/v1/organizations/current",
            Some(patch.clone())
        )
        .await
        .0,
        403
    );
    assert_eq!(
        call(
            &t.app,
            &t.viewer,
            "PATCH",
            "/api/v1/organizations/current",
            Some(patch.clone())
        )
        .await
        .0,
        403
    );

    let stale = client()
        .patch(t.app.url("/api/v1/organizations/current"))
        .bearer_auth(&t.admin.access_token)
        .header("if-match", "\"7\"")
        .json(&patch)
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 412);
    let (status, org) = call(
        &t.app,
        &t.admin,
        "GET",
        "/api/v1/organizations/current",
        None,
    )
    .await;
    assert_eq!(
        (status, org["name"].as_str().unwrap()),
        (200, "Org of owner@a.io"),
        "nothing changed"
    );

    let ok = client()
        .patch(t.app.url("/api/v1/organizations/current"))
        .bearer_auth(&t.admin.access_token)
        .header("if-match", "\"1\"")
        .json(&json!({"name": "Renamed", "defaultCurrency": "EUR"}))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.headers()["etag"], "\"2\"");
    let body: Value = ok.json().await.unwrap();
    assert_eq!(
        (
            body["name"].as_str().unwrap(),
            body["defaultCurrency"].as_str().unwrap()
        ),
        ("Renamed", "EUR")
    );

    let (status, body) = call(
        &t.app,
        &t.owner,
        "PATCH",
        "/api/v1/organizations/current",
        Some(json!({"defaultCurrency": "euro", "name": ""})),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(body["errors"].as_array().unwrap().len(), 2);
    assert_eq!(
        call(
            &t.app,
            &t.owner,
            "PATCH",
            "/api/v1/organizations/current",
            Some(json!({"slug": "x"}))
        )
        .await
        .0,
        400
    );
}

#[tokio::test]
async fn roles_change_only_as_the_rules_allow() {
    let t = team().await;
    let member_path = |u: &TestUser| format!("/api/v1/members/{}", u.user_id);
    let role = |r: &str| Some(json!({"role": r}));

    assert_eq!(
        call(
            &t.app,
            &t.member,
            "PATCH",
            &member_path(&t.viewer),
            role("MEMBER")
        )
        .await
        .0,
        403
    );
    assert_eq!(
        call(
            &t.app,
            &t.viewer,
            "PATCH",
            &member_path(&t.member),
            role("VIEWER")
        )
        .await
        .0,
        403
    );
    let (status, body) = call(
        &t.app,
        &t.admin,
        "PATCH",
        &member_path(&t.member),
        role("OWNER"),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str().unwrap()),
        (403, "owner_only")
    );
    let (status, body) = call(
        &t.app,
        &t.admin,
        "PATCH",
        &member_path(&t.owner),
        role("VIEWER"),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str().unwrap()),
        (403, "owner_only")
    );
    let (status, body) = call(
        &t.app,
        &t.admin,
        "PATCH",
        &member_path(&t.admin),
        role("OWNER"),
    )
    .await;
    assert_eq!((status, body["code"].as_str().unwrap()), (409, "own_role"));
    let (status, body) = call(
        &t.app,
        &t.owner,
        "PATCH",
        &member_path(&t.owner),
        role("ADMIN"),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str().unwrap()),
        (409, "own_role"),
        "the last owner cannot demote themselves"
    );

    let (status, body) = call(
        &t.app,
        &t.admin,
        "PATCH",
        &member_path(&t.viewer),
        role("MEMBER"),
    )
    .await;
    assert_eq!((status, body["role"].as_str().unwrap()), (200, "MEMBER"));
    // The new role applies at once, without a new token.
    let (status, me) = call(&t.app, &t.viewer, "GET", "/api/v1/auth/me", None).await;
    assert_eq!((status, me["role"].as_str().unwrap()), (200, "MEMBER"));
    assert_eq!(
        call(
            &t.app,
            &t.owner,
            "PATCH",
            &member_path(&t.viewer),
            Some(json!({"role": "KING"}))
        )
        .await
        .0,
        400
    );
}

#[tokio::test]
async fn the_last_owner_stays_and_removal_ends_sessions() {
    let t = team().await;
    let path = |u: &TestUser| format!("/api/v1/members/{}", u.user_id);
    let (status, body) = call(&t.app, &t.owner, "DELETE", &path(&t.owner), None).await;
    assert_eq!(
        (status, body["code"].as_str().unwrap()),
        (409, "last_owner")
    );
    assert_eq!(
        call(&t.app, &t.admin, "DELETE", &path(&t.member), None)
            .await
            .0,
        403,
        "ADMIN has no delete on members"
    );

    assert_eq!(
        call(&t.app, &t.owner, "DELETE", &path(&t.member), None)
            .await
            .0,
        204
    );
    assert_eq!(
        call(&t.app, &t.member, "GET", "/api/v1/auth/me", None)
            .await
            .0,
        401,
        "their session ended"
    );
    assert_eq!(
        count(
            &t.app,
            "SELECT count(*) AS n FROM events WHERE type = 'member.removed'"
        )
        .await,
        1
    );
    assert_eq!(
        call(&t.app, &t.owner, "DELETE", &path(&t.member), None)
            .await
            .0,
        404
    );

    // Anyone may leave.
    assert_eq!(
        call(&t.app, &t.viewer, "DELETE", &path(&t.viewer), None)
            .await
            .0,
        204
    );
    let (_, page) = call(&t.app, &t.owner, "GET", "/api/v1/members", None).await;
    let emails: Vec<&str> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["email"].as_str().unwrap())
        .collect();
    assert_eq!(emails, ["owner@a.io", "admin@a.io"]);
}

#[tokio::test]
async fn members_list_pages_with_a_cursor() {
    let t = team().await;
    let (status, first) = call(&t.app, &t.viewer, "GET", "/api/v1/members?limit=3", None).await;
    assert_eq!(status, 200);
    assert_eq!(first["data"].as_array().unwrap().len(), 3);
    let cursor = first["nextCursor"].as_str().unwrap();
    let (_, second) = call(
        &t.app,
        &t.viewer,
        "GET",
        &format!("/api/v1/members?limit=3&cursor={cursor}"),
        None,
    )
    .await;
    assert_eq!(second["data"].as_array().unwrap().len(), 1);
    assert_eq!(second["data"][0]["email"], "viewer@a.io");
    assert!(second["nextCursor"].is_null());
    assert_eq!(
        call(
            &t.app,
            &t.viewer,
            "GET",
            "/api/v1/members?cursor=garbage!",
            None
        )
        .await
        .0,
        400
    );
    assert_eq!(
        call(&t.app, &t.viewer, "GET", "/api/v1/members?limit=0", None)
            .await
            .0,
        400
    );
}

#[tokio::test]
async fn another_organization_is_invisible() {
    let t = team().await;
    let stranger = t.app.signup("stranger@b.io").await;
    // Their data is not ours to see or touch: 404, never 403.
    let (status, _) = call(
        &t.app,
        &stranger,
        "PATCH",
        &format!("/api/v1/members/{}", t.member.user_id),
        Some(json!({"role": "VIEWER"})),
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(
        call(
            &t.app,
            &stranger,
            "DELETE",
            &format!("/api/v1/members/{}", t.member.user_id),
            None
        )
        .await
        .0,
        404
    );
    let (_, members) = call(&t.app, &stranger, "GET", "/api/v1/members", None).await;
    assert_eq!(members["data"].as_array().unwrap().len(), 1);

    let (_, key) = call(
        &t.app,
        &t.owner,
        "POST",
        "/api/v1/api-keys",
        Some(json!({"name": "A's key", "role": "VIEWER"})),
    )
    .await;
    let key_id = key["apiKey"]["id"].as_str().unwrap();
    assert_eq!(
        call(
            &t.app,
            &stranger,
            "DELETE",
            &format!("/api/v1/api-keys/{key_id}"),
            None
        )
        .await
        .0,
        404
    );
    let (_, keys) = call(&t.app, &stranger, "GET", "/api/v1/api-keys", None).await;
    assert!(keys["data"].as_array().unwrap().is_empty());

    let (_, inv) = call(
        &t.app,
        &t.owner,
        "POST",
        "/api/v1/invitations",
        Some(json!({"email": "x@c.io", "role": "MEMBER"})),
    )
    .await;
    let inv_id = inv["id"].as_str().unwrap();
    assert_eq!(
        call(
            &t.app,
            &stranger,
            "DELETE",
            &format!("/api/v1/invitations/{inv_id}"),
            None
        )
        .await
        .0,
        404
    );
    let (_, invs) = call(&t.app, &stranger, "GET", "/api/v1/invitations", None).await;
    assert!(invs["data"].as_array().unwrap().is_empty());

    let switch = json!({"organizationId": t.owner.org_id});
    assert_eq!(
        call(
            &t.app,
            &stranger,
            "POST",
            "/api/v1/auth/switch-organization",
            Some(switch)
        )
        .await
        .0,
        404
    );
}

#[tokio::test]
async fn invitations_are_single_use_and_never_above_the_inviter() {
    let t = team().await;
    let invite = async |u: &TestUser, email: &str, role: &str| {
        call(
            &t.app,
            u,
            "POST",
            "/api/v1/invitations",
            Some(json!({"email": email, "role": role})),
        )
        .await
    };
    assert_eq!(invite(&t.member, "n@a.io", "VIEWER").await.0, 403);
    assert_eq!(invite(&t.viewer, "n@a.io", "VIEWER").await.0, 403);
    assert_eq!(invite(&t.admin, "n@a.io", "OWNER").await.0, 403);
    assert_eq!(invite(&t.admin, "member@a.io", "VIEWER").await.0, 409);
    assert_eq!(invite(&t.admin, "not an email", "VIEWER").await.0, 422);
    assert_eq!(
        count(
            &t.app,
            "SELECT count(*) AS n FROM invitations WHERE email = 'n@a.io'"
        )
        .await,
        0
    );

    let (status, _) = invite(&t.admin, "new@a.io", "MEMBER").await;
    assert_eq!(status, 201);
    let token = t.app.mailed_token("new@a.io").await;
    let url = t.app.url(&format!("/api/v1/invitations/{token}/accept"));
    let accept = |body: Value| client().post(&url).json(&body).send();
    assert_eq!(
        accept(json!({"password": TEST_PASSWORD}))
            .await
            .unwrap()
            .status(),
        422,
        "a new account needs a name"
    );
    let ok = accept(json!({"password": TEST_PASSWORD, "name": "New Person"}))
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let body: Value = ok.json().await.unwrap();
    assert_eq!(body["role"], "MEMBER");
    assert_eq!(
        accept(json!({"password": TEST_PASSWORD, "name": "Again"}))
            .await
            .unwrap()
            .status(),
        404,
        "single use"
    );

    // Revoked invitations cannot be accepted.
    invite(&t.owner, "late@a.io", "VIEWER").await;
    let late_token = t.app.mailed_token("late@a.io").await;
    let (_, invs) = call(&t.app, &t.owner, "GET", "/api/v1/invitations", None).await;
    let late = invs["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["email"] == "late@a.io")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        call(
            &t.app,
            &t.viewer,
            "DELETE",
            &format!("/api/v1/invitations/{late}"),
            None
        )
        .await
        .0,
        403
    );
    assert_eq!(
        call(
            &t.app,
            &t.admin,
            "DELETE",
            &format!("/api/v1/invitations/{late}"),
            None
        )
        .await
        .0,
        204
    );
    let res = client()
        .post(
            t.app
                .url(&format!("/api/v1/invitations/{late_token}/accept")),
        )
        .json(&json!({"password": TEST_PASSWORD, "name": "Late"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
}

#[tokio::test]
async fn an_existing_user_joins_a_second_organization_and_switches() {
    let t = team().await;
    let other = t.app.signup("boss@b.io").await;
    call(
        &t.app,
        &other,
        "POST",
        "/api/v1/invitations",
        Some(json!({"email": "member@a.io", "role": "ADMIN"})),
    )
    .await;
    let token = t.app.mailed_token("member@a.io").await;
    let url = t.app.url(&format!("/api/v1/invitations/{token}/accept"));
    let wrong = client()
        .post(&url)
        .json(&json!({"password": "not-my-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let ok = client()
        .post(&url)
        .json(&json!({"password": TEST_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);

    let (_, me) = call(&t.app, &t.member, "GET", "/api/v1/auth/me", None).await;
    assert_eq!(me["memberships"].as_array().unwrap().len(), 2);
    assert_eq!(me["organizationId"], t.owner.org_id.to_string());
    let (status, switched) = call(
        &t.app,
        &t.member,
        "POST",
        "/api/v1/auth/switch-organization",
        Some(json!({"organizationId": other.org_id})),
    )
    .await;
    assert_eq!((status, switched["role"].as_str().unwrap()), (200, "ADMIN"));
    let new_user = TestUser {
        access_token: switched["accessToken"].as_str().unwrap().to_owned(),
        ..t.member.clone()
    };
    let (_, org) = call(
        &t.app,
        &new_user,
        "GET",
        "/api/v1/organizations/current",
        None,
    )
    .await;
    assert_eq!(org["id"], other.org_id.to_string());
    // The old token named the old organization: the session has moved on.
    assert_eq!(
        call(&t.app, &t.member, "GET", "/api/v1/auth/me", None)
            .await
            .0,
        401
    );
}

#[tokio::test]
async fn api_keys_are_shown_once_capped_by_role_and_revocable() {
    let t = team().await;
    let create = async |u: &TestUser, body: Value| {
        call(&t.app, u, "POST", "/api/v1/api-keys", Some(body)).await
    };
    assert_eq!(
        create(&t.member, json!({"name": "k", "role": "VIEWER"}))
            .await
            .0,
        403
    );
    assert_eq!(
        create(&t.viewer, json!({"name": "k", "role": "VIEWER"}))
            .await
            .0,
        403
    );
    assert_eq!(
        create(&t.admin, json!({"name": "k", "role": "OWNER"}))
            .await
            .0,
        403
    );
    assert_eq!(
        create(
            &t.admin,
            json!({"name": "k", "role": "ADMIN", "expiresAt": "2001-01-01T00:00:00Z"})
        )
        .await
        .0,
        422
    );
    assert_eq!(
        call(&t.app, &t.member, "GET", "/api/v1/api-keys", None)
            .await
            .0,
        403
    );
    assert_eq!(count(&t.app, "SELECT count(*) AS n FROM api_keys").await, 0);

    let (status, created) = create(&t.admin, json!({"name": "CRM sync", "role": "MEMBER"})).await;
    assert_eq!(status, 201);
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("nx_live_"));
    assert!(secret.starts_with(created["apiKey"]["prefix"].as_str().unwrap()));
    let (_, list) = call(&t.app, &t.owner, "GET", "/api/v1/api-keys", None).await;
    assert!(
        !list.to_string().contains(&secret),
        "the secret is never listed"
    );
    assert_eq!(count(&t.app, "SELECT count(*) AS n FROM api_keys WHERE position(convert_to(prefix, 'UTF8') in secret_hash) > 0").await, 0);

    let as_key = TestUser {
        access_token: secret.clone(),
        ..t.admin.clone()
    };
    let (status, me) = call(&t.app, &as_key, "GET", "/api/v1/auth/me", None).await;
    assert_eq!((status, me["role"].as_str().unwrap()), (200, "MEMBER"));
    assert!(me["apiKeyId"].is_string());
    // The key acts with its own role, not its creator's.
    assert_eq!(
        call(
            &t.app,
            &as_key,
            "PATCH",
            "/api/v1/organizations/current",
            Some(json!({"name": "x"}))
        )
        .await
        .0,
        403
    );
    assert_eq!(
        call(&t.app, &as_key, "POST", "/api/v1/auth/logout", None)
            .await
            .0,
        403
    );
    let (_, list) = call(&t.app, &t.owner, "GET", "/api/v1/api-keys", None).await;
    assert!(list["data"][0]["lastUsedAt"].is_string());

    let id = created["apiKey"]["id"].as_str().unwrap();
    assert_eq!(
        call(
            &t.app,
            &t.owner,
            "DELETE",
            &format!("/api/v1/api-keys/{id}"),
            None
        )
        .await
        .0,
        204
    );
    let (status, body) = call(&t.app, &as_key, "GET", "/api/v1/auth/me", None).await;
    assert_eq!(
        (status, body["code"].as_str().unwrap()),
        (401, "api_key_revoked")
    );
    let unknown = TestUser {
        access_token: "nx_live_doesnotexist".into(),
        ..t.admin.clone()
    };
    assert_eq!(
        call(&t.app, &unknown, "GET", "/api/v1/auth/me", None)
            .await
            .0,
        401
    );
}

#[tokio::test]
async fn an_expired_api_key_is_refused() {
    let t = team().await;
    let (_, created) = call(
        &t.app,
        &t.owner,
        "POST",
        "/api/v1/api-keys",
        Some(json!({"name": "short-lived", "role": "VIEWER", "expiresAt": (chrono::Utc::now() + chrono::Duration::seconds(1)).to_rfc3339()})),
    )
    .await;
    let key = TestUser {
        access_token: created["secret"].as_str().unwrap().to_owned(),
        ..t.owner.clone()
    };
    assert_eq!(
        call(&t.app, &key, "GET", "/api/v1/auth/me", None).await.0,
        200
    );
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let (status, body) = call(&t.app, &key, "GET", "/api/v1/auth/me", None).await;
    assert_eq!(
        (status, body["code"].as_str().unwrap()),
        (401, "api_key_expired")
    );
}

#[tokio::test]
async fn an_api_key_follows_its_creators_demotion_and_removal() {
    let t = team().await;
    let (status, created) = call(
        &t.app,
        &t.admin,
        "POST",
        "/api/v1/api-keys",
        Some(json!({"name": "sync", "role": "ADMIN"})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let key = TestUser {
        access_token: created["secret"].as_str().unwrap().to_owned(),
        ..t.admin.clone()
    };
    let write = json!({"firstName": "Ada", "lastName": "Lovelace"});
    let contacts = "SELECT count(*) AS n FROM contacts";
    assert_eq!(
        call(
            &t.app,
            &key,
            "POST",
            "/api/v1/contacts",
            Some(write.clone())
        )
        .await
        .0,
        201
    );

    let member_path = format!("/api/v1/members/{}", t.admin.user_id);
    let demote = Some(json!({"role": "VIEWER"}));
    assert_eq!(
        call(&t.app, &t.owner, "PATCH", &member_path, demote)
            .await
            .0,
        200
    );
    let before = count(&t.app, contacts).await;
    let (status, body) = call(
        &t.app,
        &key,
        "POST",
        "/api/v1/contacts",
        Some(write.clone()),
    )
    .await;
    assert_eq!((status, body["code"].as_str()), (403, Some("forbidden")));
    assert_eq!(count(&t.app, contacts).await, before, "nothing written");
    assert_eq!(
        call(&t.app, &key, "GET", "/api/v1/contacts", None).await.0,
        200,
        "the key still reads, as its creator may"
    );

    assert_eq!(
        call(&t.app, &t.owner, "DELETE", &member_path, None).await.0,
        204
    );
    let (status, body) = call(&t.app, &key, "GET", "/api/v1/contacts", None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("api_key_revoked")),
        "removal revokes their keys"
    );
    // Invited back, they do not get their old keys back.
    t.app.add_member(&t.owner, "admin@a.io", "ADMIN").await;
    let (status, body) = call(&t.app, &key, "GET", "/api/v1/contacts", None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("api_key_revoked"))
    );
    // A key whose creator's membership went by other means is refused too.
    let (status, other) = call(
        &t.app,
        &t.owner,
        "POST",
        "/api/v1/api-keys",
        Some(json!({"name": "owner's", "role": "ADMIN"})),
    )
    .await;
    assert_eq!(status, 201);
    let member = count(&t.app, &format!(
        "WITH gone AS (DELETE FROM memberships WHERE user_id = '{}' AND role = 'MEMBER' RETURNING 1) SELECT count(*) AS n FROM gone",
        t.member.user_id
    ))
    .await;
    assert_eq!(member, 1);
    let orphan_sql = format!(
        "UPDATE api_keys SET created_by = '{}' WHERE id = '{}'",
        t.member.user_id,
        other["apiKey"]["id"].as_str().unwrap()
    );
    let mut conn = t.app.pool.get().await.unwrap();
    diesel::sql_query(orphan_sql)
        .execute(&mut conn)
        .await
        .unwrap();
    let orphan = TestUser {
        access_token: other["secret"].as_str().unwrap().to_owned(),
        ..t.owner.clone()
    };
    let (status, body) = call(&t.app, &orphan, "GET", "/api/v1/contacts", None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("api_key_creator_removed"))
    );
    let used = format!(
        "SELECT count(*) AS n FROM api_keys WHERE id = '{}' AND last_used_at IS NOT NULL",
        other["apiKey"]["id"].as_str().unwrap()
    );
    assert_eq!(
        count(&t.app, &used).await,
        0,
        "a refused key records no use"
    );
}

#[tokio::test]
async fn who_may_not_invite_or_make_keys_is_told_403_whatever_the_body() {
    let t = team().await;
    let raw =
        |user: &TestUser, path: &'static str, content_type: &'static str, body: &'static str| {
            let req = client()
                .post(t.app.url(path))
                .bearer_auth(&user.access_token)
                .header("content-type", content_type)
                .body(body);
            async move {
                let res = req.send().await.unwrap();
                let status = res.status().as_u16();
                (status, res.json::<Value>().await.unwrap_or(Value::Null))
            }
        };
    let before = count(
        &t.app,
        "SELECT (SELECT count(*) FROM invitations) + (SELECT count(*) FROM api_keys) AS n",
    )
    .await;
    for (who, path) in [
        (&t.viewer, "/api/v1/invitations"),
        (&t.member, "/api/v1/invitations"),
        (&t.viewer, "/api/v1/api-keys"),
        (&t.member, "/api/v1/api-keys"),
    ] {
        for (content_type, body) in [
            ("application/json", "{not json"),
            ("text/plain", "hello"),
            ("application/json", r#"{"unknown": 1}"#),
        ] {
            let (status, problem) = raw(who, path, content_type, body).await;
            assert_eq!(
                (status, problem["code"].as_str()),
                (403, Some("forbidden")),
                "{path} {content_type} {body}"
            );
        }
    }
    // Who may gets the body's own errors.
    let (status, _) = raw(
        &t.owner,
        "/api/v1/api-keys",
        "application/json",
        "{not json",
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = raw(&t.owner, "/api/v1/invitations", "text/plain", "hello").await;
    assert_eq!(status, 415);
    let after = count(
        &t.app,
        "SELECT (SELECT count(*) FROM invitations) + (SELECT count(*) FROM api_keys) AS n",
    )
    .await;
    assert_eq!(after, before, "nothing written");
}
