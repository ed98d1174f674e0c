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

/// A job's payload as `T`, read in place; one that does not parse is a permanent failure (no
/// retry can fix it).
pub fn payload<T: serde::de::DeserializeOwned>(job: &JobEnvelope) -> Result<T, JobFailure> {
    T::deserialize(&job.payload).map_err(|e| JobFailure::Permanent(format!("bad payload: {e}")))
}

/// Runs jobs of one kind. Delivery is at least once: a handler MUST be idempotent.
#[async_trait]
pub trait JobHandler: Send + Sync {
    async fn handle(&self, job: &JobEnvelope) -> Result<JobOutcome, JobFailure>;

    /// The newest payload schema version this handler reads. A job of a newer one (staged by a
    /// newer release while this one still runs, in a rolling deploy) is not handed to it: it is
    /// put back, without using an attempt, for a worker that reads it.
    fn schema_version(&self) -> u16 {
        1
    }
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use ecom_kernel::jobs::{JobId, QueueName};

    use super::*;

    #[derive(Debug, PartialEq, serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Step {
        order_id: String,
        step: u8,
    }

    fn job(payload: serde_json::Value) -> JobEnvelope {
        JobEnvelope {
            id: JobId::new("j"),
            queue: QueueName::Checkout,
            kind: "k".into(),
            payload,
            schema_version: 1,
            attempt: 1,
            max_attempts: 3,
            trace_id: None,
            enqueued_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn a_payload_is_read_in_place_and_one_that_does_not_parse_fails_for_good() {
        let read: Step = payload(&job(serde_json::json!({"orderId": "o-1", "step": 2}))).unwrap();
        assert_eq!(read, Step { order_id: "o-1".into(), step: 2 });

        match payload::<Step>(&job(serde_json::json!({"orderId": 7}))) {
            Err(JobFailure::Permanent(why)) => assert!(why.starts_with("bad payload"), "{why}"),
            other => panic!("expected a permanent failure, got {other:?}"),
        }
    }
}
