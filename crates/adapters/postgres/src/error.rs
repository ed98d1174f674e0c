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
        // 57P01-57P03 and friends: the server is shutting down, restarting or not accepting
        // connections yet; a moment later it answers again.
        DieselError::DatabaseError(_, info) if is_server_going_away(info.message()) => {
            InfraError::unavailable("postgres restarting").with_source(err)
        }
        _ => InfraError::unexpected("postgres query failed").with_source(err),
    }
}

fn is_server_going_away(message: &str) -> bool {
    [
        "terminating connection due to administrator command",
        "the database system is shutting down",
        "the database system is starting up",
        "the database system is in recovery mode",
        "the database system is not yet accepting connections",
        "terminating connection due to",
        "server closed the connection unexpectedly",
    ]
    .iter()
    .any(|m| message.contains(m))
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

#[cfg(test)]
mod tests {
    use super::*;

    struct Info(&'static str);

    impl diesel::result::DatabaseErrorInformation for Info {
        fn message(&self) -> &str {
            self.0
        }
        fn details(&self) -> Option<&str> {
            None
        }
        fn hint(&self) -> Option<&str> {
            None
        }
        fn table_name(&self) -> Option<&str> {
            None
        }
        fn column_name(&self) -> Option<&str> {
            None
        }
        fn constraint_name(&self) -> Option<&str> {
            None
        }
        fn statement_position(&self) -> Option<i32> {
            None
        }
    }

    fn db_error(message: &'static str) -> DieselError {
        DieselError::DatabaseError(DatabaseErrorKind::Unknown, Box::new(Info(message)))
    }

    #[test]
    fn a_restarting_server_is_unavailable_not_a_bug() {
        for message in [
            "terminating connection due to administrator command",
            "the database system is shutting down",
            "the database system is starting up",
            "canceling statement due to statement timeout",
        ] {
            assert!(infra_from_diesel(db_error(message)).is_unavailable(), "{message}");
        }
        assert!(!infra_from_diesel(db_error("syntax error at or near \"SELEC\"")).is_unavailable());
    }
}
