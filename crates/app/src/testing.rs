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
    pub auth: std::sync::Arc<dyn nexus_application::AuthUseCases>,
    /// The configuration it was started with (to start a second instance alike).
    pub config: Config,
}

/// Another app instance on a test app's database (several instances behind one load
/// balancer, as in production).
pub struct Instance {
    pub address: String,
    pub handle: ServerHandle,
    pub server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Instance {
    #[must_use]
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }
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
    // bcrypt's minimum: tests exercise the flow, benchmarks measure the real cost.
    config.bcrypt_cost = 4;
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
        let auth = app.auth();
        let server = tokio::spawn(app.run_until_stopped());
        Self {
            address: format!("http://127.0.0.1:{port}"),
            port,
            pool,
            handle,
            db,
            server,
            auth,
            config,
        }
    }

    /// Starts a second instance on this app's database, with the same secrets.
    ///
    /// # Panics
    /// When it cannot start.
    pub async fn spawn_instance(&self) -> Instance {
        let app = Application::build(&self.config)
            .await
            .expect("building a second instance");
        let address = format!("http://127.0.0.1:{}", app.port());
        let handle = app.handle();
        Instance {
            address,
            handle,
            server: tokio::spawn(app.run_until_stopped()),
        }
    }

    #[must_use]
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// `GET path` with a bearer token: the status and the JSON body (`null` when none).
    ///
    /// # Panics
    /// When the request cannot be sent.
    pub async fn get_json(&self, token: &str, path: &str) -> (u16, serde_json::Value) {
        let res = reqwest::Client::new()
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("GET request");
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// A second instance of the app on the same database (several instances behind a
    /// load balancer), configured by `adjust`.
    ///
    /// # Panics
    /// When the application cannot start.
    pub async fn spawn_sibling(&self, adjust: impl FnOnce(&mut Config)) -> Sibling {
        let mut config = test_config(&self.db);
        adjust(&mut config);
        let app = Application::build(&config)
            .await
            .expect("building the sibling app");
        let port = app.port();
        let handle = app.handle();
        Sibling {
            address: format!("http://127.0.0.1:{port}"),
            handle,
            server: tokio::spawn(app.run_until_stopped()),
        }
    }

    /// Stops this instance as a crash would look to its peers: its background tasks are
    /// dropped mid-work.
    pub async fn kill(&self) {
        self.handle.stop(false).await;
    }
}

/// Another instance sharing a [`TestApp`]'s database.
pub struct Sibling {
    pub address: String,
    pub handle: ServerHandle,
    pub server: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// A logged-in user of a test app.
#[derive(Debug, Clone)]
pub struct TestUser {
    pub access_token: String,
    pub refresh_token: String,
    pub user_id: uuid::Uuid,
    pub org_id: uuid::Uuid,
    pub email: String,
    pub password: String,
}

pub const TEST_PASSWORD: &str = "correct-horse-battery";

impl TestApp {
    /// Registers `email` with a new organization (OWNER) and returns the session.
    ///
    /// # Panics
    /// When registration fails.
    pub async fn signup(&self, email: &str) -> TestUser {
        let client = reqwest::Client::new();
        let res = client
            .post(self.url("/api/v1/auth/register"))
            .json(&serde_json::json!({
                "email": email,
                "password": TEST_PASSWORD,
                "name": "Test User",
                "organizationName": format!("Org of {email}"),
            }))
            .send()
            .await
            .expect("register request");
        assert_eq!(
            res.status().as_u16(),
            201,
            "register {email}: {}",
            res.text().await.unwrap_or_default()
        );
        self.session_from(res, email).await
    }

    async fn session_from(&self, res: reqwest::Response, email: &str) -> TestUser {
        let body: serde_json::Value = res.json().await.expect("token body");
        let access_token = body["accessToken"]
            .as_str()
            .expect("accessToken")
            .to_owned();
        let me: serde_json::Value = reqwest::Client::new()
            .get(self.url("/api/v1/auth/me"))
            .bearer_auth(&access_token)
            .send()
            .await
            .expect("me request")
            .json()
            .await
            .expect("me body");
        TestUser {
            refresh_token: body["refreshToken"].as_str().unwrap_or_default().to_owned(),
            user_id: me["user"]["id"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .expect("user id"),
            org_id: body["organizationId"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .expect("org id"),
            access_token,
            email: email.to_owned(),
            password: TEST_PASSWORD.to_owned(),
        }
    }

    /// The newest token mailed to `email` (the development mailer records mail).
    ///
    /// # Panics
    /// When no mail was recorded.
    pub async fn mailed_token(&self, email: &str) -> String {
        use diesel::prelude::*;
        use diesel_async::RunQueryDsl;
        use nexus_adapters_postgres::schema::mail_outbox;
        let mut conn = self.pool.get().await.expect("connection");
        let body: String = mail_outbox::table
            .filter(mail_outbox::recipient.eq(email))
            .order(mail_outbox::created_at.desc())
            .select(mail_outbox::body)
            .first(&mut conn)
            .await
            .expect("a recorded mail");
        body.split_whitespace()
            .map(|w| w.trim_end_matches('.'))
            .find(|w| {
                w.len() == 43
                    && w.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            })
            .expect("a token in the mail")
            .to_owned()
    }

    /// Invites `email` into the owner's organization with `role` (OWNER, ADMIN, MEMBER,
    /// VIEWER), accepts as a new account, and returns that member's session.
    ///
    /// # Panics
    /// When any step fails.
    pub async fn add_member(&self, owner: &TestUser, email: &str, role: &str) -> TestUser {
        let client = reqwest::Client::new();
        let res = client
            .post(self.url("/api/v1/invitations"))
            .bearer_auth(&owner.access_token)
            .json(&serde_json::json!({ "email": email, "role": role }))
            .send()
            .await
            .expect("invite request");
        assert_eq!(
            res.status().as_u16(),
            201,
            "invite {email}: {}",
            res.text().await.unwrap_or_default()
        );
        let token = self.mailed_token(email).await;
        let res = client
            .post(self.url(&format!("/api/v1/invitations/{token}/accept")))
            .json(&serde_json::json!({ "password": TEST_PASSWORD, "name": "Invited User" }))
            .send()
            .await
            .expect("accept request");
        assert_eq!(
            res.status().as_u16(),
            200,
            "accept {email}: {}",
            res.text().await.unwrap_or_default()
        );
        self.session_from(res, email).await
    }
}
