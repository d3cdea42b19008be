//! CSV imports over HTTP with the real background worker: 202 + job, header mapping,
//! per-row errors that never stop the good rows, dedupe by email (skip or update), chunks.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use diesel::QueryableByName;
use diesel::sql_types::BigInt;
use diesel_async::RunQueryDsl;
use nexus_app::testing::{TestApp, TestUser};
use nexus_application::imports::CHUNK_ROWS;
use serde_json::{Value, json};

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

fn upload_request(
    app: &TestApp,
    user: &TestUser,
    query: &str,
    content_type: &str,
    csv: impl Into<reqwest::Body>,
) -> reqwest::RequestBuilder {
    reqwest::Client::new()
        .post(app.url(&format!("/api/v1/contacts/imports{query}")))
        .bearer_auth(&user.access_token)
        .header("content-type", content_type)
        .body(csv)
}

async fn upload(
    app: &TestApp,
    user: &TestUser,
    query: &str,
    content_type: &str,
    csv: impl Into<reqwest::Body>,
) -> reqwest::Response {
    upload_request(app, user, query, content_type, csv)
        .send()
        .await
        .unwrap()
}

/// `body` in HTTP/1.1 chunks of 1 MiB, without the terminating chunk.
fn chunked(body: &[u8]) -> Vec<u8> {
    let mut chunked = Vec::with_capacity(body.len() + 1024);
    for piece in body.chunks(1 << 20) {
        chunked.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        chunked.extend_from_slice(piece);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked
}

/// Uploads and waits for the worker to finish the job.
async fn import(app: &TestApp, user: &TestUser, query: &str, csv: String) -> Value {
    let res = upload(app, user, query, "text/csv", csv).await;
    assert_eq!(res.status().as_u16(), 202);
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    let accepted: Value = res.json().await.unwrap();
    assert_eq!(accepted["status"], "pending");
    assert_eq!(
        location,
        format!(
            "/api/v1/contacts/imports/{}",
            accepted["id"].as_str().unwrap()
        )
    );
    finished(app, user, &location).await
}

/// Polls the job at `location` until it ends (30 s at most).
async fn finished(app: &TestApp, user: &TestUser, location: &str) -> Value {
    let started = Instant::now();
    loop {
        let (_, job) = app.get_json(&user.access_token, location).await;
        if job["status"] == "completed" || job["status"] == "failed" {
            return job;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "import did not finish: {job}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn imports_keep_good_rows_report_bad_ones_and_dedupe_by_email() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@import.io").await;
    let res = reqwest::Client::new()
        .post(app.url("/api/v1/custom-fields"))
        .bearer_auth(&owner.access_token)
        .json(&json!({"key": "seats", "label": "Seats", "type": "number"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 201);
    let existing = reqwest::Client::new()
        .post(app.url("/api/v1/contacts"))
        .bearer_auth(&owner.access_token)
        .json(&json!({"firstName": "Grace", "lastName": "Hopper", "email": "grace@navy.mil", "company": "Navy"}))
        .send()
        .await
        .unwrap();
    assert_eq!(existing.status().as_u16(), 201);

    let csv = "First Name,Last Name,E-mail,Tags,Seats,Shoe Size\r\n\
               Ada,Lovelace,ada@engines.io,vip;math,12,38\r\n\
               Bad,Email,not-an-email,,,\r\n\
               NoLast,,nolast@x.io,,,\r\n\
               \"Alan, Jr.\",Turing,alan@bletchley.uk,,3,\r\n\
               Seats,Wrong,seats@x.io,,many,\r\n\
               Grace,Again,GRACE@navy.mil,,,\r\n\
               Ada,Twice,ada@engines.io,,,\r\n"
        .to_owned();
    let job = import(&app, &owner, "", csv.clone()).await;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(
        (
            &job["totalRows"],
            &job["rowsProcessed"],
            &job["created"],
            &job["updated"],
            &job["skipped"],
            &job["failed"]
        ),
        (
            &json!(7),
            &json!(7),
            &json!(2),
            &json!(0),
            &json!(1),
            &json!(4)
        ),
        "{job}"
    );
    let errors: Vec<(i64, String)> = job["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["row"].as_i64().unwrap(),
                e["field"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        errors,
        [
            (2, "email".to_owned()),
            (3, "lastName".to_owned()),
            (5, "customFields.seats".to_owned()),
            (7, "email".to_owned())
        ]
    );
    assert_eq!(count(&app, "SELECT count(*) AS n FROM contacts").await, 3);
    assert_eq!(
        count(&app, "SELECT count(*) AS n FROM contacts WHERE first_name = 'Alan, Jr.' AND custom_fields = '{\"seats\": 3}'").await,
        1
    );
    assert_eq!(count(&app, "SELECT count(*) AS n FROM contacts WHERE email = 'ada@engines.io' AND tags = '{vip,math}'").await, 1);
    assert_eq!(
        count(
            &app,
            "SELECT count(*) AS n FROM events WHERE type = 'contact.created'"
        )
        .await,
        3
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) AS n FROM contacts WHERE email = 'grace@navy.mil' AND company = 'Navy'"
        )
        .await,
        1
    );

    // Again with onDuplicate=update: existing contacts take the rows' non-empty cells.
    let update = "firstName,lastName,email,company\nGrace,Hopper,grace@navy.mil,US Navy\nAda,Lovelace,ada@engines.io,\n".to_owned();
    let job = import(&app, &owner, "?onDuplicate=update", update).await;
    assert_eq!(
        (
            &job["created"],
            &job["updated"],
            &job["skipped"],
            &job["failed"]
        ),
        (&json!(0), &json!(1), &json!(1), &json!(0)),
        "{job}"
    );
    assert_eq!(count(&app, "SELECT count(*) AS n FROM contacts WHERE email = 'grace@navy.mil' AND company = 'US Navy' AND version = 2").await, 1);
    assert_eq!(
        count(
            &app,
            "SELECT count(*) AS n FROM events WHERE type = 'contact.updated'"
        )
        .await,
        1
    );

    // Each job is audited twice: who started it, and what it wrote.
    let (_, audit) = app
        .get_json(
            &owner.access_token,
            &format!(
                "/api/v1/audit-log?entityType=contact_import&entityId={}",
                job["id"].as_str().unwrap()
            ),
        )
        .await;
    let entries = audit["data"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{audit}");
    assert_eq!(entries[0]["action"], "contact_import.finished");
    assert_eq!(entries[0]["changes"]["after"]["updated"], 1);
    assert_eq!(entries[0]["changes"]["after"]["status"], "completed");
    assert_eq!(entries[1]["action"], "contact_import.created");
    assert_eq!(entries[1]["changes"]["after"]["onDuplicate"], "update");
    assert_eq!(
        entries[1]["actor"],
        json!({ "kind": "user", "userId": owner.user_id })
    );

    // Another organization cannot see the job.
    let stranger = app.signup("stranger@import.io").await;
    let id = job["id"].as_str().unwrap();
    let res = reqwest::Client::new()
        .get(app.url(&format!("/api/v1/contacts/imports/{id}")))
        .bearer_auth(&stranger.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 404);
}

#[tokio::test]
async fn uploads_are_checked_before_any_job_exists() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@upload.io").await;
    let viewer = app.add_member(&owner, "viewer@upload.io", "VIEWER").await;
    let ok = "firstName,lastName\nA,B\n";
    assert_eq!(
        upload(&app, &viewer, "", "text/csv", ok)
            .await
            .status()
            .as_u16(),
        403
    );
    assert_eq!(
        upload(&app, &owner, "", "application/json", ok)
            .await
            .status()
            .as_u16(),
        415
    );
    assert_eq!(
        upload(&app, &owner, "?onDuplicate=merge", "text/csv", ok)
            .await
            .status()
            .as_u16(),
        400
    );
    let res = upload(&app, &owner, "", "text/csv", "email,company\na@b.co,X\n").await;
    assert_eq!(res.status().as_u16(), 422);
    assert_eq!(
        res.json::<Value>().await.unwrap()["errors"][0]["code"],
        "missing_column"
    );
    let res = upload(
        &app,
        &owner,
        "",
        "text/csv",
        "firstName,lastName,E-mail,Email\nA,B,a@b.co,c@d.co\n",
    )
    .await;
    assert_eq!(res.status().as_u16(), 422);
    let problem = res.json::<Value>().await.unwrap();
    assert_eq!(
        (
            &problem["errors"][0]["field"],
            &problem["errors"][0]["code"]
        ),
        (&json!("email"), &json!("duplicate_column")),
        "{problem}"
    );
    // A custom field column naming no field, and a header of thousands of columns.
    for (csv, field, code) in [
        (
            "firstName,lastName,customFields.nope\nA,B,1\n".to_owned(),
            "customFields.nope",
            "unknown_field",
        ),
        (
            format!("firstName,lastName{}\nA,B\n", ",".repeat(5_000)),
            "file",
            "too_many_columns",
        ),
    ] {
        let res = upload(&app, &owner, "", "text/csv", csv).await;
        assert_eq!(res.status().as_u16(), 422);
        let problem = res.json::<Value>().await.unwrap();
        assert_eq!(
            (
                &problem["errors"][0]["field"],
                &problem["errors"][0]["code"]
            ),
            (&json!(field), &json!(code)),
            "{problem}"
        );
    }
    assert_eq!(
        upload(&app, &owner, "", "text/csv", vec![0xff_u8, 0xfe, b'a'])
            .await
            .status()
            .as_u16(),
        422
    );
    assert_eq!(
        upload(&app, &owner, "", "text/csv", "")
            .await
            .status()
            .as_u16(),
        422
    );
    assert_eq!(
        count(&app, "SELECT count(*) AS n FROM contact_imports").await,
        0
    );
}

/// Sends a raw HTTP/1.1 upload (`head` then `body`, nothing after) and returns the
/// response's status line. Raw, so that nothing more is sent once the server has refused:
/// a client still writing would race the server's close.
async fn raw_upload(app: &TestApp, user: &TestUser, head: &str, body: &[u8]) -> String {
    raw_upload_as(app, user, "text/csv", head, body).await
}

async fn raw_upload_as(
    app: &TestApp,
    user: &TestUser,
    content_type: &str,
    head: &str,
    body: &[u8],
) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = app.address.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
    let request = format!(
        "POST /api/v1/contacts/imports HTTP/1.1\r\nHost: {host}\r\n\
         Authorization: Bearer {}\r\nContent-Type: {content_type}\r\n{head}\r\n",
        user.access_token
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut response = Vec::new();
    let mut buf = [0_u8; 4096];
    tokio::time::timeout(Duration::from_secs(30), async {
        while !response.windows(2).any(|w| w == b"\r\n") {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "the server closed without a response");
            response.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("a response within 30 s");
    let text = String::from_utf8_lossy(&response);
    text.lines().next().unwrap().to_owned()
}

#[tokio::test]
async fn uploads_over_50_mb_are_refused_with_413_and_leave_nothing() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@huge.io").await;
    let limit = nexus_application::imports::MAX_BYTES;

    // Declared too large: refused before a byte of the body is read, with or without a
    // key (the middleware reads a keyed upload first).
    for key in ["", "Idempotency-Key: huge\r\n"] {
        let status = raw_upload(
            &app,
            &owner,
            &format!("{key}Content-Length: {}\r\n", limit + 1),
            b"",
        )
        .await;
        assert!(status.starts_with("HTTP/1.1 413"), "{key}{status}");
    }

    // Not declared (chunked): refused when the body passes the limit. The terminating
    // chunk is never sent, so the server has read all that was sent when it refuses.
    let mut body = b"firstName,lastName\n".to_vec();
    body.resize(limit + 1, b'a');
    let status = raw_upload(
        &app,
        &owner,
        "Transfer-Encoding: chunked\r\n",
        &chunked(&body),
    )
    .await;
    assert!(status.starts_with("HTTP/1.1 413"), "{status}");

    // Exactly at the limit is not refused for its size (it is one long malformed row).
    body.truncate(limit);
    let res = upload(&app, &owner, "", "text/csv", body).await;
    assert_eq!(res.status().as_u16(), 202);
    assert_eq!(
        count(&app, "SELECT count(*) AS n FROM contact_imports").await,
        1,
        "only the upload within the limit made a job"
    );
}

#[tokio::test]
async fn large_files_go_through_in_chunks_and_unreadable_tails_fail_the_job_cleanly() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@bulk.io").await;
    // Two and a half chunks, whatever the chunk size.
    let rows = CHUNK_ROWS * 5 / 2;
    let mut csv = String::from("firstName,lastName,email,phone,company,tags\n");
    for i in 0..rows {
        csv.push_str(&format!(
            "First{i},Last{i},person{i}@bulk.io,+1 555 010 {i:04},Company {},t{}\n",
            i % 7,
            i % 3
        ));
    }
    // Rows of the last chunk repeat emails of the first: reported as repeats within
    // the file, as they would be within one chunk, not taken for existing contacts.
    for i in 0..10 {
        csv.push_str(&format!("Again{i},Last{i},PERSON{i}@bulk.io,,,\n"));
    }
    // A blank line and a row of empty cells hold no contact: skipped, not reported.
    csv.push_str("\n,,,,,\n");
    let started = Instant::now();
    let job = import(&app, &owner, "", csv).await;
    let elapsed = started.elapsed();
    assert_eq!(
        (
            &job["created"],
            &job["skipped"],
            &job["failed"],
            &job["totalRows"]
        ),
        (&json!(rows), &json!(2), &json!(10), &json!(rows + 12)),
        "{job}"
    );
    let errors = job["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 10, "{job}");
    assert_eq!(errors[0]["row"], json!(rows + 1));
    assert_eq!(errors[0]["field"], "email");
    assert_eq!(
        errors[9]["message"],
        "the same email as row 10 of this file"
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) AS n FROM contacts WHERE phone_e164 LIKE '+1555010%'"
        )
        .await,
        i64::try_from(rows).unwrap()
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) AS n FROM events WHERE type = 'contact.created'"
        )
        .await,
        i64::try_from(rows).unwrap()
    );
    eprintln!("{rows} rows imported in {elapsed:?} (debug build, including polling)");

    // An unterminated quote makes the rest unreadable: the rows before it stay, the
    // job fails with the reason, and the bad row is reported.
    // It sits in the third chunk, so two chunks are written before the job fails.
    let good = CHUNK_ROWS * 2 + 100;
    let mut broken = String::from("firstName,lastName\n");
    broken.push_str(&"Good,Row\n".repeat(good));
    broken.push_str("\"Never,closed\nMore,Rows\n");
    let job = import(&app, &owner, "", broken.clone()).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(
        (&job["created"], &job["failed"]),
        (&json!(good), &json!(1)),
        "{job}"
    );
    assert!(
        job["failure"]
            .as_str()
            .is_some_and(|f| f.contains("never closed")),
        "{job}"
    );
    // A stop after the last chunk committed and before the job was marked failed: the
    // job taken over from its checkpoint fails the same way, writing nothing more.
    let id = job["id"].as_str().unwrap();
    let mut conn = app.pool.get().await.unwrap();
    diesel_async::RunQueryDsl::execute(
        diesel::sql_query(format!(
            "UPDATE contact_imports SET status = 'running', failure = NULL, finished_at = NULL,
                    heartbeat_at = now() - interval '1 hour', csv = decode('{}', 'hex')
             WHERE id = '{id}'",
            broken
                .bytes()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        )),
        &mut conn,
    )
    .await
    .unwrap();
    drop(conn);
    let again = finished(&app, &owner, &format!("/api/v1/contacts/imports/{id}")).await;
    assert_eq!(again["status"], "failed", "{again}");
    assert_eq!(again["failure"], job["failure"], "{again}");
    assert_eq!(
        (&again["created"], &again["failed"]),
        (&json!(good), &json!(1))
    );
}

