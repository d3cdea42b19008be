//! Starts the real application on a fresh test database, bound to a free loopback port.
#![allow(clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use nexus_adapters_postgres::pool::PgPool;
use nexus_adapters_postgres::testing::TestDatabase;

use crate::config::{Config, Secret};
use crate::startup::Application;

pub struct TestApp {
    /// `http://127.0.0.1:<port>`
    pub address: String,
    pub port: u16,
    pub pool: PgPool,
    pub handle: ServerHandle,
    pub db: TestDatabase,
    pub server: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// The configuration tests start from: its own database, loopback, small pool.
///
/// # Panics
/// Never in practice: the defaults are valid.
#[must_use]
pub fn test_config(db: &TestDatabase) -> Config {
    let mut config = Config::from_lookup(|_| None).expect("default configuration");
    config.database_url = Some(Secret::new(db.url().to_owned()));
    config.bind = SocketAddr::from(([127, 0, 0, 1], 0));
    config.jwt_secret = Some(Secret::new(
        "test-secret-that-is-long-enough-for-hs256".into(),
    ));
    config.db_pool_size = 4;
    config.db_acquire_timeout = Duration::from_millis(500);
    config.workers = 1;
    config.shutdown_timeout = Duration::from_secs(5);
    config
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}, None).await
    }

    /// Starts the app after `adjust` tweaks the configuration, with optional extra routes.
    ///
    /// # Panics
    /// When the application cannot start.
    pub async fn spawn_with(
        adjust: impl FnOnce(&mut Config),
        extra_routes: Option<fn(&mut actix_web::web::ServiceConfig)>,
    ) -> Self {
        let db = TestDatabase::create().await;
        let mut config = test_config(&db);
        adjust(&mut config);
        let app = Application::build_with(&config, extra_routes)
            .await
            .expect("building the app");
        let port = app.port();
        let pool = app.pool();
        let handle = app.handle();
        let server = tokio::spawn(app.run_until_stopped());
        Self {
            address: format!("http://127.0.0.1:{port}"),
            port,
            pool,
            handle,
            db,
            server,
        }
    }

    #[must_use]
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }
}
