//! Notifications: what happened, told to the customer it concerns (or to every admin), live
//! over WebSocket and kept for when they are offline.
//!
//! Delivery is an ordered job flow on the shared queue: **save** (insert, idempotent on the
//! notification's key) → **send** (publish to each recipient's realtime channel) → **update**
//! (mark SENT). A send that fails is retried on its own: the saved rows are never written twice.

pub mod error;
pub mod model;
pub mod ports;
pub mod service;

pub use error::NotificationError;
pub use service::NotificationService;

#[cfg(test)]
mod service_tests;
