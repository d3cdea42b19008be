//! The `nexus` binary as an operator runs it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nexus_adapters_postgres::testing::TestDatabase;
#[cfg(target_os = "linux")]
use nexus_app::scheduling::stat_field;

const BIN: &str = env!("CARGO_BIN_EXE_nexus");

/// Starts `cmd` (a server) with its stdout piped; returns it and the address its banner names.
async fn start(mut cmd: Command) -> (std::process::Child, String) {
    let mut child = cmd
        .env("NEXUS_BIND", "127.0.0.1:0")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let banner = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find(|l| l.contains("listening on"))
    })
    .await
    .unwrap()
    .expect("the banner names the address");
    let address = banner.rsplit(' ').next().unwrap().to_owned();
    (child, address)
}

#[test]
fn a_bad_setting_stops_start_up_with_one_line_naming_it() {
    let out = Command::new(BIN)
        .env("NEXUS_DB_POOL_SIZE", "many")
        .arg("serve")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("NEXUS_DB_POOL_SIZE must be a whole number from 1 to 1000"),
        "{stderr}"
    );
}

#[test]
fn openapi_prints_the_committed_spec() {
    let out = Command::new(BIN).arg("openapi").output().unwrap();
    assert!(out.status.success());
    let committed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../openapi/openapi.json"
    ))
    .unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        committed,
        "run `just openapi` to refresh the spec"
    );
}

#[tokio::test]
async fn sigterm_stops_the_server_cleanly_with_exit_code_zero() {
    let db = TestDatabase::create().await;
    let mut cmd = Command::new(BIN);
    cmd.arg("serve")
        .env("DATABASE_URL", db.url())
        .env("NEXUS_WORKERS", "1");
    let (mut child, address) = start(cmd).await;
    let res = reqwest::get(format!("{address}/health/ready"))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "did not stop after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status.code(), Some(0));
}

async fn count_contacts(conn: &mut diesel_async::AsyncPgConnection) -> i64 {
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    diesel_async::RunQueryDsl::get_result::<N>(
        diesel::sql_query("SELECT count(*) AS n FROM contacts"),
        conn,
    )
    .await
    .unwrap()
    .n
}

