//! What operators see and do with the job pipeline, and the canary job that probes it.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ecom_jobs::{JobFailure, JobHandler};
use ecom_kernel::jobs::{
    CanaryRun, DeadLetter, JobAdmin, JobEnvelope, JobId, JobOutcome, NewJob, QueueDepth, QueueName, CANARY_ID_PREFIX,
    CANARY_KIND,
};
use ecom_kernel::InfraError;
use ecom_postgres::PgOutbox;
use ecom_redis::{RedisCanaryLog, RedisJobAdmin, RedisJobQueue};

/// Longest a canary may hold its worker.
pub const MAX_CANARY_HOLD: Duration = Duration::from_secs(60);

pub struct OperatorJobs {
    pub queues: RedisJobAdmin,
    pub queue: Arc<RedisJobQueue>,
    pub outbox: Arc<PgOutbox>,
    pub canaries: Arc<RedisCanaryLog>,
}

#[async_trait]
impl JobAdmin for OperatorJobs {
    async fn depths(&self) -> Result<Vec<QueueDepth>, InfraError> {
        self.queues.depths().await
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, InfraError> {
        self.queues.dead_letters(limit).await
    }

    async fn retry_dead(&self, job: &JobId) -> Result<Option<QueueName>, InfraError> {
        self.queues.retry_dead(job).await
    }

    async fn send_canary(&self, hold: Duration) -> Result<JobId, InfraError> {
        let id = JobId::new(format!("{CANARY_ID_PREFIX}{}", uuid::Uuid::now_v7()));
        let job = NewJob {
            id: id.clone(),
            queue: QueueName::Notifications,
            kind: CANARY_KIND.to_owned(),
            payload: serde_json::json!({ "holdMs": u64::try_from(hold.min(MAX_CANARY_HOLD).as_millis()).unwrap_or(0) }),
            schema_version: 1,
            max_attempts: 3,
            trace_id: None,
        };
        self.outbox.submit(self.queue.as_ref(), &[job]).await?;
        Ok(id)
    }

    async fn canary(&self, job: &JobId) -> Result<Option<CanaryRun>, InfraError> {
        self.canaries.read(job.as_str()).await
    }
}

/// Runs a canary: holds the worker for the requested time, then records that it ran, and where.
pub struct CanaryHandler {
    pub log: Arc<RedisCanaryLog>,
    pub worker: String,
}

#[async_trait]
impl JobHandler for CanaryHandler {
    async fn handle(&self, job: &JobEnvelope) -> Result<JobOutcome, JobFailure> {
        let hold = job.payload.get("holdMs").and_then(serde_json::Value::as_u64).unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(hold).min(MAX_CANARY_HOLD)).await;
        let runs = self.log.record(job.id.as_str(), &self.worker, chrono::Utc::now()).await?;
        tracing::info!(runs, "canary ran");
        Ok(JobOutcome::Done)
    }
}
