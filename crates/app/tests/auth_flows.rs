//! Identity over HTTP against the real database: registration, login, sessions,
//! refresh rotation, logout, tokens, cookies and CSRF.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use diesel::QueryableByName;
use diesel::sql_types::BigInt;
use diesel_async::RunQueryDsl;
use nexus_app::testing::{TEST_PASSWORD, TestApp};

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

async fn code(res: reqwest::Response) -> (u16, String) {
    let status = res.status().as_u16();
    let body: Value = res.json().await.unwrap_or(Value::Null);
    (status, body["code"].as_str().unwrap_or_default().to_owned())
}

async fn login(app: &TestApp, email: &str, password: &str) -> reqwest::Response {
    client()
        .post(app.url("/api/v1/auth/login"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn register_creates_user_org_owner_and_session_in_one_go() {
    let app = TestApp::spawn().await;
    let user = app.signup("Ada@Example.com").await;
    let me: Value = client()
        .get(app.url("/api/v1/auth/me"))
        .bearer_auth(&user.access_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        me["user"]["email"], "ada@example.com",
        "emails are normalized"
    );
    assert_eq!(me["role"], "OWNER");
    assert_eq!(me["memberships"].as_array().unwrap().len(), 1);
    assert_eq!(
        me["memberships"][0]["organizationSlug"],
        "org-of-ada-example-com"
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) AS n FROM events WHERE type = 'member.joined'"
        )
        .await,
        1
    );

    // The same address in another case is the same account: 409, nothing written.
    let res = client()
        .post(app.url("/api/v1/auth/register"))
        .json(&json!({"email": "ADA@example.com", "password": TEST_PASSWORD, "name": "X", "organizationName": "Y"}))
        .send()
        .await
        .unwrap();
    assert_eq!(code(res).await, (409, "email_taken".into()));
    assert_eq!(
        count(&app, "SELECT count(*) AS n FROM organizations").await,
        1
    );
    assert_eq!(count(&app, "SELECT count(*) AS n FROM users").await, 1);
}

#[tokio::test]
async fn slugs_never_collide() {
    let app = TestApp::spawn().await;
    for email in ["a@x.io", "b@x.io"] {
        let res = client()
            .post(app.url("/api/v1/auth/register"))
            .json(&json!({"email": email, "password": TEST_PASSWORD, "name": "N", "organizationName": "Café Zürich"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
    }
    let mut conn = app.pool.get().await.unwrap();
    #[derive(QueryableByName)]
    struct Slug {
        #[diesel(sql_type = diesel::sql_types::Text)]
        slug: String,
    }
    let slugs: Vec<Slug> = diesel::sql_query("SELECT slug FROM organizations ORDER BY created_at")
        .load(&mut conn)
        .await
        .unwrap();
    let slugs: Vec<_> = slugs.into_iter().map(|s| s.slug).collect();
    assert_eq!(slugs, ["cafe-zurich", "cafe-zurich-2"]);
}

#[tokio::test]
async fn invalid_registrations_report_every_field_and_write_nothing() {
    let app = TestApp::spawn().await;
    let res = client()
        .post(app.url("/api/v1/auth/register"))
        .json(&json!({"email": "not-an-email", "password": "x".repeat(73), "name": " ", "organizationName": ""}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 422);
    let body: Value = res.json().await.unwrap();
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["email", "password", "name", "organizationName"]);
    assert_eq!(
        body["errors"][1]["code"], "too_long",
        "73 bytes are refused, not truncated"
    );

    let res = client()
        .post(app.url("/api/v1/auth/register"))
        .json(&json!({"email": "a@b.co", "password": TEST_PASSWORD, "name": "A", "organizationName": "B", "role": "OWNER"}))
        .send()
        .await
        .unwrap();
    assert_eq!(code(res).await, (400, "invalid_body".into()));
    let big = json!({"email": "a@b.co", "password": TEST_PASSWORD, "name": "x".repeat(2_000_000), "organizationName": "B"});
    let res = client()
        .post(app.url("/api/v1/auth/register"))
        .json(&big)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
    assert_eq!(count(&app, "SELECT count(*) AS n FROM users").await, 0);
    assert_eq!(
        count(&app, "SELECT count(*) AS n FROM organizations").await,
        0
    );
}

#[tokio::test]
async fn wrong_password_and_unknown_email_get_the_same_answer() {
    let app = TestApp::spawn().await;
    app.signup("known@example.com").await;
    let wrong = login(&app, "known@example.com", "wrong-password").await;
    let unknown = login(&app, "nobody@example.com", "wrong-password").await;
    assert_eq!(wrong.status(), 401);
    assert!(
        wrong.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    let (mut a, mut b): (Value, Value) =
        (wrong.json().await.unwrap(), unknown.json().await.unwrap());
    a["requestId"] = Value::Null;
    b["requestId"] = Value::Null;
    assert_eq!(a, b);
    assert_eq!(a["code"], "invalid_credentials");

    let ok = login(&app, "KNOWN@example.com", TEST_PASSWORD).await;
    assert_eq!(ok.status(), 200);
}

#[tokio::test]
async fn repeated_failures_are_throttled_and_a_success_resets_the_count() {
    let app = TestApp::spawn().await;
    app.signup("target@example.com").await;
    for _ in 0..4 {
        assert_eq!(
            login(&app, "target@example.com", "bad-password")
                .await
                .status(),
            401
        );
    }
    // A success before the limit clears the failures.
    assert_eq!(
        login(&app, "target@example.com", TEST_PASSWORD)
            .await
            .status(),
        200
    );
    for _ in 0..5 {
        assert_eq!(
            login(&app, "target@example.com", "bad-password")
                .await
                .status(),
            401
        );
    }
    let res = login(&app, "target@example.com", TEST_PASSWORD).await;
    assert_eq!(
        res.status(),
        429,
        "even the right password waits once throttled"
    );
    let retry: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry > 0 && retry <= 15 * 60);
    assert_eq!(code(res).await.1, "rate_limited");
}

#[tokio::test]
async fn per_ip_limits_throttle_failures_across_accounts() {
    let app = TestApp::spawn_with(|c| c.login_max_failures_per_ip = 3, None).await;
    for i in 0..3 {
        assert_eq!(
            login(&app, &format!("u{i}@example.com"), "bad-password")
                .await
                .status(),
            401
        );
    }
    assert_eq!(
        login(&app, "fresh@example.com", "bad-password")
            .await
            .status(),
        429
    );
}

#[tokio::test]
async fn tokens_are_checked_strictly() {
    let app = TestApp::spawn().await;
    let user = app.signup("tok@example.com").await;
    let me = |token: String| {
        let url = app.url("/api/v1/auth/me");
        async move { client().get(url).bearer_auth(token).send().await.unwrap() }
    };
    assert_eq!(me(user.access_token.clone()).await.status(), 200);

    let parts: Vec<&str> = user.access_token.split('.').collect();
    let mut payload: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    payload["role"] = "OWNER".into();
    payload["exp"] = (payload["exp"].as_i64().unwrap() + 3600).into();
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(payload.to_string()),
        parts[2]
    );
    let res = me(tampered).await;
    assert_eq!(res.status(), 401);
    assert!(
        res.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );

    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
        parts[1]
    );
    assert_eq!(code(me(none).await).await, (401, "invalid_token".into()));

    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    assert_eq!(header["alg"], "HS256");

    // Signed with the right key but for another audience, or already expired.
    let secret = b"test-secret-that-is-long-enough-for-hs256";
    let key = jsonwebtoken::EncodingKey::from_secret(secret);
    let mut foreign = payload.clone();
    foreign["role"] = "ADMIN".into();
    foreign["aud"] = "another-service".into();
    let foreign = jsonwebtoken::encode(&jsonwebtoken::Header::default(), &foreign, &key).unwrap();
    assert_eq!(code(me(foreign).await).await, (401, "invalid_token".into()));
    let mut expired: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    expired["exp"] = (chrono::Utc::now().timestamp() - 120).into();
    let expired = jsonwebtoken::encode(&jsonwebtoken::Header::default(), &expired, &key).unwrap();
    assert_eq!(code(me(expired).await).await, (401, "token_expired".into()));

    let res = client()
        .get(app.url("/api/v1/auth/me"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["www-authenticate"], r#"Bearer realm="nexus""#);
    assert_eq!(code(res).await, (401, "unauthenticated".into()));
    let res = client()
        .get(app.url("/api/v1/auth/me"))
        .header("authorization", "Basic dXNlcjpwdw==")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_whole_family() {
    let app = TestApp::spawn_with(|c| c.refresh_reuse_grace = Duration::ZERO, None).await;
    let user = app.signup("rot@example.com").await;
    let refresh = |token: String| {
        let url = app.url("/api/v1/auth/refresh");
        async move {
            client()
                .post(url)
                .json(&json!({"refreshToken": token}))
                .send()
                .await
                .unwrap()
        }
    };
    let first = refresh(user.refresh_token.clone()).await;
    assert_eq!(first.status(), 200);
    let first: Value = first.json().await.unwrap();
    let second_token = first["refreshToken"].as_str().unwrap().to_owned();
    assert_ne!(second_token, user.refresh_token);

    // The spent token comes back: the family dies, including the newest token and the
    // access tokens of the session.
    assert_eq!(
        code(refresh(user.refresh_token.clone()).await).await,
        (401, "refresh_token_reused".into())
    );
    assert_eq!(
        code(refresh(second_token).await).await,
        (401, "invalid_refresh_token".into())
    );
    let res = client()
        .get(app.url("/api/v1/auth/me"))
        .bearer_auth(first["accessToken"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(code(res).await, (401, "session_revoked".into()));
    assert_eq!(
        code(refresh("made-up".into()).await).await,
        (401, "invalid_refresh_token".into())
    );
}

#[tokio::test]
async fn parallel_refreshes_with_one_token_have_exactly_one_winner() {
    let app = TestApp::spawn_with(|c| c.workers = 2, None).await;
    let user = app.signup("race@example.com").await;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let url = app.url("/api/v1/auth/refresh");
        let token = user.refresh_token.clone();
        tasks.push(tokio::spawn(async move {
            let res = client()
                .post(url)
                .json(&json!({"refreshToken": token}))
                .send()
                .await
                .unwrap();
            (res.status().as_u16(), res.json::<Value>().await.unwrap())
        }));
    }
    let mut winners = Vec::new();
    for t in tasks {
        let (status, body) = t.await.unwrap();
        match status {
            200 => winners.push(body),
            401 => assert_eq!(body["code"], "refresh_token_superseded"),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(winners.len(), 1);
    // The winner's session is intact: its new token refreshes again.
    let next = winners[0]["refreshToken"].as_str().unwrap().to_owned();
    let res = client()
        .post(app.url("/api/v1/auth/refresh"))
        .json(&json!({"refreshToken": next}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn logout_ends_the_session_for_its_access_tokens_too() {
    let app = TestApp::spawn().await;
    let user = app.signup("bye@example.com").await;
    let res = client()
        .post(app.url("/api/v1/auth/logout"))
        .bearer_auth(&user.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let cleared = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter(|c| c.to_str().unwrap().contains("Max-Age=0"))
        .count();
    assert_eq!(cleared, 3);
    let res = client()
        .get(app.url("/api/v1/auth/me"))
        .bearer_auth(&user.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(code(res).await, (401, "session_revoked".into()));
    let res = client()
        .post(app.url("/api/v1/auth/refresh"))
        .json(&json!({"refreshToken": user.refresh_token}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
}

#[tokio::test]
async fn cookie_sessions_need_the_csrf_token_on_unsafe_methods() {
    let app = TestApp::spawn().await;
    let res = client()
        .post(app.url("/api/v1/auth/register"))
        .json(&json!({"email": "cookie@example.com", "password": TEST_PASSWORD, "name": "C", "organizationName": "Cookies"}))
        .send()
        .await
        .unwrap();
    let cookies: Vec<String> = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|c| c.to_str().unwrap().to_owned())
        .collect();
    let find = |name: &str| {
        let c = cookies
            .iter()
            .find(|c| c.starts_with(&format!("{name}=")))
            .unwrap();
        (
            c.clone(),
            c.split(';')
                .next()
                .unwrap()
                .split_once('=')
                .unwrap()
                .1
                .to_owned(),
        )
    };
    let (access_attrs, access) = find("nx_access");
    let (csrf_attrs, csrf) = find("nx_csrf");
    assert!(access_attrs.contains("HttpOnly") && access_attrs.contains("SameSite=Lax"));
    assert!(
        !access_attrs.contains("Secure"),
        "development serves plain HTTP"
    );
    assert!(
        !csrf_attrs.contains("HttpOnly"),
        "the page must be able to read the CSRF token"
    );
    let jar = format!("nx_access={access}; nx_csrf={csrf}");

    // Safe methods need no CSRF token.
    let res = client()
        .get(app.url("/api/v1/auth/me"))
        .header("cookie", &jar)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // Unsafe ones do: missing, then mismatched, then right.
    let res = client()
        .post(app.url("/api/v1/auth/logout"))
        .header("cookie", &jar)
        .send()
        .await
        .unwrap();
    assert_eq!(code(res).await, (403, "csrf_failed".into()));
    let res = client()
        .post(app.url("/api/v1/auth/logout"))
        .header("cookie", &jar)
        .header("x-csrf-token", "not-the-token")
        .send()
        .await
        .unwrap();
    assert_eq!(code(res).await, (403, "csrf_failed".into()));
    let res = client()
        .post(app.url("/api/v1/auth/logout"))
        .header("cookie", &jar)
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
}

#[tokio::test]
async fn production_cookies_are_secure() {
    let app = TestApp::spawn_with(
        |c| c.environment = nexus_app::config::Environment::Production,
        None,
    )
    .await;
    let res = client()
        .post(app.url("/api/v1/auth/register"))
        .json(&json!({"email": "prod@example.com", "password": TEST_PASSWORD, "name": "P", "organizationName": "Prod"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    for c in res.headers().get_all("set-cookie") {
        assert!(c.to_str().unwrap().contains("Secure"), "{c:?}");
    }
}

#[tokio::test]
async fn change_password_revokes_the_other_sessions() {
    let app = TestApp::spawn().await;
    let first = app.signup("pw@example.com").await;
    let other: Value = login(&app, "pw@example.com", TEST_PASSWORD)
        .await
        .json()
        .await
        .unwrap();
    let res = client()
        .post(app.url("/api/v1/auth/change-password"))
        .bearer_auth(&first.access_token)
        .json(&json!({"currentPassword": "wrong-password", "newPassword": "a-new-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(code(res).await, (401, "invalid_credentials".into()));
    let res = client()
        .post(app.url("/api/v1/auth/change-password"))
        .bearer_auth(&first.access_token)
        .json(&json!({"currentPassword": TEST_PASSWORD, "newPassword": "a-new-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let me = |t: &str| {
        client()
            .get(app.url("/api/v1/auth/me"))
            .bearer_auth(t.to_owned())
            .send()
    };
    assert_eq!(
        me(&first.access_token).await.unwrap().status(),
        200,
        "this session stays"
    );
    assert_eq!(
        me(other["accessToken"].as_str().unwrap())
            .await
            .unwrap()
            .status(),
        401,
        "the others end"
    );
    assert_eq!(
        login(&app, "pw@example.com", TEST_PASSWORD).await.status(),
        401
    );
    assert_eq!(
        login(&app, "pw@example.com", "a-new-password")
            .await
            .status(),
        200
    );

    // The change is in the organization's audit log, by its user, without any hash.
    let (_, audit) = app
        .get_json(&first.access_token, "/api/v1/audit-log?entityType=user")
        .await;
    let entries = audit["data"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{audit}");
    assert_eq!(entries[0]["action"], "user.password_changed");
    assert_eq!(entries[0]["entityId"], first.user_id.to_string());
    assert_eq!(
        entries[0]["actor"],
        json!({"kind": "user", "userId": first.user_id})
    );
    assert_eq!(entries[0]["changes"], json!({}));
}

#[tokio::test]
async fn password_reset_is_silent_single_use_and_revokes_sessions() {
    let app = TestApp::spawn().await;
    let user = app.signup("reset@example.com").await;
    for email in ["reset@example.com", "ghost@example.com"] {
        let res = client()
            .post(app.url("/api/v1/auth/forgot-password"))
            .json(&json!({"email": email}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 202);
        assert_eq!(res.content_length(), Some(0), "nothing tells the two apart");
    }
    // Delivery runs in the background.
    let mut token = None;
    for _ in 0..50 {
        if count(
            &app,
            "SELECT count(*) AS n FROM mail_outbox WHERE recipient = 'reset@example.com'",
        )
        .await
            > 0
        {
            token = Some(app.mailed_token("reset@example.com").await);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let token = token.expect("a reset mail");
    assert_eq!(
        count(
            &app,
            "SELECT count(*) AS n FROM mail_outbox WHERE recipient = 'ghost@example.com'"
        )
        .await,
        0
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) AS n FROM password_resets WHERE token_hash::text LIKE '%' "
        )
        .await,
        1
    );

    let reset = |t: String, p: &str| {
        let url = app.url("/api/v1/auth/reset-password");
        let body = json!({"token": t, "newPassword": p});
        async move { client().post(url).json(&body).send().await.unwrap() }
    };
    assert_eq!(
        code(reset(token.clone(), "short").await).await,
        (422, "validation_failed".into())
    );
    assert_eq!(
        reset(token.clone(), "brand-new-password").await.status(),
        204
    );
    assert_eq!(
        code(reset(token, "another-password").await).await,
        (422, "validation_failed".into()),
        "single use"
    );
    let res = client()
        .get(app.url("/api/v1/auth/me"))
        .bearer_auth(&user.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401, "every session ended");
    assert_eq!(
        login(&app, "reset@example.com", "brand-new-password")
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn registration_and_reset_requests_are_limited_per_address() {
    let app = TestApp::spawn_with(|c| c.requests_per_ip_per_hour = 2, None).await;
    for i in 0..2 {
        app.signup(&format!("r{i}@example.com")).await;
    }
    let res = client()
        .post(app.url("/api/v1/auth/register"))
        .json(&json!({"email": "r9@example.com", "password": TEST_PASSWORD, "name": "R", "organizationName": "R"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 429);
    assert!(res.headers().contains_key("retry-after"));
    assert_eq!(
        count(&app, "SELECT count(*) AS n FROM users").await,
        2,
        "nothing written"
    );
    for expected in [202, 202, 429] {
        let res = client()
            .post(app.url("/api/v1/auth/forgot-password"))
            .json(&json!({"email": "r0@example.com"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), expected);
    }
}
