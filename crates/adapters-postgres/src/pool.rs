use std::time::Duration;

use diesel::ConnectionError;
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use futures_util::FutureExt;

pub type PgPool = diesel_async::pooled_connection::deadpool::Pool<AsyncPgConnection>;
pub type PgConn = diesel_async::pooled_connection::deadpool::Object<AsyncPgConnection>;

/// Past this many bytes in one message, a connection is closed after use instead of
/// going back to the pool: the driver's read and write buffers keep the size of the
/// largest message they carried for the connection's life, so every pooled connection
/// that once carried a CSV upload would hold its size until the process ends.
pub const LARGE_MESSAGE: usize = 1 << 20;

/// Closes `conn` instead of returning it to the pool (see [`LARGE_MESSAGE`]).
pub fn retire(conn: PgConn) {
    drop(PgConn::take(conn));
}

/// How the pool behaves under load and failure.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub max_size: usize,
    /// How long a caller waits for a free connection before it gets a 503.
    pub acquire_timeout: Duration,
    /// How long opening a new connection may take (database down → fail fast).
    pub connect_timeout: Duration,
    /// Server-side cap on any one statement, so a runaway query cannot hold a connection.
    pub statement_timeout: Duration,
    pub application_name: String,
    /// Rung after every commit on the pool's connections (the event numberer listens).
    pub commits: crate::numberer::CommitBell,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            max_size: 16,
            acquire_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(3),
            statement_timeout: Duration::from_secs(30),
            application_name: "nexus".into(),
            commits: crate::numberer::CommitBell::default(),
        }
    }
}

/// Builds the pool. Connections are opened lazily, so this succeeds with the database
/// down; readiness and the first request find out.
///
/// # Errors
/// Only on an invalid configuration.
pub fn build_pool(url: &str, settings: &PoolSettings) -> anyhow::Result<PgPool> {
    let setup_sql = format!(
        "SET statement_timeout = {}; SET application_name = '{}'; SET timezone = 'UTC'",
        settings.statement_timeout.as_millis(),
        settings.application_name.replace('\'', "")
    );
    let mut config = ManagerConfig::<AsyncPgConnection>::default();
    // `Verified` would send a `SELECT 1` on every checkout, doubling the round trips of
    // each request (one checkout for the session check, one for the work). `Fast` still
    // refuses a connection whose socket the driver saw close (server restart, terminated
    // backend) or that was dropped inside a transaction; a query on a connection that
    // dies in between fails like any query on a dying database would.
    config.recycling_method = RecyclingMethod::Fast;
    let commits = settings.commits.clone();
    config.custom_setup = Box::new(move |url| {
        let setup_sql = setup_sql.clone();
        let watch = commits.watch();
        async move {
            let mut conn = AsyncPgConnection::establish(url).await?;
            conn.set_instrumentation(watch);
            conn.batch_execute(&setup_sql)
                .await
                .map_err(|e| ConnectionError::BadConnection(e.to_string()))?;
            Ok(conn)
        }
        .boxed()
    });
    let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(url, config);
    Ok(PgPool::builder(manager)
        .max_size(settings.max_size)
        .wait_timeout(Some(settings.acquire_timeout))
        .create_timeout(Some(settings.connect_timeout))
        .recycle_timeout(Some(settings.connect_timeout))
        .runtime(deadpool::Runtime::Tokio1)
        .build()?)
}

/// The pool plus the acquire timeout that error mapping reports.
#[derive(Clone)]
pub struct Db {
    pub pool: PgPool,
    pub acquire_timeout: Duration,
}

impl Db {
    #[must_use]
    pub const fn new(pool: PgPool, acquire_timeout: Duration) -> Self {
        Self {
            pool,
            acquire_timeout,
        }
    }

    /// A pooled connection, or 503-worthy errors.
    ///
    /// # Errors
    /// [`nexus_ports::StoreError::PoolExhausted`] or `Unavailable`.
    pub async fn conn(&self) -> Result<PgConn, nexus_ports::StoreError> {
        self.pool
            .get()
            .await
            .map_err(|e| crate::error::from_pool(e, self.acquire_timeout))
    }
}
