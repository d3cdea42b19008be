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
    /// Anything else: a bug or an unexpected database answer.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}