const BOUNDARY: &str = "nexus-test-boundary";

/// A `multipart/form-data` body of `parts` (name, file content), as browsers send it.
fn form(parts: &[(&str, &[u8])]) -> Vec<u8> {
    form_with(BOUNDARY, parts)
}

fn form_with(boundary: &str, parts: &[(&str, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, content) in parts {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; \
                 filename=\"contacts.csv\"\r\nContent-Type: text/csv\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(content);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    body
}

fn form_type() -> String {
    format!("multipart/form-data; boundary={BOUNDARY}")
}

#[tokio::test]
async fn a_form_upload_imports_its_file_part_and_bad_forms_write_nothing() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@form.io").await;
    let csv = b"firstName,lastName,email\nAda,Lovelace,ada@form.io\nAlan,Turing,alan@form.io\n";

    // Refused forms first, so that no job can come from any of them.
    let refused = [
        // A multipart body has at least one part (RFC 2046 §5.1.1).
        (form(&[]), 400, "malformed_request"),
        (form(&[("upload", csv)]), 422, "unknown_field"),
        (
            form(&[("file", csv), ("note", b"hi")]),
            422,
            "unknown_field",
        ),
        (form(&[("file", csv), ("file", csv)]), 422, "duplicate"),
        (b"no boundary in sight".to_vec(), 400, "malformed_request"),
    ];
    for (body, status, code) in refused {
        let res = upload(&app, &owner, "", &form_type(), body).await;
        let got_status = res.status().as_u16();
        let problem: Value = res.json().await.unwrap();
        assert_eq!(got_status, status, "{code}: {problem}");
        let got = if status == 422 {
            &problem["errors"][0]["code"]
        } else {
            &problem["code"]
        };
        assert_eq!(got, code, "{problem}");
    }
    // A form without its boundary parameter cannot be read.
    let res = upload(
        &app,
        &owner,
        "",
        "multipart/form-data",
        form(&[("file", csv)]),
    )
    .await;
    assert_eq!(res.status().as_u16(), 400);
    // A viewer may not import, whatever the body's form.
    let viewer = app.add_member(&owner, "viewer@form.io", "VIEWER").await;
    let res = upload(&app, &viewer, "", &form_type(), form(&[("file", csv)])).await;
    assert_eq!(res.status().as_u16(), 403);
    assert_eq!(
        count(&app, "SELECT count(*) AS n FROM contact_imports").await,
        0
    );

    // Declared larger than a file at the limit plus its envelope: refused unread.
    let status = raw_upload_as(
        &app,
        &owner,
        &form_type(),
        &format!(
            "Content-Length: {}\r\n",
            nexus_adapters_http::upload::MAX_BODY + 1
        ),
        b"",
    )
    .await;
    assert!(status.starts_with("HTTP/1.1 413"), "{status}");

    // The file part is held to the file limit, not the body's (chunked, never ended).
    let mut big = b"firstName,lastName\n".to_vec();
    big.resize(nexus_application::imports::MAX_BYTES + 1, b'a');
    let body = chunked(&form(&[("file", &big)]));
    let status = raw_upload_as(
        &app,
        &owner,
        &form_type(),
        "Transfer-Encoding: chunked\r\n",
        &body,
    )
    .await;
    assert!(status.starts_with("HTTP/1.1 413"), "{status}");
    assert_eq!(
        count(&app, "SELECT count(*) AS n FROM contact_imports").await,
        0
    );

    // The file part of a well-formed form is imported like a CSV body.
    let res = upload(&app, &owner, "", &form_type(), form(&[("file", csv)])).await;
    assert_eq!(res.status().as_u16(), 202);
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    let job = finished(&app, &owner, &location).await;
    assert_eq!(
        (&job["status"], &job["created"], &job["failed"]),
        (&json!("completed"), &json!(2), &json!(0)),
        "{job}"
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) AS n FROM contacts WHERE email IN ('ada@form.io', 'alan@form.io')"
        )
        .await,
        2
    );
}

