//! Wiring: the database, the adapters, the services, the HTTP server; and its orderly end.

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use actix_web::HttpServer;
use actix_web::dev::{Server, ServerHandle};
use nexus_adapters_http::{AppState, HttpSettings, Metrics, Services, build_app};
use nexus_adapters_postgres::PgProbe;
use nexus_adapters_postgres::listener::PgEventHub;
use nexus_adapters_postgres::numberer::{self, CommitBell};
use nexus_adapters_postgres::pool::{Db, PgPool, PoolSettings, build_pool};
use nexus_adapters_postgres::repo::audit::PgAuditLog;
use nexus_adapters_postgres::repo::events::PgEventLog;
use nexus_adapters_postgres::repo::identity::PgIdentityStore;
use nexus_adapters_postgres::repo::mailer::RecordingMailer;
use nexus_adapters_postgres::repo::rate_limit::PgRateLimiter;
use nexus_adapters_postgres::repo::sales::PgSalesStore;
use nexus_adapters_postgres::repo::team::PgTeamStore;
use nexus_adapters_postgres::repo::webhooks::PgWebhookStore;
use nexus_adapters_postgres::repo::{
    PgContactRepository, PgCustomFieldRepository, PgIdempotencyStore, PgImportRepository,
};
use nexus_adapters_postgres::retention::{purge_audit, purge_events, purge_idempotency_keys};
use nexus_adapters_postgres::session_cache::SessionCache;
use nexus_application::auth::{AuthPorts, RegisterCommand};
use nexus_application::team::TeamPorts;
use nexus_application::webhooks::delivery::DeliveryWorker;
use nexus_application::{
    AuthService, AuthSettings, AuthUseCases, ContactService, ContactUseCases, EventService,
    HealthService, IdempotencyService, ImportService, ImportUseCases, SalesService, TeamService,
    WebhookService, WebhookSettings,
};
use nexus_domain::values::EmailAddress;
use nexus_ports::identity::IdentityStore;
use nexus_ports::{SystemClock, UuidV7Generator};

use crate::config::{Config, Environment};
use crate::crypto::{BcryptHasher, JwtCodec, RandomSecrets};
use crate::database::{self, DatabaseLocation};
use crate::secrets_store;
use crate::webhook_transport::{ReqwestSender, SystemResolver};

pub const ACCESS_TTL: Duration = Duration::from_secs(15 * 60);
pub const DEMO_EMAIL: &str = "demo@nexus.local";
/// The demo organization's slug, as registration derives it from its name ("NEXUS Demo").
pub const DEMO_SLUG: &str = "nexus-demo";

/// A built, bound, not yet running server.
pub struct Application {
    server: Server,
    port: u16,
    pool: PgPool,
    auth: Arc<dyn AuthUseCases>,
    identity: PgIdentityStore,
    services: Services,
    pub location: DatabaseLocation,
    /// The hourly purge of contacts deleted more than 30 days ago.
    purge: tokio::task::JoinHandle<()>,
    /// The hourly sweep of idempotency keys past their 24 hours.
    idempotency_sweep: tokio::task::JoinHandle<()>,
    /// Works through queued CSV imports.
    import_worker: tokio::task::JoinHandle<()>,
    /// Webhook delivery tasks and the hourly purge of old deliveries.
    webhook_tasks: Vec<tokio::task::JoinHandle<()>>,
    /// This instance's `LISTEN nexus_events` connection and shared outbox reader.
    events: PgEventHub,
    /// Removes events and audit entries past their retention, daily.
    retention: tokio::task::JoinHandle<()>,
    /// Numbers committed events (the outbox readers' cursor).
    numberer: tokio::task::JoinHandle<()>,
    db: Db,
}

type Deliveries =
    DeliveryWorker<PgWebhookStore, SystemResolver, ReqwestSender, SystemClock, UuidV7Generator>;

/// How long an idle delivery task waits before looking for due deliveries again.
const WEBHOOK_POLL: Duration = Duration::from_millis(200);