#[tokio::test]
async fn seed_contacts_fills_an_existing_organization_or_the_demo_one() {
    use diesel::QueryableByName;
    use diesel::sql_types::BigInt;
    use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

    #[derive(QueryableByName)]
    struct Counts {
        #[diesel(sql_type = BigInt)]
        contacts: i64,
        #[diesel(sql_type = BigInt)]
        emails: i64,
    }
    let db = TestDatabase::create().await;
    let data_dir = std::env::temp_dir().join(format!("nexus-seed-n-{}", std::process::id()));
    let run = |args: &[&str]| {
        Command::new(BIN)
            .args(args)
            .env("DATABASE_URL", db.url())
            .env("NEXUS_DATA_DIR", &data_dir)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    };
    let refused = run(&["seed", "--contacts", "10"]);
    assert_eq!(
        refused.status.code(),
        Some(2),
        "--contacts needs --organization"
    );

    // An organization that does not exist is not made up (it would have no OWNER).
    let missing = run(&["seed", "--contacts", "300", "--organization", "acme-seed"]);
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr)
            .contains("no organization `acme-seed` with an OWNER"),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );
    let mut conn = AsyncPgConnection::establish(db.url()).await.unwrap();
    let orgs: Counts =
        diesel::sql_query("SELECT count(*) AS contacts, count(*) AS emails FROM organizations")
            .get_result(&mut conn)
            .await
            .unwrap();
    assert_eq!(orgs.contacts, 0, "nothing created");
    // One an older seed made without an OWNER is refused as well.
    diesel::sql_query(
        "INSERT INTO organizations (id, name, slug) VALUES (gen_random_uuid(), 'legacy-seed', 'legacy-seed')",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let ownerless = run(&["seed", "--contacts", "10", "--organization", "legacy-seed"]);
    assert!(!ownerless.status.success());
    assert_eq!(
        count_contacts(&mut conn).await,
        0,
        "nothing seeded into an organization nobody can log into"
    );

    // The demo organization's slug makes the demo first: its OWNER login, then the rows.
    let out = run(&["seed", "--contacts", "300", "--organization", "nexus-demo"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("log in as demo@nexus.local / "), "{stdout}");
    assert!(
        stdout.contains("seeded 300 contacts into nexus-demo"),
        "{stdout}"
    );
    let counts: Counts = diesel::sql_query(
        "SELECT count(*) AS contacts, count(DISTINCT lower(c.email)) AS emails
         FROM contacts c JOIN organizations o ON o.id = c.organization_id
         WHERE o.slug = 'nexus-demo' AND c.deleted_at IS NULL
           -- The demo's own contacts came through the API, with their events.
           AND NOT EXISTS (SELECT 1 FROM events e WHERE e.type = 'contact.created'
                           AND e.payload -> 'contact' ->> 'id' = c.id::text)",
    )
    .get_result(&mut conn)
    .await
    .unwrap();
    // Most seeded contacts have an email, each unique (some have none, like real ones).
    assert_eq!(counts.contacts, 300);
    assert!((150..=300).contains(&counts.emails), "{}", counts.emails);
    let owners: Counts = diesel::sql_query(
        "SELECT count(*) AS contacts, count(*) AS emails FROM memberships m
         JOIN organizations o ON o.id = m.organization_id
         JOIN users u ON u.id = m.user_id
         WHERE o.slug = 'nexus-demo' AND m.role = 'OWNER' AND u.email = 'demo@nexus.local'",
    )
    .get_result(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        owners.contacts, 1,
        "the demo login owns the seeded organization"
    );
    let _ = std::fs::remove_dir_all(&data_dir);
}

#[tokio::test]
async fn seed_demo_creates_a_working_owner_login_once() {
    let db = TestDatabase::create().await;
    let data_dir = std::env::temp_dir().join(format!("nexus-seed-{}", std::process::id()));
    let seed = || {
        Command::new(BIN)
            .args(["seed", "--demo"])
            .env("DATABASE_URL", db.url())
            .env("NEXUS_DATA_DIR", &data_dir)
            .env("NEXUS_BCRYPT_COST", "10")
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    };
    let first = seed();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let line = String::from_utf8(first.stdout).unwrap();
    let creds = line.trim().rsplit("log in as ").next().unwrap().to_owned();
    let (email, password) = creds.split_once(" / ").unwrap();
    assert_eq!(email, "demo@nexus.local");
    assert!(password.len() >= 32);
    let second = seed();
    assert_eq!(
        String::from_utf8(second.stdout).unwrap(),
        line,
        "idempotent, same credentials"
    );

    // The printed login works against a server on the same database.
    let mut cmd = Command::new(BIN);
    cmd.env("DATABASE_URL", db.url())
        .env("NEXUS_DATA_DIR", &data_dir);
    let (mut child, address) = start(cmd).await;
    let res = reqwest::Client::new()
        .post(format!("{address}/api/v1/auth/login"))
        .json(&serde_json::json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap();
    let status = res.status();
    let body: serde_json::Value = res.json().await.unwrap();
    let token = body["accessToken"].as_str().unwrap_or_default().to_owned();
    let deals: serde_json::Value = reqwest::Client::new()
        .get(format!("{address}/api/v1/deals"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&data_dir);
    assert_eq!(status, 200);
    assert_eq!(body["role"], "OWNER");
    assert_eq!(
        deals["data"].as_array().unwrap().len(),
        8,
        "the demo pipeline is filled with deals"
    );
}

#[cfg(target_os = "linux")]
/// The kernel scheduling policy of each of `pid`'s threads, by thread name: field 41 of
/// `/proc/<pid>/task/<tid>/stat` (0 normal, 3 batch).
fn thread_policies(pid: u32) -> Vec<(String, u32)> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .map(|task| {
            let dir = task.unwrap().path();
            let name = std::fs::read_to_string(dir.join("comm")).unwrap();
            let stat = std::fs::read_to_string(dir.join("stat")).unwrap();
            let policy = stat_field(&stat, 41).unwrap().parse().unwrap();
            (name.trim().to_owned(), policy)
        })
        .collect()
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn http_workers_run_under_sched_batch_unless_turned_off() {
    let db = TestDatabase::create().await;
    for (setting, expected) in [(None, 3), (Some("false"), 0)] {
        let mut cmd = Command::new(BIN);
        cmd.arg("serve")
            .env("DATABASE_URL", db.url())
            .env("NEXUS_WORKERS", "2");
        if let Some(value) = setting {
            cmd.env("NEXUS_SCHED_BATCH", value);
        }
        let (mut child, address) = start(cmd).await;
        let res = reqwest::get(format!("{address}/health/ready"))
            .await
            .unwrap();
        let threads = thread_policies(child.id());
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let _ = child.wait();
        assert_eq!(res.status(), 200);
        let workers: Vec<u32> = threads
            .iter()
            .filter(|(name, _)| name.starts_with("actix-server wo"))
            .map(|(_, policy)| *policy)
            .collect();
        assert_eq!(workers, [expected; 2], "{setting:?}: {threads:?}");
        // The rest (the main thread, the runtime's, the accept loop) keep the default.
        assert!(
            threads
                .iter()
                .filter(|(name, _)| !name.starts_with("actix-server wo"))
                .all(|(_, policy)| *policy == 0),
            "{threads:?}"
        );
    }
}