/// Uploads with an `Idempotency-Key`: read under the upload limit whatever the spelling
/// of their media type or their form, and replayed on a retry.
#[tokio::test]
async fn uploads_with_an_idempotency_key_are_replayed_in_every_accepted_form() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@retry.io").await;
    // Larger than a JSON body may be (1 MiB), far below the upload limit.
    let mut csv = String::from("firstName,lastName\n");
    while csv.len() < 3 << 19 {
        csv.push_str("Retry,Person\n");
    }
    let send = |key: &'static str, content_type: String, body: Vec<u8>| {
        upload_request(&app, &owner, "", &content_type, body)
            .header("idempotency-key", key)
            .send()
    };
    let cases = [
        (
            "key-application-csv",
            "application/csv".to_owned(),
            csv.clone().into_bytes(),
        ),
        (
            "key-upper-case",
            "TEXT/CSV; charset=utf-8".to_owned(),
            csv.clone().into_bytes(),
        ),
        ("key-form", form_type(), form(&[("file", csv.as_bytes())])),
    ];
    let mut jobs = Vec::new();
    for (key, content_type, body) in cases {
        let first = send(key, content_type.clone(), body.clone()).await.unwrap();
        assert_eq!(first.status().as_u16(), 202, "{key}");
        let first: Value = first.json().await.unwrap();
        let again = send(key, content_type, body).await.unwrap();
        assert_eq!(again.status().as_u16(), 202, "{key}");
        let again: Value = again.json().await.unwrap();
        assert_eq!(
            first["id"], again["id"],
            "{key}: the retry replays the first job"
        );
        jobs.push(first["id"].clone());
    }
    assert_eq!(
        count(&app, "SELECT count(*) AS n FROM contact_imports").await,
        3,
        "one job per key: {jobs:?}"
    );

    // Elsewhere a keyed CSV body is read under the JSON limit, not the upload's.
    let res = reqwest::Client::new()
        .post(app.url("/api/v1/contacts"))
        .bearer_auth(&owner.access_token)
        .header("content-type", "text/csv")
        .header("idempotency-key", "key-not-an-upload")
        .body(csv)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 413);
}

