//! Translation of driver and pool errors into the domain's infrastructure error.

use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::pooled_connection::deadpool::PoolError;
use ecom_kernel::InfraError;

pub fn infra_from_diesel(err: DieselError) -> InfraError {
    match &err {
        DieselError::DatabaseError(DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand, _) => {
            InfraError::unavailable("postgres connection lost").with_source(err)
        }
        // 57014: statement_timeout cancelled the query; the database is overloaded, not broken.
        DieselError::DatabaseError(_, info) if info.message().contains("statement timeout") => {
            InfraError::unavailable("postgres statement timeout").with_source(err)
        }
        _ => InfraError::unexpected("postgres query failed").with_source(err),
    }
}

pub fn infra_from_pool(err: PoolError) -> InfraError {
    InfraError::unavailable("postgres unavailable").with_source(err)
}

/// The name of the constraint a unique violation broke, if it was one.
pub(crate) fn unique_violation(err: &DieselError) -> Option<&str> {
    match err {
        DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info) => info.constraint_name(),
        _ => None,
    }
}
