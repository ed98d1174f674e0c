//! The worker side of the job queue: handlers registered by job kind, and the runtime that
//! feeds them from the queues with bounded concurrency, retries, dead letters and a drain on
//! shutdown.

pub mod catalog;
mod durability;
pub mod notifications;
pub mod orders;
pub mod payments;
mod registry;
mod runtime;

pub use durability::{hold, Durability, ScopedBarrier};
pub use registry::{payload, HandlerRegistry, JobFailure, JobHandler};
pub use runtime::{backoff, RuntimeSettings, WorkerRuntime};