/// A reader's upload is refused from its headers: the server does not wait for a body
/// it will not take (this one never arrives in full).
#[tokio::test]
async fn a_reader_is_refused_before_the_upload_is_read() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@early.io").await;
    let viewer = app.add_member(&owner, "viewer@early.io", "VIEWER").await;
    for head in [
        "Content-Length: 40000000\r\n",
        // With a key too: the idempotency middleware does not read it first.
        "Content-Length: 40000000\r\nIdempotency-Key: reader-upload\r\n",
    ] {
        let status = raw_upload(&app, &viewer, head, b"firstName,lastName\n").await;
        assert!(status.starts_with("HTTP/1.1 403"), "{head}: {status}");
    }
    // Whatever the body's type: the role is what is refused.
    let json = upload(&app, &viewer, "", "application/json", "{}").await;
    assert_eq!(json.status(), 403);
    assert_eq!(
        count(&app, "SELECT count(*) AS n FROM idempotency_keys").await,
        0
    );
}

/// Browsers and curl draw a new boundary for every send of a form, so a retry of the same
/// file is the same request under its key; another file under the key is not.
#[tokio::test]
async fn a_form_retried_with_a_fresh_boundary_replays_the_first_import() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@boundary.io").await;
    let csv = b"firstName,lastName\nAda,Lovelace\n";
    let send = async |boundary: &str, file: &[u8]| {
        upload_request(
            &app,
            &owner,
            "",
            &format!("multipart/form-data; boundary={boundary}"),
            form_with(boundary, &[("file", file)]),
        )
        .header("Idempotency-Key", "form-retry")
        .send()
        .await
        .unwrap()
    };
    let first = send("first-7f3a", csv).await;
    assert_eq!(first.status().as_u16(), 202);
    let location = first.headers()["location"].clone();
    let retry = send("retry-0b91c2", csv).await;
    assert_eq!(retry.status().as_u16(), 202);
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    assert_eq!(retry.headers()["location"], location);
    let other = send("other-55", b"firstName,lastName\nAlan,Turing\n").await;
    assert_eq!(other.status().as_u16(), 422);
    assert_eq!(
        count(&app, "SELECT count(*) AS n FROM contact_imports").await,
        1
    );
}

