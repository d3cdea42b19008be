//! Per-test databases: each test gets a fresh database cloned from a migrated template
//! (milliseconds), so tests run in parallel and never see each other's rows.
//!
//! The server comes from `TEST_DATABASE_URL` or `DATABASE_URL`, or else from the same
//! private-cluster bootstrap the dev server uses (a separate, fsync-off cluster under
//! `<workspace>/.nexus/`). The template is built once per schema version, under an
//! advisory lock, so parallel test processes share it safely.
#![allow(clippy::expect_used)]

use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use diesel::QueryableByName;
use diesel::sql_types::Text;
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};

use crate::admin::{checked_ident, connect_maintenance, database_exists, with_database};
use crate::cluster::{self, ClusterOptions};
use crate::migrate::{self, MIGRATIONS_FINGERPRINT};

const TEMPLATE_LOCK_KEY: i64 = 0x4e45_5855_535f_5450; // "NEXUS_TP"

/// Where the test cluster lives unless `NEXUS_TEST_DATA_DIR` says otherwise.
#[must_use]
pub fn default_test_data_dir() -> PathBuf {
    std::env::var_os("NEXUS_TEST_DATA_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.nexus"),
        PathBuf::from,
    )
}

static SERVER_URL: OnceLock<String> = OnceLock::new();

/// Puts this process's test databases on the server at `url` (any database) instead of
/// the default one; `false` if a database was made already, on whichever server.
pub fn use_server(url: String) -> bool {
    SERVER_URL.set(url).is_ok()
}

/// For a benchmark: unless `TEST_DATABASE_URL` or `DATABASE_URL` names a server, puts
/// this process's databases on a private cluster of the benchmarks' own (`bench-pg`),
/// durable as a production one (fsync, synchronous commit and full-page writes on,
/// unlike the tests' cluster), so that its figures are a server's that loses nothing it
/// acknowledged. Call it before any database is made.
///
/// # Panics
/// If the cluster does not start, or a database was made already.
pub fn use_bench_cluster() {
    if std::env::var_os("TEST_DATABASE_URL").is_some() || std::env::var_os("DATABASE_URL").is_some()
    {
        return;
    }
    let cluster = cluster::ensure_running(&ClusterOptions::bench(default_test_data_dir()))
        .expect("starting the benchmarks' cluster");
    assert!(
        use_server(cluster.url("postgres")),
        "a database was made before the benchmarks' cluster was chosen"
    );
}

/// The server URL (any database) every test in this process uses.
#[must_use]
pub fn server_url() -> &'static str {
    SERVER_URL.get_or_init(|| {
        if let Ok(url) =
            std::env::var("TEST_DATABASE_URL").or_else(|_| std::env::var("DATABASE_URL"))
        {
            return url;
        }
        cluster::ensure_running(&ClusterOptions::test(default_test_data_dir()))
            .expect("starting the private test cluster")
            .url("postgres")
    })
}

fn template_name() -> String {
    format!("nexus_tpl_{MIGRATIONS_FINGERPRINT}")
}

/// Builds the template once per process (and once per schema across processes).
fn template() -> &'static str {
    static TEMPLATE: OnceLock<String> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let url = server_url().to_owned();
        // Tests run inside a runtime that must not be blocked on; use a private one.
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(prepare_template(&url))
        })
        .join()
        .expect("template thread")
        .expect("preparing the template database")
    })
}

#[derive(QueryableByName)]
struct Name {
    #[diesel(sql_type = Text)]
    datname: String,
}

async fn prepare_template(url: &str) -> anyhow::Result<String> {
    let name = template_name();
    let mut conn = connect_maintenance(url).await?;
    conn.batch_execute(&format!("SELECT pg_advisory_lock({TEMPLATE_LOCK_KEY})"))
        .await?;
    let result = build_template_locked(url, &mut conn, &name).await;
    conn.batch_execute(&format!("SELECT pg_advisory_unlock({TEMPLATE_LOCK_KEY})"))
        .await?;
    result.map(|()| name)
}

async fn build_template_locked(
    url: &str,
    conn: &mut AsyncPgConnection,
    name: &str,
) -> anyhow::Result<()> {
    sweep_leftovers(conn, name).await?;
    let ready: Vec<Name> =
        diesel::sql_query("SELECT datname FROM pg_database WHERE datname = $1 AND datistemplate")
            .bind::<Text, _>(name)
            .load(conn)
            .await?;
    if !ready.is_empty() {
        return Ok(());
    }
    // A half-built template from a crashed run is not marked as template: rebuild it.
    let ident = checked_ident(name)?;
    conn.batch_execute(&format!("DROP DATABASE IF EXISTS {ident} WITH (FORCE)"))
        .await?;
    conn.batch_execute(&format!("CREATE DATABASE {ident}"))
        .await?;
    migrate::run_pending(&with_database(url, name)?).await?;
    conn.batch_execute(&format!(
        "ALTER DATABASE {ident} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false"
    ))
    .await?;
    Ok(())
}

/// Drops test databases whose process is gone and templates of older schemas, so an
/// interrupted run never fills the disk.
async fn sweep_leftovers(
    conn: &mut AsyncPgConnection,
    current_template: &str,
) -> anyhow::Result<()> {
    let names: Vec<Name> =
        diesel::sql_query("SELECT datname FROM pg_database WHERE datname LIKE 'nexus\\_t%'")
            .load(conn)
            .await?;
    for Name { datname } in names {
        let stale = if let Some(rest) = datname.strip_prefix("nexus_test_") {
            let pid = rest.split('_').next().unwrap_or_default();
            !PathBuf::from("/proc").join(pid).exists()
        } else {
            datname.starts_with("nexus_tpl_") && datname != current_template
        };
        if stale {
            let ident = checked_ident(&datname)?;
            if datname.starts_with("nexus_tpl_") {
                conn.batch_execute(&format!("ALTER DATABASE {ident} WITH IS_TEMPLATE false"))
                    .await?;
            }
            conn.batch_execute(&format!("DROP DATABASE IF EXISTS {ident} WITH (FORCE)"))
                .await?;
        }
    }
    Ok(())
}

/// A fresh, migrated database of its own; dropped when this value is dropped.
pub struct TestDatabase {
    name: String,
    url: String,
}

impl TestDatabase {
    /// Clones the migrated template into a new database.
    ///
    /// # Panics
    /// When no server can be reached: a test cannot run without one.
    pub async fn create() -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let template = template();
        let name = format!(
            "nexus_test_{}_{}_{:08x}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            rand::random::<u32>()
        );
        let mut conn = connect_maintenance(server_url())
            .await
            .expect("connecting to the test server");
        conn.batch_execute(&format!(
            "CREATE DATABASE {name} TEMPLATE {template} STRATEGY FILE_COPY"
        ))
        .await
        .expect("creating the test database from the template");
        let url = with_database(server_url(), &name).expect("test database URL");
        Self { name, url }
    }

    #[must_use]
    pub fn url(&self) -> &str {
        &self.url
    }

    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the database still exists (for the harness's own tests).
    ///
    /// # Panics
    /// When the server cannot be reached.
    pub async fn exists(name: &str) -> bool {
        let mut conn = connect_maintenance(server_url())
            .await
            .expect("connecting to the test server");
        database_exists(&mut conn, name)
            .await
            .expect("querying pg_database")
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs inside the test's runtime, which must not be blocked on.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let mut conn = connect_maintenance(server_url()).await.ok()?;
                conn.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
                    .ok()
            })
        })
        .join();
    }
}
