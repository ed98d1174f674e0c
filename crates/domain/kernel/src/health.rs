//! Readiness of the dependencies a process needs.

use async_trait::async_trait;

use crate::InfraError;

/// One dependency that must be reachable for the process to be ready.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait HealthCheck: Send + Sync {
    /// Short stable name shown to operators, e.g. `postgres`.
    fn name(&self) -> &'static str;
    /// MUST answer within a bounded time; an unreachable dependency is an `Err`.
    async fn check(&self) -> Result<(), InfraError>;
}
