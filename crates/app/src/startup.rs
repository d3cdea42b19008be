//! Wiring: the database, the services, the HTTP server; and its orderly end.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::HttpServer;
use actix_web::dev::{Server, ServerHandle};
use nexus_adapters_http::{AppState, HttpSettings, Metrics, build_app};
use nexus_adapters_postgres::PgProbe;
use nexus_adapters_postgres::pool::{PgPool, PoolSettings, build_pool};
use nexus_application::HealthService;

use crate::config::Config;
use crate::database::{self, DatabaseLocation};

/// A built, bound, not yet running server.
pub struct Application {
    server: Server,
    port: u16,
    pool: PgPool,
    pub location: DatabaseLocation,
}

impl Application {
    /// Resolves and prepares the database, builds the pool and binds the listener
    /// (port 0 picks a free one, which tests use).
    ///
    /// # Errors
    /// Unusable database configuration, failing migrations, or a bind failure.
    pub async fn build(config: &Config) -> anyhow::Result<Self> {
        Self::build_with(config, None).await
    }

    /// As [`Application::build`], with extra non-API routes mounted (tests).
    ///
    /// # Errors
    /// As [`Application::build`].
    pub async fn build_with(
        config: &Config,
        extra_routes: Option<fn(&mut actix_web::web::ServiceConfig)>,
    ) -> anyhow::Result<Self> {
        let (url, location) = database::resolve(config).await?;
        database::prepare(&url, config).await?;
        let pool_settings = PoolSettings {
            max_size: config.db_pool_size,
            acquire_timeout: config.db_acquire_timeout,
            ..PoolSettings::default()
        };
        let pool = build_pool(&url, &pool_settings)?;

        let health = Arc::new(HealthService::new(PgProbe::new(
            pool.clone(),
            config.db_acquire_timeout,
        )));
        let metrics = Arc::new(Metrics::new()?);
        let settings = HttpSettings {
            body_limit: config.body_limit,
            hsts: config.hsts,
        };
        let mut state = AppState::new(health, metrics, settings);
        if let Some(extra) = extra_routes {
            state = state.with_extra_routes(extra);
        }

        let listener = TcpListener::bind(config.bind)?;
        let port = listener.local_addr()?.port();
        let server = HttpServer::new(move || build_app(state.clone()))
            .workers(config.workers)
            .shutdown_timeout(config.shutdown_timeout.as_secs())
            .listen(listener)?
            .run();
        Ok(Self {
            server,
            port,
            pool,
            location,
        })
    }

    #[must_use]
    pub const fn port(&self) -> u16 {
        self.port
    }

    #[must_use]
    pub fn pool(&self) -> PgPool {
        self.pool.clone()
    }

    /// A handle to stop the server gracefully from elsewhere.
    #[must_use]
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until SIGTERM/SIGINT (or a handle's stop): stops accepting, lets
    /// in-flight requests finish within the shutdown timeout, then closes the pool.
    ///
    /// # Errors
    /// Server IO failures.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        self.pool.close();
        tracing::info!("stopped");
        result
    }
}
