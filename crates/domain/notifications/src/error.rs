use ecom_kernel::InfraError;

use crate::model::NotificationId;

#[derive(Debug, thiserror::Error)]
pub enum NotificationError {
    /// Not there, or not the caller's.
    #[error("no notification {0}")]
    NotFound(NotificationId),
    #[error(transparent)]
    Infrastructure(#[from] InfraError),
}