/// Sends due webhook deliveries, one at a time per task, until aborted. Dropping the
/// task mid-attempt is safe: the lease expires and another task sends it again.
/// Committed events wake idle tasks at once (NOTIFY), so delivery lag does not wait for
/// the poll; the poll still finds retries that fall due and queued pings.
async fn deliver_webhooks(worker: Arc<Deliveries>, mut wake: tokio::sync::watch::Receiver<u64>) {
    loop {
        match worker.run_once().await {
            Ok(true) => {}
            Ok(false) => {
                tokio::select! {
                    () = tokio::time::sleep(WEBHOOK_POLL) => {}
                    _ = wake.changed() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "webhook delivery could not reach the database; retrying");
                tokio::time::sleep(WEBHOOK_POLL * 10).await;
            }
        }
    }
}

async fn purge_webhook_deliveries(worker: Arc<Deliveries>, retention: Duration) {
    hourly(
        Duration::from_secs(90),
        "old webhook deliveries purged",
        move || {
            let worker = Arc::clone(&worker);
            async move { worker.purge(retention).await }
        },
    )
    .await;
}

/// How long the import worker waits when the queue is empty, unless a job is queued
/// through this process meanwhile.
const IMPORT_POLL: Duration = Duration::from_millis(250);

/// Runs queued CSV imports one after the other. A job interrupted by a crash or a stop is
/// taken over from its last checkpoint once its heartbeat is stale.
async fn run_imports(imports: Arc<dyn ImportUseCases>) {
    loop {
        match imports.run_next().await {
            Ok(true) => {}
            Ok(false) => {
                tokio::select! {
                    () = tokio::time::sleep(IMPORT_POLL) => {}
                    () = imports.queued() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "a contact import stopped; it resumes from its checkpoint");
                tokio::time::sleep(IMPORT_POLL * 4).await;
            }
        }
    }
}

/// How often the hourly clean-ups run (the purge of contacts deleted more than 30 days
/// ago, old webhook deliveries, expired idempotency keys), each first a minute or so
/// after start-up, out of the way of the start itself.
const PURGE_EVERY: Duration = Duration::from_secs(3600);

async fn purge_deleted_contacts(contacts: Arc<dyn ContactUseCases>) {
    hourly(
        Duration::from_secs(60),
        "contacts deleted more than 30 days ago purged",
        move || {
            let contacts = Arc::clone(&contacts);
            async move { contacts.purge_expired().await }
        },
    )
    .await;
}

/// Remembered idempotent responses past their 24 hours, swept every hour (first a minute
/// after start-up) so that the table holds about a day of them.
async fn sweep_idempotency_keys(db: Db) {
    hourly(
        Duration::from_secs(60),
        "expired idempotency keys removed",
        move || {
            let db = db.clone();
            async move {
                purge_idempotency_keys(&db, nexus_application::idempotency::KEY_TTL, 5_000).await
            }
        },
    )
    .await;
}

/// Runs a clean-up every [`PURGE_EVERY`], the first `first_after` start-up; logs how many
/// rows it removed under `what`, and a failure, which the next hour retries.
async fn hourly<F, Fut, E>(first_after: Duration, what: &'static str, mut job: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<u64, E>>,
    E: std::fmt::Display,
{
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + first_after, PURGE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match job().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(removed = n, "{what}"),
            Err(e) => tracing::warn!(error = %e, "{what}: failed; retrying next hour"),
        }
    }
}

/// How often retention runs (first ten minutes after start-up).
const RETENTION_EVERY: Duration = Duration::from_secs(24 * 3600);

async fn apply_retention(db: Db, events_days: u32, audit_days: u32) {
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_secs(600),
        RETENTION_EVERY,
    );
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if events_days > 0 {
            match purge_events(&db, events_days, 5_000).await {
                Ok(n) => tracing::info!(removed = n, "event retention applied"),
                Err(e) => tracing::warn!(error = %e, "event retention failed; retrying tomorrow"),
            }
        }
        if audit_days > 0 {
            match purge_audit(&db, audit_days, 5_000).await {
                Ok(n) => tracing::info!(removed = n, "audit retention applied"),
                Err(e) => tracing::warn!(error = %e, "audit retention failed; retrying tomorrow"),
            }
        }
    }
}

