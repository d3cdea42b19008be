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
///
/// A statement the server gave up on is told apart from a failure: diesel-async keeps
/// the SQLSTATE of a serialization failure only, so deadlocks and timeouts are known by
/// their message, which is English on the clusters this project starts (`C.UTF-8`) and
/// on a server whose `lc_messages` is English; in another language they stay 500s.
pub fn from_diesel(err: diesel::result::Error) -> StoreError {
    use diesel::result::{DatabaseErrorKind, Error};
    match err {
        Error::DatabaseError(
            DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
            _,
        )
        | Error::BrokenTransactionManager => StoreError::Unavailable(anyhow::Error::new(err)),
        Error::DatabaseError(DatabaseErrorKind::SerializationFailure, _) => {
            StoreError::GaveUp(anyhow::Error::new(err))
        }
        Error::DatabaseError(DatabaseErrorKind::Unknown, ref info)
            if GAVE_UP.iter().any(|m| info.message().starts_with(m)) =>
        {
            StoreError::GaveUp(anyhow::Error::new(err))
        }
        other => StoreError::Other(anyhow::Error::new(other)),
    }
}

/// The messages of SQLSTATE 40P01 (deadlock_detected) and 57014 (query_canceled, by
/// `statement_timeout` or `lock_timeout`).
const GAVE_UP: [&str; 3] = [
    "deadlock detected",
    "canceling statement due to statement timeout",
    "canceling statement due to lock timeout",
];

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
        for gave_up in [
            db(DatabaseErrorKind::SerializationFailure),
            Error::DatabaseError(
                DatabaseErrorKind::Unknown,
                Box::new("deadlock detected".to_owned()),
            ),
        ] {
            assert!(matches!(from_diesel(gave_up), StoreError::GaveUp(_)));
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