#[tokio::test]
async fn rows_naming_an_outside_owner_or_holding_a_nul_fail_alone() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@owners.io").await;
    let member = app.add_member(&owner, "rep@owners.io", "MEMBER").await;
    let outsider = app.signup("outsider@elsewhere.io").await;
    let stranger = uuid::Uuid::now_v7();
    let res = reqwest::Client::new()
        .post(app.url("/api/v1/contacts"))
        .bearer_auth(&owner.access_token)
        .json(&json!({"firstName": "Kept", "lastName": "Owner", "email": "kept@owners.io", "ownerId": member.user_id}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 201);

    let csv = format!(
        "firstName,lastName,email,ownerId\r\n\
         Ada,Lovelace,,{member}\r\n\
         Bob,Outside,,{outsider}\r\n\
         Cy,Nobody,,{stranger}\r\n\
         D\0an,Nul,,\r\n\
         Eve,Good,,\r\n",
        member = member.user_id,
        outsider = outsider.user_id,
    );
    let job = import(&app, &owner, "", csv).await;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(
        (&job["created"], &job["failed"]),
        (&json!(2), &json!(3)),
        "{job}"
    );
    let errors: Vec<(i64, &str)> = job["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["row"].as_i64().unwrap(), e["field"].as_str().unwrap()))
        .collect();
    assert_eq!(errors, [(2, "ownerId"), (3, "ownerId"), (4, "firstName")]);
    let owned_by =
        |user: uuid::Uuid| format!("SELECT count(*) AS n FROM contacts WHERE owner_id = '{user}'");
    assert_eq!(count(&app, &owned_by(member.user_id)).await, 2);
    assert_eq!(count(&app, &owned_by(outsider.user_id)).await, 0);

    // Updating an existing contact by email is held to the same rule.
    let update = format!(
        "firstName,lastName,email,company,ownerId\r\nKept,Owner,kept@owners.io,Moved,{}\r\n",
        outsider.user_id
    );
    let job = import(&app, &owner, "?onDuplicate=update", update).await;
    assert_eq!(
        (&job["updated"], &job["failed"]),
        (&json!(0), &json!(1)),
        "{job}"
    );
    assert_eq!(job["errors"][0]["field"], "ownerId");
    assert_eq!(
        count(
            &app,
            "SELECT count(*) AS n FROM contacts WHERE email = 'kept@owners.io' AND company IS NULL"
        )
        .await,
        1
    );

    // An owner who has left may stay the owner of a contact a row updates (as a PATCH
    // keeps them): a file exported before they left goes back in.
    let res = reqwest::Client::new()
        .delete(app.url(&format!("/api/v1/members/{}", member.user_id)))
        .bearer_auth(&owner.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let again = format!(
        "firstName,lastName,email,company,ownerId\r\nKept,Owner,kept@owners.io,Kept Co,{}\r\n",
        member.user_id
    );
    let job = import(&app, &owner, "?onDuplicate=update", again).await;
    assert_eq!(
        (&job["updated"], &job["failed"]),
        (&json!(1), &json!(0)),
        "{job}"
    );
}

/// In a file that may update, a row with a malformed cell fails as such and does not
/// hold its email against a later, valid row.
#[tokio::test]
async fn a_malformed_row_does_not_claim_its_email_in_an_updating_file() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@malformed.io").await;
    let csv = "firstName,lastName,email,phone\n\
               Ada,L,ada@x.io,call me\n\
               Ada,L,ada@x.io,+44 20 7946 0958\n"
        .to_owned();
    let job = import(&app, &owner, "?onDuplicate=update", csv).await;
    assert_eq!(
        (&job["created"], &job["failed"]),
        (&json!(1), &json!(1)),
        "{job}"
    );
    assert_eq!(job["errors"][0]["field"], "phone", "{job}");
}

/// A file whose rows fill its last chunk exactly ends there: its checkpoint stays past
/// the last row (an empty chunk after it once set it back to the first).
#[tokio::test]
async fn a_file_that_fills_its_last_chunk_exactly_completes_at_its_end() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@exact.io").await;
    let mut csv = String::from("firstName,lastName\n");
    for i in 0..CHUNK_ROWS * 2 {
        csv.push_str(&format!("Exact{i},Fit\n"));
    }
    let job = import(&app, &owner, "", csv).await;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(job["created"], json!(CHUNK_ROWS * 2));
    assert_eq!(
        count(&app, "SELECT next_row::bigint AS n FROM contact_imports").await,
        i64::try_from(CHUNK_ROWS * 2 + 1).unwrap()
    );
    // A header and no rows: completed, with its total of none.
    let job = import(&app, &owner, "", "firstName,lastName\n".to_owned()).await;
    assert_eq!(
        (&job["status"], &job["totalRows"], &job["created"]),
        (&json!("completed"), &json!(0), &json!(0)),
        "{job}"
    );
}

