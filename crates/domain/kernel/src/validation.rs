//! Reporting every invalid field of a request at once, so a client can fix them all.
//!
//! Parse each field into a `Result`, then match on the tuple of results: the all-`Ok` arm builds
//! the command, the other arm collects the failures with [`ValidationErrors::collect`].

use std::fmt::Display;

use serde::Serialize;

/// One invalid field: the field's name as the client sent it, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// The error of one parsed field, if it failed.
pub fn field_error<T, E: Display>(field: &str, result: &Result<T, E>) -> Option<FieldError> {
    result.as_ref().err().map(|e| FieldError { field: field.to_owned(), message: e.to_string() })
}

/// Every invalid field of one command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("validation failed: {}", .0.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; "))]
pub struct ValidationErrors(Vec<FieldError>);

impl ValidationErrors {
    pub fn single(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self(vec![FieldError { field: field.into(), message: message.into() }])
    }

    /// Keeps the failures among per-field outcomes (see [`field_error`]).
    pub fn collect(outcomes: impl IntoIterator<Item = Option<FieldError>>) -> Self {
        Self(outcomes.into_iter().flatten().collect())
    }

    pub fn errors(&self) -> &[FieldError] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_failing_field_is_reported_in_order() {
        let a = "x".parse::<u8>();
        let b = "7".parse::<u8>();
        let c = "y".parse::<u8>();
        let err = match (a, b, c) {
            (Ok(_), Ok(_), Ok(_)) => panic!("must fail"),
            (a, b, c) => ValidationErrors::collect([field_error("a", &a), field_error("b", &b), field_error("c", &c)]),
        };
        let fields: Vec<_> = err.errors().iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["a", "c"]);
        assert_eq!(err.errors()[0].message, "invalid digit found in string");
    }
}