fn jwt_secret(config: &Config) -> anyhow::Result<String> {
    match (&config.jwt_secret, config.environment) {
        (Some(secret), _) => Ok(secret.expose().to_owned()),
        (None, Environment::Development) => {
            secrets_store::load_or_create(&config.data_dir, "jwt-secret")
        }
        (None, Environment::Production) => {
            anyhow::bail!("NEXUS_JWT_SECRET is required in production")
        }
    }
}

/// The contacts use cases over `pool`.
fn contact_service(
    pool: PgPool,
    acquire_timeout: Duration,
    commits: CommitBell,
) -> Arc<dyn ContactUseCases> {
    Arc::new(ContactService::new(
        PgContactRepository::new(pool.clone(), acquire_timeout).with_commit_bell(commits),
        PgCustomFieldRepository::new(pool, acquire_timeout),
        SystemClock,
        UuidV7Generator,
    ))
}

/// One contacts service per HTTP worker, each with its own pool of
/// `pool_size / workers` connections (at least 2), plus the one its short reads share
/// (`SharedReader`), so sharing takes nothing from the other requests' connections.
/// A connection's driver task runs on the thread that opened it; with one shared pool,
/// the drivers sat on the main runtime and each query's answer crossed threads twice
/// before its request saw it. A pool used by one worker only opens its connections from
/// that worker's requests, so they stay on its thread (get by id: +70 % requests/s,
/// docs/benchmarks.md, seventh pass).
fn contacts_per_worker(
    url: &str,
    settings: &PoolSettings,
    workers: usize,
    acquire_timeout: Duration,
) -> anyhow::Result<Vec<Arc<dyn ContactUseCases>>> {
    let workers = workers.max(1);
    let settings = PoolSettings {
        max_size: settings.max_size.div_ceil(workers).max(2) + 1,
        ..settings.clone()
    };
    (0..workers)
        .map(|_| {
            let pool = build_pool(url, &settings)?;
            Ok(contact_service(
                pool,
                acquire_timeout,
                settings.commits.clone(),
            ))
        })
        .collect()
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
        let commits = CommitBell::default();
        let pool_settings = PoolSettings {
            max_size: config.db_pool_size,
            acquire_timeout: config.db_acquire_timeout,
            commits: commits.clone(),
            ..PoolSettings::default()
        };
        let pool = build_pool(&url, &pool_settings)?;
        let db = Db::new(pool.clone(), config.db_acquire_timeout);
        let numberer = tokio::spawn(numberer::run(db.clone(), commits.clone(), numberer::PACE));

        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
        let hasher = BcryptHasher::new(config.bcrypt_cost, cores, Duration::from_secs(5))?;
        let server_secret = jwt_secret(config)?;
        let tokens = JwtCodec::new(server_secret.as_bytes(), ACCESS_TTL);
        let session_cache = SessionCache::start(url.clone(), config.session_cache_ttl);
        let identity = PgIdentityStore::new(db.clone(), session_cache.clone());
        let team = PgTeamStore::new(db.clone(), session_cache);
        let mailer = RecordingMailer::new(db.clone());
        let auth_settings = AuthSettings {
            refresh_reuse_grace: config.refresh_reuse_grace,
            login_failures_per_email: config.login_max_failures,
            login_failures_per_ip: config.login_max_failures_per_ip,
            registrations_per_ip: config.requests_per_ip_per_hour,
            password_resets_per_ip: config.requests_per_ip_per_hour,
            ..AuthSettings::default()
        };
        let refresh_ttl = auth_settings.refresh_ttl;
        let auth: Arc<dyn AuthUseCases> = Arc::new(AuthService::new(
            AuthPorts {
                identity: identity.clone(),
                team: team.clone(),
                hasher: hasher.clone(),
                tokens: tokens.clone(),
                secrets: RandomSecrets,
                limiter: PgRateLimiter::new(db.clone()),
                mailer: mailer.clone(),
                clock: SystemClock,
                ids: UuidV7Generator,
            },
            auth_settings,
        ));
        let team_service = Arc::new(TeamService::new(
            TeamPorts {
                identity: identity.clone(),
                team,
                hasher,
                tokens,
                secrets: RandomSecrets,
                mailer,
                clock: SystemClock,
                ids: UuidV7Generator,
            },
            Duration::from_secs(7 * 24 * 3600),
            refresh_ttl,
        ));
        let contacts = contact_service(pool.clone(), config.db_acquire_timeout, commits.clone());
        let imports: Arc<dyn ImportUseCases> = Arc::new(ImportService::new(
            PgImportRepository::new(pool.clone(), config.db_acquire_timeout),
            PgCustomFieldRepository::new(pool.clone(), config.db_acquire_timeout),
            SystemClock,
            UuidV7Generator,
        ));
        let webhook_settings = WebhookSettings {
            allowlist: config.webhooks.allowlist.clone(),
            schedule: config.webhooks.retry_schedule.clone(),
            timeout: config.webhooks.timeout,
            lease: config.webhooks.lease,
            ..WebhookSettings::default()
        };
        let webhook_store = PgWebhookStore::new(db.clone());
        let deliveries = Arc::new(DeliveryWorker::new(
            webhook_store.clone(),
            SystemResolver,
            ReqwestSender::default(),
            SystemClock,
            UuidV7Generator,
            webhook_settings.clone(),
        ));
        let event_log = PgEventLog::new(db.clone());
        let event_hub =
            PgEventHub::start(url.clone(), event_log.clone(), config.event_bus_capacity);
        let mut webhook_tasks: Vec<_> = (0..config.webhooks.workers)
            .map(|_| {
                let wake = event_hub.deliveries_queued();
                tokio::spawn(deliver_webhooks(deliveries.clone(), wake))
            })
            .collect();
        webhook_tasks.push(tokio::spawn(purge_webhook_deliveries(
            deliveries,
            config.webhooks.retention,
        )));
        let services = Services {
            webhooks: Arc::new(WebhookService::new(
                webhook_store,
                SystemClock,
                UuidV7Generator,
                RandomSecrets,
                webhook_settings,
            )),
            health: Arc::new(HealthService::new(PgProbe::new(
                pool.clone(),
                config.db_acquire_timeout,
            ))),
            auth: auth.clone(),
            team: team_service,
            contacts: contacts.clone(),
            imports: imports.clone(),
            idempotency: Arc::new(IdempotencyService::new(
                PgIdempotencyStore::new(pool.clone(), config.db_acquire_timeout),
                SystemClock,
            )),
            sales: Arc::new(SalesService::new(
                PgSalesStore::new(db.clone()),
                SystemClock,
                UuidV7Generator,
            )),
            events: Arc::new(EventService::new(
                event_log,
                event_hub.clone(),
                PgAuditLog::new(db.clone()),
            )),
        };
        let settings = HttpSettings {
            body_limit: config.body_limit,
            hsts: config.hsts,
            secure_cookies: config.environment == Environment::Production,
            sse_heartbeat: config.sse_heartbeat,
            sse_max_lifetime: config.sse_max_lifetime,
            upload_deadline: config.upload_deadline,
        };
        let mut state = AppState::new(services.clone(), Arc::new(Metrics::new()?), settings)
            .with_cursor_secret(server_secret.as_bytes());
        if let Some(extra) = extra_routes {
            state = state.with_extra_routes(extra);
        }

        let per_worker = contacts_per_worker(
            &url,
            &pool_settings,
            config.workers,
            config.db_acquire_timeout,
        )?;
        let started = Arc::new(AtomicUsize::new(0));
        let sched_batch = config.sched_batch;

        let listener = TcpListener::bind(config.bind)?;
        let port = listener.local_addr()?.port();
        // actix calls this once on each worker's thread as it starts (again if a worker
        // is restarted), which is where that worker's contacts service is handed over.
        let server = HttpServer::new(move || {
            if sched_batch && let Err(err) = crate::scheduling::batch_current_thread() {
                tracing::warn!(error = %err, "HTTP worker keeps the default scheduling policy");
            }
            let mut state = state.clone();
            let worker = started.fetch_add(1, Ordering::Relaxed) % per_worker.len().max(1);
            if let Some(contacts) = per_worker.get(worker) {
                state.services.contacts = Arc::clone(contacts);
            }
            build_app(state)
        })
        .workers(config.workers)
        .shutdown_timeout(config.shutdown_timeout.as_secs())
        .listen(listener)?
        .run();
        Ok(Self {
            server,
            port,
            pool,
            auth,
            identity,
            services,
            location,
            purge: tokio::spawn(purge_deleted_contacts(contacts)),
            idempotency_sweep: tokio::spawn(sweep_idempotency_keys(db.clone())),
            import_worker: tokio::spawn(run_imports(imports)),
            webhook_tasks,
            events: event_hub,
            retention: tokio::spawn(apply_retention(
                db.clone(),
                config.events_retention_days,
                config.audit_retention_days,
            )),
            numberer,
            db,
        })
    }

    #[must_use]
    pub const fn port(&self) -> u16 {
        self.port
    }

    /// The instance's wake-up signal for outbox readers (`EventNotifier`) and its fan-out
    /// of committed events (`EventBus`).
    #[must_use]
    pub fn event_hub(&self) -> PgEventHub {
        self.events.clone()
    }

    #[must_use]
    pub fn pool(&self) -> PgPool {
        self.pool.clone()
    }

    /// The authentication use cases (benchmarks call them in-process).
    #[must_use]
    pub fn auth(&self) -> Arc<dyn AuthUseCases> {
        self.auth.clone()
    }

    /// A handle to stop the server gracefully from elsewhere.
    #[must_use]
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Creates the demo organization and its OWNER unless the demo login exists.
    /// Returns the login (email, password); the password is kept in the data folder.
    ///
    /// # Errors
    /// Storage failures or an unusable data folder.
    pub async fn seed_demo(&self, config: &Config) -> anyhow::Result<(String, String)> {
        let password = secrets_store::load_or_create(&config.data_dir, "demo-password")?;
        let email = EmailAddress::parse(DEMO_EMAIL)?;
        if self.identity.user_by_email(&email).await?.is_none() {
            let cmd = RegisterCommand {
                email: DEMO_EMAIL.into(),
                password: password.clone(),
                name: "Demo Owner".into(),
                organization_name: "NEXUS Demo".into(),
            };
            let tokens = self
                .auth
                .seed_owner(cmd)
                .await
                .map_err(|e| anyhow::anyhow!("seeding the demo organization: {e}"))?;
            crate::demo::fill(&self.services, tokens.access_token)
                .await
                .map_err(|e| anyhow::anyhow!("seeding demo contacts and deals: {e}"))?;
        }
        Ok((DEMO_EMAIL.into(), password))
    }

    /// Serves until SIGTERM/SIGINT (or a handle's stop): stops accepting, lets
    /// in-flight requests finish within the shutdown timeout, then closes the pool.
    ///
    /// # Errors
    /// Server IO failures.
    pub async fn run_until_stopped(mut self) -> std::io::Result<()> {
        let result = (&mut self.server).await;
        self.close().await;
        result
    }

    /// Stops the background work (the server, if it ever ran, has stopped): the
    /// workers, the numberer after one last pass, the listeners, then the pool. For
    /// commands that build the application without serving.
    pub async fn close(self) {
        self.purge.abort();
        self.idempotency_sweep.abort();
        self.import_worker.abort();
        for task in &self.webhook_tasks {
            task.abort();
        }
        self.retention.abort();
        self.numberer.abort();
        // What committed during the drain gets its number now rather than from the next
        // instance that sweeps.
        if let Err(e) = numberer::number_all(&self.db).await {
            tracing::warn!(error = %e, "numbering the last events failed; the next instance will");
        }
        self.events.stop();
        self.pool.close();
        tracing::info!("stopped");
    }
}
