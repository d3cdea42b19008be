//! The event feed and the SSE stream against the real database and app: order, paging,
//! filters, forged cursors, replay with `Last-Event-ID`, API keys, tenant isolation,
//! heartbeats, and wake-ups across two app instances.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use nexus_app::sse_client::SseClient;
use nexus_app::testing::{TestApp, TestUser};
use serde_json::{Value, json};

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

async fn create_contact(app: &TestApp, user: &TestUser, first: &str) -> String {
    let res = client()
        .post(app.url("/api/v1/contacts"))
        .bearer_auth(&user.access_token)
        .json(&json!({ "firstName": first, "lastName": "Test" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 201);
    let body: Value = res.json().await.unwrap();
    body["id"].as_str().unwrap().to_owned()
}

async fn rename_contact(app: &TestApp, user: &TestUser, id: &str, first: &str) {
    let res = client()
        .patch(app.url(&format!("/api/v1/contacts/{id}")))
        .bearer_auth(&user.access_token)
        .header("content-type", "application/merge-patch+json")
        .body(json!({ "firstName": first }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200, "{}", res.text().await.unwrap());
}

async fn feed(app: &TestApp, token: &str, query: &str) -> (u16, Value) {
    let res = client()
        .get(app.url(&format!("/api/v1/events{query}")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    (
        res.status().as_u16(),
        res.json().await.unwrap_or(Value::Null),
    )
}

async fn open_stream(url: String, token: &str, last_event_id: Option<&str>) -> SseClient {
    let mut req = client().get(url).bearer_auth(token);
    if let Some(id) = last_event_id {
        req = req.header("Last-Event-ID", id);
    }
    let mut sse = SseClient::new(req.send().await.unwrap());
    // The first block says the stream is open (and subscribed).
    let hello = sse.next_frame().await;
    assert_eq!(hello.comments, vec!["connected"]);
    sse
}

fn first_names(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            e["data"]["contact"]["firstName"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn the_feed_pages_in_order_filters_by_type_and_refuses_forged_cursors() {
    let app = TestApp::spawn().await;
    let owner = app.signup("feed@a.io").await;
    let viewer = app.add_member(&owner, "viewer@a.io", "VIEWER").await;
    let ada = create_contact(&app, &owner, "Ada").await;
    create_contact(&app, &owner, "Grace").await;
    rename_contact(&app, &owner, &ada, "Augusta").await;

    let (status, page) = feed(
        &app,
        &owner.access_token,
        "?types=contact.created,contact.updated&limit=2",
    )
    .await;
    assert_eq!(status, 200, "{page}");
    let data = page["data"].as_array().unwrap();
    assert_eq!(first_names(data), ["Ada", "Grace"]);
    assert_eq!(page["hasMore"], true);
    let first = &data[0];
    assert_eq!(first["type"], "contact.created");
    assert_eq!(first["organizationId"], owner.org_id.to_string());
    assert_eq!(
        first["actor"],
        json!({ "kind": "user", "id": owner.user_id })
    );
    assert!(first["id"].is_string() && first["occurredAt"].is_string());

    let next = page["nextCursor"].as_str().unwrap();
    let (_, page2) = feed(
        &app,
        &owner.access_token,
        &format!("?types=contact.created,contact.updated&after={next}"),
    )
    .await;
    let data2 = page2["data"].as_array().unwrap();
    assert_eq!(data2.len(), 1);
    assert_eq!(data2[0]["type"], "contact.updated");
    assert_eq!(
        data2[0]["data"]["changes"]["firstName"],
        json!({ "from": "Ada", "to": "Augusta" })
    );
    assert_eq!(page2["hasMore"], false);

    // Polling with the last cursor returns nothing new, and the same cursor again.
    let last = page2["nextCursor"].as_str().unwrap();
    let (_, empty) = feed(&app, &owner.access_token, &format!("?after={last}")).await;
    assert_eq!(empty["data"], json!([]));
    assert_eq!(empty["nextCursor"], last);
    // ... until something happens.
    create_contact(&app, &owner, "Linus").await;
    let (_, more) = feed(&app, &owner.access_token, &format!("?after={last}")).await;
    assert_eq!(first_names(more["data"].as_array().unwrap()), ["Linus"]);

    // The types filter: only what was asked.
    let (_, updates) = feed(&app, &owner.access_token, "?types=contact.updated").await;
    assert_eq!(updates["data"].as_array().unwrap().len(), 1);

    // Any member role reads the feed.
    let (status, _) = feed(&app, &viewer.access_token, "").await;
    assert_eq!(status, 200);

    // Unknown types: 422 naming them.
    let (status, problem) = feed(
        &app,
        &owner.access_token,
        "?types=contact.created,contact.exploded",
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(problem["errors"][0]["field"], "types");
    assert!(
        problem["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("contact.exploded")
    );

    // Forged, altered or foreign cursors: 400.
    let tampered = format!("{}x", &next[..next.len() - 1]);
    for bad in [
        "garbage",
        tampered.as_str(),
        "eyJvIjoiMCJ9.AAAAAAAAAAAAAAAAAAAAAA",
    ] {
        let (status, problem) = feed(&app, &owner.access_token, &format!("?after={bad}")).await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (400, Some("invalid_cursor")),
            "{bad}"
        );
    }
    let stranger = app.signup("stranger@b.io").await;
    let (status, _) = feed(&app, &stranger.access_token, &format!("?after={next}")).await;
    assert_eq!(status, 400, "another tenant's cursor");
    // ... and another tenant's feed holds none of these events.
    let (_, theirs) = feed(&app, &stranger.access_token, "?types=contact.created").await;
    assert_eq!(theirs["data"], json!([]));

    // Bad limits and unknown parameters are refused; no token, no feed.
    for q in ["?limit=0", "?limit=201", "?bogus=1"] {
        assert_eq!(feed(&app, &owner.access_token, q).await.0, 400, "{q}");
    }
    let res = client()
        .get(app.url("/api/v1/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 401);
}

#[tokio::test]
async fn a_stream_delivers_live_events_and_a_reconnect_receives_exactly_the_gap() {
    let app = TestApp::spawn().await;
    let owner = app.signup("stream@a.io").await;
    let url = app.url("/api/v1/events/stream?types=contact.created");

    let mut sse = open_stream(url.clone(), &owner.access_token, None).await;
    create_contact(&app, &owner, "One").await;
    let one = sse.next_event().await;
    assert_eq!(one.event.as_deref(), Some("contact.created"));
    assert_eq!(one.json()["data"]["contact"]["firstName"], "One");
    let last_id = one.id.clone().unwrap();
    drop(sse);

    // Missed while disconnected.
    create_contact(&app, &owner, "Two").await;
    create_contact(&app, &owner, "Three").await;

    let mut sse = open_stream(url.clone(), &owner.access_token, Some(&last_id)).await;
    let two = sse.next_event().await;
    let three = sse.next_event().await;
    assert_eq!(two.json()["data"]["contact"]["firstName"], "Two");
    assert_eq!(three.json()["data"]["contact"]["firstName"], "Three");
    // Then live, with nothing replayed twice.
    create_contact(&app, &owner, "Four").await;
    let four = sse.next_event().await;
    assert_eq!(four.json()["data"]["contact"]["firstName"], "Four");

    // The feed and the stream share positions: the stream's id resumes the feed.
    let (status, page) = feed(
        &app,
        &owner.access_token,
        &format!("?after={}", three.id.unwrap()),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(first_names(page["data"].as_array().unwrap()), ["Four"]);

    // `?lastEventId=` for clients that cannot set the header.
    let res = client()
        .get(format!("{url}&lastEventId={last_id}"))
        .bearer_auth(&owner.access_token)
        .send()
        .await
        .unwrap();
    let mut sse = SseClient::new(res);
    let again = sse.next_event().await;
    assert_eq!(again.json()["data"]["contact"]["firstName"], "Two");

    // A forged Last-Event-ID is a 400, an unknown type a 422, no token a 401.
    let res = client()
        .get(url.clone())
        .bearer_auth(&owner.access_token)
        .header("Last-Event-ID", "forged.cursor")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 400);
    let res = client()
        .get(app.url("/api/v1/events/stream?types=deal.exploded"))
        .bearer_auth(&owner.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 422);
    let res = client().get(url).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 401);
}

#[tokio::test]
async fn a_stream_sees_only_its_tenant_and_types_and_works_with_an_api_key() {
    let app = TestApp::spawn_with(|c| c.sse_heartbeat = Duration::from_millis(50), None).await;
    let owner = app.signup("keys@a.io").await;
    let other = app.signup("other@b.io").await;
    let (status, key) = {
        let res = client()
            .post(app.url("/api/v1/api-keys"))
            .bearer_auth(&owner.access_token)
            .json(&json!({ "name": "stream", "role": "VIEWER" }))
            .send()
            .await
            .unwrap();
        (res.status().as_u16(), res.json::<Value>().await.unwrap())
    };
    assert_eq!(status, 201);
    let secret = key["secret"].as_str().unwrap();

    let mut sse = open_stream(
        app.url("/api/v1/events/stream?types=contact.updated"),
        secret,
        None,
    )
    .await;
    // Heartbeats arrive on an idle stream (50 ms configured here).
    let beat = sse.next_frame().await;
    assert_eq!(beat.comments, vec!["keep-alive"]);

    let theirs = create_contact(&app, &other, "Theirs").await;
    rename_contact(&app, &other, &theirs, "Still theirs").await;
    let ours = create_contact(&app, &owner, "Ours").await;
    rename_contact(&app, &owner, &ours, "Ours renamed").await;

    let event = sse.next_event().await;
    assert_eq!(event.event.as_deref(), Some("contact.updated"));
    let body = event.json();
    assert_eq!(body["organizationId"], owner.org_id.to_string());
    assert_eq!(body["data"]["contact"]["firstName"], "Ours renamed");
    assert_eq!(body["actor"]["kind"], "user");

    // The session cookie works too (a GET needs no CSRF token), as for a browser's
    // EventSource with credentials.
    let res = client()
        .get(app.url("/api/v1/events/stream?lastEventId=") + event.id.as_deref().unwrap())
        .header("cookie", format!("nx_access={}", owner.access_token))
        .send()
        .await
        .unwrap();
    let mut by_cookie = SseClient::new(res);
    rename_contact(&app, &owner, &ours, "Cookie").await;
    let e = by_cookie.next_event().await;
    assert_eq!(e.json()["data"]["contact"]["firstName"], "Cookie");
}

#[tokio::test]
async fn a_stream_is_woken_by_an_event_written_through_another_instance() {
    let app = TestApp::spawn().await;
    let second = app.spawn_instance().await;
    let owner = app.signup("twice@a.io").await;

    let mut on_second = open_stream(
        second.url("/api/v1/events/stream"),
        &owner.access_token,
        None,
    )
    .await;
    let mut on_first =
        open_stream(app.url("/api/v1/events/stream"), &owner.access_token, None).await;
    // Written through the first instance: the second hears of it by NOTIFY only.
    create_contact(&app, &owner, "Everywhere").await;
    for sse in [&mut on_second, &mut on_first] {
        let e = sse.next_event().await;
        assert_eq!(e.json()["data"]["contact"]["firstName"], "Everywhere");
    }
    second.handle.stop(false).await;
}

#[tokio::test]
async fn a_stream_that_falls_behind_the_fan_out_re_reads_the_outbox_and_loses_nothing() {
    // A CSV import writes its rows' events a chunk per transaction; the shared reader
    // sends a page of them in one go to a fan-out that holds 16, so the stream's receiver
    // lags and must catch up from the outbox. Whatever the interleaving, every event must
    // arrive once, in order, and nothing from before the stream opened (the owner's
    // `member.joined`) when it re-reads.
    let app = TestApp::spawn_with(|c| c.event_bus_capacity = 16, None).await;
    let owner = app.signup("lag@a.io").await;
    let mut sse = open_stream(app.url("/api/v1/events/stream"), &owner.access_token, None).await;
    let mut csv = String::from("firstName,lastName\n");
    for i in 0..300 {
        csv.push_str(&format!("N{i:03},Lag\n"));
    }
    let res = client()
        .post(app.url("/api/v1/contacts/imports"))
        .bearer_auth(&owner.access_token)
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 202, "{}", res.text().await.unwrap());
    let mut names = Vec::new();
    for _ in 0..300 {
        let e = sse.next_event().await;
        names.push(
            e.json()["data"]["contact"]["firstName"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let expected: Vec<String> = (0..300).map(|i| format!("N{i:03}")).collect();
    assert_eq!(names, expected);
    // Nothing more (no duplicate) before the next live event.
    create_contact(&app, &owner, "After").await;
    assert_eq!(
        sse.next_event().await.json()["data"]["contact"]["firstName"],
        "After"
    );
}

#[tokio::test]
async fn a_stream_ends_after_its_lifetime_and_resumes_where_it_ended() {
    let app = TestApp::spawn_with(|c| c.sse_max_lifetime = Duration::from_secs(1), None).await;
    let owner = app.signup("lifetime@a.io").await;
    let url = app.url("/api/v1/events/stream?types=contact.created");
    let mut sse = open_stream(url.clone(), &owner.access_token, None).await;
    create_contact(&app, &owner, "Before").await;
    let before = sse.next_event().await;
    // The server closes the stream (the reader sees its end, however long it takes).
    assert!(sse.ended().await);
    create_contact(&app, &owner, "Meanwhile").await;
    let mut again = open_stream(url, &owner.access_token, before.id.as_deref()).await;
    assert_eq!(
        again.next_event().await.json()["data"]["contact"]["firstName"],
        "Meanwhile"
    );
}

#[tokio::test]
async fn an_event_that_commits_late_still_reaches_a_cursor_that_passed_later_writes() {
    use diesel_async::SimpleAsyncConnection;
    let app = TestApp::spawn().await;
    let owner = app.signup("late@a.io").await;
    create_contact(&app, &owner, "Before").await;
    let (_, page) = feed(&app, &owner.access_token, "").await;
    let start = page["nextCursor"].as_str().unwrap().to_owned();

    // A writer of the same organization appends its event first and commits last.
    let mut slow = app.pool.get().await.unwrap();
    slow.batch_execute(&format!(
        "BEGIN; INSERT INTO events (id, organization_id, type, actor, payload)
         VALUES (gen_random_uuid(), '{}', 'contact.created', '{{\"kind\":\"system\"}}',
                 '{{\"contact\":{{\"firstName\":\"Late\"}}}}')",
        owner.org_id
    ))
    .await
    .unwrap();
    create_contact(&app, &owner, "Quick").await;
    let (_, page) = feed(&app, &owner.access_token, &format!("?after={start}")).await;
    assert_eq!(first_names(page["data"].as_array().unwrap()), ["Quick"]);
    let passed_quick = page["nextCursor"].as_str().unwrap().to_owned();

    // The reader has moved past "Quick". Were numbers drawn at insert, "Late" would sit
    // behind that cursor for good; numbered at commit, it comes next.
    let mut stream = open_stream(
        app.url("/api/v1/events/stream"),
        &owner.access_token,
        Some(&passed_quick),
    )
    .await;
    slow.batch_execute("COMMIT").await.unwrap();
    let late = stream.next_event().await;
    assert_eq!(late.json()["data"]["contact"]["firstName"], "Late");
    let (_, page) = feed(&app, &owner.access_token, &format!("?after={passed_quick}")).await;
    assert_eq!(first_names(page["data"].as_array().unwrap()), ["Late"]);
    let (_, all) = feed(&app, &owner.access_token, &format!("?after={start}")).await;
    assert_eq!(
        first_names(all["data"].as_array().unwrap()),
        ["Quick", "Late"]
    );
}
