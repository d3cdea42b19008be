//! Configuration from the environment. A bad value stops start-up with one line that
//! names the variable and what it expects.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use nexus_domain::webhook::{Allowlist, RetrySchedule};

/// Where the process runs; production refuses dev conveniences.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Development,
    Production,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// A secret that never prints.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    #[must_use]
    pub fn new(value: String) -> Self {
        Self(value)
    }

    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub environment: Environment,
    pub database_url: Option<Secret>,
    pub bind: SocketAddr,
    /// `None` in development until the data dir provides one (see `jwt_secret`).
    pub jwt_secret: Option<Secret>,
    pub data_dir: PathBuf,
    pub db_pool_size: usize,
    pub db_acquire_timeout: Duration,
    pub log_format: LogFormat,
    pub auto_migrate: bool,
    pub body_limit: usize,
    pub shutdown_timeout: Duration,
    pub hsts: bool,
    pub workers: usize,
    /// HTTP workers run under `SCHED_BATCH` (see `crate::scheduling`).
    pub sched_batch: bool,
    /// bcrypt cost: 10–15 from the environment (tests may set lower in code).
    pub bcrypt_cost: u32,
    /// Failed logins per account (and per IP) within 15 minutes before 429.
    pub login_max_failures: u32,
    pub login_max_failures_per_ip: u32,
    /// Registrations and password-reset requests per IP per hour.
    pub requests_per_ip_per_hour: u32,
    /// A refresh token rotated this recently by a concurrent request is refused without
    /// revoking the session.
    pub refresh_reuse_grace: Duration,
    /// How long a session check may be answered from memory (0: every request asks the
    /// database). Changes still apply at once: see `nexus_adapters_postgres::session_cache`.
    pub session_cache_ttl: Duration,
    /// How often an idle event stream sends a keep-alive comment.
    pub sse_heartbeat: Duration,
    /// An event stream ends after this long (the client reconnects and re-authenticates).
    pub sse_max_lifetime: Duration,
    /// A CSV upload that has not all arrived after this long is refused (408).
    pub upload_deadline: Duration,
    /// Events a slow stream may fall behind the instance's fan-out before it re-reads
    /// the outbox.
    pub event_bus_capacity: usize,
    /// Outbox events older than this many days are removed (0 keeps them forever). It
    /// bounds how far back the feed and `Last-Event-ID` reach.
    pub events_retention_days: u32,
    /// Audit entries older than this many days are removed (0 keeps them forever).
    pub audit_retention_days: u32,
    pub webhooks: WebhookConfig,
}

/// Webhook delivery settings.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Concurrent delivery tasks in this instance (0: this instance delivers nothing).
    pub workers: usize,
    pub retry_schedule: RetrySchedule,
    /// Destinations allowed despite the SSRF rules (http, any port, private addresses).
    pub allowlist: Allowlist,
    pub timeout: Duration,
    /// A claimed delivery whose worker died is taken over after this long.
    pub lease: Duration,
    pub retention: Duration,
}

/// One bad variable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{var} {expected} (got {got:?})")]
pub struct ConfigError {
    pub var: &'static str,
    pub expected: &'static str,
    pub got: String,
}

