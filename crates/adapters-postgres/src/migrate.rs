//! Migrations embedded in the binary; applied under an advisory lock so several app
//! instances starting together do not race.

use diesel::RunQueryDsl;
use diesel_async::AsyncPgConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations");

/// Changes whenever any file under `migrations/` changes (computed by build.rs).
pub const MIGRATIONS_FINGERPRINT: &str = env!("NEXUS_MIGRATIONS_HASH");

const LOCK_KEY: i64 = 0x4e45_5855_535f_4d47; // "NEXUS_MG"

type SyncConn = AsyncConnectionWrapper<AsyncPgConnection>;

fn with_lock<T>(
    url: &str,
    work: impl FnOnce(&mut SyncConn) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    use diesel::Connection;
    let mut conn = SyncConn::establish(url)?;
    diesel::sql_query(format!("SELECT pg_advisory_lock({LOCK_KEY})")).execute(&mut conn)?;
    let result = work(&mut conn);
    diesel::sql_query(format!("SELECT pg_advisory_unlock({LOCK_KEY})")).execute(&mut conn)?;
    result
}

/// Applies every pending migration; returns the versions applied (empty when up to date).
///
/// # Errors
/// Connection failures or a failing migration (which is rolled back).
pub async fn run_pending(url: &str) -> anyhow::Result<Vec<String>> {
    let url = url.to_owned();
    tokio::task::spawn_blocking(move || {
        with_lock(&url, |conn| {
            let applied = conn
                .run_pending_migrations(MIGRATIONS)
                .map_err(|e| anyhow::anyhow!(e))?;
            Ok(applied.iter().map(ToString::to_string).collect())
        })
    })
    .await?
}

/// Reverts every applied migration (used to prove each `down.sql` works).
///
/// # Errors
/// Connection failures or a failing `down.sql`.
pub async fn revert_all(url: &str) -> anyhow::Result<Vec<String>> {
    let url = url.to_owned();
    tokio::task::spawn_blocking(move || {
        with_lock(&url, |conn| {
            let reverted = conn
                .revert_all_migrations(MIGRATIONS)
                .map_err(|e| anyhow::anyhow!(e))?;
            Ok(reverted.iter().map(ToString::to_string).collect())
        })
    })
    .await?
}

/// Versions not yet applied.
///
/// # Errors
/// Connection failures.
pub async fn pending(url: &str) -> anyhow::Result<Vec<String>> {
    let url = url.to_owned();
    tokio::task::spawn_blocking(move || {
        use diesel::Connection;
        let mut conn = SyncConn::establish(&url)?;
        let pending = conn
            .pending_migrations(MIGRATIONS)
            .map_err(|e| anyhow::anyhow!(e))?;
        Ok(pending.iter().map(|m| m.name().to_string()).collect())
    })
    .await?
}
