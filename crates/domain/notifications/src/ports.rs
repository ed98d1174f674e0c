//! What notifications need from the outside world.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ecom_kernel::{CustomerId, InfraError, Page, PageRequest};

use crate::model::{Notification, NotificationId};

#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait NotificationRepository: Send + Sync {
    /// Inserts each notification unless its (key, recipient) is there already.
    async fn save(&self, notifications: &[Notification]) -> Result<(), InfraError>;
    /// The notifications of `key` still PENDING (saved, not sent yet).
    async fn pending(&self, key: &str) -> Result<Vec<Notification>, InfraError>;
    /// PENDING → SENT for every notification of `key`; later states are left as they are.
    async fn mark_sent(&self, key: &str) -> Result<u64, InfraError>;
    /// The recipient's notifications not yet acknowledged (PENDING or SENT), oldest first, from
    /// the one after `after` (the last of the page before), at most `limit`.
    async fn undelivered(
        &self,
        customer: CustomerId,
        after: Option<NotificationId>,
        limit: i64,
    ) -> Result<Vec<Notification>, InfraError>;
    /// PENDING/SENT → DELIVERED. `false` when the recipient has no such notification.
    async fn mark_delivered(&self, customer: CustomerId, id: NotificationId) -> Result<bool, InfraError>;
    /// → READ (and DELIVERED). `false` when the recipient has no such notification.
    async fn mark_read(&self, customer: CustomerId, id: NotificationId, at: DateTime<Utc>) -> Result<bool, InfraError>;
    /// Every unread notification of the recipient → READ; how many.
    async fn mark_all_read(&self, customer: CustomerId, at: DateTime<Utc>) -> Result<u64, InfraError>;
    /// Newest first.
    async fn list(
        &self,
        customer: CustomerId,
        unread_only: bool,
        page: &PageRequest,
    ) -> Result<Page<Notification>, InfraError>;
}

/// Who the admins are (through identity).
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait Recipients: Send + Sync {
    async fn admins(&self) -> Result<Vec<CustomerId>, InfraError>;
}

/// Pushes a notification to its recipient's realtime channel (every connected device).
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait RealtimePublisher: Send + Sync {
    async fn publish(&self, notification: &Notification) -> Result<(), InfraError>;
}