impl Config {
    /// Reads the process environment.
    ///
    /// # Errors
    /// The first variable holding a value it cannot use.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads configuration through `get` (tests pass a map).
    ///
    /// # Errors
    /// The first variable holding a value it cannot use.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let var = |name: &'static str| get(name).filter(|v| !v.trim().is_empty());
        let bad = |var: &'static str, expected: &'static str, got: &str| ConfigError {
            var,
            expected,
            got: got.to_owned(),
        };
        let parse_num =
            |name: &'static str, default: u64, min: u64, max: u64, expected: &'static str| {
                var(name).map_or(Ok(default), |v| {
                    v.trim()
                        .parse::<u64>()
                        .ok()
                        .filter(|n| (min..=max).contains(n))
                        .ok_or_else(|| bad(name, expected, &v))
                })
            };
        let parse_bool = |name: &'static str, default: bool| {
            var(name).map_or(Ok(default), |v| {
                match v.trim().to_ascii_lowercase().as_str() {
                    "1" | "true" | "yes" | "on" => Ok(true),
                    "0" | "false" | "no" | "off" => Ok(false),
                    _ => Err(bad(name, "must be true or false", &v)),
                }
            })
        };

        let environment = match var("NEXUS_ENV").as_deref().map(str::trim) {
            None | Some("development" | "dev") => Environment::Development,
            Some("production" | "prod") => Environment::Production,
            Some(other) => {
                return Err(bad("NEXUS_ENV", "must be development or production", other));
            }
        };
        let bind = var("NEXUS_BIND").map_or(Ok(SocketAddr::from(([127, 0, 0, 1], 8080))), |v| {
            v.trim().parse().map_err(|_| {
                bad(
                    "NEXUS_BIND",
                    "must be an address:port such as 127.0.0.1:8080",
                    &v,
                )
            })
        })?;
        let jwt_secret = var("NEXUS_JWT_SECRET").map(Secret::new);
        if jwt_secret.as_ref().is_some_and(|s| s.expose().len() < 32) {
            return Err(bad(
                "NEXUS_JWT_SECRET",
                "must be at least 32 characters",
                "<hidden>",
            ));
        }
        if environment == Environment::Production && jwt_secret.is_none() {
            return Err(bad(
                "NEXUS_JWT_SECRET",
                "is required when NEXUS_ENV=production",
                "",
            ));
        }
        let database_url = var("DATABASE_URL").map(Secret::new);
        let is_postgres = |u: &str| u.starts_with("postgres://") || u.starts_with("postgresql://");
        if database_url
            .as_ref()
            .is_some_and(|u| !is_postgres(u.expose()))
        {
            return Err(bad("DATABASE_URL", "must be a postgres:// URL", "<hidden>"));
        }
        if environment == Environment::Production && database_url.is_none() {
            return Err(bad(
                "DATABASE_URL",
                "is required when NEXUS_ENV=production",
                "",
            ));
        }
        let log_format = match var("NEXUS_LOG_FORMAT").as_deref().map(str::trim) {
            None | Some("pretty") => LogFormat::Pretty,
            Some("json") => LogFormat::Json,
            Some(other) => return Err(bad("NEXUS_LOG_FORMAT", "must be pretty or json", other)),
        };
        let webhooks = webhook_config(environment, &var, &parse_num)?;
        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
        let to_usize = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);

        Ok(Self {
            environment,
            database_url,
            bind,
            jwt_secret,
            data_dir: var("NEXUS_DATA_DIR").map_or_else(|| PathBuf::from(".nexus"), PathBuf::from),
            db_pool_size: to_usize(parse_num(
                "NEXUS_DB_POOL_SIZE",
                10,
                1,
                1000,
                "must be a whole number from 1 to 1000",
            )?),
            db_acquire_timeout: Duration::from_millis(parse_num(
                "NEXUS_DB_ACQUIRE_TIMEOUT_MS",
                2000,
                1,
                600_000,
                "must be milliseconds from 1 to 600000",
            )?),
            log_format,
            auto_migrate: parse_bool("NEXUS_AUTO_MIGRATE", true)?,
            body_limit: to_usize(parse_num(
                "NEXUS_BODY_LIMIT_BYTES",
                1024 * 1024,
                1024,
                1024 * 1024 * 1024,
                "must be bytes from 1024 to 1073741824",
            )?),
            shutdown_timeout: Duration::from_secs(parse_num(
                "NEXUS_SHUTDOWN_TIMEOUT_SECS",
                30,
                0,
                3600,
                "must be seconds from 0 to 3600",
            )?),
            hsts: parse_bool("NEXUS_HSTS", false)?,
            sched_batch: parse_bool("NEXUS_SCHED_BATCH", true)?,
            bcrypt_cost: u32::try_from(parse_num(
                "NEXUS_BCRYPT_COST",
                12,
                10,
                15,
                "must be a bcrypt cost from 10 to 15",
            )?)
            .unwrap_or(12),
            login_max_failures: u32::try_from(parse_num(
                "NEXUS_LOGIN_MAX_FAILURES",
                5,
                1,
                1000,
                "must be a whole number from 1 to 1000",
            )?)
            .unwrap_or(5),
            login_max_failures_per_ip: u32::try_from(parse_num(
                "NEXUS_LOGIN_MAX_FAILURES_PER_IP",
                50,
                1,
                100_000,
                "must be a whole number from 1 to 100000",
            )?)
            .unwrap_or(50),
            requests_per_ip_per_hour: u32::try_from(parse_num(
                "NEXUS_RATE_LIMIT_PER_IP_PER_HOUR",
                20,
                1,
                100_000,
                "must be a whole number from 1 to 100000",
            )?)
            .unwrap_or(20),
            refresh_reuse_grace: Duration::from_millis(parse_num(
                "NEXUS_REFRESH_REUSE_GRACE_MS",
                5000,
                0,
                60_000,
                "must be milliseconds from 0 to 60000",
            )?),
            session_cache_ttl: Duration::from_millis(parse_num(
                "NEXUS_SESSION_CACHE_TTL_MS",
                5000,
                0,
                60_000,
                "must be milliseconds from 0 to 60000",
            )?),
            sse_heartbeat: Duration::from_millis(parse_num(
                "NEXUS_SSE_HEARTBEAT_MS",
                15_000,
                10,
                3_600_000,
                "must be milliseconds from 10 to 3600000",
            )?),
            sse_max_lifetime: Duration::from_secs(parse_num(
                "NEXUS_SSE_MAX_LIFETIME_SECS",
                900,
                1,
                86_400,
                "must be seconds from 1 to 86400",
            )?),
            upload_deadline: Duration::from_secs(parse_num(
                "NEXUS_UPLOAD_DEADLINE_SECS",
                120,
                1,
                3_600,
                "must be seconds from 1 to 3600",
            )?),
            event_bus_capacity: to_usize(parse_num(
                "NEXUS_EVENT_BUS_CAPACITY",
                4096,
                16,
                1_000_000,
                "must be a whole number from 16 to 1000000",
            )?),
            events_retention_days: u32::try_from(parse_num(
                "NEXUS_EVENTS_RETENTION_DAYS",
                30,
                0,
                36_500,
                "must be days from 0 (forever) to 36500",
            )?)
            .unwrap_or(30),
            audit_retention_days: u32::try_from(parse_num(
                "NEXUS_AUDIT_RETENTION_DAYS",
                365,
                0,
                36_500,
                "must be days from 0 (forever) to 36500",
            )?)
            .unwrap_or(365),
            workers: to_usize(parse_num(
                "NEXUS_WORKERS",
                cores as u64,
                1,
                256,
                "must be a whole number from 1 to 256",
            )?),
            webhooks,
        })
    }
}