/// Ten imports waiting or running are an organization's most: the eleventh upload is a
/// 429 with `Retry-After` and stores nothing, while another organization still uploads.
#[tokio::test]
async fn an_organization_with_ten_unfinished_imports_is_told_to_wait() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@queue.io").await;
    let org = owner.org_id;
    {
        // Running with a fresh heartbeat: the worker leaves them alone for two minutes.
        let mut conn = app.pool.get().await.unwrap();
        diesel::sql_query(format!(
            "INSERT INTO contact_imports (organization_id, id, status, on_duplicate, csv, created_at, heartbeat_at)
             SELECT '{org}', gen_random_uuid(), 'running', 'skip', ''::bytea, now(), now()
             FROM generate_series(1, 10)"
        ))
        .execute(&mut conn)
        .await
        .unwrap();
    }
    let csv = "firstName,lastName\nAda,Lovelace\n";
    let res = upload(&app, &owner, "", "text/csv", csv).await;
    assert_eq!(res.status(), 429);
    assert!(res.headers().contains_key("retry-after"));
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], "too_many_imports");
    assert_eq!(
        count(
            &app,
            &format!("SELECT count(*) AS n FROM contact_imports WHERE organization_id = '{org}'")
        )
        .await,
        10
    );
    let other = app.signup("other@queue.io").await;
    let res = upload(&app, &other, "", "text/csv", csv).await;
    assert_eq!(res.status(), 202);
}

