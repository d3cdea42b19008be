//! The per-request session check and its cache, through the real app and database:
//! changes made through an instance apply at once, changes made anywhere else apply
//! within a notification, and an unannounced change within the cache's lifetime.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use diesel::QueryableByName;
use diesel::sql_types::BigInt;
use diesel_async::{RunQueryDsl, SimpleAsyncConnection};
use nexus_app::testing::{TestApp, TestUser};
use serde_json::json;

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

async fn sql(app: &TestApp, statements: &str) {
    let mut conn = app.pool.get().await.unwrap();
    conn.batch_execute(statements).await.unwrap();
}

/// Revokes `user`'s sessions with the triggers off, as a change nobody announces.
async fn revoke_behind_the_triggers(app: &TestApp, user: &TestUser) {
    sql(
        app,
        &format!(
            "SET session_replication_role = replica;
             UPDATE sessions SET revoked_at = now() WHERE user_id = '{}';
             SET session_replication_role = origin;",
            user.user_id
        ),
    )
    .await;
}

/// Waits until `instances` session-cache listeners hold their `LISTEN`: before that the
/// cache answers nothing, and a test of it would pass without testing it.
async fn caches_listening(app: &TestApp, instances: i64) {
    for _ in 0..200 {
        let mut conn = app.pool.get().await.unwrap();
        let listening = diesel::sql_query(
            "SELECT count(*) AS n FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid()
               AND query LIKE '%LISTEN nexus_auth%'",
        )
        .get_result::<Count>(&mut conn)
        .await
        .unwrap()
        .n;
        if listening >= instances {
            // The listener marks itself live right after its LISTEN returns.
            tokio::time::sleep(Duration::from_millis(50)).await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the session cache listeners did not start");
}

/// `GET /auth/me`'s status through the instance at `app_url`.
async fn me(app_url: &str, token: &str) -> u16 {
    reqwest::Client::new()
        .get(format!("{app_url}/api/v1/auth/me"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn logout(app: &TestApp, user: &TestUser) -> u16 {
    reqwest::Client::new()
        .post(app.url("/api/v1/auth/logout"))
        .bearer_auth(&user.access_token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn create_contact(app: &TestApp, user: &TestUser, name: &str) -> u16 {
    reqwest::Client::new()
        .post(app.url("/api/v1/contacts"))
        .bearer_auth(&user.access_token)
        .json(&json!({"firstName": name, "lastName": "Cached"}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Polls `check` until it returns `want`; how long that took, or `None` after `limit`.
async fn until<F, Fut>(limit: Duration, want: u16, mut check: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = u16>,
{
    let started = Instant::now();
    while started.elapsed() < limit {
        if check().await == want {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

#[tokio::test]
async fn changes_made_through_the_instance_apply_at_once_without_a_notification() {
    let app = TestApp::spawn_with(|c| c.session_cache_ttl = Duration::from_secs(60), None).await;
    // No notification can help: what follows must come from the instance's own
    // invalidation, with every check before it answered from memory.
    sql(
        &app,
        "ALTER TABLE sessions DISABLE TRIGGER sessions_auth_change;
         ALTER TABLE memberships DISABLE TRIGGER memberships_auth_change;",
    )
    .await;
    caches_listening(&app, 1).await;
    let owner = app.signup("owner@cache.io").await;
    let member = app.add_member(&owner, "member@cache.io", "MEMBER").await;
    let leaving = app.add_member(&owner, "leaving@cache.io", "MEMBER").await;
    for user in [&owner, &member, &leaving] {
        assert_eq!(me(&app.address, &user.access_token).await, 200);
    }

    // A role change: the member's next write is refused, and nothing is written.
    assert_eq!(create_contact(&app, &member, "Before").await, 201);
    let res = reqwest::Client::new()
        .patch(app.url(&format!("/api/v1/members/{}", member.user_id)))
        .bearer_auth(&owner.access_token)
        .json(&json!({"role": "VIEWER"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(create_contact(&app, &member, "After").await, 403);

    // A removal.
    let res = reqwest::Client::new()
        .delete(app.url(&format!("/api/v1/members/{}", leaving.user_id)))
        .bearer_auth(&owner.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(me(&app.address, &leaving.access_token).await, 401);

    // A logout.
    assert_eq!(logout(&app, &owner).await, 204);
    assert_eq!(me(&app.address, &owner.access_token).await, 401);
    let (status, page) = app
        .get_json(&member.access_token, "/api/v1/contacts?q=After")
        .await;
    assert_eq!(status, 200, "other sessions are unaffected");
    assert_eq!(
        page["data"].as_array().unwrap().len(),
        0,
        "the refused write wrote nothing"
    );
}

#[tokio::test]
async fn changes_made_elsewhere_arrive_by_notification() {
    let app = TestApp::spawn_with(|c| c.session_cache_ttl = Duration::from_secs(60), None).await;
    let second = app.spawn_instance().await;
    caches_listening(&app, 2).await;
    let owner = app.signup("owner@elsewhere.io").await;
    let member = app
        .add_member(&owner, "member@elsewhere.io", "MEMBER")
        .await;
    // Both instances remember both sessions.
    for url in [&app.address, &second.address] {
        for user in [&owner, &member] {
            assert_eq!(me(url, &user.access_token).await, 200);
            assert_eq!(me(url, &user.access_token).await, 200);
        }
    }

    // Logout through the first instance: the first refuses at once, the second as soon
    // as the notification arrives (the cache would otherwise keep it for 60 s).
    assert_eq!(logout(&app, &owner).await, 204);
    assert_eq!(me(&app.address, &owner.access_token).await, 401);
    let waited = until(Duration::from_secs(3), 401, || {
        me(&second.address, &owner.access_token)
    })
    .await;
    assert!(
        waited.is_some(),
        "the second instance still accepts a revoked session"
    );

    // A role change by hand in the database reaches both instances.
    assert_eq!(create_contact(&app, &member, "Member").await, 201);
    sql(
        &app,
        &format!(
            "UPDATE memberships SET role = 'VIEWER' WHERE user_id = '{}'",
            member.user_id
        ),
    )
    .await;
    let waited = until(Duration::from_secs(3), 403, || {
        create_contact(&app, &member, "Viewer")
    })
    .await;
    assert!(waited.is_some(), "the role change did not apply");
    // Still a member, as a viewer: the session itself stays valid everywhere.
    assert_eq!(me(&second.address, &member.access_token).await, 200);
    second.handle.stop(false).await;
}

#[tokio::test]
async fn an_unannounced_change_applies_within_the_cache_lifetime() {
    let ttl = Duration::from_millis(800);
    let app = TestApp::spawn_with(|c| c.session_cache_ttl = ttl, None).await;
    caches_listening(&app, 1).await;
    let owner = app.signup("owner@silent.io").await;
    assert_eq!(me(&app.address, &owner.access_token).await, 200);

    // Revoked behind the triggers' back (as a hung listener would miss it): the cached
    // check still answers, which is what saves the database a query per request ...
    let revoked = Instant::now();
    revoke_behind_the_triggers(&app, &owner).await;
    assert_eq!(me(&app.address, &owner.access_token).await, 200);
    // ... and no longer than the cache's lifetime.
    let waited = until(Duration::from_secs(3), 401, || {
        me(&app.address, &owner.access_token)
    })
    .await
    .expect("the revoked session is still accepted");
    assert!(
        revoked.elapsed() <= ttl + Duration::from_millis(500),
        "{waited:?}"
    );
}

#[tokio::test]
async fn without_a_cache_every_check_asks_the_database() {
    let app = TestApp::spawn_with(|c| c.session_cache_ttl = Duration::ZERO, None).await;
    let owner = app.signup("owner@nocache.io").await;
    assert_eq!(me(&app.address, &owner.access_token).await, 200);
    revoke_behind_the_triggers(&app, &owner).await;
    assert_eq!(me(&app.address, &owner.access_token).await, 401);
}