type Lookup<'a> = dyn Fn(&'static str) -> Option<String> + 'a;
type NumLookup<'a> =
    dyn Fn(&'static str, u64, u64, u64, &'static str) -> Result<u64, ConfigError> + 'a;

fn webhook_config(
    environment: Environment,
    var: &Lookup<'_>,
    parse_num: &NumLookup<'_>,
) -> Result<WebhookConfig, ConfigError> {
    let bad = |var: &'static str, expected: &'static str, got: &str| ConfigError {
        var,
        expected,
        got: got.to_owned(),
    };
    let allowlist = match var("NEXUS_WEBHOOK_ALLOWLIST") {
        Some(v) => Allowlist::parse(&v).map_err(|_| {
            bad(
                "NEXUS_WEBHOOK_ALLOWLIST",
                "must list networks, addresses or host names, comma-separated",
                &v,
            )
        })?,
        // Local development posts to receivers on this machine.
        None if environment == Environment::Development => {
            Allowlist::parse("127.0.0.0/8,::1,localhost").unwrap_or_default()
        }
        None => Allowlist::default(),
    };
    let retry_schedule = match var("NEXUS_WEBHOOK_RETRY_SCHEDULE") {
        Some(v) => v
            .split(',')
            .map(|d| humantime::parse_duration(d.trim()))
            .collect::<Result<Vec<_>, _>>()
            .ok()
            .filter(|d| (1..=50).contains(&d.len()))
            .map(RetrySchedule::new)
            .ok_or_else(|| {
                bad(
                    "NEXUS_WEBHOOK_RETRY_SCHEDULE",
                    "must be 1 to 50 comma-separated durations such as 5s,5m,30m,2h",
                    &v,
                )
            })?,
        None => RetrySchedule::default(),
    };
    let timeout = Duration::from_millis(parse_num(
        "NEXUS_WEBHOOK_TIMEOUT_MS",
        10_000,
        100,
        60_000,
        "must be milliseconds from 100 to 60000",
    )?);
    let lease = Duration::from_secs(parse_num(
        "NEXUS_WEBHOOK_LEASE_SECS",
        60,
        1,
        3600,
        "must be seconds from 1 to 3600",
    )?);
    if lease <= timeout {
        return Err(bad(
            "NEXUS_WEBHOOK_LEASE_SECS",
            "must be longer than NEXUS_WEBHOOK_TIMEOUT_MS",
            &lease.as_secs().to_string(),
        ));
    }
    Ok(WebhookConfig {
        workers: usize::try_from(parse_num(
            "NEXUS_WEBHOOK_WORKERS",
            4,
            0,
            64,
            "must be a whole number from 0 to 64",
        )?)
        .unwrap_or(4),
        retry_schedule,
        allowlist,
        timeout,
        lease,
        retention: Duration::from_secs(
            86_400
                * parse_num(
                    "NEXUS_WEBHOOK_DELIVERY_RETENTION_DAYS",
                    30,
                    1,
                    3650,
                    "must be days from 1 to 3650",
                )?,
        ),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn from(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn zero_config_defaults() {
        let c = from(&[]).unwrap();
        assert_eq!(c.environment, Environment::Development);
        assert_eq!(c.bind.to_string(), "127.0.0.1:8080");
        assert_eq!(c.data_dir, PathBuf::from(".nexus"));
        assert!(c.database_url.is_none() && c.jwt_secret.is_none() && c.auto_migrate);
        assert_eq!(c.body_limit, 1024 * 1024);
        assert_eq!(c.sse_heartbeat, Duration::from_secs(15));
        assert_eq!((c.events_retention_days, c.audit_retention_days), (30, 365));
    }

    #[test]
    fn a_bad_value_names_the_variable_and_the_expectation() {
        let err = from(&[("NEXUS_DB_POOL_SIZE", "lots")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "NEXUS_DB_POOL_SIZE must be a whole number from 1 to 1000 (got \"lots\")"
        );
        assert_eq!(
            from(&[("NEXUS_BIND", "localhost")]).unwrap_err().var,
            "NEXUS_BIND"
        );
        assert_eq!(
            from(&[("NEXUS_LOG_FORMAT", "xml")]).unwrap_err().var,
            "NEXUS_LOG_FORMAT"
        );
        assert_eq!(
            from(&[("NEXUS_DB_ACQUIRE_TIMEOUT_MS", "0")])
                .unwrap_err()
                .var,
            "NEXUS_DB_ACQUIRE_TIMEOUT_MS"
        );
        assert_eq!(
            from(&[("DATABASE_URL", "mysql://x")]).unwrap_err().var,
            "DATABASE_URL"
        );
        assert_eq!(
            from(&[("NEXUS_SSE_HEARTBEAT_MS", "0")]).unwrap_err().var,
            "NEXUS_SSE_HEARTBEAT_MS"
        );
        assert_eq!(
            from(&[("NEXUS_AUDIT_RETENTION_DAYS", "-1")])
                .unwrap_err()
                .var,
            "NEXUS_AUDIT_RETENTION_DAYS"
        );
    }

    #[test]
    fn production_requires_its_secrets_and_never_prints_them() {
        let err = from(&[
            ("NEXUS_ENV", "production"),
            ("DATABASE_URL", "postgres://h/db"),
        ])
        .unwrap_err();
        assert_eq!(err.var, "NEXUS_JWT_SECRET");
        let secret = "s".repeat(40);
        let ok = from(&[
            ("NEXUS_ENV", "production"),
            ("DATABASE_URL", "postgres://h/db"),
            ("NEXUS_JWT_SECRET", &secret),
        ])
        .unwrap();
        assert!(!format!("{ok:?}").contains(&secret));
        assert!(from(&[("NEXUS_JWT_SECRET", "short")]).is_err());
    }

    #[test]
    fn http_workers_run_batch_unless_turned_off() {
        assert!(from(&[]).unwrap().sched_batch);
        assert!(!from(&[("NEXUS_SCHED_BATCH", "false")]).unwrap().sched_batch);
        assert!(from(&[("NEXUS_SCHED_BATCH", "sometimes")]).is_err());
    }

    #[test]
    fn webhook_settings_parse_and_refuse_nonsense() {
        let dev = from(&[]).unwrap().webhooks;
        assert_eq!(dev.workers, 4);
        assert!(dev.allowlist.permits_ip("127.0.0.1".parse().unwrap()));
        assert_eq!(dev.retry_schedule, RetrySchedule::default());
        let secret = "s".repeat(40);
        let prod = from(&[
            ("NEXUS_ENV", "production"),
            ("DATABASE_URL", "postgres://h/db"),
            ("NEXUS_JWT_SECRET", &secret),
        ])
        .unwrap()
        .webhooks;
        assert!(prod.allowlist.is_empty());
        let custom = from(&[("NEXUS_WEBHOOK_RETRY_SCHEDULE", "1s, 2m,3h")])
            .unwrap()
            .webhooks;
        assert_eq!(
            custom.retry_schedule.delays(),
            &[
                Duration::from_secs(1),
                Duration::from_secs(120),
                Duration::from_secs(3 * 3600)
            ]
        );
        for (k, v) in [
            ("NEXUS_WEBHOOK_RETRY_SCHEDULE", "soon"),
            ("NEXUS_WEBHOOK_ALLOWLIST", "not a host!"),
            ("NEXUS_WEBHOOK_WORKERS", "100"),
            ("NEXUS_WEBHOOK_LEASE_SECS", "5"),
        ] {
            assert_eq!(from(&[(k, v)]).unwrap_err().var, k);
        }
    }
}
