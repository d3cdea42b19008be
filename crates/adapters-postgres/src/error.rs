use std::time::Duration;

use deadpool::managed::{PoolError, TimeoutType};
use diesel_async::pooled_connection::PoolError as ConnError;
use nexus_ports::StoreError;

/// Maps a pool failure to the port's error, so the HTTP layer can answer 503.
pub fn from_pool(err: PoolError<ConnError>, acquire_timeout: Duration) -> StoreError {
    match err {
        PoolError::Timeout(TimeoutType::Wait) => StoreError::PoolExhausted(acquire_timeout),
        PoolError::Timeout(_) | PoolError::Backend(_) => {
            StoreError::Unavailable(anyhow::Error::new(err))
        }
        other => StoreError::Other(anyhow::Error::new(other)),
    }
}

/// Maps a query failure. A closed connection means the database went away.
pub fn from_diesel(err: diesel::result::Error) -> StoreError {
    use diesel::result::{DatabaseErrorKind, Error};
    match err {
        Error::DatabaseError(DatabaseErrorKind::ClosedConnection, _)
        | Error::BrokenTransactionManager => StoreError::Unavailable(anyhow::Error::new(err)),
        other => StoreError::Other(anyhow::Error::new(other)),
    }
}
