//! Contacts at scale, on this machine, against the real app (loopback only, bounded in
//! time): one organization with 1,000,000 contacts and nine with 20,000. For the first
//! page (newest first), a surname search, a get by id and a create, at 8 and 32
//! concurrent connections: requests/s, p50, p99, and the ratio to pgbench running the same
//! SQL the endpoint sends at the same concurrency: the session check of authentication is
//! answered from the session cache (one bench session), so it is included only when an
//! external server runs with `NEXUS_SESSION_CACHE_TTL_MS=0`. `NEXUS_BENCH_CONTACTS` changes the large organization's size;
//! `NEXUS_BENCH_PHASES` (a comma list of `reads`, `creates`, `import`; all by default)
//! picks what runs after the seed. With `NEXUS_BENCH_SERVER=<path of a nexus binary>`
//! the requests go to that binary, started as its own process on the bench's database,
//! and its RSS (current and peak, from /proc) is reported: the server alone, without the
//! load generator (`NEXUS_BENCH_SERVER_WORKERS` sets its HTTP workers;
//! `NEXUS_BENCH_LOAD_THREADS` the load generator's threads, 2 by default as pgbench's).
//! The import phase also writes the same rows with SQL alone (the import's ceiling, as
//! pgbench is the other phases'). `NEXUS_BENCH_PGBENCH=off` leaves out the pgbench runs
//! and that ceiling. With an external server, a
//! second table splits each phase's CPU per request between the server, the load
//! generator and the rest of the machine (mostly PostgreSQL), beside what the whole
//! machine spent per pgbench transaction of the same SQL.
//!
//! The database is the benchmarks' private cluster (`.nexus/bench-pg`), durable as a
//! production one: fsync, synchronous commit and full-page writes on.
//!
//! Run with `just bench` (or `cargo bench -p nexus-app --bench contacts`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::cast_precision_loss)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use nexus_adapters_postgres::testing::TestDatabase;
use nexus_app::testing::TestApp;
use serde_json::json;

const SMALL_ORGS: usize = 9;
const SMALL_CONTACTS: i64 = 20_000;
const PHASE: Duration = Duration::from_secs(10);
const COLS: &str = "organization_id, id, first_name, last_name, email, phone, phone_e164, company, lifecycle_stage, \
     lead_score, owner_id, tags, custom_fields, version, created_at, updated_at, deleted_at";
/// What authenticating a request asks of the database (the session check).
const AUTH_SQL: &str = "SELECT m.role FROM sessions s JOIN memberships m ON m.organization_id = s.organization_id AND m.user_id = s.user_id LIMIT 1;";

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1e3
}

/// One HTTP/1.1 keep-alive connection per simulated client, as pgbench holds one database
/// connection per client: a bare hyper connection costs the load generator far less CPU
/// than a pooled client, and on two cores that CPU is taken from the server.
async fn connect(authority: &str) -> http1::SendRequest<Full<Bytes>> {
    let stream = tokio::net::TcpStream::connect(authority).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (sender, conn) = http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    sender
}

/// Runs `connections` clients for [`PHASE`]; `make(client, i)` builds each request.
///
/// The clients are spread over threads that each run a runtime of their own, as
/// pgbench's threads (`-j`) serve theirs: on the bench's multi-threaded runtime every
/// response could wake a task on the other thread, and that hand-over is CPU the server
/// and PostgreSQL lose on two cores. `NEXUS_BENCH_LOAD_THREADS` sets how many (default 2,
/// pgbench's `-j 2`).
async fn load<F>(authority: &str, connections: usize, make: F) -> (f64, Vec<Duration>)
where
    F: Fn(usize, u64) -> hyper::Request<Full<Bytes>> + Send + Sync + 'static,
{
    let threads = std::env::var("NEXUS_BENCH_LOAD_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(2_usize)
        .clamp(1, connections);
    let make = Arc::new(make);
    let stop = Arc::new(AtomicBool::new(false));
    // Every client connects before the clock starts. An async barrier, so that a thread
    // that fails to connect ends the bench after a timeout instead of hanging it.
    let ready = Arc::new(tokio::sync::Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let clients: Vec<usize> = (t..connections).step_by(threads).collect();
            let (authority, make, stop, ready) = (
                authority.to_owned(),
                make.clone(),
                stop.clone(),
                ready.clone(),
            );
            std::thread::spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap()
                    .block_on(clients_of_thread(&authority, clients, make, &stop, &ready))
            })
        })
        .collect();
    tokio::time::timeout(Duration::from_secs(30), ready.wait())
        .await
        .expect("every client connects within 30 s");
    let started = Instant::now();
    tokio::time::sleep(PHASE).await;
    stop.store(true, Ordering::Relaxed);
    let mut all: Vec<Duration> = tokio::task::spawn_blocking(move || {
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    })
    .await
    .unwrap();
    let elapsed = started.elapsed().as_secs_f64();
    all.sort();
    (all.len() as f64 / elapsed, all)
}

