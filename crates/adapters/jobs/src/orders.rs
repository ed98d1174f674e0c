//! Checkout saga jobs: one step per job. A step that keeps failing, or fails for good, is
//! compensated (refund, release, CANCELLED / CHECKOUT_FAILED) instead of being left half done.

use std::sync::Arc;

use async_trait::async_trait;
use ecom_kernel::jobs::{JobEnvelope, JobOutcome};
use ecom_orders::service::{SagaJob, Step, StepError};
use ecom_orders::OrderService;

use crate::{payload, JobFailure, JobHandler};

/// `checkout.step`.
pub struct SagaHandler {
    pub orders: Arc<OrderService>,
}

impl SagaHandler {
    async fn give_up(&self, step: &SagaJob, why: &str) -> Result<JobOutcome, JobFailure> {
        tracing::warn!(order_id = %step.order_id, step = ?step.step, %why, "checkout step failed for good; compensating");
        match self.orders.give_up(step.order_id).await {
            Ok(()) => Ok(JobOutcome::Done),
            Err(err) => Err(JobFailure::Retryable(format!("compensation: {err}"))),
        }
    }
}

#[async_trait]
impl JobHandler for SagaHandler {
    async fn handle(&self, job: &JobEnvelope) -> Result<JobOutcome, JobFailure> {
        let step: SagaJob = payload(job)?;
        match self.orders.run_step(&step).await {
            Ok(()) => {
                tracing::info!(order_id = %step.order_id, step = ?step.step, "checkout step done");
                Ok(JobOutcome::Done)
            }
            // The last attempt of a step (not of compensation itself, which keeps its retries).
            Err(StepError::Retry(why)) if job.attempt >= job.max_attempts && step.step != Step::Compensate => {
                self.give_up(&step, &why).await
            }
            Err(StepError::Retry(why)) => Err(JobFailure::Retryable(why)),
            Err(StepError::Failed(err)) if step.step != Step::Compensate => self.give_up(&step, &err.to_string()).await,
            Err(StepError::Failed(err)) => Err(JobFailure::Permanent(err.to_string())),
        }
    }
}
