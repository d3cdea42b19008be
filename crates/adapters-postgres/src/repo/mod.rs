//! Repository implementations, one file per port.

pub mod audit;
pub mod contacts;
pub mod custom_fields;
pub mod events;
pub mod idempotency;
pub mod identity;
mod import_chunk;
pub mod imports;
pub mod mailer;
pub mod rate_limit;
pub mod sales;
pub mod team;
pub mod webhooks;

pub use contacts::PgContactRepository;
pub use custom_fields::PgCustomFieldRepository;
pub use idempotency::PgIdempotencyStore;
pub use imports::PgImportRepository;

use diesel::result::{DatabaseErrorKind, Error};
use nexus_domain::Role;
use nexus_ports::StoreError;

/// A one-column boolean answer (`... AS flag`).
#[derive(diesel::QueryableByName)]
pub(crate) struct Flag {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    pub(crate) flag: bool,
}

/// Holds the organization's custom field definitions generation row `FOR SHARE` until
/// the commit if it is still `generation`; false when the definitions moved on
/// (migration 000014). Contact writes validated under kept definitions start with it.
pub(crate) async fn holds_generation(
    conn: &mut diesel_async::AsyncPgConnection,
    org: nexus_domain::OrgId,
    generation: i64,
) -> Result<bool, Error> {
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;

    use crate::schema::organizations;

    organizations::table
        .find(org.as_uuid())
        .filter(organizations::custom_fields_generation.eq(generation))
        .select(organizations::id)
        .for_share()
        .first::<uuid::Uuid>(conn)
        .await
        .optional()
        .map(|held| held.is_some())
}

/// Roles are stored as their wire names; anything else is a corrupt row.
pub(crate) fn role(s: &str) -> Result<Role, StoreError> {
    Role::parse(s)
        .ok_or_else(|| StoreError::Other(anyhow::anyhow!("unknown role {s:?} in the database")))
}

/// Whether `err` is a unique violation of `constraint`.
pub(crate) fn is_unique_violation(err: &diesel::result::Error, constraint: &str) -> bool {
    matches!(
        err,
        diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, info)
            if info.constraint_name() == Some(constraint)
    )
}

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
        Error::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, info) => {
            info.constraint_name()
        }
        _ => None,
    }
}
