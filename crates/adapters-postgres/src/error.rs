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

/// Maps a query failure. A closed connection means the database went away: diesel-async
/// reports every failure that carries no SQLSTATE (socket closed, I/O error) as
/// `UnableToSendCommand`. Connections are not pinged at checkout (see `pool`), so a
/// connection the server dropped a moment ago ends here and answers 503, not 500.
pub fn from_diesel(err: diesel::result::Error) -> StoreError {
    use diesel::result::{DatabaseErrorKind, Error};
    match err {
        Error::DatabaseError(
            DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
            _,
        )
        | Error::BrokenTransactionManager => StoreError::Unavailable(anyhow::Error::new(err)),
        other => StoreError::Other(anyhow::Error::new(other)),
    }
}

#[cfg(test)]
mod tests {
    use diesel::result::{DatabaseErrorKind, Error};

    use super::*;

    fn db(kind: DatabaseErrorKind) -> Error {
        Error::DatabaseError(kind, Box::new("connection closed".to_owned()))
    }

    #[test]
    fn a_lost_connection_is_unavailable_and_a_refused_statement_is_not() {
        for lost in [
            db(DatabaseErrorKind::UnableToSendCommand),
            db(DatabaseErrorKind::ClosedConnection),
            Error::BrokenTransactionManager,
        ] {
            assert!(matches!(from_diesel(lost), StoreError::Unavailable(_)));
        }
        for refused in [
            db(DatabaseErrorKind::UniqueViolation),
            db(DatabaseErrorKind::Unknown),
            Error::NotFound,
        ] {
            assert!(matches!(from_diesel(refused), StoreError::Other(_)));
        }
    }
}
