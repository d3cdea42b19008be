use std::time::Duration;

/// Infrastructure failures every repository port can report. Domain-level failures
/// (duplicates, missing rows) are separate, per-operation error variants.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or refused the connection.
    #[error("database unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// Every pooled connection stayed busy past the acquire timeout.
    #[error("no database connection became free within {0:?}")]
    PoolExhausted(Duration),
    /// The database gave the statement up (a deadlock, a serialization failure, a
    /// statement or lock timeout): its transaction rolled back, and a retry may succeed.
    #[error("the database gave the statement up: {0}")]
    GaveUp(#[source] anyhow::Error),
    /// Anything else: a bug or an unexpected database answer.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}