/// One thread's clients, until `stop`; their latencies.
async fn clients_of_thread<F>(
    authority: &str,
    clients: Vec<usize>,
    make: Arc<F>,
    stop: &Arc<AtomicBool>,
    ready: &tokio::sync::Barrier,
) -> Vec<Duration>
where
    F: Fn(usize, u64) -> hyper::Request<Full<Bytes>> + Send + Sync + 'static,
{
    let mut senders = Vec::new();
    for worker in clients {
        senders.push((worker, connect(authority).await));
    }
    ready.wait().await;
    let tasks: Vec<_> = senders
        .into_iter()
        .map(|(worker, mut sender)| {
            let (make, stop) = (make.clone(), stop.clone());
            tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut i = 0u64;
                while !AtomicBool::load(&stop, Ordering::Relaxed) {
                    let t = Instant::now();
                    let res = sender.send_request(make(worker, i)).await.unwrap();
                    let status = res.status();
                    let body = res.into_body().collect().await.unwrap().to_bytes();
                    assert!(status.is_success(), "request failed: {status} {body:?}");
                    lat.push(t.elapsed());
                    i += 1;
                }
                lat
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all
}

/// Flushes what earlier phases left dirty before a measured one starts, so that no
/// phase pays for another's writes: without it, the checkpoint due a few minutes after the
/// seed landed in whichever phase came then (a full run's creates at 8 connections: 1,413
/// per second and 883 µs of PostgreSQL CPU per create, against 2,335 and 539 µs with the
/// same binaries in a creates-only run). It also restarts the checkpoint timer (5 min),
/// longer than any phase.
fn checkpoint(url: &str) {
    let psql = nexus_adapters_postgres::cluster::find_bin_dir()
        .ok()
        .map(|dir| dir.join("psql"))
        .filter(|p| p.exists())
        .unwrap_or_else(|| std::path::PathBuf::from("psql"));
    let out = std::process::Command::new(psql)
        .args(["-X", "-q", "-c", "CHECKPOINT", url])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "CHECKPOINT failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `mode` is pgbench's query protocol: `prepared` (each statement parsed once per
/// connection) or `extended` (parsed and planned every time).
fn pgbench(url: &str, script: &str, connections: usize, mode: &str) -> f64 {
    let path = std::env::temp_dir().join(format!(
        "nexus-contacts-{}-{connections}.sql",
        std::process::id()
    ));
    std::fs::write(&path, script).unwrap();
    checkpoint(url);
    let (host, rest) = url
        .trim_start_matches("postgres://postgres@")
        .split_once(':')
        .unwrap();
    let (port, db) = rest.split_once('/').unwrap();
    let bin = nexus_adapters_postgres::cluster::find_bin_dir()
        .unwrap()
        .join("pgbench");
    // Debian ships pgbench with the server binaries, not always beside `pg_ctl`.
    let bin = if bin.exists() {
        bin
    } else {
        std::path::PathBuf::from("/usr/lib/postgresql/15/bin/pgbench")
    };
    let out = std::process::Command::new(bin)
        .args([
            "-h", host, "-p", port, "-U", "postgres", "-n", "-M", mode, "-j", "2",
        ])
        .args([
            "-c",
            &connections.to_string(),
            "-T",
            &PHASE.as_secs().to_string(),
            "-f",
        ])
        .arg(&path)
        .arg(db)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&path);
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find(|l| l.starts_with("tps = "))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            eprintln!("pgbench failed: {}", String::from_utf8_lossy(&out.stderr));
            f64::NAN
        })
}

