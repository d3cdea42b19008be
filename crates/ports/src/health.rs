use std::future::Future;

use crate::error::StoreError;

/// A snapshot of the connection pool, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolStats {
    /// Largest number of connections the pool may hold.
    pub max_size: usize,
    /// Connections currently open.
    pub size: usize,
    /// Open connections that are idle.
    pub available: usize,
    /// Callers waiting for a connection.
    pub waiting: usize,
}

/// Whether the database answers, and how the pool is doing.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait DatabaseProbe: Send + Sync + 'static {
    /// Runs a trivial query through the pool.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the database cannot be reached,
    /// [`StoreError::PoolExhausted`] when no connection frees up in time.
    fn ping(&self) -> impl Future<Output = Result<(), StoreError>> + Send;

    fn pool_stats(&self) -> PoolStats;
}
