//! Pipelines, deals and activities over HTTP against the real database.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use diesel::QueryableByName;
use diesel::sql_types::BigInt;
use diesel_async::RunQueryDsl;
use nexus_app::testing::{TestApp, TestUser};
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
    call_with(app, user, method, path, body, None).await
}

async fn call_with(
    app: &TestApp,
    user: &TestUser,
    method: &str,
    path: &str,
    body: Option<Value>,
    if_match: Option<&str>,
) -> (u16, Value) {
    let mut req = client()
        .request(method.parse().unwrap(), app.url(path))
        .bearer_auth(&user.access_token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    if let Some(v) = if_match {
        req = req.header("if-match", v);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn contact(app: &TestApp, user: &TestUser, last: &str) -> String {
    let (status, body) = call(
        app,
        user,
        "POST",
        "/api/v1/contacts",
        Some(json!({"firstName": "Grace", "lastName": last})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().unwrap().to_owned()
}

async fn default_pipeline(app: &TestApp, user: &TestUser) -> Value {
    let (_, list) = call(app, user, "GET", "/api/v1/pipelines", None).await;
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["isDefault"] == true)
        .unwrap()
        .clone()
}

fn stage(p: &Value, name: &str) -> String {
    p["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn deal(app: &TestApp, user: &TestUser, contact: &str, amount: &str) -> Value {
    let (status, body) = call(
        app,
        user,
        "POST",
        "/api/v1/deals",
        Some(json!({"title": "Annual plan", "value": {"amount": amount, "currency": "USD"}, "contactId": contact})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body
}

#[tokio::test]
async fn registration_creates_the_default_pipeline() {
    let app = TestApp::spawn().await;
    let owner = app.signup("p@a.io").await;
    let p = default_pipeline(&app, &owner).await;
    let stages: Vec<(String, i64, String)> = p["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().into(),
                s["probability"].as_i64().unwrap(),
                s["kind"].as_str().unwrap().into(),
            )
        })
        .collect();
    let expected = [
        ("Lead", 10, "open"),
        ("Qualified", 25, "open"),
        ("Proposal", 50, "open"),
        ("Negotiation", 75, "open"),
        ("Closed Won", 100, "won"),
        ("Closed Lost", 0, "lost"),
    ];
    assert_eq!(
        stages,
        expected.map(|(n, p, k)| (n.to_owned(), p, k.to_owned()))
    );
}

#[tokio::test]
async fn invalid_pipelines_are_refused_with_nothing_written() {
    let app = TestApp::spawn().await;
    let owner = app.signup("p@a.io").await;
    let viewer = app.add_member(&owner, "v@a.io", "VIEWER").await;
    let member = app.add_member(&owner, "m@a.io", "MEMBER").await;
    let bad = [
        json!({"name": "X", "stages": [{"name": "Won", "probability": 100, "kind": "won"}]}),
        json!({"name": "X", "stages": [{"name": "A", "probability": 10, "kind": "open"}, {"name": "a", "probability": 20, "kind": "open"}]}),
        json!({"name": "X", "stages": [{"name": "A", "probability": 10, "kind": "open"}, {"name": "W", "probability": 90, "kind": "won"}]}),
        json!({"name": "X", "stages": (0..51).map(|i| json!({"name": format!("S{i}"), "probability": 10, "kind": "open"})).collect::<Vec<_>>()}),
    ];
    for body in bad {
        let (status, problem) = call(&app, &owner, "POST", "/api/v1/pipelines", Some(body)).await;
        assert_eq!(status, 422, "{problem}");
    }
    let ok = json!({"name": "Enterprise", "stages": [{"name": "Open", "probability": 30, "kind": "open"}, {"name": "Won", "probability": 100, "kind": "won"}]});
    assert_eq!(
        call(&app, &viewer, "POST", "/api/v1/pipelines", Some(ok.clone()))
            .await
            .0,
        403
    );
    assert_eq!(
        call(&app, &member, "POST", "/api/v1/pipelines", Some(ok.clone()))
            .await
            .0,
        403
    );
    assert_eq!(count(&app, "SELECT count(*) AS n FROM pipelines").await, 1);
    assert_eq!(
        call(&app, &owner, "POST", "/api/v1/pipelines", Some(ok))
            .await
            .0,
        201
    );
}

#[tokio::test]
async fn a_new_default_pipeline_unsets_the_previous_one() {
    let app = TestApp::spawn().await;
    let owner = app.signup("p@a.io").await;
    let first = default_pipeline(&app, &owner).await;
    let body = json!({"name": "Second", "isDefault": true, "stages": [{"name": "Open", "probability": 30, "kind": "open"}]});
    let (_, second) = call(&app, &owner, "POST", "/api/v1/pipelines", Some(body)).await;
    assert_eq!(default_pipeline(&app, &owner).await["id"], second["id"]);
    let (status, p) = call(
        &app,
        &owner,
        "GET",
        &format!("/api/v1/pipelines/{}", first["id"].as_str().unwrap()),
        None,
    )
    .await;
    assert_eq!((status, p["isDefault"].as_bool().unwrap()), (200, false));
    let (status, problem) = call(
        &app,
        &owner,
        "DELETE",
        &format!("/api/v1/pipelines/{}", second["id"].as_str().unwrap()),
        None,
    )
    .await;
    assert_eq!(
        (status, problem["code"].as_str().unwrap()),
        (409, "default_pipeline")
    );
}

#[tokio::test]
async fn deals_default_to_the_first_open_stage_and_stay_in_their_tenant() {
    let app = TestApp::spawn().await;
    let owner = app.signup("p@a.io").await;
    let viewer = app.add_member(&owner, "v@a.io", "VIEWER").await;
    let stranger = app.signup("s@b.io").await;
    let c = contact(&app, &owner, "Hopper").await;
    let d = deal(&app, &owner, &c, "1250.5").await;
    let p = default_pipeline(&app, &owner).await;
    assert_eq!(d["stageId"].as_str().unwrap(), stage(&p, "Lead"));
    assert_eq!(
        (
            d["status"].as_str().unwrap(),
            d["probability"].as_i64().unwrap()
        ),
        ("OPEN", 10)
    );
    assert_eq!(d["value"], json!({"amount": "1250.50", "currency": "USD"}));
    assert_eq!(d["weightedValue"]["amount"], "125.05");
    assert_eq!(
        count(
            &app,
            "SELECT count(*) AS n FROM activities WHERE type = 'DEAL_CREATED'"
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) AS n FROM events WHERE type = 'deal.created'"
        )
        .await,
        1
    );

    // Another organization's contact, pipeline or deal is not ours.
    let foreign_contact = contact(&app, &stranger, "Foreign").await;
    let body = json!({"title": "X", "value": {"amount": "1", "currency": "USD"}, "contactId": foreign_contact});
    assert_eq!(
        call(&app, &owner, "POST", "/api/v1/deals", Some(body))
            .await
            .0,
        422
    );
    let id = d["id"].as_str().unwrap();
    for (method, path) in [
        ("GET", format!("/api/v1/deals/{id}")),
        ("DELETE", format!("/api/v1/deals/{id}")),
    ] {
        assert_eq!(call(&app, &stranger, method, &path, None).await.0, 404);
    }
    let mv = json!({"stageId": stage(&p, "Proposal")});
    assert_eq!(
        call(
            &app,
            &stranger,
            "POST",
            &format!("/api/v1/deals/{id}/move"),
            Some(mv.clone())
        )
        .await
        .0,
        404
    );
    assert_eq!(
        call(
            &app,
            &stranger,
            "GET",
            &format!("/api/v1/pipelines/{}/board", p["id"].as_str().unwrap()),
            None
        )
        .await
        .0,
        404
    );
    let (_, list) = call(&app, &stranger, "GET", "/api/v1/deals", None).await;
    assert!(list["data"].as_array().unwrap().is_empty());

    // VIEWER reads but never writes; bad input writes nothing.
    assert_eq!(
        call(&app, &viewer, "GET", &format!("/api/v1/deals/{id}"), None)
            .await
            .0,
        200
    );
    assert_eq!(
        call(
            &app,
            &viewer,
            "POST",
            &format!("/api/v1/deals/{id}/move"),
            Some(mv)
        )
        .await
        .0,
        403
    );
    // The role is answered before If-Match and the body are read: a VIEWER's malformed
    // request is still a 403, not a 400 or 415.
    for (method, path) in [
        ("PATCH", format!("/api/v1/deals/{id}")),
        ("DELETE", format!("/api/v1/deals/{id}")),
        ("POST", format!("/api/v1/deals/{id}/move")),
        ("PATCH", "/api/v1/organizations/current".to_owned()),
        ("POST", "/api/v1/deals".to_owned()),
        ("POST", "/api/v1/pipelines".to_owned()),
        ("POST", "/api/v1/activities".to_owned()),
        ("POST", "/api/v1/webhooks".to_owned()),
        ("PATCH", format!("/api/v1/webhooks/{id}")),
        ("POST", format!("/api/v1/webhooks/{id}/rotate-secret")),
        ("PATCH", format!("/api/v1/members/{}", owner.user_id)),
    ] {
        let res = client()
            .request(method.parse().unwrap(), app.url(&path))
            .bearer_auth(&viewer.access_token)
            .header("if-match", "3")
            .header("content-type", "text/plain")
            .body("{not json")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 403, "{method} {path}");
    }
    let bad =
        json!({"title": "X", "value": {"amount": "1.234", "currency": "USD"}, "contactId": c});
    assert_eq!(
        call(&app, &owner, "POST", "/api/v1/deals", Some(bad))
            .await
            .0,
        422
    );
    let bad = json!({"title": "X", "value": {"amount": "1", "currency": "USD"}, "contactId": c, "probability": 50});
    assert_eq!(
        call(&app, &owner, "POST", "/api/v1/deals", Some(bad))
            .await
            .0,
        400
    );
    assert_eq!(count(&app, "SELECT count(*) AS n FROM deals").await, 1);
}

#[tokio::test]
async fn moves_follow_the_stage_and_record_history_and_events() {
    let app = TestApp::spawn().await;
    let owner = app.signup("p@a.io").await;
    let c = contact(&app, &owner, "Hopper").await;
    let d = deal(&app, &owner, &c, "1000").await;
    let id = d["id"].as_str().unwrap();
    let p = default_pipeline(&app, &owner).await;
    let path = format!("/api/v1/deals/{id}/move");

    let (status, won) = call(
        &app,
        &owner,
        "POST",
        &path,
        Some(json!({"stageId": stage(&p, "Closed Won"), "wonReason": "price"})),
    )
    .await;
    assert_eq!(status, 200, "{won}");
    assert_eq!(
        (
            won["status"].as_str().unwrap(),
            won["probability"].as_i64().unwrap()
        ),
        ("WON", 100)
    );
    assert!(won["closedAt"].is_string());
    assert_eq!(won["wonReason"], "price");
    assert_eq!(
        count(
            &app,
            "SELECT count(*) AS n FROM events WHERE type IN ('deal.stage_changed', 'deal.won')"
        )
        .await,
        2
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) AS n FROM activities WHERE type = 'DEAL_WON'"
        )
        .await,
        1
    );

    // Back to an open stage: reopened.
    let (_, reopened) = call(
        &app,
        &owner,
        "POST",
        &path,
        Some(json!({"stageId": stage(&p, "Negotiation")})),
    )
    .await;
    assert_eq!(
        (
            reopened["status"].as_str().unwrap(),
            reopened["probability"].as_i64().unwrap()
        ),
        ("OPEN", 75)
    );
    assert!(reopened["closedAt"].is_null());

    // The same stage again changes nothing and records nothing.
    let before = count(&app, "SELECT count(*) AS n FROM events").await;
    let (status, same) = call(
        &app,
        &owner,
        "POST",
        &path,
        Some(json!({"stageId": stage(&p, "Negotiation")})),
    )
    .await;
    assert_eq!(
        (status, same["version"].clone()),
        (200, reopened["version"].clone())
    );
    assert_eq!(
        count(&app, "SELECT count(*) AS n FROM events").await,
        before
    );

    // A stage of another pipeline is refused.
    let other =
        json!({"name": "Other", "stages": [{"name": "Open", "probability": 30, "kind": "open"}]});
    let (_, other) = call(&app, &owner, "POST", "/api/v1/pipelines", Some(other)).await;
    let foreign_stage = other["stages"][0]["id"].as_str().unwrap();
    let (status, problem) = call(
        &app,
        &owner,
        "POST",
        &path,
        Some(json!({"stageId": foreign_stage})),
    )
    .await;
    assert_eq!(
        (status, problem["errors"][0]["code"].as_str().unwrap()),
        (422, "not_in_pipeline")
    );

    // A stale If-Match changes nothing.
    let (status, _) = call_with(
        &app,
        &owner,
        "POST",
        &path,
        Some(json!({"stageId": stage(&p, "Lead")})),
        Some("\"1\""),
    )
    .await;
    assert_eq!(status, 412);
    let (_, now) = call(&app, &owner, "GET", &format!("/api/v1/deals/{id}"), None).await;
    assert_eq!(now["stageId"].as_str().unwrap(), stage(&p, "Negotiation"));

    // Lost reasons are required when the organization says so.
    call(
        &app,
        &owner,
        "PATCH",
        "/api/v1/organizations/current",
        Some(json!({"settings": {"requireLostReason": true}})),
    )
    .await;
    let (status, problem) = call(
        &app,
        &owner,
        "POST",
        &path,
        Some(json!({"stageId": stage(&p, "Closed Lost")})),
    )
    .await;
    assert_eq!(
        (status, problem["errors"][0]["field"].as_str().unwrap()),
        (422, "lostReason")
    );
    let (status, lost) = call(
        &app,
        &owner,
        "POST",
        &path,
        Some(json!({"stageId": stage(&p, "Closed Lost"), "lostReason": "budget"})),
    )
    .await;
    assert_eq!(
        (
            status,
            lost["status"].as_str().unwrap(),
            lost["lostReason"].as_str().unwrap()
        ),
        (200, "LOST", "budget")
    );
    assert_eq!(
        count(
            &app,
            &format!("SELECT count(*) AS n FROM deal_stage_history WHERE deal_id = '{id}'")
        )
        .await,
        4
    );
    assert_eq!(count(&app, &format!("SELECT count(*) AS n FROM deal_stage_history WHERE deal_id = '{id}' AND left_at IS NULL")).await, 1);

    let (_, timeline) = call(
        &app,
        &owner,
        "GET",
        &format!("/api/v1/deals/{id}/timeline"),
        None,
    )
    .await;
    let types: Vec<&str> = timeline["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "DEAL_LOST",
            "DEAL_STAGE_CHANGED",
            "DEAL_WON",
            "DEAL_CREATED"
        ]
    );
}

