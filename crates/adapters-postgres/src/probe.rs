use std::time::Duration;

use diesel_async::RunQueryDsl;
use nexus_ports::{DatabaseProbe, PoolStats, StoreError};

use crate::error::from_pool;
use crate::pool::PgPool;

/// Readiness and pool figures, straight from the pool.
#[derive(Clone)]
pub struct PgProbe {
    pool: PgPool,
    acquire_timeout: Duration,
}

impl PgProbe {
    #[must_use]
    pub const fn new(pool: PgPool, acquire_timeout: Duration) -> Self {
        Self {
            pool,
            acquire_timeout,
        }
    }
}

impl DatabaseProbe for PgProbe {
    async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self
            .pool
            .get()
            .await
            .map_err(|e| from_pool(e, self.acquire_timeout))?;
        // Whatever stops `SELECT 1` means the database cannot serve: a backend killed
        // while idle in the pool answers its next query with its own FATAL (57P01, which
        // diesel reports as an unknown error), not as a closed connection.
        diesel::sql_query("SELECT 1")
            .execute(&mut conn)
            .await
            .map_err(|e| StoreError::Unavailable(anyhow::Error::new(e)))?;
        Ok(())
    }

    fn pool_stats(&self) -> PoolStats {
        let status = self.pool.status();
        PoolStats {
            max_size: status.max_size,
            size: status.size,
            available: status.available,
            waiting: status.waiting,
        }
    }
}