/// With `onDuplicate=update`, a file may only update: rows found by email take their
/// non-empty cells, even without names; a row whose email finds no contact fails as the
/// new contact it cannot be. Without `update`, names stay required at upload.
#[tokio::test]
async fn an_update_only_file_updates_found_contacts_and_reports_the_rest() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@updates.io").await;
    let first = import(
        &app,
        &owner,
        "",
        "firstName,lastName,email\nAda,Lovelace,ada@x.io\nBob,B,bob@x.io\n".to_owned(),
    )
    .await;
    assert_eq!(first["created"], 2, "{first}");
    let stranger = uuid::Uuid::new_v4();
    let csv = format!(
        "email,lifecycleStage,firstName,ownerId\n\
         ADA@x.io,customer,,\n\
         nobody@x.io,customer,,\n\
         ada@x.io,lead,,\n\
         bob@x.io,customer,,{stranger}\n"
    );

    let refused = upload(&app, &owner, "", "text/csv", csv.clone()).await;
    assert_eq!(refused.status(), 422);

    let job = import(&app, &owner, "?onDuplicate=update", csv).await;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(
        (&job["created"], &job["updated"], &job["failed"]),
        (&json!(0), &json!(1), &json!(3)),
        "{job}"
    );
    let errors = job["errors"].as_array().unwrap();
    assert_eq!(
        errors
            .iter()
            .map(|e| (e["row"].as_i64().unwrap(), e["field"].as_str().unwrap()))
            .collect::<Vec<_>>(),
        [
            (2, "firstName"),
            (2, "lastName"),
            (3, "email"),
            (4, "ownerId")
        ]
    );
    assert!(
        errors[2]["message"]
            .as_str()
            .unwrap()
            .contains("the same email as row 1"),
        "{job}"
    );
    let (_, page) = app
        .get_json(&owner.access_token, "/api/v1/contacts?q=ada")
        .await;
    let contact = &page["data"][0];
    assert_eq!(
        (&contact["firstName"], &contact["lifecycleStage"]),
        (&json!("Ada"), &json!("customer"))
    );
    assert_eq!(
        count(&app, "SELECT count(*) AS n FROM contacts").await,
        2,
        "nothing created"
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) AS n FROM contacts WHERE owner_id IS NOT NULL OR lifecycle_stage <> 'lead'"
        )
        .await,
        1,
        "only Ada changed"
    );
}

#[tokio::test]
async fn an_exported_file_imports_back_to_the_same_values() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@roundtrip.io").await;
    let client = reqwest::Client::new();
    let res = client
        .post(app.url("/api/v1/custom-fields"))
        .bearer_auth(&owner.access_token)
        .json(&json!({"key": "note", "label": "Note", "type": "text"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 201);
    // Values a spreadsheet would run, one already quoted by hand, and a phone the
    // export leaves alone.
    let values = json!({
        "firstName": "Ada",
        "lastName": "'=quoted",
        "email": "ada@roundtrip.io",
        "phone": "+44 20 7946 0958",
        "company": "=cmd()",
        "tags": ["@home", "vip"],
        "customFields": {"note": "+A1"}
    });
    let res = client
        .post(app.url("/api/v1/contacts"))
        .bearer_auth(&owner.access_token)
        .json(&values)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 201);
    let original: Value = res.json().await.unwrap();

    let exported = client
        .get(app.url("/api/v1/contacts/export"))
        .bearer_auth(&owner.access_token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(exported.contains("\"'=cmd()\""), "{exported}");
    assert!(exported.contains("\"''=quoted\""), "{exported}");
    let res = client
        .delete(app.url(&format!(
            "/api/v1/contacts/{}",
            original["id"].as_str().unwrap()
        )))
        .bearer_auth(&owner.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 204);

    let job = import(&app, &owner, "", exported).await;
    assert_eq!(
        (&job["created"], &job["failed"]),
        (&json!(1), &json!(0)),
        "{job}"
    );
    let (_, page) = app
        .get_json(&owner.access_token, "/api/v1/contacts?q=roundtrip")
        .await;
    let imported = &page["data"][0];
    assert_ne!(imported["id"], original["id"]);
    for field in [
        "firstName",
        "lastName",
        "email",
        "phone",
        "company",
        "tags",
        "customFields",
    ] {
        assert_eq!(imported[field], original[field], "{field}: {imported}");
    }
}

#[tokio::test]
async fn cells_past_the_headers_columns_are_passed_over() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@wide.io").await;
    // A row of a million commas after its two cells: read over, not kept.
    let csv = format!(
        "firstName,lastName\r\nAda,Lovelace{}\r\nGrace,Hopper\r\n",
        ",".repeat(1_000_000)
    );
    let job = import(&app, &owner, "", csv).await;
    assert_eq!(
        (&job["status"], &job["created"], &job["failed"]),
        (&json!("completed"), &json!(2), &json!(0)),
        "{job}"
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) AS n FROM contacts WHERE last_name IN ('Lovelace', 'Hopper')"
        )
        .await,
        2
    );
}

