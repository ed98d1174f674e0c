//! The job envelope and the `JobQueue` port shared by every producer and the worker.
//!
//! Delivery is at least once: handlers must be idempotent. Payloads carry ids, not state,
//! plus a schema version; a handler re-reads what it needs.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::InfraError;

/// A job id. Deterministic ids (`checkout:{order_id}:reserve`, an outbox row id) make enqueue
/// idempotent: a second enqueue of the same id does nothing.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(String);

impl JobId {
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The queues of this system; each is one Redis stream with its own consumer group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum QueueName {
    Checkout,
    PaymentEvents,
    Notifications,
}

impl QueueName {
    pub const ALL: [QueueName; 3] = [QueueName::Checkout, QueueName::PaymentEvents, QueueName::Notifications];

    pub fn as_str(&self) -> &'static str {
        match self {
            QueueName::Checkout => "checkout",
            QueueName::PaymentEvents => "payment-events",
            QueueName::Notifications => "notifications",
        }
    }
}

/// A job as it travels through a queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobEnvelope {
    pub id: JobId,
    pub queue: QueueName,
    /// What the handler registry dispatches on, e.g. `checkout.reserve-stock`.
    pub kind: String,
    pub payload: serde_json::Value,
    pub schema_version: u16,
    /// 1 on the first delivery.
    pub attempt: u32,
    pub max_attempts: u32,
    pub trace_id: Option<String>,
    pub enqueued_at: DateTime<Utc>,
}

/// A job to be enqueued; the queue fills in attempts and timestamps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewJob {
    pub id: JobId,
    pub queue: QueueName,
    pub kind: String,
    pub payload: serde_json::Value,
    pub schema_version: u16,
    pub max_attempts: u32,
    pub trace_id: Option<String>,
}

/// Whether an enqueue created the job or found it already there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    Created,
    AlreadyPresent,
    /// Only from [`JobQueue::reoffer`]: the job had been dead-lettered after its retries ran
    /// out, and runs again with fresh attempts.
    Redriven,
}

/// What a handler reports after running a job.
#[derive(Debug, Clone, PartialEq)]
pub enum JobOutcome {
    /// Finished; acknowledge it.
    Done,
    /// Finished; the next step of its ordered flow is enqueued atomically with the acknowledgement.
    DoneThen(NewJob),
    /// A transient failure: run it again after (at least) this delay, within `max_attempts`.
    RetryAfter(Duration),
    /// A permanent failure: dead-letter it with this reason, never retry.
    Failed(String),
}

/// The producer side of the job queue.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait JobQueue: Send + Sync {
    /// Enqueues a job to run now. MUST be idempotent on the job id.
    async fn enqueue(&self, job: NewJob) -> Result<Enqueued, InfraError>;

    /// Enqueues a job to run at `at` (or now, if `at` is past). MUST be idempotent on the job id.
    async fn enqueue_at(&self, job: NewJob, at: DateTime<Utc>) -> Result<Enqueued, InfraError>;

    /// Enqueues jobs to run now, each idempotent on its id; adapters send them in one round trip.
    async fn enqueue_many(&self, jobs: &[NewJob]) -> Result<Vec<Enqueued>, InfraError> {
        let mut done = Vec::with_capacity(jobs.len());
        for job in jobs {
            done.push(self.enqueue(job.clone()).await?);
        }
        Ok(done)
    }

    /// For a sweep that found the work of these jobs undone: enqueues each as `enqueue_many`
    /// does, and a job of the same id that was dead-lettered because its retries ran out (an
    /// outage longer than its backoff) runs again with fresh attempts, once it has been dead
    /// for `revive_after`, doubled for every time it was revived before (up to an hour, so a
    /// job that can never succeed costs a few attempts an hour). A job that failed for good, or
    /// kept crashing its workers, stays dead for an operator to look at.
    async fn reoffer(&self, jobs: &[NewJob], revive_after: Duration) -> Result<Vec<Enqueued>, InfraError>;
}

/// Makes a job's writes durable before the job counts as done, for a worker whose commits do not
/// wait for the disk. A job reads [`WriteBarrier::epoch`] before it starts and calls
/// [`WriteBarrier::flush`] when it ends; only a flush that answers `true` lets the job be
/// acknowledged (or its follow-on jobs published).
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait WriteBarrier: Send + Sync {
    /// The store's current epoch: it changes whenever writes committed before may have been
    /// lost (the database restarted, or the barrier could not tell).
    fn epoch(&self) -> u64;

    /// Waits until every write committed before this call is on disk. `true` when the epoch is
    /// still `since`, so writes made since are among them; `false` when writes made since may
    /// be lost: the job must run again.
    async fn flush(&self, since: u64) -> Result<bool, InfraError>;
}

/// How many jobs of one queue are in each state, and its throughput counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueDepth {
    pub queue: QueueName,
    /// Waiting to be picked up.
    pub waiting: u64,
    /// Picked up by a worker, not finished.
    pub in_flight: u64,
    /// Waiting for a retry or their scheduled time.
    pub delayed: u64,
    /// Dead-lettered: waiting for an operator, or to run again by themselves (see [`DeadLetter`]).
    pub dead: u64,
    /// Totals since the queue was created.
    pub completed_total: u64,
    pub retried_total: u64,
    pub dead_total: u64,
    /// Age of the oldest job not yet finished, in milliseconds (0 when there is none).
    pub oldest_age_ms: u64,
}

/// A job that gave up, with its last error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub queue: QueueName,
    pub job_id: JobId,
    pub error: String,
    /// When the queue runs it again by itself: a job whose retries ran out on failures that may
    /// pass (an outage). `None`: it does not (it failed for good, or died before the queue
    /// recorded this); an operator, or a sweep's [`JobQueue::reoffer`], may.
    pub revives_at: Option<DateTime<Utc>>,
}

/// What operators can see and do with the queues.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait JobAdmin: Send + Sync {
    async fn depths(&self) -> Result<Vec<QueueDepth>, InfraError>;
    /// The most recent dead letters of every queue, newest first.
    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, InfraError>;
    /// Puts a dead-lettered job back on its queue with fresh attempts. `None` when no dead
    /// letter has that id.
    async fn retry_dead(&self, job: &JobId) -> Result<Option<QueueName>, InfraError>;
    /// Sends a canary job through the whole pipeline (outbox, queue, a worker); it holds its
    /// worker for `hold` (to watch drains during deploys) and records where it ran.
    async fn send_canary(&self, hold: Duration) -> Result<JobId, InfraError>;
    /// What became of a canary: `None` until a worker has run it.
    async fn canary(&self, job: &JobId) -> Result<Option<CanaryRun>, InfraError>;
}

/// The job kind of canaries.
pub const CANARY_KIND: &str = "system.canary";
/// Every canary's job id is this prefix and a UUID.
pub const CANARY_ID_PREFIX: &str = "canary:";

/// Where and how often a canary ran (more than once only if its worker died mid-run).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanaryRun {
    pub runs: u64,
    pub last_worker: String,
    pub last_run_at: DateTime<Utc>,
}
