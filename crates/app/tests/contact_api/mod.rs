//! What the contacts tests share: one request helper that keeps the response's
//! status, headers and JSON body, and a count of rows straight from the database.
#![allow(dead_code)]

use diesel::QueryableByName;
use diesel::sql_types::BigInt;
use diesel_async::RunQueryDsl;
use nexus_app::testing::{TestApp, TestUser};
use serde_json::Value;

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

pub async fn count(app: &TestApp, sql: &str) -> i64 {
    let mut conn = app.pool.get().await.unwrap();
    diesel::sql_query(sql)
        .get_result::<Count>(&mut conn)
        .await
        .unwrap()
        .n
}

pub struct Res {
    pub status: u16,
    pub etag: Option<String>,
    pub location: Option<String>,
    pub content_type: String,
    pub body: Value,
}

pub async fn send(
    app: &TestApp,
    user: &TestUser,
    method: &str,
    path: &str,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> Res {
    let mut req = reqwest::Client::new()
        .request(method.parse().unwrap(), app.url(path))
        .bearer_auth(&user.access_token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = req.send().await.unwrap();
    let header = |name: &str| {
        res.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let (etag, location) = (header("etag"), header("location"));
    let content_type = header("content-type").unwrap_or_default();
    let status = res.status().as_u16();
    Res {
        status,
        etag,
        location,
        content_type,
        body: res.json().await.unwrap_or(Value::Null),
    }
}

pub async fn call(
    app: &TestApp,
    user: &TestUser,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Res {
    send(app, user, method, path, body, &[]).await
}

pub fn assert_problem(res: &Res, status: u16, code: &str) {
    assert_eq!(res.status, status, "{}", res.body);
    assert_eq!(res.content_type, "application/problem+json");
    assert_eq!(res.body["code"], code, "{}", res.body);
}

pub async fn create(app: &TestApp, user: &TestUser, body: Value) -> Value {
    let res = call(app, user, "POST", "/api/v1/contacts", Some(body)).await;
    assert_eq!(res.status, 201, "{}", res.body);
    res.body
}

/// Defines the number field `seats` (as `user`); the response.
pub async fn seats_field(app: &TestApp, user: &TestUser) -> Res {
    call(
        app,
        user,
        "POST",
        "/api/v1/custom-fields",
        Some(serde_json::json!({"key": "seats", "label": "Seats", "type": "number"})),
    )
    .await
}
