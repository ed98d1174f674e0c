//! Job kinds and their handlers.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use ecom_kernel::jobs::{JobEnvelope, JobOutcome};
use ecom_kernel::InfraError;

/// Why a job failed: domain refusals are permanent (dead-lettered at once), infrastructure
/// trouble is retryable (retried with backoff until its attempts run out).
#[derive(Debug, thiserror::Error)]
pub enum JobFailure {
    #[error("permanent failure: {0}")]
    Permanent(String),
    #[error("retryable failure: {0}")]
    Retryable(String),
}

impl From<InfraError> for JobFailure {
    fn from(err: InfraError) -> Self {
        JobFailure::Retryable(err.to_string())
    }
}

/// Runs jobs of one kind. Delivery is at least once: a handler MUST be idempotent.
#[async_trait]
pub trait JobHandler: Send + Sync {
    async fn handle(&self, job: &JobEnvelope) -> Result<JobOutcome, JobFailure>;
}

/// Which handler runs which kind.
#[derive(Default, Clone)]
pub struct HandlerRegistry {
    handlers: HashMap<String, Arc<dyn JobHandler>>,
}

impl HandlerRegistry {
    #[must_use]
    pub fn with(mut self, kind: impl Into<String>, handler: Arc<dyn JobHandler>) -> Self {
        self.handlers.insert(kind.into(), handler);
        self
    }

    pub fn handler(&self, kind: &str) -> Option<Arc<dyn JobHandler>> {
        self.handlers.get(kind).cloned()
    }

    pub fn kinds(&self) -> impl Iterator<Item = &str> {
        self.handlers.keys().map(String::as_str)
    }
}
