//! The one opaque infrastructure error that ports return for failures of the outside world.

use std::error::Error as StdError;
use std::fmt;

/// A failure of infrastructure (database, cache, network) behind a port.
///
/// The domain never inspects the cause; it only distinguishes a dependency that is
/// temporarily unavailable (the caller may retry: HTTP 503) from anything else (HTTP 500).
#[derive(Debug, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct InfraError {
    kind: InfraErrorKind,
    message: String,
    #[source]
    source: Option<Box<dyn StdError + Send + Sync + 'static>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InfraErrorKind {
    /// The dependency could not be reached or answered too late.
    Unavailable,
    /// Anything else: a bug, a broken invariant, a corrupt row.
    Unexpected,
}

impl fmt::Display for InfraErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InfraErrorKind::Unavailable => "dependency unavailable",
            InfraErrorKind::Unexpected => "unexpected infrastructure error",
        })
    }
}

impl InfraError {
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self { kind: InfraErrorKind::Unavailable, message: message.into(), source: None }
    }

    pub fn unexpected(message: impl Into<String>) -> Self {
        Self { kind: InfraErrorKind::Unexpected, message: message.into(), source: None }
    }

    #[must_use]
    pub fn with_source(mut self, source: impl StdError + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    pub fn kind(&self) -> InfraErrorKind {
        self.kind
    }

    pub fn is_unavailable(&self) -> bool {
        self.kind == InfraErrorKind::Unavailable
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unavailable_error_keeps_its_source_in_the_chain() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let err = InfraError::unavailable("redis").with_source(io);
        assert!(err.is_unavailable());
        assert_eq!(err.source().map(ToString::to_string).as_deref(), Some("refused"));
        assert_eq!(err.to_string(), "dependency unavailable: redis");
    }
}
