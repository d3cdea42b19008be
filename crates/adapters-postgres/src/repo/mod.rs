//! Repository implementations, one file per port.

pub mod contacts;
pub mod custom_fields;

pub use contacts::PgContactRepository;
pub use custom_fields::PgCustomFieldRepository;

use diesel::result::{DatabaseErrorKind, Error};

/// The constraint a unique violation names, if that is what `err` is.
pub(crate) fn unique_violation(err: &Error) -> Option<&str> {
    match err {
        Error::DatabaseError(DatabaseErrorKind::UniqueViolation, info) => info.constraint_name(),
        _ => None,
    }
}

/// The constraint a foreign-key violation names, if that is what `err` is.
pub(crate) fn foreign_key_violation(err: &Error) -> Option<&str> {
    match err {
        Error::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, info) => info.constraint_name(),
        _ => None,
    }
}