/// CPU seconds a process has used (user + system). /proc reports clock ticks in USER_HZ,
/// which Linux fixes at 100 on every architecture this runs on.
fn cpu_secs(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at `state`.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// CPU seconds of every PostgreSQL process on the machine, their reaped children's
/// included: a backend that exits between two readings (pgbench's, at its end) moves its
/// time into the postmaster's children's time, so a difference of two readings keeps it.
fn postgres_cpu_secs() -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    dir.flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter(|stat| stat.contains("(postgres)"))
        .map(|stat| {
            let fields: Vec<f64> = stat.rsplit_once(')').map_or(Vec::new(), |(_, rest)| {
                rest.split_whitespace()
                    .map(|v| v.parse().unwrap_or(0.0))
                    .collect()
            });
            fields.get(11..15).map_or(0.0, |t| t.iter().sum::<f64>()) / 100.0
        })
        .sum()
}

/// The machine's CPU seconds by kind, from the `cpu` line of /proc/stat: user, nice,
/// system, idle, iowait, irq, softirq, steal, guest, guest nice.
fn machine_cpu_secs() -> Vec<f64> {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    stat.lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse::<f64>().ok())
        .map(|ticks| ticks / 100.0)
        .collect()
}

/// CPU seconds the whole machine has been busy (every core; idle, iowait and the time
/// the hypervisor gave to other guests excluded).
fn machine_busy_secs() -> f64 {
    let secs = machine_cpu_secs();
    let kind = |i: usize| secs.get(i).copied().unwrap_or(0.0);
    (0..7).map(kind).sum::<f64>() - kind(3) - kind(4)
}

/// CPU seconds the hypervisor gave to other guests (steal): what makes one run of the
/// same work slower than another here.
fn stolen_secs() -> f64 {
    machine_cpu_secs().get(7).copied().unwrap_or(0.0)
}

/// Where a phase's CPU went: the server process, the load generator (this process),
/// PostgreSQL's processes, and the rest of the machine (the kernel's share charged to
/// none of them).
#[derive(Clone, Copy)]
struct CpuMark {
    server: f64,
    bench: f64,
    postgres: f64,
    machine: f64,
}

impl CpuMark {
    fn now(server_pid: Option<&str>) -> Self {
        Self {
            server: server_pid.map_or(0.0, cpu_secs),
            bench: cpu_secs("self"),
            postgres: postgres_cpu_secs(),
            machine: machine_busy_secs(),
        }
    }

    /// Microseconds of CPU per request: server, load generator, PostgreSQL, rest, all.
    fn per_request(self, later: Self, requests: f64) -> [f64; 5] {
        let us = |secs: f64| secs * 1e6 / requests.max(1.0);
        let (server, bench, postgres, machine) = (
            later.server - self.server,
            later.bench - self.bench,
            later.postgres - self.postgres,
            later.machine - self.machine,
        );
        [
            us(server),
            us(bench),
            us(postgres),
            us(machine - server - bench - postgres),
            us(machine),
        ]
    }
}

fn rss_mb(pid: &str) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    };
    (kb("VmRSS:"), kb("VmHWM:"))
}

