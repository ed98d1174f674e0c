//! The notification flow's steps: save → send → update, each enqueued by its predecessor's
//! completion (never before it finished).

use std::sync::Arc;

use async_trait::async_trait;
use ecom_kernel::jobs::{JobEnvelope, JobOutcome};
use ecom_notifications::model::NotificationRequest;
use ecom_notifications::service::{send_job, update_job, FlowStep, SAVE_KIND, SEND_KIND, UPDATE_KIND};
use ecom_notifications::{NotificationError, NotificationService};

use crate::{payload, JobFailure, JobHandler};

fn classify(err: NotificationError) -> JobFailure {
    match err {
        NotificationError::Infrastructure(e) => JobFailure::Retryable(e.to_string()),
        other => JobFailure::Permanent(other.to_string()),
    }
}

/// Runs `notifications.save`, `notifications.send` and `notifications.update`.
pub struct NotificationFlowHandler {
    pub notifications: Arc<NotificationService>,
}

#[async_trait]
impl JobHandler for NotificationFlowHandler {
    async fn handle(&self, job: &JobEnvelope) -> Result<JobOutcome, JobFailure> {
        match job.kind.as_str() {
            SAVE_KIND => {
                let request: NotificationRequest = payload(job)?;
                let saved = self.notifications.save(&request).await.map_err(classify)?;
                tracing::debug!(key = %request.key, kind = request.kind.as_str(), saved, "notification saved");
                Ok(JobOutcome::DoneThen(send_job(&request.key)))
            }
            SEND_KIND => {
                let FlowStep { key } = payload(job)?;
                let sent = self.notifications.send(&key).await.map_err(classify)?;
                tracing::debug!(%key, sent, "notification sent");
                Ok(JobOutcome::DoneThen(update_job(&key)))
            }
            UPDATE_KIND => {
                let FlowStep { key } = payload(job)?;
                self.notifications.update(&key).await.map_err(classify)?;
                Ok(JobOutcome::Done)
            }
            other => Err(JobFailure::Permanent(format!("not a notification step: {other}"))),
        }
    }
}
