//! Finding the database: `DATABASE_URL`, or the private local cluster (zero config).
//! A database that is down at start-up is waited for, with backoff, not given up on.

use std::time::Duration;

use nexus_adapters_postgres::cluster::{self, ClusterOptions, RunningCluster};
use nexus_adapters_postgres::{admin, migrate};

use crate::config::Config;

/// Where the data lives, for the start-up banner.
#[derive(Debug, Clone)]
pub enum DatabaseLocation {
    External,
    Private(RunningCluster),
}

/// The URL to connect to, starting the private cluster if no URL is configured.
///
/// # Errors
/// No URL and no PostgreSQL binaries, or a cluster that fails to start.
pub async fn resolve(config: &Config) -> anyhow::Result<(String, DatabaseLocation)> {
    if let Some(url) = &config.database_url {
        return Ok((url.expose().to_owned(), DatabaseLocation::External));
    }
    let opts = ClusterOptions::dev(config.data_dir.clone());
    let running = tokio::task::spawn_blocking(move || cluster::ensure_running(&opts)).await??;
    Ok((running.url("nexus"), DatabaseLocation::Private(running)))
}

/// Creates the database if needed and applies pending migrations, retrying with
/// capped exponential backoff while PostgreSQL is unreachable.
///
/// # Errors
/// A failing migration (retrying would not help).
pub async fn prepare(url: &str, config: &Config) -> anyhow::Result<()> {
    let mut delay = Duration::from_millis(250);
    loop {
        match admin::ensure_database(url).await {
            Ok(created) => {
                if created {
                    tracing::info!("created the database");
                }
                break;
            }
            Err(err) => {
                tracing::warn!(error = %err, retry_in_ms = delay.as_millis(), "database not reachable yet");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }
    if config.auto_migrate {
        let applied = migrate::run_pending(url).await?;
        if !applied.is_empty() {
            tracing::info!(count = applied.len(), "applied migrations");
        }
    }
    Ok(())
}