#[tokio::main]
async fn main() {
    nexus_adapters_postgres::testing::use_bench_cluster();
    let big: i64 = std::env::var("NEXUS_BENCH_CONTACTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
    // With an external server the bench holds only the database; else the app runs here.
    let external = std::env::var("NEXUS_BENCH_SERVER").ok();
    let (db, app) = if external.is_some() {
        (Some(TestDatabase::create().await), None)
    } else {
        let app = TestApp::spawn_with(
            |c| {
                c.workers = cores;
                c.db_pool_size = 32;
                c.db_acquire_timeout = Duration::from_secs(5);
            },
            None,
        )
        .await;
        (None, Some(app))
    };
    let url = db
        .as_ref()
        .map_or_else(|| app.as_ref().unwrap().db.url(), TestDatabase::url)
        .to_owned();
    let phases_wanted =
        std::env::var("NEXUS_BENCH_PHASES").unwrap_or_else(|_| "reads,creates,import".into());
    let wants = |p: &str| phases_wanted.split(',').any(|w| w.trim() == p);
    // `NEXUS_BENCH_PGBENCH=off` skips the pgbench runs (quicker when comparing API changes).
    let skip_pgbench = std::env::var("NEXUS_BENCH_PGBENCH").is_ok_and(|v| v == "off");
    // Every request asks the database for its session only when an external server runs
    // without the session cache (the in-process app always has it).
    let session_checked = external.is_some()
        && std::env::var("NEXUS_SESSION_CACHE_TTL_MS").is_ok_and(|v| v.trim() == "0");
    // `NEXUS_BENCH_SERVER_WORKERS` sets the external server's HTTP workers (default: one
    // per core).
    let server_workers = std::env::var("NEXUS_BENCH_SERVER_WORKERS")
        .ok()
        .and_then(|w| w.parse().ok())
        .unwrap_or(cores);
    let server = external.map(|bin| ExternalServer::start(&bin, &url, server_workers));
    let base = server.as_ref().map_or_else(
        || app.as_ref().unwrap().address.clone(),
        |s| s.address.clone(),
    );
    let owner = signup(&base, "bench@contacts.io").await;
    let org = owner.1;
    let mut conn = AsyncPgConnection::establish(&url).await.unwrap();

    let started = Instant::now();
    nexus_adapters_postgres::seed::contacts(&mut conn, org, big, |_| {})
        .await
        .unwrap();
    let seed_secs = started.elapsed().as_secs_f64();
    for i in 1..=SMALL_ORGS {
        let small = nexus_adapters_postgres::seed::organization(&mut conn, &format!("bench-{i}"))
            .await
            .unwrap();
        nexus_adapters_postgres::seed::contacts(&mut conn, small, SMALL_CONTACTS, |_| {})
            .await
            .unwrap();
    }
    conn.batch_execute("VACUUM ANALYZE contacts").await.unwrap();
    conn.batch_execute(&format!(
        "CREATE TABLE bench_ids AS SELECT row_number() OVER () AS n, id FROM
             (SELECT id FROM contacts WHERE organization_id = '{org}' ORDER BY random() LIMIT 1000) s;
         CREATE UNIQUE INDEX ON bench_ids (n);"
    ))
    .await
    .unwrap();
    #[derive(diesel::QueryableByName)]
    struct Id {
        #[diesel(sql_type = diesel::sql_types::Uuid)]
        id: uuid::Uuid,
    }
    let ids: Arc<Vec<uuid::Uuid>> = Arc::new({
        use diesel_async::RunQueryDsl;
        diesel::sql_query("SELECT id FROM bench_ids ORDER BY n")
            .load::<Id>(&mut conn)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect()
    });
    println!(
        "seeded {big} contacts in {seed_secs:.1} s ({:.0} rows/s), plus {SMALL_ORGS} x {SMALL_CONTACTS}",
        big as f64 / seed_secs
    );

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .unwrap();
    let token = Arc::new(format!("Bearer {}", owner.0));
    let authority = Arc::new(base.trim_start_matches("http://").to_owned());
    let list_sql = format!(
        "SELECT {COLS} FROM contacts WHERE organization_id = '{org}' AND deleted_at IS NULL ORDER BY created_at DESC, id DESC LIMIT 51;"
    );
    let search_sql = format!(
        "SELECT {COLS} FROM (SELECT {COLS}, search FROM contacts WHERE organization_id = '{org}' AND deleted_at IS NULL \
         ORDER BY created_at DESC, id DESC LIMIT 10000) AS contacts WHERE true AND search LIKE lower('%smi%') ORDER BY created_at DESC, id DESC LIMIT 51;"
    );
    let get_sql = format!(
        "\\set n random(1, 1000)\nSELECT {COLS} FROM contacts WHERE organization_id = '{org}' AND id = (SELECT id FROM bench_ids WHERE n = :n);"
    );
    // The create is one statement (the definitions generation held, contact, event and
    // audit entry; see `PgContactRepository::insert`); the definitions are kept between
    // writes (`field_sets`), so nothing is read before it.
    let create_sql = format!(
        "WITH gate AS (SELECT 1 FROM organizations WHERE id = '{org}' AND custom_fields_generation = 0 FOR SHARE), \
created AS (INSERT INTO contacts ({COLS}) SELECT '{org}', gen_random_uuid(), 'Bench', 'Person', 'pgb-' || gen_random_uuid() || '@bench.io', NULL, NULL, NULL, 'lead', 20, NULL, '{{}}', '{{}}', 1, now(), now(), NULL FROM gate WHERE NULL::uuid IS NULL OR EXISTS (SELECT 1 FROM memberships WHERE organization_id = '{org}' AND user_id = NULL) RETURNING 1), \
outbox_event AS (INSERT INTO events (id, organization_id, type, occurred_at, actor, payload) SELECT gen_random_uuid(), '{org}', 'contact.created', now(), '{{}}', '{{}}' FROM created), \
audit_entry AS (INSERT INTO audit_log (organization_id, id, actor_type, actor_user_id, actor_api_key_id, ip, user_agent, action, entity_type, entity_id, changes) SELECT '{org}', gen_random_uuid(), 'user', NULL, NULL, '127.0.0.1', 'bench', 'contact.created', 'contact', gen_random_uuid()::text, '{{}}' FROM created) \
SELECT (SELECT count(*) FROM created) AS n, (SELECT count(*) FROM gate) AS current;"
    );

    println!();
    println!(
        "| endpoint | connections | API req/s | p50 ms | p99 ms | pgbench extended tps | API/pgbench | pgbench prepared tps | API/pgbench |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let server_pid = server.as_ref().map(|s| s.child.id().to_string());
    // Printed after the table: CPU microseconds per request, by process.
    let mut cpu_rows = Vec::new();
    // Reads first, creates last: created contacts become the newest rows, which would
    // otherwise change what the later reads see (a search fragment they do not match
    // turns sparse among the newest rows; see docs/perf/contacts.md).
    let phases = [
        (8_usize, "list"),
        (8, "search"),
        (8, "get"),
        (32, "list"),
        (32, "search"),
        (32, "get"),
        (8, "create"),
        (32, "create"),
    ];
    {
        for (connections, scenario) in phases {
            if !wants(if scenario == "create" {
                "creates"
            } else {
                "reads"
            }) {
                continue;
            }
            let (token, authority, ids) = (token.clone(), authority.clone(), ids.clone());
            checkpoint(&url);
            let before = CpuMark::now(server_pid.as_deref());
            let (rate, lat) = load(&authority.clone(), connections, move |worker, i| {
                let (method, path, body) = match scenario {
                    "list" => ("GET", "/api/v1/contacts?limit=50".to_owned(), Bytes::new()),
                    "search" => (
                        "GET",
                        "/api/v1/contacts?q=smi&limit=50".to_owned(),
                        Bytes::new(),
                    ),
                    "get" => {
                        let id = ids[(worker * 7919 + usize::try_from(i).unwrap_or(0)) % ids.len()];
                        ("GET", format!("/api/v1/contacts/{id}"), Bytes::new())
                    }
                    _ => (
                        "POST",
                        "/api/v1/contacts".to_owned(),
                        Bytes::from(
                            json!({
                                "firstName": "Bench", "lastName": "Person",
                                "email": format!("api-{connections}-{worker}-{i}@bench.io"),
                            })
                            .to_string(),
                        ),
                    ),
                };
                hyper::Request::builder()
                    .method(method)
                    .uri(path)
                    .header("host", authority.as_str())
                    .header("authorization", token.as_str())
                    .header("content-type", "application/json")
                    .body(Full::new(body))
                    .unwrap()
            })
            .await;
            let api_cpu = before.per_request(CpuMark::now(server_pid.as_deref()), lat.len() as f64);
            let auth = if session_checked { AUTH_SQL } else { "" };
            let script = match scenario {
                "list" => format!("{auth}\n{list_sql}"),
                "search" => format!("{auth}\n{search_sql}"),
                // `\set` comes first in a pgbench script.
                "get" => format!("{get_sql}\n{auth}"),
                _ => format!("{auth}\n{create_sql}"),
            };
            // Authentication's session check is a prepared diesel query; the contact
            // lookup and the plain first page are prepared too (`Statement::prepared`),
            // the search and the create's writes are not. pgbench runs in both
            // protocols: `prepared` is the endpoint's own for list and get.
            let (extended, prepared, pgbench_cpu) = if skip_pgbench {
                (f64::NAN, f64::NAN, [f64::NAN; 2])
            } else {
                let extended = pgbench(&url, &script, connections, "extended");
                let (before, postgres_before) = (machine_busy_secs(), postgres_cpu_secs());
                let prepared = pgbench(&url, &script, connections, "prepared");
                let busy = machine_busy_secs() - before;
                let postgres = postgres_cpu_secs() - postgres_before;
                let per_transaction = |secs: f64| secs * 1e6 / (prepared * PHASE.as_secs_f64());
                (
                    extended,
                    prepared,
                    [per_transaction(postgres), per_transaction(busy)],
                )
            };
            cpu_rows.push((scenario, connections, api_cpu, pgbench_cpu));
            println!(
                "| {scenario} | {connections} | {rate:.0} | {:.2} | {:.2} | {extended:.0} | {:.2} | {prepared:.0} | {:.2} |",
                pct(&lat, 0.5),
                pct(&lat, 0.99),
                rate / extended,
                rate / prepared
            );
        }
    }
    if server_pid.is_some() && !cpu_rows.is_empty() {
        println!();
        println!(
            "CPU microseconds per request (both cores together; `rest` is the kernel work charged to none of the processes):"
        );
        println!();
        println!(
            "| endpoint | connections | server | load generator | PostgreSQL | rest | all | pgbench prepared per transaction: PostgreSQL | all |"
        );
        println!("|---|---|---|---|---|---|---|---|---|");
        for (scenario, connections, [server, bench, postgres, rest, all], [pg_postgres, pg_all]) in
            &cpu_rows
        {
            println!(
                "| {scenario} | {connections} | {server:.0} | {bench:.0} | {postgres:.0} | {rest:.0} | {all:.0} | {pg_postgres:.0} | {pg_all:.0} |"
            );
        }
    }
    if wants("import") {
        checkpoint(&url);
        let api = import(&client, &base, &owner.0, server_pid.as_deref()).await;
        if !skip_pgbench {
            import_ceiling(&url, org, api).await;
        }
    }

    let (rss, peak) = rss_mb("self");
    println!();
    match &server {
        Some(s) => {
            let (srss, speak) = rss_mb(&s.child.id().to_string());
            println!("server process alone: RSS now {srss:.0} MB, peak (VmHWM) {speak:.0} MB");
            // What the allocator gives back once the load is over.
            tokio::time::sleep(Duration::from_secs(10)).await;
            let (settled, _) = rss_mb(&s.child.id().to_string());
            println!("server process alone, after 10 s idle: RSS {settled:.0} MB");
            println!(
                "bench process (load generator + idle in-process app) RSS now {rss:.0} MB, peak {peak:.0} MB"
            );
        }
        None => {
            println!("bench process (app + load generator) RSS now {rss:.0} MB, peak {peak:.0} MB");
        }
    }
    drop(server);
    drop(app);
    drop(db);
}

/// The release server as its own process, on the bench's database.
struct ExternalServer {
    child: std::process::Child,
    address: String,
}

impl ExternalServer {
    fn start(bin: &str, database_url: &str, workers: usize) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = std::process::Command::new(bin)
            .arg("serve")
            .env("DATABASE_URL", database_url)
            .env("NEXUS_BIND", format!("127.0.0.1:{port}"))
            .env(
                "NEXUS_JWT_SECRET",
                "bench-secret-that-is-long-enough-for-hs256",
            )
            .env("NEXUS_WORKERS", workers.to_string())
            .env("NEXUS_DB_POOL_SIZE", "32")
            .env("NEXUS_DB_ACQUIRE_TIMEOUT_MS", "5000")
            .env("NEXUS_BCRYPT_COST", "10")
            .env("NEXUS_LOG_FORMAT", "json")
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let address = format!("http://127.0.0.1:{port}");
        for _ in 0..300 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Self { child, address };
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("the server at {address} did not start");
    }
}

impl Drop for ExternalServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Registers `email` with its own organization; returns the access token and org id.
async fn signup(base: &str, email: &str) -> (String, uuid::Uuid) {
    let body: serde_json::Value = reqwest::Client::new()
        .post(format!("{base}/api/v1/auth/register"))
        .json(&json!({
            "email": email,
            "password": "correct-horse-battery",
            "name": "Bench User",
            "organizationName": "Bench",
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (
        body["accessToken"].as_str().unwrap().to_owned(),
        body["organizationId"].as_str().unwrap().parse().unwrap(),
    )
}

/// A 100,000-row CSV import into the large organization; returns its rows/s.
async fn import(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    server_pid: Option<&str>,
) -> f64 {
    let mut csv = String::from("First Name,Last Name,Email,Phone,Company,Tags\n");
    for i in 0..100_000 {
        csv.push_str(&format!(
            "Imported{i},Person{},import{i}@bench-import.io,+1 555 {:03} {:04},Company {},imported;batch{}\n",
            i % 977,
            i % 1000,
            i % 10_000,
            i % 50,
            i % 5
        ));
    }
    let started = Instant::now();
    let (cpu, steal) = (CpuMark::now(server_pid), stolen_secs());
    let res = client
        .post(format!("{base}/api/v1/contacts/imports"))
        .bearer_auth(token)
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 202);
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    let job = loop {
        let job: serde_json::Value = client
            .get(format!("{base}{location}"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if job["status"] == "completed" || job["status"] == "failed" {
            break job;
        }
        // Often enough that the figure is the import's, not the wait for the next look.
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let secs = started.elapsed().as_secs_f64();
    println!();
    println!(
        "import of a 100,000-row CSV: {} in {secs:.1} s = {:.0} rows/s (created {}, failed {})",
        job["status"],
        100_000.0 / secs,
        job["created"],
        job["failed"]
    );
    // Per 1,000 rows, so that it reads as microseconds per row.
    let [server, bench, postgres, rest, all] = cpu.per_request(CpuMark::now(server_pid), 100.0);
    println!(
        "CPU ms per 1,000 rows: server {:.0}, PostgreSQL {:.0}, the rest (the kernel, the idle load generator) {:.0}, all {:.0}; CPU time the hypervisor gave to other guests meanwhile: {:.1} s",
        server / 1000.0,
        postgres / 1000.0,
        (bench + rest) / 1000.0,
        all / 1000.0,
        stolen_secs() - steal
    );
    100_000.0 / secs
}

#[derive(Clone, Copy)]
enum Events {
    None,
    NumberedAfter,
    NumberedAsWritten,
}

/// The same 100,000 rows written by the database alone: set-based SQL (no parsing, no
/// validation, no round trips per row), one connection per core, each writing its share
/// in 1,000-row transactions as the API's chunks do. The physical limit of an import on
/// this machine, as pgbench is for the other phases.
async fn import_ceiling(url: &str, org: uuid::Uuid, api: f64) {
    let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
    let chunk = |prefix: &str, from: usize, events: Events| {
        let to = from + 999;
        let rows = format!(
            "INSERT INTO contacts (organization_id, id, first_name, last_name, email, phone, phone_e164,
                                   company, lifecycle_stage, lead_score, tags, custom_fields, version,
                                   created_at, updated_at)
             SELECT '{org}', nexus_uuid_v7(), 'Imported' || i, 'Person' || (i % 977),
                    '{prefix}' || i || '@bench-import.io',
                    '+1 555 ' || lpad((i % 1000)::text, 3, '0') || ' ' || lpad((i % 10000)::text, 4, '0'),
                    '+1555' || lpad((i % 1000)::text, 3, '0') || lpad((i % 10000)::text, 4, '0'),
                    'Company ' || (i % 50), 'lead', 0, ARRAY['imported', 'batch' || (i % 5)], '{{}}', 1,
                    now(), now()
             FROM generate_series({from}, {to}) i"
        );
        // A payload of the contact's size; the API builds it from the validated row.
        let event_rows = |seq: &str, head: &str| {
            format!(
                "INSERT INTO events (id, organization_id, type, occurred_at, actor, payload{seq})
                 SELECT nexus_uuid_v7(), '{org}', 'contact.created', now(),
                        jsonb_build_object('type', 'user'),
                        jsonb_build_object('id', gen_random_uuid(), 'firstName', 'Imported' || i,
                            'lastName', 'Person' || (i % 977), 'email', '{prefix}' || i || '@bench-import.io',
                            'phone', '+1 555 ' || (i % 1000), 'company', 'Company ' || (i % 50),
                            'lifecycleStage', 'lead', 'leadScore', 0, 'tags', ARRAY['imported'],
                            'customFields', '{{}}'::jsonb, 'version', 1, 'createdAt', now(), 'updatedAt', now()){head}
                 FROM generate_series({from}, {to}) i"
            )
        };
        match events {
            Events::None => format!("BEGIN; {rows}; COMMIT;"),
            // The API's numberer follows each commit it hears with a numbering pass.
            Events::NumberedAfter => format!(
                "BEGIN; {rows}; {}; COMMIT; SELECT events_number(5000);",
                event_rows("", "")
            ),
            Events::NumberedAsWritten => format!(
                "BEGIN; {rows}; SELECT pg_advisory_xact_lock(hashtextextended('nexus.events_number', 0));
                 {}; COMMIT;",
                event_rows(
                    ", seq",
                    &format!(", (SELECT coalesce(max(seq), 0) FROM events) + (i - {from} + 1)")
                )
            ),
        }
    };
    println!();
    println!(
        "the same 100,000 rows written by SQL alone ({cores} connections, 1,000-row transactions):"
    );
    println!();
    println!("| what | s | rows/s | API import / this |");
    println!("|---|---|---|---|");
    for (what, prefix, events) in [
        ("contacts only", "ceiling-a", Events::None),
        (
            "contacts and events, numbered after commit (by the numberer)",
            "ceiling-b",
            Events::NumberedAfter,
        ),
        (
            "contacts and events, numbered as written (as an import chunk does)",
            "ceiling-c",
            Events::NumberedAsWritten,
        ),
    ] {
        checkpoint(url);
        let started = Instant::now();
        let mut writers = tokio::task::JoinSet::new();
        for w in 0..cores {
            let chunks: Vec<String> = (w * 1000..100_000)
                .step_by(cores * 1000)
                .map(|from| chunk(prefix, from, events))
                .collect();
            let url = url.to_owned();
            writers.spawn(async move {
                let mut conn = AsyncPgConnection::establish(&url).await.unwrap();
                for sql in chunks {
                    conn.batch_execute(&sql).await.unwrap();
                }
            });
        }
        writers.join_all().await;
        let secs = started.elapsed().as_secs_f64();
        let rate = 100_000.0 / secs;
        println!("| {what} | {secs:.1} | {rate:.0} | {:.2} |", api / rate);
    }
}
