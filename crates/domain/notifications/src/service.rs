//! The delivery flow's steps (run by the worker) and the recipient's use cases.

use std::sync::Arc;

use ecom_kernel::jobs::{JobId, NewJob, QueueName};
use ecom_kernel::{Clock, CustomerId, Page, PageRequest};
use serde::{Deserialize, Serialize};

use crate::error::NotificationError;
use crate::model::{Audience, Notification, NotificationId, NotificationRequest};
use crate::ports::{NotificationRepository, RealtimePublisher, Recipients};

/// Job kinds of the flow's steps.
pub const SAVE_KIND: &str = "notifications.save";
pub const SEND_KIND: &str = "notifications.send";
pub const UPDATE_KIND: &str = "notifications.update";

/// How many undelivered notifications one page of a backlog holds.
pub const BACKLOG_PAGE: i64 = 200;

const MAX_ATTEMPTS: u32 = 10;

/// Payload of the send and update steps (schema version 1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FlowStep {
    pub key: String,
}

fn job(key: &str, step: &str, kind: &str, payload: serde_json::Value) -> NewJob {
    NewJob {
        id: JobId::new(format!("notify:{key}:{step}")),
        queue: QueueName::Notifications,
        kind: kind.to_owned(),
        payload,
        schema_version: 1,
        max_attempts: MAX_ATTEMPTS,
        trace_id: None,
    }
}

/// The flow's first job (save); stage it in the transaction of the change it tells about.
pub fn delivery_job(request: &NotificationRequest) -> NewJob {
    job(&request.key, "save", SAVE_KIND, serde_json::json!(request))
}

/// The second step, enqueued when save completes.
pub fn send_job(key: &str) -> NewJob {
    job(key, "send", SEND_KIND, serde_json::json!(FlowStep { key: key.to_owned() }))
}

/// The last step, enqueued when send completes.
pub fn update_job(key: &str) -> NewJob {
    job(key, "update", UPDATE_KIND, serde_json::json!(FlowStep { key: key.to_owned() }))
}

pub struct NotificationService {
    repository: Arc<dyn NotificationRepository>,
    recipients: Arc<dyn Recipients>,
    realtime: Arc<dyn RealtimePublisher>,
    clock: Arc<dyn Clock>,
}

impl NotificationService {
    pub fn new(
        repository: Arc<dyn NotificationRepository>,
        recipients: Arc<dyn Recipients>,
        realtime: Arc<dyn RealtimePublisher>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self { repository, recipients, realtime, clock }
    }

    /// Step 1: one PENDING notification per recipient (a second run inserts nothing).
    pub async fn save(&self, request: &NotificationRequest) -> Result<usize, NotificationError> {
        let recipients = match request.audience {
            Audience::Customer(customer) => vec![customer],
            Audience::Admins => self.recipients.admins().await?,
        };
        let now = self.clock.now();
        let notifications: Vec<Notification> = recipients.iter().map(|r| request.for_recipient(*r, now)).collect();
        if !notifications.is_empty() {
            self.repository.save(&notifications).await?;
        }
        Ok(notifications.len())
    }

    /// Step 2: pushes what is still PENDING to each recipient's channel. Fails as a whole if
    /// one push fails (the retry pushes again; clients tell copies apart by id).
    pub async fn send(&self, key: &str) -> Result<usize, NotificationError> {
        let pending = self.repository.pending(key).await?;
        for notification in &pending {
            self.realtime.publish(notification).await?;
        }
        Ok(pending.len())
    }

    /// Step 3: PENDING → SENT.
    pub async fn update(&self, key: &str) -> Result<u64, NotificationError> {
        Ok(self.repository.mark_sent(key).await?)
    }

    pub async fn list(
        &self,
        customer: CustomerId,
        unread_only: bool,
        page: &PageRequest,
    ) -> Result<Page<Notification>, NotificationError> {
        Ok(self.repository.list(customer, unread_only, page).await?)
    }

    /// What a device receives first when it connects: everything not acknowledged yet, oldest
    /// first, a page at a time: the page after `after` (the last notification of the page
    /// before; `None` for the first). A page shorter than [`BACKLOG_PAGE`] is the last.
    pub async fn backlog(
        &self,
        customer: CustomerId,
        after: Option<NotificationId>,
    ) -> Result<Vec<Notification>, NotificationError> {
        Ok(self.repository.undelivered(customer, after, BACKLOG_PAGE).await?)
    }

    /// A device acknowledged `id`: it is never part of a backlog again.
    pub async fn acknowledge(&self, customer: CustomerId, id: NotificationId) -> Result<(), NotificationError> {
        if self.repository.mark_delivered(customer, id).await? {
            Ok(())
        } else {
            Err(NotificationError::NotFound(id))
        }
    }

    pub async fn mark_read(&self, customer: CustomerId, id: NotificationId) -> Result<(), NotificationError> {
        if self.repository.mark_read(customer, id, self.clock.now()).await? {
            Ok(())
        } else {
            Err(NotificationError::NotFound(id))
        }
    }

    pub async fn mark_all_read(&self, customer: CustomerId) -> Result<u64, NotificationError> {
        Ok(self.repository.mark_all_read(customer, self.clock.now()).await?)
    }
}