/// An upload whose body never finishes arriving: it holds a slot while it is read.
async fn slow_upload(app: &TestApp, user: &TestUser, key: Option<&str>) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let host = app.address.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
    let key = key.map_or(String::new(), |k| format!("Idempotency-Key: {k}\r\n"));
    let head = format!(
        "POST /api/v1/contacts/imports HTTP/1.1\r\nHost: {host}\r\n\
         Authorization: Bearer {}\r\nContent-Type: text/csv\r\n{key}Content-Length: 1000\r\n\r\n\
         firstName,lastName\r\n",
        user.access_token
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
}

/// Uploads `ok` until the answer is `status` (10 s at most); returns how many were
/// accepted meanwhile (slow uploads may take a moment to reach the server).
async fn upload_until(app: &TestApp, user: &TestUser, status: u16) -> (i64, reqwest::Response) {
    let ok = "firstName,lastName\r\nAda,Lovelace\r\n";
    let (started, mut accepted) = (Instant::now(), 0);
    loop {
        let res = upload(app, user, "", "text/csv", ok).await;
        if res.status().as_u16() == status {
            return (accepted, res);
        }
        match res.status().as_u16() {
            202 => accepted += 1,
            503 => {}
            other => panic!("{other}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn uploads_past_those_read_at_once_are_told_to_retry_before_being_read() {
    let app = TestApp::spawn().await;
    let (a, b, c) = (
        app.signup("owner@slots-a.io").await,
        app.signup("owner@slots-b.io").await,
        app.signup("owner@slots-c.io").await,
    );
    // Two slow uploads fill what one organization may take, with and without a key
    // (the middleware reads a keyed one first, and the route shares its slot).
    let slow_a = vec![
        slow_upload(&app, &a, Some("slow-a")).await,
        slow_upload(&app, &a, None).await,
    ];
    let (accepted_a, busy) = upload_until(&app, &a, 503).await;
    assert_eq!(busy.headers()["retry-after"], "2");
    let problem: Value = busy.json().await.unwrap();
    assert_eq!(problem["code"], "uploads_busy");
    // Another organization still gets in, until two of its own fill the server.
    let slow_b = vec![
        slow_upload(&app, &b, Some("slow-b")).await,
        slow_upload(&app, &b, None).await,
    ];
    let (accepted_c, busy) = upload_until(&app, &c, 503).await;
    assert_eq!(busy.json::<Value>().await.unwrap()["code"], "uploads_busy");
    assert_eq!(
        count(&app, "SELECT count(*) AS n FROM contact_imports").await,
        accepted_a + accepted_c,
        "a refused upload is not stored"
    );
    // The slow ones go away: their slots come back.
    drop(slow_a);
    upload_until(&app, &c, 202).await;
    drop(slow_b);
}

#[tokio::test]
async fn an_upload_that_does_not_arrive_in_time_is_refused_and_frees_its_slot() {
    use tokio::io::AsyncReadExt;
    let app = TestApp::spawn_with(|c| c.upload_deadline = Duration::from_secs(1), None).await;
    let owner = app.signup("owner@deadline.io").await;
    for key in [None, Some("late")] {
        let mut stream = slow_upload(&app, &owner, key).await;
        let mut response = vec![0_u8; 1024];
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut response))
            .await
            .expect("an answer after the deadline")
            .unwrap();
        let text = String::from_utf8_lossy(&response[..n]).into_owned();
        assert!(text.starts_with("HTTP/1.1 408"), "{text}");
        assert!(text.contains("upload_too_slow"), "{text}");
    }
    // Both slow uploads were refused and let go of their slots.
    upload_until(&app, &owner, 202).await;
    assert_eq!(
        count(&app, "SELECT count(*) AS n FROM contact_imports").await,
        1
    );
}

/// An import started with an API key names the key on its contacts' events, as a
/// `POST /contacts` with the key does.
#[tokio::test]
async fn an_import_started_with_an_api_key_names_the_key_on_its_events() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@keyed.io").await;
    let res = reqwest::Client::new()
        .post(app.url("/api/v1/api-keys"))
        .bearer_auth(&owner.access_token)
        .json(&json!({ "name": "importer", "role": "MEMBER" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 201);
    let key: Value = res.json().await.unwrap();
    let keyed = TestUser {
        access_token: key["secret"].as_str().unwrap().to_owned(),
        ..owner.clone()
    };
    let job = import(
        &app,
        &keyed,
        "",
        "firstName,lastName\nAda,Lovelace\n".to_owned(),
    )
    .await;
    assert_eq!(job["created"], 1, "{job}");
    let named = format!(
        "SELECT count(*) AS n FROM events WHERE type = 'contact.created' \
         AND actor = jsonb_build_object('kind', 'api_key', 'id', '{}'::text)",
        key["apiKey"]["id"].as_str().unwrap()
    );
    assert_eq!(count(&app, &named).await, 1);
}