#[tokio::test]
async fn concurrent_moves_of_one_deal_lose_no_update() {
    let app = TestApp::spawn_with(|c| c.workers = 2, None).await;
    let owner = app.signup("p@a.io").await;
    let c = contact(&app, &owner, "Hopper").await;
    let d = deal(&app, &owner, &c, "1000").await;
    let id = d["id"].as_str().unwrap().to_owned();
    let p = default_pipeline(&app, &owner).await;
    let targets = [
        "Qualified",
        "Proposal",
        "Negotiation",
        "Closed Won",
        "Lead",
        "Proposal",
        "Closed Lost",
        "Qualified",
    ];
    let mut tasks = Vec::new();
    for name in targets {
        let url = app.url(&format!("/api/v1/deals/{id}/move"));
        let token = owner.access_token.clone();
        let stage = stage(&p, name);
        tasks.push(tokio::spawn(async move {
            client()
                .post(url)
                .bearer_auth(token)
                .json(&json!({"stageId": stage}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    let (_, final_deal) = call(&app, &owner, "GET", &format!("/api/v1/deals/{id}"), None).await;
    let version = final_deal["version"].as_i64().unwrap();
    let moves = count(&app, "SELECT count(*) AS n FROM activities WHERE type IN ('DEAL_STAGE_CHANGED', 'DEAL_WON', 'DEAL_LOST')").await;
    // Every effective move bumped the version once and left exactly one history entry.
    assert_eq!(version - 1, moves);
    assert_eq!(
        count(&app, "SELECT count(*) AS n FROM deal_stage_history").await,
        moves + 1
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) AS n FROM events WHERE type = 'deal.stage_changed'"
        )
        .await,
        moves
    );
    // The last history entry names the stage the deal is in.
    let open_stage = count(
        &app,
        &format!("SELECT count(*) AS n FROM deal_stage_history WHERE left_at IS NULL AND stage_id = '{}'", final_deal["stageId"].as_str().unwrap()),
    )
    .await;
    assert_eq!(open_stage, 1);
    assert_eq!(
        count(&app, TOTALS_DRIFT).await,
        0,
        "the board's running totals match the deals"
    );
}

/// Rows where the trigger-kept totals differ from aggregating the deals themselves.
const TOTALS_DRIFT: &str = "SELECT count(*) AS n FROM
    (SELECT stage_id, currency, count(*) AS c, sum(value_minor) AS v,
            sum((value_minor * probability + 50) / 100) AS w FROM deals GROUP BY 1, 2) d
    FULL JOIN (SELECT * FROM stage_totals WHERE deal_count <> 0) t USING (stage_id, currency)
    WHERE d.c IS DISTINCT FROM t.deal_count OR d.v IS DISTINCT FROM t.value_minor
       OR d.w IS DISTINCT FROM t.weighted_minor";

#[tokio::test]
async fn the_board_totals_each_stage_and_pages_within_it() {
    let app = TestApp::spawn().await;
    let owner = app.signup("p@a.io").await;
    let c = contact(&app, &owner, "Hopper").await;
    let p = default_pipeline(&app, &owner).await;
    for amount in ["100.00", "200.00", "300.01"] {
        deal(&app, &owner, &c, amount).await;
    }
    let eur = json!({"title": "EU", "value": {"amount": "50", "currency": "EUR"}, "contactId": c, "stageId": stage(&p, "Proposal")});
    call(&app, &owner, "POST", "/api/v1/deals", Some(eur)).await;
    let pid = p["id"].as_str().unwrap();
    let (status, board) = call(
        &app,
        &owner,
        "GET",
        &format!("/api/v1/pipelines/{pid}/board?limit=2"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let lead = &board["stages"][0];
    assert_eq!(lead["stage"]["name"], "Lead");
    assert_eq!(lead["count"], 3);
    assert_eq!(
        lead["totals"],
        json!([{"currency": "USD", "count": 3, "value": "600.01", "weightedValue": "60.00"}])
    );
    assert_eq!(lead["deals"].as_array().unwrap().len(), 2);
    assert_eq!(board["stages"][2]["totals"][0]["weightedValue"], "25.00");
    assert_eq!(board["stages"][1]["count"], 0);

    let cursor = lead["nextCursor"].as_str().unwrap();
    let lead_id = stage(&p, "Lead");
    let (_, more) = call(
        &app,
        &owner,
        "GET",
        &format!("/api/v1/pipelines/{pid}/stages/{lead_id}/deals?cursor={cursor}"),
        None,
    )
    .await;
    assert_eq!(more["data"].as_array().unwrap().len(), 1);
    assert!(more["nextCursor"].is_null());
    let (status, _) = call(
        &app,
        &owner,
        "GET",
        &format!("/api/v1/pipelines/{pid}/stages/{lead_id}/deals?cursor=forged.cursor"),
        None,
    )
    .await;
    assert_eq!(status, 400);

    // Moving to a position reorders within the stage by touching one row.
    let first = lead["deals"][0]["id"].as_str().unwrap();
    let proposal = stage(&p, "Proposal");
    call(
        &app,
        &owner,
        "POST",
        &format!("/api/v1/deals/{first}/move"),
        Some(json!({"stageId": proposal, "position": 0})),
    )
    .await;
    let (_, board) = call(
        &app,
        &owner,
        "GET",
        &format!("/api/v1/pipelines/{pid}/board"),
        None,
    )
    .await;
    assert_eq!(
        board["stages"][2]["deals"][0]["id"].as_str().unwrap(),
        first
    );
}

#[tokio::test]
async fn removing_a_stage_with_deals_needs_a_target() {
    let app = TestApp::spawn().await;
    let owner = app.signup("p@a.io").await;
    let c = contact(&app, &owner, "Hopper").await;
    let d = deal(&app, &owner, &c, "10").await;
    let p = default_pipeline(&app, &owner).await;
    let pid = p["id"].as_str().unwrap();
    let without_lead: Vec<Value> = p["stages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["name"] != "Lead")
        .cloned()
        .collect();
    let (status, problem) = call(
        &app,
        &owner,
        "PATCH",
        &format!("/api/v1/pipelines/{pid}"),
        Some(json!({"stages": without_lead})),
    )
    .await;
    assert_eq!(
        (status, problem["code"].as_str().unwrap()),
        (409, "stage_has_deals")
    );
    let target = stage(&p, "Qualified");
    let (status, updated) = call(
        &app,
        &owner,
        "PATCH",
        &format!("/api/v1/pipelines/{pid}"),
        Some(json!({"stages": without_lead, "moveDealsTo": target})),
    )
    .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["stages"].as_array().unwrap().len(), 5);
    let (_, moved) = call(
        &app,
        &owner,
        "GET",
        &format!("/api/v1/deals/{}", d["id"].as_str().unwrap()),
        None,
    )
    .await;
    assert_eq!(
        (
            moved["stageId"].as_str().unwrap(),
            moved["probability"].as_i64().unwrap()
        ),
        (target.as_str(), 25)
    );
}

#[tokio::test]
async fn activities_link_within_the_tenant_and_tasks_complete() {
    let app = TestApp::spawn().await;
    let owner = app.signup("p@a.io").await;
    let member = app.add_member(&owner, "m@a.io", "MEMBER").await;
    let viewer = app.add_member(&owner, "v@a.io", "VIEWER").await;
    let stranger = app.signup("s@b.io").await;
    let c = contact(&app, &owner, "Hopper").await;
    let d = deal(&app, &owner, &c, "10").await;

    let (status, call_log) = call(
        &app,
        &member,
        "POST",
        "/api/v1/activities",
        Some(json!({"type": "CALL", "subject": "Intro", "contactId": c})),
    )
    .await;
    assert_eq!(status, 201, "{call_log}");
    assert_eq!(
        count(
            &app,
            "SELECT count(*) AS n FROM events WHERE type = 'activity.created'"
        )
        .await,
        1
    );
    let (status, problem) = call(
        &app,
        &member,
        "POST",
        "/api/v1/activities",
        Some(json!({"type": "DEAL_WON", "subject": "fake", "dealId": d["id"]})),
    )
    .await;
    assert_eq!(
        (status, problem["errors"][0]["code"].as_str().unwrap()),
        (422, "system_type")
    );
    let task = json!({"type": "TASK", "subject": "Send quote", "dealId": d["id"], "assigneeId": stranger.user_id, "dueAt": "2001-01-01T00:00:00Z"});
    assert_eq!(
        call(&app, &member, "POST", "/api/v1/activities", Some(task))
            .await
            .0,
        422,
        "assignees are members"
    );
    let foreign = contact(&app, &stranger, "Foreign").await;
    assert_eq!(
        call(
            &app,
            &member,
            "POST",
            "/api/v1/activities",
            Some(json!({"type": "NOTE", "subject": "x", "contactId": foreign}))
        )
        .await
        .0,
        422
    );
    assert_eq!(
        call(
            &app,
            &viewer,
            "POST",
            "/api/v1/activities",
            Some(json!({"type": "NOTE", "subject": "x", "contactId": c}))
        )
        .await
        .0,
        403
    );
    assert_eq!(call(&app, &member, "POST", "/api/v1/activities", Some(json!({"type": "CALL", "subject": "x", "dueAt": "2030-01-01T00:00:00Z", "contactId": c}))).await.0, 422);

    let task = json!({"type": "TASK", "subject": "Send quote", "dealId": d["id"], "assigneeId": member.user_id, "dueAt": "2001-01-01T00:00:00Z"});
    let (status, task) = call(&app, &member, "POST", "/api/v1/activities", Some(task)).await;
    assert_eq!(status, 201);
    assert_eq!(
        task["contactId"].as_str().unwrap(),
        c,
        "a deal's activity lands on its contact too"
    );
    let (_, overdue) = call(
        &app,
        &viewer,
        "GET",
        "/api/v1/activities?overdue=true",
        None,
    )
    .await;
    assert_eq!(overdue["data"].as_array().unwrap().len(), 1);
    let tid = task["id"].as_str().unwrap();
    let (status, done) = call(
        &app,
        &member,
        "POST",
        &format!("/api/v1/activities/{tid}/complete"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert!(done["completedAt"].is_string());
    let (_, open) = call(&app, &viewer, "GET", "/api/v1/activities?open=true", None).await;
    assert!(open["data"].as_array().unwrap().is_empty());
    let (_, reopened) = call(
        &app,
        &member,
        "POST",
        &format!("/api/v1/activities/{tid}/reopen"),
        None,
    )
    .await;
    assert!(reopened["completedAt"].is_null());
    let cid = call_log["id"].as_str().unwrap();
    assert_eq!(
        call(
            &app,
            &member,
            "POST",
            &format!("/api/v1/activities/{cid}/complete"),
            None
        )
        .await
        .0,
        404,
        "only tasks complete"
    );
    assert_eq!(
        call(
            &app,
            &stranger,
            "GET",
            &format!("/api/v1/activities/{tid}"),
            None
        )
        .await
        .0,
        404
    );

    let (_, calls) = call(
        &app,
        &viewer,
        "GET",
        "/api/v1/activities?type=CALL&type=NOTE",
        None,
    )
    .await;
    assert_eq!(calls["data"].as_array().unwrap().len(), 1);
    let (_, by_contact) = call(
        &app,
        &viewer,
        "GET",
        &format!("/api/v1/activities?contactId={c}&limit=2"),
        None,
    )
    .await;
    assert_eq!(by_contact["data"].as_array().unwrap().len(), 2);
    let cursor = by_contact["nextCursor"].as_str().unwrap();
    let (_, rest) = call(
        &app,
        &viewer,
        "GET",
        &format!("/api/v1/activities?contactId={c}&limit=2&cursor={cursor}"),
        None,
    )
    .await;
    assert_eq!(
        rest["data"].as_array().unwrap().len(),
        1,
        "DEAL_CREATED, CALL, TASK: three in all"
    );
    assert_eq!(
        call(&app, &viewer, "GET", "/api/v1/activities?type=BOGUS", None)
            .await
            .0,
        400
    );
    // A system entry cannot be deleted by anyone.
    let sys = rest["data"][0]["id"].as_str().unwrap();
    assert_eq!(
        call(
            &app,
            &owner,
            "DELETE",
            &format!("/api/v1/activities/{sys}"),
            None
        )
        .await
        .0,
        404
    );
}

#[tokio::test]
async fn deal_lists_filter_and_page_and_creation_is_idempotent() {
    let app = TestApp::spawn().await;
    let owner = app.signup("p@a.io").await;
    let c1 = contact(&app, &owner, "One").await;
    let c2 = contact(&app, &owner, "Two").await;
    let p = default_pipeline(&app, &owner).await;
    for (c, amount) in [(&c1, "10"), (&c1, "500"), (&c2, "50"), (&c2, "5000")] {
        deal(&app, &owner, c, amount).await;
    }
    let (_, by_contact) = call(
        &app,
        &owner,
        "GET",
        &format!("/api/v1/deals?contactId={c1}"),
        None,
    )
    .await;
    assert_eq!(by_contact["data"].as_array().unwrap().len(), 2);
    let (_, ranged) = call(
        &app,
        &owner,
        "GET",
        "/api/v1/deals?minValue=40&maxValue=600",
        None,
    )
    .await;
    let amounts: Vec<&str> = ranged["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["value"]["amount"].as_str().unwrap())
        .collect();
    assert_eq!(amounts, ["50.00", "500.00"], "newest first");
    let (_, open) = call(
        &app,
        &owner,
        "GET",
        &format!("/api/v1/deals?status=OPEN&stageId={}", stage(&p, "Lead")),
        None,
    )
    .await;
    assert_eq!(open["data"].as_array().unwrap().len(), 4);
    assert_eq!(
        call(&app, &owner, "GET", "/api/v1/deals?status=MAYBE", None)
            .await
            .0,
        400
    );
    assert_eq!(
        call(&app, &owner, "GET", "/api/v1/deals?sortBy=x", None)
            .await
            .0,
        400
    );

    let (_, first) = call(&app, &owner, "GET", "/api/v1/deals?limit=3", None).await;
    let cursor = first["nextCursor"].as_str().unwrap();
    let (_, second) = call(
        &app,
        &owner,
        "GET",
        &format!("/api/v1/deals?limit=3&cursor={cursor}"),
        None,
    )
    .await;
    assert_eq!(second["data"].as_array().unwrap().len(), 1);
    // A cursor is bound to its filters: reusing it under others is refused.
    assert_eq!(
        call(
            &app,
            &owner,
            "GET",
            &format!("/api/v1/deals?limit=3&status=WON&cursor={cursor}"),
            None
        )
        .await
        .0,
        400
    );

    let body =
        json!({"title": "Once", "value": {"amount": "1", "currency": "USD"}, "contactId": c1});
    let send = || {
        client()
            .post(app.url("/api/v1/deals"))
            .bearer_auth(&owner.access_token)
            .header("idempotency-key", "create-once-1")
            .json(&body)
            .send()
    };
    let a = send().await.unwrap();
    let b = send().await.unwrap();
    assert_eq!((a.status().as_u16(), b.status().as_u16()), (201, 201));
    let (a, b): (Value, Value) = (a.json().await.unwrap(), b.json().await.unwrap());
    assert_eq!(a["id"], b["id"], "the retry replays the first response");
    assert_eq!(
        count(&app, "SELECT count(*) AS n FROM deals WHERE title = 'Once'").await,
        1
    );

    // Merge patch: null clears, absent keeps, stale If-Match writes nothing.
    let id = a["id"].as_str().unwrap();
    let path = format!("/api/v1/deals/{id}");
    let (status, patched) = call_with(
        &app,
        &owner,
        "PATCH",
        &path,
        Some(json!({"expectedCloseDate": "2030-06-30", "title": "Twice"})),
        Some("\"1\""),
    )
    .await;
    assert_eq!((status, patched["title"].as_str().unwrap()), (200, "Twice"));
    assert_eq!(patched["expectedCloseDate"], "2030-06-30");
    let (status, _) = call_with(
        &app,
        &owner,
        "PATCH",
        &path,
        Some(json!({"title": "Stale"})),
        Some("\"1\""),
    )
    .await;
    assert_eq!(status, 412);
    // What every deal has cannot be cleared: each null is named, nothing changes, and a
    // VIEWER hears about the role first.
    let (status, refused) = call(
        &app,
        &owner,
        "PATCH",
        &path,
        Some(json!({"title": null, "value": null, "contactId": null, "expectedCloseDate": null})),
    )
    .await;
    assert_eq!(status, 422, "{refused}");
    let fields: Vec<&str> = refused["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["title", "value", "contactId"]);
    assert_eq!(refused["errors"][0]["code"], "required");
    let viewer = app.add_member(&owner, "viewer@nulls.io", "VIEWER").await;
    let (status, _) = call(&app, &viewer, "PATCH", &path, Some(json!({"title": null}))).await;
    assert_eq!(status, 403);
    let (_, unchanged) = call(&app, &owner, "GET", &path, None).await;
    assert_eq!(
        (
            &unchanged["title"],
            &unchanged["version"],
            &unchanged["expectedCloseDate"]
        ),
        (&json!("Twice"), &json!(2), &json!("2030-06-30"))
    );
    let (_, cleared) = call(
        &app,
        &owner,
        "PATCH",
        &path,
        Some(json!({"expectedCloseDate": null})),
    )
    .await;
    assert!(cleared["expectedCloseDate"].is_null());
    assert_eq!(cleared["title"], "Twice");
    assert_eq!(
        count(
            &app,
            "SELECT count(*) AS n FROM events WHERE type = 'deal.updated'"
        )
        .await,
        2
    );
    assert_eq!(
        call_with(&app, &owner, "DELETE", &path, None, Some("\"1\""))
            .await
            .0,
        412
    );
    assert_eq!(call(&app, &owner, "DELETE", &path, None).await.0, 204);
    assert_eq!(
        count(
            &app,
            "SELECT count(*) AS n FROM events WHERE type = 'deal.deleted'"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn a_contact_in_the_trash_takes_no_new_deal_or_activity_but_its_deals_stay_editable() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@trashed-links.io").await;
    let live = contact(&app, &owner, "Live").await;
    let trashed = contact(&app, &owner, "Trashed").await;
    let kept = deal(&app, &owner, &trashed, "100.00").await;
    let kept_id = kept["id"].as_str().unwrap();
    let (status, _) = call(
        &app,
        &owner,
        "DELETE",
        &format!("/api/v1/contacts/{trashed}"),
        None,
    )
    .await;
    assert_eq!(status, 204);
    let before = (
        count(&app, "SELECT count(*) AS n FROM deals").await,
        count(&app, "SELECT count(*) AS n FROM activities").await,
    );

    let refused = [
        (
            "POST",
            "/api/v1/deals".to_owned(),
            json!({"title": "New", "value": {"amount": "1.00", "currency": "USD"}, "contactId": trashed}),
        ),
        (
            "POST",
            "/api/v1/activities".to_owned(),
            json!({"type": "NOTE", "subject": "Hello", "contactId": trashed}),
        ),
    ];
    for (method, path, body) in refused {
        let (status, body) = call(&app, &owner, method, &path, Some(body)).await;
        assert_eq!(status, 422, "{path}: {body}");
        assert_eq!(body["errors"][0]["field"], "contactId", "{body}");
        assert_eq!(body["errors"][0]["code"], "not_found", "{body}");
    }
    // A live deal cannot be moved onto the trashed contact either...
    let other = deal(&app, &owner, &live, "5.00").await;
    let (status, body) = call(
        &app,
        &owner,
        "PATCH",
        &format!("/api/v1/deals/{}", other["id"].as_str().unwrap()),
        Some(json!({"contactId": trashed})),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(
        count(&app, "SELECT count(*) AS n FROM deals").await,
        before.0 + 1,
        "nothing written but the one live deal"
    );
    assert_eq!(
        count(&app, "SELECT count(*) AS n FROM activities").await,
        before.1 + 1,
        "and its DEAL_CREATED entry"
    );
    // ... but the deal that already names it can still be edited.
    let (status, body) = call(
        &app,
        &owner,
        "PATCH",
        &format!("/api/v1/deals/{kept_id}"),
        Some(json!({"title": "Renamed", "contactId": trashed})),
    )
    .await;
    assert_eq!(
        (status, body["title"].as_str()),
        (200, Some("Renamed")),
        "{body}"
    );
}

/// A deal created while its contact is being deleted waits for the delete and is then
/// refused: it never links a contact that went to the trash meanwhile.
#[tokio::test]
async fn a_deal_racing_its_contacts_delete_waits_and_is_refused() {
    use diesel_async::SimpleAsyncConnection;

    let app = TestApp::spawn().await;
    let owner = app.signup("owner@racing-delete.io").await;
    let contact_id = contact(&app, &owner, "Racing").await;
    let mut conn = app.pool.get().await.unwrap();
    conn.batch_execute(&format!(
        "BEGIN; UPDATE contacts SET deleted_at = now(), version = version + 1 WHERE id = '{contact_id}'"
    ))
    .await
    .unwrap();
    let body = json!({"title": "Late", "value": {"amount": "1.00", "currency": "USD"}, "contactId": contact_id});
    let create = call(&app, &owner, "POST", "/api/v1/deals", Some(body));
    tokio::pin!(create);
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(300), &mut create)
            .await
            .is_err(),
        "the deal did not wait for the contact's delete"
    );
    conn.batch_execute("COMMIT").await.unwrap();
    let (status, body) = create.await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["errors"][0]["field"], "contactId", "{body}");
    assert_eq!(count(&app, "SELECT count(*) AS n FROM deals").await, 0);

    // A deal that keeps its contact does not wait for writers of that contact.
    let other = contact(&app, &owner, "Busy").await;
    let kept = deal(&app, &owner, &other, "2.00").await;
    conn.batch_execute(&format!(
        "BEGIN; UPDATE contacts SET company = 'Busy Ltd', version = version + 1 WHERE id = '{other}'"
    ))
    .await
    .unwrap();
    let renamed = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        call(
            &app,
            &owner,
            "PATCH",
            &format!("/api/v1/deals/{}", kept["id"].as_str().unwrap()),
            Some(json!({"title": "Renamed"})),
        ),
    )
    .await;
    conn.batch_execute("COMMIT").await.unwrap();
    let (status, body) = renamed.expect("the deal's update waited for its contact's writer");
    assert_eq!(status, 200, "{body}");
}
